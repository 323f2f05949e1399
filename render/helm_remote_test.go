package render

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// packageChart returns a chart archive (.tgz) of files under dir name/.
func packageChart(t testing.TB, chartName string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		must(t, tw.WriteHeader(&tar.Header{Name: chartName + "/" + n, Mode: 0o644, Size: int64(len(files[n])), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(files[n]))
		must(t, err)
	}
	must(t, tw.Close())
	must(t, zw.Close())
	return buf.Bytes()
}

// remoteChart is a small chart at version with a ConfigMap saying what.
func remoteChart(t testing.TB, version, what string) []byte {
	return packageChart(t, "hello", map[string]string{
		"Chart.yaml":               "apiVersion: v2\nname: hello\nversion: " + version + "\n",
		"values.yaml":              "greeting: hi\n",
		"templates/configmap.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-hello\ndata:\n  greeting: {{ .Values.greeting }}\n  what: " + what + "\n",
	})
}

// basicAuth wraps h with a check of user and password.
func basicAuth(user, pass string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != user || p != pass {
			w.Header().Set("WWW-Authenticate", `Basic realm="charts"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// chartRepo is a Helm HTTP chart repository serving index.yaml and the
// archives it lists; downloads counts archive downloads.
type chartRepo struct {
	archives  map[string][]byte // by version
	downloads atomic.Int32
}

func (c *chartRepo) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/index.yaml" {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nentries:\n  hello:\n")
		for v, data := range c.archives {
			fmt.Fprintf(&b, "  - name: hello\n    version: %s\n    digest: %s\n    urls: [hello-%s.tgz]\n", v, strings.TrimPrefix(sha256Digest(data), "sha256:"), v)
		}
		_, _ = w.Write([]byte(b.String()))
		return
	}
	for v, data := range c.archives {
		if r.URL.Path == "/hello-"+v+".tgz" {
			c.downloads.Add(1)
			_, _ = w.Write(data)
			return
		}
	}
	http.NotFound(w, r)
}

// remoteBundle writes a repository whose bundle names chart hello at
// version from repo, and returns its root and bundle.
func remoteBundle(t testing.TB, repo, version string) (string, *Bundle) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml": fmt.Sprintf("helmCharts:\n- name: hello\n  repo: %s\n  version: %s\n  releaseName: r\n  valuesFile: values.yaml\n", repo, version),
		"b/app/values.yaml":        "greeting: hello from values\n",
	})
	bs, err := Discover(root, ".")
	must(t, err)
	return root, bs[0]
}

func writeCredentials(t testing.TB, host, user, pass string) string {
	p := filepath.Join(t.TempDir(), "config.json")
	must(t, os.WriteFile(p, []byte(fmt.Sprintf(`{"auths": {%q: {"username": %q, "password": %q}}}`, host, user, pass)), 0o600))
	return p
}

func greeting(t testing.TB, res *Result) (string, string) {
	t.Helper()
	for _, u := range res.Objects {
		if u.GetKind() == "ConfigMap" {
			return u.Object["data"].(map[string]any)["greeting"].(string), u.Object["data"].(map[string]any)["what"].(string)
		}
	}
	t.Fatal("no ConfigMap rendered")
	return "", ""
}

// TestRemoteChartHTTP renders a chart from a Helm HTTP repository behind
// basic auth: pinned by version, cached by digest; refused without the
// allow flag, with wrong credentials, for a missing version, for a
// changed archive under the same version, and over the size limit.
func TestRemoteChartHTTP(t *testing.T) {
	repo := &chartRepo{archives: map[string][]byte{"0.1.0": remoteChart(t, "0.1.0", "one")}}
	srv := httptest.NewServer(basicAuth("reader", "s3cret-pass", repo))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	cache := t.TempDir()
	creds := writeCredentials(t, srv.URL, "reader", "s3cret-pass")
	root, b := remoteBundle(t, srv.URL, "0.1.0")
	opts := Options{RepoRoot: root, Color: "blue", AllowRemoteCharts: true, ChartCache: cache, ChartCredentials: creds}

	if _, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"}); err == nil || !strings.Contains(err.Error(), "--allow-remote-charts") {
		t.Fatalf("without AllowRemoteCharts: %v, want a refusal naming --allow-remote-charts", err)
	}
	res, err := Render(context.Background(), b, opts)
	must(t, err)
	if g, w := greeting(t, res); g != "hello from values" || w != "one" {
		t.Fatalf("greeting %q what %q", g, w)
	}
	want := ChartSource{Kustomization: "b/app/kustomization.yaml", Name: "hello", Version: "0.1.0", Repo: srv.URL, Digest: sha256Digest(repo.archives["0.1.0"])}
	if len(res.Charts) != 1 || res.Charts[0] != want {
		t.Fatalf("charts %+v, want %+v", res.Charts, want)
	}
	if !strings.Contains(strings.Join(res.Inputs, " "), "b/app/values.yaml") {
		t.Fatalf("inputs %v lack the values file", res.Inputs)
	}
	if _, err := Render(context.Background(), b, opts); err != nil {
		t.Fatal(err)
	}
	if n := repo.downloads.Load(); n != 1 {
		t.Fatalf("%d downloads of the archive, want 1 (the second render uses the cache)", n)
	}

	t.Run("wrong credentials", func(t *testing.T) {
		o := opts
		o.ChartCredentials = writeCredentials(t, host, "reader", "wrong-pass")
		_, err := Render(context.Background(), b, o)
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--chart-credentials-file") {
			t.Fatalf("error %v, want a 401 naming --chart-credentials", err)
		}
		if strings.Contains(err.Error(), "wrong-pass") {
			t.Fatalf("the error shows the password: %v", err)
		}
	})
	t.Run("missing version", func(t *testing.T) {
		root, b := remoteBundle(t, srv.URL, "0.9.9")
		o := opts
		o.RepoRoot = root
		if _, err := Render(context.Background(), b, o); err == nil || !strings.Contains(err.Error(), "no version 0.9.9") {
			t.Fatalf("error %v, want no version 0.9.9", err)
		}
	})
	t.Run("version range", func(t *testing.T) {
		root, b := remoteBundle(t, srv.URL, "\"^0.1\"")
		o := opts
		o.RepoRoot = root
		if _, err := Render(context.Background(), b, o); err == nil || !strings.Contains(err.Error(), "not an exact version") {
			t.Fatalf("error %v, want not an exact version", err)
		}
	})
	t.Run("changed under the same version", func(t *testing.T) {
		repo.archives["0.1.0"] = remoteChart(t, "0.1.0", "two")
		defer func() { repo.archives["0.1.0"] = remoteChart(t, "0.1.0", "one") }()
		_, err := Render(context.Background(), b, opts)
		if !errors.Is(err, ErrChartChanged) {
			t.Fatalf("error %v, want ErrChartChanged", err)
		}
	})
	t.Run("huge archive", func(t *testing.T) {
		repo.archives["0.2.0"] = remoteChart(t, "0.2.0", noise(64<<10))
		root, b := remoteBundle(t, srv.URL, "0.2.0")
		o := opts
		o.RepoRoot, o.MaxChartBytes = root, 1024
		_, err := Render(context.Background(), b, o)
		var le *LimitError
		if !errors.As(err, &le) || le.Limit != LimitChartBytes {
			t.Fatalf("error %v, want a %s limit error", err, LimitChartBytes)
		}
	})
}

// noise is n bytes of text that does not compress.
func noise(n int) string {
	b := make([]byte, n/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// pushChart pushes a chart archive to ref as helm does (OCI manifest,
// helm config and chart layer media types) and returns the manifest digest.
func pushChart(t testing.TB, ref string, tgz []byte, opts ...remote.Option) string {
	t.Helper()
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, helmConfigMediaType)
	img, err := mutate.Append(img, mutate.Addendum{Layer: static.NewLayer(tgz, helmChartMediaType)})
	must(t, err)
	r, err := name.ParseReference(ref)
	must(t, err)
	must(t, remote.Write(r, img, opts...))
	d, err := img.Digest()
	must(t, err)
	return d.String()
}

// TestRemoteChartOCI renders a chart from an in-memory OCI registry
// behind basic auth: the manifest digest is recorded; wrong credentials,
// a missing version and a different digest under the same tag are refused.
func TestRemoteChartOCI(t *testing.T) {
	srv := httptest.NewServer(basicAuth("pusher", "oci-pass", registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	auth := remote.WithAuth(&authn.Basic{Username: "pusher", Password: "oci-pass"})
	digest := pushChart(t, host+"/charts/hello:0.1.0", remoteChart(t, "0.1.0", "one"), auth)
	creds := writeCredentials(t, host, "pusher", "oci-pass")
	root, b := remoteBundle(t, "oci://"+host+"/charts", "0.1.0")
	opts := Options{RepoRoot: root, Color: "blue", AllowRemoteCharts: true, ChartCache: t.TempDir(), ChartCredentials: creds}

	res, err := Render(context.Background(), b, opts)
	must(t, err)
	if g, w := greeting(t, res); g != "hello from values" || w != "one" {
		t.Fatalf("greeting %q what %q", g, w)
	}
	if len(res.Charts) != 1 || res.Charts[0].Digest != digest {
		t.Fatalf("charts %+v, want digest %s", res.Charts, digest)
	}

	t.Run("wrong credentials", func(t *testing.T) {
		o := opts
		o.ChartCredentials = writeCredentials(t, host, "pusher", "nope")
		_, err := Render(context.Background(), b, o)
		if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "--chart-credentials-file") || strings.Contains(err.Error(), "nope") {
			t.Fatalf("error %v, want a 401 naming --chart-credentials without the password", err)
		}
	})
	t.Run("missing version", func(t *testing.T) {
		root, b := remoteBundle(t, "oci://"+host+"/charts", "0.9.9")
		o := opts
		o.RepoRoot = root
		if _, err := Render(context.Background(), b, o); err == nil || !strings.Contains(err.Error(), "0.9.9") {
			t.Fatalf("error %v, want one naming 0.9.9", err)
		}
	})
	t.Run("changed under the same tag", func(t *testing.T) {
		pushChart(t, host+"/charts/hello:0.1.0", remoteChart(t, "0.1.0", "two"), auth)
		_, err := Render(context.Background(), b, opts)
		if !errors.Is(err, ErrChartChanged) {
			t.Fatalf("error %v, want ErrChartChanged", err)
		}
	})
}

// TestWorkerCharts: a render in a worker process gets every chart option
// (remote charts allowed, the cache, the credentials file, the chart size
// limit, the Kubernetes and API versions) and matches the render in
// process, Result.Charts included.
func TestWorkerCharts(t *testing.T) {
	srv := httptest.NewServer(basicAuth("pusher", "oci-pass", registry.New(registry.Logger(log.New(io.Discard, "", 0)))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	pushChart(t, host+"/charts/hello:0.1.0", remoteChart(t, "0.1.0", "one"), remote.WithAuth(&authn.Basic{Username: "pusher", Password: "oci-pass"}))
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml": strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml": "helmCharts:\n- name: hello\n  repo: oci://" + host + "/charts\n  version: 0.1.0\n  releaseName: r\n" +
			"- name: caps\n",
		"b/app/charts/caps/Chart.yaml": "apiVersion: v2\nname: caps\nversion: 1.0.0\n",
		"b/app/charts/caps/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: caps\ndata:\n" +
			"  kube: {{ .Capabilities.KubeVersion.Version | quote }}\n  widget: {{ .Capabilities.APIVersions.Has \"example.com/v1/Widget\" | quote }}\n",
	})
	bs, err := Discover(root, ".")
	must(t, err)
	o := Options{RepoRoot: root, Commit: "abc", AllowRemoteCharts: true, ChartCache: t.TempDir(),
		ChartCredentials: writeCredentials(t, host, "pusher", "oci-pass"), KubeVersion: "v1.31.4", APIVersions: []string{"example.com/v1/Widget"}}
	want, err := RenderColors(context.Background(), bs[0], o, "blue", "green")
	must(t, err)
	var caps map[string]any
	for _, u := range want[0].Objects {
		if u.GetName() == "caps-blue" {
			caps = u.Object["data"].(map[string]any)
		}
	}
	if caps["kube"] != "v1.31.4" || caps["widget"] != "true" {
		t.Fatalf("capabilities in the chart: %v, want kube v1.31.4 and the Widget API", caps)
	}
	o.Workers = testPool(t, WorkerOptions{})
	got, err := RenderColors(context.Background(), bs[0], o, "blue", "green")
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("worker rendered\n%+v\nin process\n%+v", got[0], want[0])
	}
	// No cache: the limit applies to the download.
	_, err = Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "blue", Workers: o.Workers, AllowRemoteCharts: true,
		ChartCredentials: o.ChartCredentials, MaxChartBytes: 100})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitChartBytes {
		t.Fatalf("error %v, want a %s limit error from the worker", err, LimitChartBytes)
	}
}
