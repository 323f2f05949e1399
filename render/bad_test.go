package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// copyTree copies src into dst (regular files and directories only).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.Walk(src, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// badSetup adds what Git cannot carry (symlinks, huge files) to a case's copy.
var badSetup = map[string]func(t *testing.T, outside, repo string){
	"symlink-escape": func(t *testing.T, outside, repo string) {
		must(t, os.Symlink(filepath.Join(outside, "outside.yaml"), filepath.Join(repo, "app", "link.yaml")))
	},
	"symlink-dir-escape": func(t *testing.T, outside, repo string) {
		must(t, os.Symlink(outside, filepath.Join(repo, "app", "linkdir")))
	},
	"generator-symlink": func(t *testing.T, outside, repo string) {
		must(t, os.Symlink(filepath.Join(outside, "outside.yaml"), filepath.Join(repo, "app", "link.txt")))
	},
	"symlink-kustomization": func(t *testing.T, outside, repo string) {
		must(t, os.Symlink(filepath.Join(outside, "kustomization.yaml"), filepath.Join(repo, "app", "kustomization.yaml")))
	},
	"symlink-spec-path": func(t *testing.T, outside, repo string) {
		must(t, os.Symlink(outside, filepath.Join(repo, "app")))
	},
	"symlink-bundle-yaml": func(t *testing.T, outside, repo string) {
		must(t, os.MkdirAll(filepath.Join(repo, "evil", "app"), 0o755))
		must(t, os.WriteFile(filepath.Join(outside, "bundle.yaml"), []byte("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: evil}\nspec: {namespace: kube-system}\n"), 0o644))
		must(t, os.Symlink(filepath.Join(outside, "bundle.yaml"), filepath.Join(repo, "evil", "bundle.yaml")))
		must(t, os.Remove(filepath.Join(repo, "bundle.yaml")))
	},
	"enormous-file": func(t *testing.T, outside, repo string) {
		big := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  a: \"" + strings.Repeat("x", maxInputBytes+1) + "\"\n"
		must(t, os.WriteFile(filepath.Join(repo, "app", "big.yaml"), []byte(big), 0o644))
	},
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestBadInput renders every testdata/bad/<case> and expects an error
// containing the text in its error.txt.
func TestBadInput(t *testing.T) {
	cases, err := os.ReadDir("testdata/bad")
	must(t, err)
	if len(cases) < 20 {
		t.Fatalf("bad corpus has %d cases, want at least 20", len(cases))
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			src := filepath.Join("testdata/bad", c.Name())
			want, err := os.ReadFile(filepath.Join(src, "error.txt"))
			must(t, err)
			outside := t.TempDir()
			// A file and a kustomization outside the repository that escapes would reach.
			must(t, os.WriteFile(filepath.Join(outside, "outside.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: stolen}\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(outside, "kustomization.yaml"), []byte("resources: [outside.yaml]\n"), 0o644))
			repo := filepath.Join(outside, "repo")
			copyTree(t, src, repo)
			if f := badSetup[c.Name()]; f != nil {
				f(t, outside, repo)
			}
			err = renderAll(repo)
			if err == nil {
				t.Fatalf("render succeeded, want error containing %q", strings.TrimSpace(string(want)))
			}
			t.Log(err)
			if !strings.Contains(err.Error(), strings.TrimSpace(string(want))) {
				t.Fatalf("error %q does not contain %q", err, strings.TrimSpace(string(want)))
			}
		})
	}
}

func renderAll(repo string) error {
	bundles, err := Discover(repo, ".")
	if err != nil {
		return err
	}
	for _, b := range bundles {
		if _, err := Render(context.Background(), b, Options{RepoRoot: repo, Color: b.Spec.Colors[0]}); err != nil {
			return err
		}
	}
	return nil
}
