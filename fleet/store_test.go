package fleet

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"
)

// The store keeps renders compact and gives back exactly what was rendered:
// the same objects, twins and shared objects, in the same order, for each
// color, and a fresh copy each time (a caller's edit does not leak into the
// next).
func TestStoreGivesBackTheRender(t *testing.T) {
	root := t.TempDir()
	files := map[string]string{
		"bundles/shop/bundle.yaml":               "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: shop\nspec:\n  namespace: shop\n  shared: shared\n",
		"bundles/shop/app/kustomization.yaml":    "resources:\n- client.yaml\n- server.yaml\n",
		"bundles/shop/app/client.yaml":           testenv.AppManifest("client", "example/client:v1", 3),
		"bundles/shop/app/server.yaml":           testenv.AppManifest("server", "example/server:v1", 2),
		"bundles/shop/shared/kustomization.yaml": "resources:\n- ns.yaml\n",
		"bundles/shop/shared/ns.yaml":            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n",
	}
	for p, c := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(root, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bs, err := render.Discover(root, "bundles")
	if err != nil || len(bs) != 1 {
		t.Fatalf("discover: %v %v", bs, err)
	}
	b := bs[0]
	rr := &Renderer{Store: NewStore(), Tenancy: &Tenancy{}}
	r, err := rr.RenderIn(context.Background(), root, "0123456789012345678901234567890123456789", b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for color, res := range r.Colors {
		want[color] = resultJSON(t, res)
	}
	s := NewStore()
	ref := promote.ReleaseRef{Commit: "0123456789012345678901234567890123456789", Digest: r.Colors["blue"].Digest}
	s.Put(ref, r)
	for _, color := range []string{"blue", "green"} {
		_, got, err := s.Get("shop", ref, color)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Objects) != 4 || len(got.Twins) != 2 || len(got.Shared) != 1 {
			t.Fatalf("%s: %d objects, %d twins, %d shared; want 4, 2, 1", color, len(got.Objects), len(got.Twins), len(got.Shared))
		}
		if g := resultJSON(t, got); g != want[color] {
			t.Fatalf("%s: the stored render differs from the render:\n got %s\nwant %s", color, g, want[color])
		}
		got.Objects[0].SetName("edited")
		_, again, _ := s.Get("shop", ref, color)
		if again.Objects[0].GetName() == "edited" {
			t.Fatalf("%s: an edit of one copy reached the store", color)
		}
	}
}

func resultJSON(t *testing.T, r *render.Result) string {
	t.Helper()
	data, err := json.Marshal(struct {
		Objects, Twins, Shared any
		Digest, Color, Live    string
		Inputs                 []string
	}{r.Objects, r.Twins, r.Shared, r.Digest, r.Color, r.Live, r.Inputs})
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}
