package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	ggcrtypes "github.com/google/go-containerregistry/pkg/v1/types"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
)

// newChartScenario makes a remote holding examples/storefront (two helm
// charts in the repository, plain shared manifests, a helm test as a job
// check) as bundles/<ns>, renamed to the scenario's namespace.
func newChartScenario(t *testing.T) *scenario {
	t.Helper()
	s := emptyScenario(t, 8*time.Minute)
	s.git(".", "clone", "--quiet", s.remote, s.clone)
	dir := filepath.Join(s.clone, "bundles", s.ns)
	if err := os.CopyFS(dir, os.DirFS("../../examples/storefront")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bundle.yaml", "shared/namespace.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		s.write("bundles/"+s.ns+"/"+f, strings.ReplaceAll(string(data), "storefront", s.ns))
	}
	s.push("add the storefront charts as bundle " + s.ns)
	return s
}

// editValues rewrites one values file of the bundle (after pulling) and
// returns its content before.
func (s *scenario) editValues(file, old, new string) string {
	s.t.Helper()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	p := filepath.Join(s.clone, "bundles", s.ns, "app", "values", file)
	data, err := os.ReadFile(p)
	if err != nil {
		s.t.Fatal(err)
	}
	if !strings.Contains(string(data), old) {
		s.t.Fatalf("values/%s does not hold %q:\n%s", file, old, data)
	}
	s.write("bundles/"+s.ns+"/app/values/"+file, strings.Replace(string(data), old, new, 1))
	return string(data)
}

// TestChartsE2E: a bundle of two helm charts goes live on blue (its helm
// test run as a job check); a values-only change (a ConfigMap value of
// the web chart) is a release of its own that rolls both apps onto green;
// a values change with an image that does not exist is reverted with the
// values file restored, and traffic never leaves green.
func TestChartsE2E(t *testing.T) {
	s := newChartScenario(t)
	s.start()
	first := s.waitCommits(1)
	want(t, first[0], "promoted")
	s.wantSelectors("blue", "api", "web")
	if body := s.git(s.remote, "log", "-1", "--format=%B", first[0].Hash); !strings.Contains(body, "Tandem-Check: smoke=passed") {
		t.Errorf("the first release does not record the chart's helm test as job check smoke:\n%s", body)
	}

	// A values-only change: no template changed, yet the render's digest
	// does, so the idle color rolls and traffic moves to it.
	s.editValues("web.yaml", "greeting: Welcome to the storefront", "greeting: Winter sale")
	s.push("web: winter greeting (values only)")
	commits := s.waitCommits(2)
	want(t, commits[0], "promoted")
	s.wantSelectors("green", "api", "web")
	cm, err := s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, "web-config-green", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["greeting"] != "Winter sale" {
		t.Fatalf("web-config-green greeting %q, want the new value", cm.Data["greeting"])
	}
	digests := map[string]string{}
	for _, c := range []string{"blue", "green"} {
		d, err := s.cs.AppsV1().Deployments(s.ns).Get(s.ctx, "api-"+c, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		digests[c] = d.Spec.Template.Annotations[contract.AnnotationDigest]
	}
	if digests["blue"] == digests["green"] || digests["green"] == "" {
		t.Fatalf("api's pod templates: %v; a values change of web must roll api's pods too (one release)", digests)
	}

	// A bad image in values: reverted, the values file restored, traffic
	// stays on green throughout.
	before := s.editValues("api.yaml", "image: example/api:v1", "image: missing.invalid/api:v2")
	bad := s.push("api v2")
	commits = s.waitCommits(3)
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != bad {
		t.Errorf("Tandem-Reverts = %q, want %s", commits[0].Trailers["Tandem-Reverts"], bad)
	}
	s.wantSelectors("green", "api", "web")
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	data, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "app", "values", "api.yaml"))
	if err != nil || string(data) != before {
		t.Errorf("values/api.yaml after the revert (err %v):\n%s\nwant:\n%s", err, data, before)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	if !strings.Contains(body, "missing.invalid/api:v2") {
		t.Errorf("revert body does not name the bad image:\n%s", body)
	}
}

// TestChartsE2EVersionBumpAndHumanRevert: a change inside an in-repository
// chart (its version bumped, a template changed) is a release; a human
// `git revert` of it is another that restores the chart's render.
func TestChartsE2EVersionBumpAndHumanRevert(t *testing.T) {
	s := newChartScenario(t)
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "api", "web")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	chart := "bundles/" + s.ns + "/app/charts/web/"
	data, err := os.ReadFile(filepath.Join(s.clone, chart, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s.write(chart+"Chart.yaml", strings.Replace(string(data), "version: 1.0.0", "version: 1.1.0", 1))
	tpl, err := os.ReadFile(filepath.Join(s.clone, chart, "templates", "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	s.write(chart+"templates/configmap.yaml", string(tpl)+"  chartVersion: {{ .Chart.Version | quote }}\n")
	bump := s.push("web chart 1.1.0")
	promoted := s.waitCommits(2)[0]
	want(t, promoted, "promoted")
	s.wantSelectors("green", "api", "web")
	// The trail says which chart versions serve: the promotion's
	// Tandem-Chart trailers and release.yaml.
	if body := s.body(promoted); !strings.Contains(body, "Tandem-Chart: web@1.1.0") {
		t.Errorf("the promotion does not name web@1.1.0 in a Tandem-Chart trailer:\n%s", body)
	}
	if rel := s.git(s.remote, "show", promoted.Hash+":bundles/"+s.ns+"/release.yaml"); !strings.Contains(rel, "web@1.1.0") || !strings.Contains(rel, "web@1.0.0") {
		t.Errorf("release.yaml does not record web@1.1.0 live and web@1.0.0 previous:\n%s", rel)
	}
	cm, err := s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, "web-config-green", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["chartVersion"] != "1.1.0" {
		t.Fatalf("web-config-green: chartVersion %q, want 1.1.0", cm.Data["chartVersion"])
	}

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.git(s.clone, "revert", "--no-edit", bump)
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	want(t, s.waitCommits(3)[0], "promoted")
	s.wantSelectors("blue", "api", "web")
	cm, err = s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, "web-config-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.Data["chartVersion"]; ok {
		t.Fatalf("web-config-blue after the revert still has chartVersion: %v", cm.Data)
	}
}

// TestRenderCommandCharts: `tandem-agent render` renders a bundle of
// charts in process (with --kube-version accepted), the helm test Job last
// as a check Job; a remote chart needs --allow-remote-charts.
func TestRenderCommandCharts(t *testing.T) {
	code, out, errOut := runCLI(t, "render", "../../examples/storefront", "--color", "green", "--live", "blue", "--kube-version", "v1.31.4")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"name: web-green", "name: api-green", "name: web-config-green", "value: http://api-green:8080",
		"tandem.dev/check: smoke", "name: web-smoke-green", "kind: Namespace"} {
		if !strings.Contains(out, want) {
			t.Errorf("render output lacks %q", want)
		}
	}
	if strings.Contains(out, "helm.sh/hook") {
		t.Errorf("render output keeps a helm hook annotation:\n%s", out)
	}
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("../../examples/storefront")); err != nil {
		t.Fatal(err)
	}
	k := "helmCharts:\n- name: web\n  repo: oci://registry.example.com/charts\n  version: 1.0.0\n"
	if err := os.WriteFile(filepath.Join(dir, "app", "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, errOut = runCLI(t, "render", dir)
	if code == 0 || !strings.Contains(errOut, "--allow-remote-charts") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming --allow-remote-charts", code, errOut)
	}
}

// TestStatusCharts: `tandem-agent status` reads the inputs of a bundle of
// charts as the agent does: a values-only change is something to release,
// a commit outside the bundle's inputs is not.
func TestStatusCharts(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	dir := filepath.Join(repo, "bundles", "sf")
	if err := os.CopyFS(dir, os.DirFS("../../examples/storefront")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "bundle.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(filepath.Join(dir, "bundle.yaml"), append(b, "  approval: required\n"...), 0o644))
	git("init", "--quiet", "-b", "main")
	git("add", "-A")
	git("commit", "--quiet", "-m", "storefront")
	live := git("rev-parse", "HEAD")
	must(t, os.WriteFile(filepath.Join(dir, "release.yaml"), []byte("apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: storefront\nlive: blue\ncolors:\n  blue: {commit: "+live+", digest: \"sha256:a\", state: live, promotedAt: \"2026-11-29T20:00:00Z\"}\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(repo, "README.md"), []byte("notes\n"), 0o644))
	git("add", "-A")
	git("commit", "--quiet", "-m", "release and notes")
	status := func() string {
		t.Helper()
		code, out, errOut := runCLI(t, "status", repo)
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		return out
	}
	if out := status(); !strings.Contains(out, "nothing to release") {
		t.Fatalf("a commit outside the charts' inputs is something to release:\n%s", out)
	}
	values := filepath.Join(dir, "app", "values", "web.yaml")
	v, err := os.ReadFile(values)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(values, []byte(strings.Replace(string(v), "replicas: 2", "replicas: 3", 1)), 0o644))
	git("commit", "--quiet", "-am", "web: 3 replicas")
	if out := status(); !strings.Contains(out, "waiting for approval") {
		t.Fatalf("a values-only change is nothing to release:\n%s", out)
	}
}

// TestDiffCharts: diff renders a bundle of charts with the cluster's
// .Capabilities (which `render` and the plain render API do not have) and
// shows a values change as a change of the idle color's objects.
func TestDiffCharts(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ap, err := applier.New(env.Config, applier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ns := uniqueName(t)
	dir := filepath.Join(t.TempDir(), "bundles", ns)
	if err := os.CopyFS(dir, os.DirFS("../../examples/storefront")); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"bundle.yaml", "shared/namespace.yaml"} {
		data, err := os.ReadFile(filepath.Join(dir, f))
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, f), []byte(strings.ReplaceAll(string(data), "storefront", ns)), 0o644))
	}
	tpl := filepath.Join(dir, "app", "charts", "web", "templates", "configmap.yaml")
	data, err := os.ReadFile(tpl)
	must(t, err)
	must(t, os.WriteFile(tpl, append(data, "  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n"...), 0o644))
	deployColor(ctx, t, ap, dir, "blue", "c1", true)
	deployColor(ctx, t, ap, dir, "green", "c1", false)

	dc, err := discovery.NewDiscoveryClientForConfig(env.Config)
	must(t, err)
	v, err := dc.ServerVersion()
	must(t, err)
	values := filepath.Join(dir, "app", "values", "web.yaml")
	data, err = os.ReadFile(values)
	must(t, err)
	must(t, os.WriteFile(values, []byte(strings.Replace(string(data), "Welcome to the storefront", "Winter sale", 1)), 0o644))
	code, out := runDiff(t, dir)
	if code != 1 {
		t.Fatalf("diff exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{"=== ConfigMap " + ns + "/web-config-green: changed", "+  greeting: Winter sale", "+  kube: " + v.GitVersion} {
		if !strings.Contains(out, want) {
			t.Errorf("diff lacks %q:\n%s", want, out)
		}
	}
}

// packageChartDir packages chart directory dir as a .tgz whose files are
// under name/, with version written into its Chart.yaml.
func packageChartDir(t *testing.T, dir, name, version string, extra map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	add := func(rel string, data []byte) {
		must(t, tw.WriteHeader(&tar.Header{Name: name + "/" + rel, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}))
		_, err := tw.Write(data)
		must(t, err)
	}
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if rel == "Chart.yaml" {
			data = regexp.MustCompile(`(?m)^version: .*$`).ReplaceAll(data, []byte("version: "+version))
		}
		add(filepath.ToSlash(rel), data)
		return nil
	})
	must(t, err)
	for rel, data := range extra {
		add(rel, []byte(data))
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

// pushChartOCI pushes a chart archive to ref as helm push does.
func pushChartOCI(t *testing.T, ref string, tgz []byte, auth authn.Authenticator) {
	t.Helper()
	img := mutate.MediaType(empty.Image, ggcrtypes.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, "application/vnd.cncf.helm.config.v1+json")
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(tgz, "application/vnd.cncf.helm.chart.content.v1.tar+gzip")})
	must(t, err)
	r, err := name.ParseReference(ref)
	must(t, err)
	must(t, remote.Write(r, img, remote.WithAuth(auth)))
}

// TestChartsE2ERemoteOCI: the agent, with --allow-remote-charts and
// --chart-credentials-file, releases a bundle whose web chart comes from
// an OCI registry behind basic auth; a chart version bump is a release;
// the same version pushed again with other content is refused (pinned by
// digest in the chart cache) and the commit that would use it reverted.
func TestChartsE2ERemoteOCI(t *testing.T) {
	registryHandler := registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	reg := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "ci" || p != "registry-pass" {
			w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		registryHandler.ServeHTTP(w, r)
	}))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	auth := &authn.Basic{Username: "ci", Password: "registry-pass"}
	web := "../../examples/storefront/app/charts/web"
	pushChartOCI(t, host+"/charts/web:1.0.0", packageChartDir(t, web, "web", "1.0.0", nil), auth)
	pushChartOCI(t, host+"/charts/web:1.1.0", packageChartDir(t, web, "web", "1.1.0",
		map[string]string{"templates/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  from: \"1.1.0\"\n"}), auth)

	s := newChartScenario(t)
	kustomization := func(version string) string {
		return "helmCharts:\n- name: web\n  repo: oci://" + host + "/charts\n  version: " + version + "\n  releaseName: web\n  valuesFile: values/web.yaml\n" +
			"- name: api\n  releaseName: api\n  valuesFile: values/api.yaml\n"
	}
	s.git(s.clone, "rm", "-r", "--quiet", "bundles/"+s.ns+"/app/charts/web")
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", kustomization("1.0.0"))
	s.push("web chart from the registry")
	creds := filepath.Join(s.work, "chart-credentials.json")
	must(t, os.WriteFile(creds, []byte(`{"auths": {"`+host+`": {"username": "ci", "password": "registry-pass"}}}`), 0o600))
	s.renderOpts = render.Options{AllowRemoteCharts: true, ChartCredentials: creds, ChartCache: t.TempDir()}
	s.start("--allow-remote-charts", "--chart-credentials-file", creds)
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "api", "web")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", kustomization("1.1.0"))
	s.push("web chart 1.1.0")
	want(t, s.waitCommits(2)[0], "promoted")
	s.wantSelectors("green", "api", "web")
	if _, err := s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, "extra-green", metav1.GetOptions{}); err != nil {
		t.Fatalf("chart 1.1.0's ConfigMap extra-green: %v", err)
	}

	// 1.1.0 is pushed again with other content: the pin refuses it.
	pushChartOCI(t, host+"/charts/web:1.1.0", packageChartDir(t, web, "web", "1.1.0",
		map[string]string{"templates/extra.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: extra\ndata:\n  from: tampered\n"}), auth)
	s.editValues("web.yaml", "greeting: Welcome to the storefront", "greeting: Winter sale")
	bad := s.push("web: winter greeting")
	// Not s.waitCommits: its fidelity check renders the tip, which no longer
	// renders (its version is pinned to the digest the registry lost).
	commits, err := testenv.WaitAgentCommits(s.ctx, s.remote, "main", 3, 3*time.Minute)
	if err != nil {
		t.Fatalf("%v\nagent log:\n%s", err, s.agent.LogTail())
	}
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != bad {
		t.Errorf("Tandem-Reverts = %q, want %s", commits[0].Trailers["Tandem-Reverts"], bad)
	}
	if body := s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash); !strings.Contains(body, "the chart changed under the same version") {
		t.Errorf("the revert does not say the chart changed under its version:\n%s", body)
	}
	s.wantSelectors("green", "api", "web")
	if strings.Contains(s.agent.LogTail(), "registry-pass") {
		t.Error("the agent's log shows the registry password")
	}
}
