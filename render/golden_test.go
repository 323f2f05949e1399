package render

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestGolden renders every testdata/golden/<case> repository (one bundle each)
// for its second color with the first live and compares with expected.yaml.
func TestGolden(t *testing.T) {
	cases, err := os.ReadDir("testdata/golden")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			dir := filepath.Join("testdata/golden", c.Name())
			bundles, err := Discover(dir, ".")
			if err != nil {
				t.Fatal(err)
			}
			if len(bundles) != 1 {
				t.Fatalf("want 1 bundle, got %d", len(bundles))
			}
			res, err := Render(context.Background(), bundles[0], Options{RepoRoot: dir, Color: bundles[0].Spec.Colors[1], Live: bundles[0].Spec.Colors[0], Commit: "c0ffee"})
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			if err := WriteYAML(&buf, res.Shared, res.Objects, res.Twins); err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(dir, "expected.yaml")
			if *update {
				if err := os.WriteFile(want, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			exp, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(exp, buf.Bytes()) {
				t.Errorf("render differs from %s (run with -update to accept):\n%s", want, buf.String())
			}
		})
	}
}
