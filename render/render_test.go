package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"
)

func writeFiles(t testing.TB, root string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(root, filepath.FromSlash(p))
		must(t, os.MkdirAll(filepath.Dir(full), 0o755))
		must(t, os.WriteFile(full, []byte(c), 0o644))
	}
}

const testBundle = "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %s\nspec:\n  namespace: ns\n"

func deploy(image string) string {
	return `apiVersion: apps/v1
kind: Deployment
metadata:
  name: d
  labels: {z: "1", a: "2", m: "3"}
spec:
  selector:
    matchLabels: {app: d}
  template:
    metadata:
      labels: {app: d}
    spec:
      containers:
      - name: c
        image: ` + image + `
`
}

func renderRepo(t testing.TB, root, color, commit string) *Result {
	t.Helper()
	bs, err := Discover(root, ".")
	must(t, err)
	if len(bs) != 1 {
		t.Fatalf("want 1 bundle, got %d", len(bs))
	}
	res, err := Render(context.Background(), bs[0], Options{RepoRoot: root, Color: color, Commit: commit})
	must(t, err)
	return res
}

func TestDigest(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml": "resources: [d.yaml]\n",
		"b/app/d.yaml":             deploy("example/d:v1"),
	})
	blue := renderRepo(t, root, "blue", "c1")
	green := renderRepo(t, root, "green", "c2")
	if blue.Digest != green.Digest {
		t.Errorf("digest differs between colors: %s vs %s", blue.Digest, green.Digest)
	}
	if !strings.HasPrefix(blue.Digest, "sha256:") || len(blue.Digest) != len("sha256:")+64 {
		t.Errorf("digest %q is not sha256:<hex>", blue.Digest)
	}
	if got := blue.Objects[0].GetAnnotations()[contract.AnnotationDigest]; got != blue.Digest {
		t.Errorf("digest annotation %q, want %q", got, blue.Digest)
	}
	if got := green.Objects[0].GetAnnotations()[contract.AnnotationCommit]; got != "c2" {
		t.Errorf("commit annotation %q, want c2", got)
	}

	writeFiles(t, root, map[string]string{"b/release.yaml": "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: b\nlive: blue\n"})
	if d := renderRepo(t, root, "blue", "c3").Digest; d != blue.Digest {
		t.Errorf("release.yaml changed the digest: %s vs %s", d, blue.Digest)
	}
	// Same content, different map order in the source.
	writeFiles(t, root, map[string]string{"b/app/d.yaml": strings.Replace(deploy("example/d:v1"), `{z: "1", a: "2", m: "3"}`, `{a: "2", m: "3", z: "1"}`, 1)})
	if d := renderRepo(t, root, "blue", "c3").Digest; d != blue.Digest {
		t.Errorf("map order changed the digest: %s vs %s", d, blue.Digest)
	}
	writeFiles(t, root, map[string]string{"b/app/d.yaml": deploy("example/d:v2")})
	if d := renderRepo(t, root, "blue", "c1").Digest; d == blue.Digest {
		t.Errorf("image change kept the digest %s", d)
	}
}

func TestParseBundleDefaults(t *testing.T) {
	b, err := ParseBundle("x/bundle.yaml", []byte("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: shop}\nspec: {namespace: shop}\n"))
	must(t, err)
	want := Spec{Namespace: "shop", Path: "app", Colors: [2]string{"blue", "green"}, HealthTimeout: 5 * time.Minute, ScaleDownAfter: 10 * time.Minute, OnFailure: "revert", Stage: Stage{Approval: ApprovalNone}}
	if !reflect.DeepEqual(b.Spec, want) || b.Name != "shop" || b.Dir != "x" || b.File != "x/bundle.yaml" {
		t.Errorf("got %+v", b)
	}
	b, err = ParseBundle("bundle.yaml", []byte("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: s}\nspec: {namespace: s, path: ./k, shared: sh, colors: [a, b], healthTimeout: 30s, soak: 1m, scaleDownAfter: never, onFailure: hold, adopt: true, serviceAccountName: deployer}\n"))
	must(t, err)
	want = Spec{Namespace: "s", Path: "k", Shared: "sh", Colors: [2]string{"a", "b"}, HealthTimeout: 30 * time.Second, Soak: time.Minute, ScaleDownNever: true, OnFailure: "hold", Adopt: true, ServiceAccountName: "deployer", Stage: Stage{Approval: ApprovalNone}}
	if !reflect.DeepEqual(b.Spec, want) || b.Dir != "." {
		t.Errorf("got %+v", b)
	}
}

func TestDiscoverErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		files map[string]string
		want  string
	}{
		"duplicate name": {map[string]string{
			"a/bundle.yaml": strings.Replace(testBundle, "%s", "x", 1), "a/app/kustomization.yaml": "",
			"b/bundle.yaml": strings.Replace(testBundle, "%s", "x", 1), "b/app/kustomization.yaml": "",
		}, `b/bundle.yaml: metadata.name "x" is also used by a/bundle.yaml`},
		"nested": {map[string]string{
			"a/bundle.yaml": strings.Replace(testBundle, "%s", "x", 1), "a/app/kustomization.yaml": "",
			"a/app/y/bundle.yaml": strings.Replace(testBundle, "%s", "y", 1), "a/app/y/app/kustomization.yaml": "",
		}, "a/app/y/bundle.yaml: bundle is nested inside the bundle of a/bundle.yaml"},
		"missing shared": {map[string]string{
			"a/bundle.yaml": strings.Replace(testBundle, "%s", "x", 1) + "  shared: sh\n", "a/app/kustomization.yaml": "",
		}, `a/bundle.yaml: spec.shared: directory "sh" does not exist`},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			writeFiles(t, root, tc.files)
			_, err := Discover(root, ".")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestLoadBundleDir(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		".git/HEAD":                  "ref: refs/heads/main\n",
		"x/b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
		"x/b/app/kustomization.yaml": "",
	})
	repo, b, err := LoadBundleDir(filepath.Join(root, "x", "b"))
	must(t, err)
	want, _ := filepath.EvalSymlinks(root)
	if repo != want || b.File != "x/b/bundle.yaml" || b.Dir != "x/b" {
		t.Errorf("got %s %+v", repo, b)
	}
}

// TestConcurrentRender renders two bundles from two goroutines (run with -race).
func TestConcurrentRender(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"a/bundle.yaml":            strings.Replace(testBundle, "%s", "a", 1),
		"a/app/kustomization.yaml": "resources: [d.yaml]\n",
		"a/app/d.yaml":             deploy("example/a:v1"),
		"b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml": "resources: [d.yaml]\n",
		"b/app/d.yaml":             deploy("example/b:v1"),
	})
	bs, err := Discover(root, ".")
	must(t, err)
	var wg sync.WaitGroup
	errs := make([]error, len(bs)*4)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			b := bs[i%len(bs)]
			_, errs[i] = Render(context.Background(), b, Options{RepoRoot: root, Color: b.Spec.Colors[i%2]})
		}(i)
	}
	wg.Wait()
	for _, err := range errs {
		must(t, err)
	}
}

func TestMaxBytes(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml": "resources: [d.yaml]\n",
		"b/app/d.yaml":             deploy("example/d:v1"),
	})
	bs, err := Discover(root, ".")
	must(t, err)
	_, err = Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "blue", MaxBytes: 100})
	if err == nil || !strings.Contains(err.Error(), "exceeds the limit") {
		t.Fatalf("error %v, want output limit", err)
	}
}

func TestRemoteBaseAllowedPassesVet(t *testing.T) {
	f := &confinedFS{allowRemote: true}
	if _, err := f.vetKustomization("/r/kustomization.yaml", []byte("resources:\n- https://github.com/x/y//base?ref=v1\n")); err != nil {
		t.Fatal(err)
	}
	f.allowRemote = false
	if _, err := f.vetKustomization("/r/kustomization.yaml", []byte("resources:\n- https://github.com/x/y//base?ref=v1\n")); err == nil {
		t.Fatal("remote base accepted without AllowRemoteBases")
	}
}

// TestSymlinkInsideRoot: a symlinked base that stays inside the repository is
// followed. (Symlinked files leaving their kustomization directory are refused
// by kustomize's own root-only load restriction, as with `kustomize build`.)
func TestSymlinkInsideRoot(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":             strings.Replace(testBundle, "%s", "b", 1),
		"b/app/kustomization.yaml":  "resources: [base]\n",
		"common/kustomization.yaml": "resources: [d.yaml]\n",
		"common/d.yaml":             deploy("example/d:v1"),
	})
	must(t, os.Symlink(filepath.Join("..", "..", "common"), filepath.Join(root, "b", "app", "base")))
	res := renderRepo(t, root, "green", "c")
	if len(res.Objects) != 1 || res.Objects[0].GetName() != "d-green" {
		t.Fatalf("got %d objects", len(res.Objects))
	}
}

// RenderColors runs kustomize once for both colors and gives exactly what
// two Render calls give, with no object shared between the results.
func TestRenderColorsEqualsRenderPerColor(t *testing.T) {
	root, b, err := LoadBundleDir("../examples/shop")
	must(t, err)
	o := Options{RepoRoot: root, Commit: "c1"}
	both, err := RenderColors(context.Background(), b, o, "blue", "green")
	must(t, err)
	for i, color := range []string{"blue", "green"} {
		o.Color = color
		one, err := Render(context.Background(), b, o)
		must(t, err)
		var want, got strings.Builder
		must(t, WriteYAML(&want, one.Objects, one.Twins, one.Shared))
		must(t, WriteYAML(&got, both[i].Objects, both[i].Twins, both[i].Shared))
		if want.String() != got.String() || both[i].Digest != one.Digest || both[i].Color != color || both[i].Live != color {
			t.Errorf("%s: RenderColors differs from Render:\n%s\n---\n%s", color, got.String(), want.String())
		}
	}
	both[0].Objects[0].SetName("changed")
	if both[1].Objects[0].GetName() == "changed" {
		t.Error("the results share objects")
	}
	if len(both[0].Shared) > 0 && both[0].Shared[0] == both[1].Shared[0] {
		t.Error("the results share shared objects")
	}
}

// Inputs are every repository file the render read: the bundle's own files,
// a base outside its directory, bundle.yaml; not files nothing references.
// A failed render still names what it read.
func TestRenderRecordsItsInputs(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"bundles/shop/bundle.yaml":              "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: shop\nspec:\n  namespace: shop\n",
		"bundles/shop/app/kustomization.yaml":   "resources:\n- ../../../apps/base\npatches:\n- path: patch.yaml\n",
		"bundles/shop/app/patch.yaml":           "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  replicas: 3\n",
		"bundles/shop/app/unused.yaml":          "not: referenced\n",
		"apps/base/kustomization.yaml":          "resources:\n- deploy.yaml\n",
		"apps/base/deploy.yaml":                 deploy("example/d:v1"),
		"apps/other/deploy.yaml":                deploy("example/other:v1"),
		"bundles/broken/bundle.yaml":            "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: broken\nspec:\n  namespace: broken\n",
		"bundles/broken/app/kustomization.yaml": "resources:\n- ../../../apps/base\n- missing.yaml\n",
	})
	bs, err := Discover(root, "bundles")
	must(t, err)
	byName := map[string]*Bundle{}
	for _, b := range bs {
		byName[b.Name] = b
	}
	res, err := Render(context.Background(), byName["shop"], Options{RepoRoot: root, Color: "blue", Commit: "c1"})
	must(t, err)
	in := strings.Join(res.Inputs, " ")
	for _, want := range []string{"bundles/shop/bundle.yaml", "bundles/shop/app/kustomization.yaml", "bundles/shop/app/patch.yaml",
		"apps/base/kustomization.yaml", "apps/base/deploy.yaml"} {
		if !strings.Contains(" "+in+" ", " "+want+" ") {
			t.Errorf("inputs lack %s: %v", want, res.Inputs)
		}
	}
	for _, not := range []string{"unused.yaml", "apps/other", "bundles/broken"} {
		if strings.Contains(in, not) {
			t.Errorf("inputs name %s, which the render does not read: %v", not, res.Inputs)
		}
	}
	_, err = Render(context.Background(), byName["broken"], Options{RepoRoot: root, Color: "blue", Commit: "c1"})
	var re *Error
	if !errors.As(err, &re) || !strings.Contains(strings.Join(re.Inputs, " "), "apps/base/deploy.yaml") {
		t.Fatalf("failed render: %v (inputs %v), want the files it read", err, re)
	}
}
