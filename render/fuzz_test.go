package render

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzRenderKustomization renders a small repository whose kustomization
// and one resource file are the fuzzer's: no panic escapes, limits hold,
// and what renders stays in the bundle's namespace with its color.
func FuzzRenderKustomization(f *testing.F) {
	f.Add("resources: [r.yaml]\n", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n")
	f.Add("resources: [r.yaml]\nnamePrefix: p-\nlabels: [{pairs: {a: b}}]\n", deploy("example/d:v1"))
	f.Add("resources: [r.yaml]\nconfigMapGenerator: [{name: g, literals: [a=b]}]\n", "---\n---\n{kind: List, apiVersion: v1, items: [{kind: ConfigMap, apiVersion: v1, metadata: {name: x}}]}\n")
	f.Add("resources: [../../etc]\n", "")
	f.Add("resources: [r.yaml]\npatches: [{path: r.yaml}]\n", "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}]}\n")
	f.Fuzz(func(t *testing.T, kust, res string) {
		if len(kust)+len(res) > 64<<10 {
			return
		}
		root := t.TempDir()
		files := map[string]string{
			"b/bundle.yaml":            strings.Replace(testBundle, "%s", "b", 1),
			"b/app/kustomization.yaml": kust,
			"b/app/r.yaml":             res,
		}
		for p, c := range files {
			full := filepath.Join(root, filepath.FromSlash(p))
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		bs, err := Discover(root, ".")
		if err != nil {
			t.Fatal(err)
		}
		const maxObjects = 200
		res2, err := Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "blue", MaxObjects: maxObjects, MaxBytes: 1 << 20, Timeout: 10 * time.Second})
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error")
			}
			return
		}
		if n := len(res2.Objects) + len(res2.Shared); n > maxObjects {
			t.Fatalf("%d objects, over the %d limit", n, maxObjects)
		}
		for _, u := range res2.Objects {
			if u.GetNamespace() != "ns" || !strings.Contains(u.GetName(), "-blue") {
				t.Fatalf("%s %s/%s: escaped the bundle's namespace or color", u.GetKind(), u.GetNamespace(), u.GetName())
			}
		}
	})
}
