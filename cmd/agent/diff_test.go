package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"
)

// diffBundle writes a bundle directory (namespace ns, one app and a
// ConfigMap named cm) and returns its path.
func diffBundle(t *testing.T, root, ns, image, cm string) string {
	t.Helper()
	dir := filepath.Join(root, "bundles", ns)
	files := map[string]string{
		"bundle.yaml":               fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %s\nspec:\n  namespace: %s\n  shared: shared\n", ns, ns),
		"shared/kustomization.yaml": "resources:\n- namespace.yaml\n",
		"shared/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + ns + "\n",
		"app/kustomization.yaml":    "resources:\n- server.yaml\n- config.yaml\n",
		"app/server.yaml":           appWithReplicas(app{"server", image}, 1),
		"app/config.yaml":           "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + cm + "\ndata:\n  mode: fast\n",
	}
	if err := os.RemoveAll(filepath.Join(dir, "app")); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// deployColor applies the bundle at dir for color as the agent does
// (shared objects, then the color) and waits until it is healthy; with
// route it also points the stable Services at color.
func deployColor(ctx context.Context, t *testing.T, ap *applier.Applier, dir, color, commit string, route bool) {
	t.Helper()
	root, b, err := render.LoadBundleDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(ctx, b, render.Options{RepoRoot: root, Color: color, Live: "blue", Commit: commit})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ap.Apply(ctx, applier.Set{Bundle: b.Name, Namespace: b.Spec.Namespace, Objects: res.Shared}); err != nil {
		t.Fatal(err)
	}
	cs, err := ap.Apply(ctx, applier.Set{Bundle: b.Name, Color: color, Namespace: b.Spec.Namespace, Objects: res.Objects})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ap.WaitHealthy(ctx, cs.Objects, applier.DefaultWaitOptions()); err != nil {
		t.Fatal(err)
	}
	if route {
		if err := ap.Flip(ctx, res.Twins, color, applier.FlipOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// versions maps every object tandem applies in ns (and ns itself) to its
// resourceVersion.
func versions(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	n, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out["Namespace "+ns] = n.ResourceVersion
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range cms.Items {
		out["ConfigMap "+o.Name] = o.ResourceVersion
	}
	svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range svcs.Items {
		out["Service "+o.Name] = o.ResourceVersion
	}
	deps, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range deps.Items {
		out["Deployment "+o.Name] = o.ResourceVersion
	}
	return out
}

func runDiff(t *testing.T, dir string) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"diff", dir, "--kubeconfig", env.Kubeconfig}, &stdout, &stderr)
	if code == 2 {
		t.Fatalf("diff failed: %s", stderr.String())
	}
	return code, stdout.String()
}

var summary = regexp.MustCompile(`(\d+) created, (\d+) changed, (\d+) pruned, (\d+) unchanged`)

func counts(t *testing.T, out string) [4]string {
	t.Helper()
	m := summary.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in:\n%s", out)
	}
	return [4]string{m[1], m[2], m[3], m[4]}
}

// TestDiff: diff shows what applying the idle color would create, change
// and prune, exits 1 when something would change and 0 when nothing
// would, and writes nothing (every resourceVersion stays).
func TestDiff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ap, err := applier.New(env.Config, applier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cs, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	ns := uniqueName(t)
	dir := diffBundle(t, t.TempDir(), ns, "example/server:v1", "settings")
	deployColor(ctx, t, ap, dir, "blue", "c1", true)

	// green (idle) never ran: everything of it would be created.
	code, out := runDiff(t, dir)
	if code != 1 || !strings.Contains(out, "=== Deployment "+ns+"/server-green: created") ||
		!strings.Contains(out, "color green (live: blue)") {
		t.Fatalf("first diff exit %d:\n%s", code, out)
	}
	if c := counts(t, out); c[0] != "3" || c[2] != "0" {
		t.Errorf("first diff counts %v, want 3 created, 0 pruned:\n%s", c, out)
	}

	// green runs exactly this render: nothing would change.
	deployColor(ctx, t, ap, dir, "green", "c1", false)
	code, out = runDiff(t, dir)
	if code != 0 || counts(t, out) != [4]string{"0", "0", "0", "4"} {
		t.Fatalf("diff of an applied render: exit %d, want 0 and 4 unchanged:\n%s", code, out)
	}

	// A new image, a removed ConfigMap and a new one.
	diffBundle(t, filepath.Dir(filepath.Dir(dir)), ns, "example/server:v2", "extra")
	before := versions(ctx, t, cs, ns)
	code, out = runDiff(t, dir)
	if code != 1 {
		t.Fatalf("diff exit %d, want 1:\n%s", code, out)
	}
	t.Logf("diff output:\n%s", out)
	c := counts(t, out)
	if c[0] != "1" || c[2] != "1" || c[1] == "0" || c[3] != "1" {
		t.Errorf("counts %v, want 1 created, some changed, 1 pruned, 1 unchanged (the Namespace):\n%s", c, out)
	}
	for _, want := range []string{
		"=== ConfigMap " + ns + "/extra-green: created",
		"=== ConfigMap " + ns + "/settings-green: pruned",
		"=== Deployment " + ns + "/server-green: changed",
		"--- live/Deployment " + ns + "/server-green",
		"+++ after/Deployment " + ns + "/server-green",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^-\s+image: example/server:v1$`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^\+\s+image: example/server:v2$`).MatchString(out) {
		t.Errorf("the image change is not a -/+ pair:\n%s", out)
	}
	for _, noise := range []string{"managedFields", "resourceVersion", "creationTimestamp", "uid:", "generation:", "\nstatus:", " status:"} {
		if strings.Contains(out, noise) {
			t.Errorf("output holds %q (not sanitised):\n%s", noise, out)
		}
	}
	if after := versions(ctx, t, cs, ns); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("diff wrote to the cluster:\nbefore %v\nafter  %v", before, after)
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "extra-green", metav1.GetOptions{}); err == nil {
		t.Error("diff created extra-green")
	}

	// status --kubeconfig puts the cluster next to Git and flags disagreement.
	root := filepath.Dir(filepath.Dir(dir))
	commitAll := func(msg string) {
		for _, args := range [][]string{{"init", "--quiet"}, {"add", "-A"}, {"commit", "--quiet", "--allow-empty", "-m", msg}} {
			if _, err := testenv.Git(ctx, root, args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	status := func() (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, []string{"status", root, "--root", "bundles", "--kubeconfig", env.Kubeconfig}, &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}
	commitAll("bundle")
	code, out, errOut := status()
	if code != 1 || !strings.Contains(out, "NO: the cluster serves blue but release.yaml records no release") ||
		!strings.Contains(errOut, "Git and the cluster disagree") {
		t.Errorf("status without release.yaml: exit %d\n%s%s", code, out, errOut)
	}
	rel := "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: " + ns + "\nlive: blue\ncolors:\n  blue: {commit: c1, state: live}\n"
	if err := os.WriteFile(filepath.Join(dir, "release.yaml"), []byte(rel), 0o644); err != nil {
		t.Fatal(err)
	}
	commitAll("release")
	code, out, errOut = status()
	t.Logf("status output:\n%s", out)
	if code != 0 || !regexp.MustCompile(ns+`\s+blue c1\s+blue c1\s+server→blue\s+blue 1/1, green 1/1\s+yes`).MatchString(out) {
		t.Errorf("status with release.yaml: exit %d\n%s%s", code, out, errOut)
	}

	// A bad flag or bundle is exit status 2.
	var stderr bytes.Buffer
	if code := run(ctx, []string{"diff", dir, "--kubeconfig", env.Kubeconfig, "--color", "purple"}, &bytes.Buffer{}, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "purple") {
		t.Errorf("--color purple: exit %d, stderr %q", code, stderr.String())
	}
}
