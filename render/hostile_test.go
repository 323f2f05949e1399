package render

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const okBundle = "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: shop\nspec:\n  namespace: shop\n"

// hostileBundles are bundle.yaml files a hostile or careless commit could
// carry; each must be refused with an error naming the file and the field.
var hostileBundles = []struct{ name, in, want string }{
	{"billion-laughs", okBundle + "  x0: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n  x1: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\n  x2: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n  x3: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]\n  x4: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]\n  x5: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]\n  x6: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]\n  x7: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]\n  x8: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]\n", "bundles/shop/bundle.yaml"},
	{"deeply-nested", okBundle + "  colors: " + strings.Repeat("[", 50000) + strings.Repeat("]", 50000) + "\n", "bundles/shop/bundle.yaml"},
	{"duplicate-key", okBundle + "  namespace: kube-system\n", "bundles/shop/bundle.yaml"},
	{"second-document", okBundle + "---\n" + strings.Replace(okBundle, "namespace: shop", "namespace: kube-system", 1), "second YAML document"},
	{"namespace-traversal", strings.Replace(okBundle, "namespace: shop", "namespace: ../kube-system", 1), "spec.namespace"},
	{"namespace-underscore", strings.Replace(okBundle, "namespace: shop", "namespace: kube_system", 1), "spec.namespace"},
	{"name-too-long", strings.Replace(okBundle, "name: shop", "name: "+strings.Repeat("a", 64), 1), "metadata.name"},
	{"negative-duration", okBundle + "  soak: -5m\n", "spec.soak"},
	{"zero-health-timeout", okBundle + "  healthTimeout: 0s\n", "spec.healthTimeout"},
	{"shared-escape", okBundle + "  shared: ../../other\n", "spec.shared"},
	{"shared-equals-path", okBundle + "  shared: app\n", "spec.shared"},
	{"empty-file", "", "apiVersion"},
	{"binary-garbage", "\x00\x01\x02\xff\xfe", "bundles/shop/bundle.yaml"},
	{"top-level-list", "- apiVersion: tandem.dev/v1alpha1\n", "bundles/shop/bundle.yaml"},
	{"colors-not-a-list", okBundle + "  colors: blue\n", "bundles/shop/bundle.yaml"},
	{"unknown-nested-field", okBundle + "  plugins: [exec]\n", `unknown field "spec.plugins"`},
	{"unknown-metadata-field", strings.Replace(okBundle, "  name: shop", "  name: shop\n  namespace: kube-system", 1), `unknown field "metadata.namespace"`},
	{"service-account-traversal", okBundle + "  serviceAccountName: ../admin\n", "spec.serviceAccountName"},
	{"service-account-not-a-string", okBundle + "  serviceAccountName: [a]\n", "bundles/shop/bundle.yaml"},
	{"huge-duration", okBundle + "  healthTimeout: 99999999999999h\n", "spec.healthTimeout"},
	{"check-unknown-kind", okBundle + "  checks:\n  - name: x\n    exec: {command: sh}\n", `unknown field "spec.checks[0].exec"`},
	{"check-unknown-nested-field", okBundle + "  checks:\n  - name: x\n    http: {url: \"http://x\", headers: {a: b}}\n", `unknown field "spec.checks[0].http.headers"`},
	{"check-two-kinds", okBundle + "  checks:\n  - name: x\n    job: {}\n    http: {url: \"http://x\"}\n", "spec.checks[0]: set exactly one"},
	{"check-soak-without-soak", okBundle + "  checks:\n  - name: x\n    when: soak\n    job: {}\n", "spec.checks[0].when: a soak check needs spec.soak"},
}

// TestHostileBundleYAML refuses every hostile bundle.yaml with an error that
// starts with the file and names the field.
func TestHostileBundleYAML(t *testing.T) {
	for _, c := range hostileBundles {
		t.Run(c.name, func(t *testing.T) {
			b, err := ParseBundle("bundles/shop/bundle.yaml", []byte(c.in))
			if err == nil {
				t.Fatalf("parsed %+v, want an error containing %q", b, c.want)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "bundles/shop/bundle.yaml") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q: want it to start with the file and contain %q", err, c.want)
			}
		})
	}
}

// TestHostileDiscover covers hostile repository layouts: duplicate bundle
// names, nested bundles, an enormous bundle.yaml and a --root that escapes.
func TestHostileDiscover(t *testing.T) {
	cases := []struct {
		name  string
		files map[string]string
		root  string
		want  string
	}{
		{"duplicate-bundle-name", map[string]string{"a/bundle.yaml": okBundle, "b/bundle.yaml": okBundle}, ".", `b/bundle.yaml: metadata.name "shop" is also used by a/bundle.yaml`},
		{"nested-bundle", map[string]string{"a/bundle.yaml": okBundle, "a/x/bundle.yaml": strings.Replace(okBundle, "name: shop", "name: other", 1)}, ".", "a/x/bundle.yaml: bundle is nested inside the bundle of a/bundle.yaml"},
		{"enormous-bundle-yaml", map[string]string{"a/bundle.yaml": okBundle + "#" + strings.Repeat("x", maxInputBytes)}, ".", "a/bundle.yaml: file is"},
		{"root-escape", map[string]string{"a/bundle.yaml": okBundle}, "../..", "root:"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			repo := t.TempDir()
			for p, data := range c.files {
				must(t, os.MkdirAll(filepath.Join(repo, filepath.Dir(p), "app"), 0o755))
				must(t, os.WriteFile(filepath.Join(repo, p), []byte(data), 0o644))
			}
			_, err := Discover(repo, c.root)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Discover: %v, want an error containing %q", err, c.want)
			}
			t.Log(err)
		})
	}
}

// FuzzParseBundle: ParseBundle never panics or hangs, and what it accepts is
// valid: DNS labels, two different colors, clean relative paths.
func FuzzParseBundle(f *testing.F) {
	f.Add(okBundle)
	f.Add(okBundle + "  path: app\n  shared: shared\n  colors: [a, b]\n  healthTimeout: 1m\n  soak: 10s\n  scaleDownAfter: never\n  onFailure: hold\n")
	for _, c := range hostileBundles {
		if len(c.in) < 4096 {
			f.Add(c.in)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		b, err := ParseBundle("bundle.yaml", []byte(s))
		if err != nil {
			if !strings.HasPrefix(err.Error(), "bundle.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		sp := b.Spec
		if !validLabel(b.Name) || !validLabel(sp.Namespace) || !validLabel(sp.Colors[0]) || !validLabel(sp.Colors[1]) || sp.Colors[0] == sp.Colors[1] {
			t.Fatalf("accepted invalid names: %+v", b)
		}
		for _, p := range []string{sp.Path, sp.Shared} {
			if p == "" && p == sp.Path {
				t.Fatalf("empty spec.path accepted: %+v", b)
			}
			if _, err := cleanRel(p); p != "" && err != nil {
				t.Fatalf("accepted path %q: %v", p, err)
			}
		}
		if sp.HealthTimeout <= 0 || sp.Soak < 0 || sp.ScaleDownAfter < 0 || (sp.OnFailure != "revert" && sp.OnFailure != "hold") {
			t.Fatalf("accepted invalid spec: %+v", sp)
		}
	})
}

// TestRemoteBaseStaysConfined: with --allow-remote-bases, kustomize clones a
// remote base into a temporary kustomize-* directory, which the render may
// read; a symlink in that clone must not reach outside it.
func TestRemoteBaseStaysConfined(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "outside.yaml")
	must(t, os.WriteFile(outside, []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n"), 0o644))
	clone, err := os.MkdirTemp("", "kustomize-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(clone) })
	must(t, os.WriteFile(filepath.Join(clone, "ok.yaml"), []byte("a: 1\n"), 0o644))
	must(t, os.Symlink(outside, filepath.Join(clone, "link.yaml")))
	must(t, os.Symlink(filepath.Dir(outside), filepath.Join(clone, "linkdir")))
	root := t.TempDir()
	var firstErr error
	fsys := newConfinedFS(root, filepath.Join(filepath.Dir(root), ".overlay"), nil, true, &firstErr)
	if _, err := fsys.ReadFile(filepath.Join(clone, "ok.yaml")); err != nil {
		t.Fatalf("a file of the clone: %v", err)
	}
	for _, p := range []string{filepath.Join(clone, "link.yaml"), filepath.Join(clone, "linkdir", "outside.yaml")} {
		_, err := fsys.ReadFile(p)
		if err == nil || !errors.Is(err, ErrOutsideRoot) {
			t.Fatalf("read %s through a symlink out of the remote clone: err %v", p, err)
		}
		t.Log(err)
	}
}

// TestColoredNamespaceForced: a colored path that aims its objects at another
// namespace (metadata.namespace, or namespace: in its kustomization) still
// renders every colored object and stable Service into spec.namespace.
func TestColoredNamespaceForced(t *testing.T) {
	repo := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(repo, "app"), 0o755))
	must(t, os.WriteFile(filepath.Join(repo, "bundle.yaml"), []byte(okBundle), 0o644))
	must(t, os.WriteFile(filepath.Join(repo, "app", "kustomization.yaml"), []byte("namespace: kube-system\nresources:\n- svc.yaml\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(repo, "app", "svc.yaml"), []byte("apiVersion: v1\nkind: Service\nmetadata: {name: web, namespace: default}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm, namespace: kube-public}\n"), 0o644))
	b, err := ParseBundle("bundle.yaml", []byte(okBundle))
	must(t, err)
	res, err := Render(t.Context(), b, Options{RepoRoot: repo, Color: "blue"})
	must(t, err)
	if len(res.Objects) != 2 || len(res.Twins) != 1 {
		t.Fatalf("rendered %d objects and %d twins, want 2 and 1", len(res.Objects), len(res.Twins))
	}
	for _, u := range append(res.Objects, res.Twins...) {
		if u.GetNamespace() != "shop" {
			t.Errorf("%s %s rendered into namespace %q, want spec.namespace shop", u.GetKind(), u.GetName(), u.GetNamespace())
		}
	}
}
