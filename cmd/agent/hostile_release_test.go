package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/render"
)

const goodRelease = "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: blue\ncolors:\n  blue: {commit: 3f2a, digest: \"sha256:aa\", state: live}\n"

// TestHostileReleaseFile: a release.yaml edited by a human (or an attacker
// with push access) is refused, as the agent reads it, with an error naming
// the file and the field. Nothing is read through a symlink or unbounded.
func TestHostileReleaseFile(t *testing.T) {
	outside := filepath.Join(t.TempDir(), "secret")
	must(t, os.WriteFile(outside, []byte(goodRelease), 0o600))
	laughs := "  a0: &a0 [x,x,x,x,x,x,x,x,x]\n"
	for i := 1; i < 9; i++ {
		laughs += "  a" + string(rune('0'+i)) + ": &a" + string(rune('0'+i)) + " [" + strings.TrimSuffix(strings.Repeat("*a"+string(rune('0'+i-1))+",", 9), ",") + "]\n"
	}
	for _, tc := range []struct {
		name string
		data string
		link string // make release.yaml a symlink to this
		dir  bool   // make release.yaml a directory
		want string
	}{
		{"unknown-live-color", strings.Replace(goodRelease, "live: blue", "live: red", 1), "", false, `live: "red" is not one of the bundle's colors`},
		{"unknown-color-entry", goodRelease + "  purple: {commit: \"1\"}\n", "", false, `colors: "purple" is not one of the bundle's colors`},
		{"unknown-field", goodRelease + "hooks: [rm -rf]\n", "", false, "hooks"},
		{"wrong-apiversion", strings.Replace(goodRelease, "tandem.dev/v1alpha1", "v1", 1), "", false, "apiVersion"},
		{"other-bundle", strings.Replace(goodRelease, "bundle: shop", "bundle: other", 1), "", false, `bundle: "other" is not this bundle`},
		{"wrong-kind", strings.Replace(goodRelease, "kind: Release", "kind: Bundle", 1), "", false, "kind"},
		{"duplicate-key", goodRelease + "live: green\n", "", false, `key "live" appears twice`},
		{"second-document", goodRelease + "---\n" + strings.Replace(goodRelease, "live: blue", "live: green", 1), "", false, "second YAML document"},
		{"billion-laughs", goodRelease + "lastFailure:\n" + laughs, "", false, "aliases expand"},
		{"deeply-nested", goodRelease + "lastFailure: " + strings.Repeat("[", 20000) + strings.Repeat("]", 20000) + "\n", "", false, "depth"},
		{"colors-wrong-type", "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\ncolors: blue\n", "", false, "colors"},
		{"bad-timestamp", goodRelease + "lastFailure: {commit: 1, reason: x, at: yesterday}\n", "", false, "release.yaml"},
		{"binary-garbage", "\x00\xff\xfe", "", false, "release.yaml"},
		{"oversized", goodRelease + "# " + strings.Repeat("x", fleet.MaxReleaseBytes) + "\n", "", false, "larger than the"},
		{"symlink-dev-zero", "", "/dev/zero", false, "must be a regular file"},
		{"symlink-outside", "", outside, false, "must be a regular file"},
		{"directory", "", "", true, "must be a regular file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "bundles", "shop", "release.yaml")
			must(t, os.MkdirAll(filepath.Dir(p), 0o755))
			switch {
			case tc.link != "":
				must(t, os.Symlink(tc.link, p))
			case tc.dir:
				must(t, os.Mkdir(p, 0o755))
			default:
				must(t, os.WriteFile(p, []byte(tc.data), 0o644))
			}
			b := &render.Bundle{Name: "shop", Dir: "bundles/shop", File: "bundles/shop/bundle.yaml", Spec: render.Spec{Colors: [2]string{"blue", "green"}}}
			// As the agent does: vet the file, then parse it.
			err := fleet.VetRelease(dir, b)
			if err == nil {
				_, err = fleet.ReadRelease(dir, b)
			}
			if err == nil {
				t.Fatalf("accepted, want an error containing %q", tc.want)
			}
			t.Log(err)
			if !strings.HasPrefix(err.Error(), "bundles/shop/release.yaml") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q: want it to start with the file and contain %q", err, tc.want)
			}
		})
	}
	// The agent's own release.yaml passes.
	dir := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(dir, "bundles", "shop"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "bundles", "shop", "release.yaml"), []byte(goodRelease), 0o644))
	b := &render.Bundle{Name: "shop", Dir: "bundles/shop", Spec: render.Spec{Colors: [2]string{"blue", "green"}}}
	if err := fleet.VetRelease(dir, b); err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.ReadRelease(dir, b); err != nil {
		t.Fatal(err)
	}
}
