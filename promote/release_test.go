package promote

import (
	"strings"
	"testing"
)

var colorsBG = [2]string{"blue", "green"}

const sampleRelease = `apiVersion: tandem.dev/v1alpha1
kind: Release
bundle: shop
live: green
colors:
  blue:  {commit: 3f2a, digest: "sha256:aa", state: previous}
  green: {commit: 9c1e, digest: "sha256:bb", state: live, promotedAt: 2026-11-23T10:00:00Z}
lastFailure: {commit: 77ab, reason: "server-green: ImagePullBackOff", at: 2026-11-23T10:05:00Z}
`

func TestReleaseRoundTrip(t *testing.T) {
	r, err := ParseRelease("release.yaml", []byte(sampleRelease), colorsBG)
	if err != nil {
		t.Fatal(err)
	}
	if r.Live != "green" || r.Colors["green"].PromotedAt == nil || r.LastFailure.Commit != "77ab" {
		t.Fatalf("parsed %+v", r)
	}
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r2, err := ParseRelease("release.yaml", b, colorsBG)
	if err != nil {
		t.Fatal(err)
	}
	b2, _ := r2.Marshal()
	if string(b) != string(b2) {
		t.Fatalf("round trip:\n%s\n%s", b, b2)
	}
}

func TestParseReleaseStrict(t *testing.T) {
	for name, tc := range map[string]struct{ in, want string }{
		"unknown field": {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nfoo: 1\n", "foo"},
		"bad live":      {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: red\n", `live: "red"`},
		"bad color":     {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\ncolors: {red: {}}\n", `colors: "red"`},
		"apiVersion":    {"apiVersion: v1\nkind: Release\nbundle: shop\n", "apiVersion"},
		"kind":          {"apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nbundle: shop\n", "kind"},
		"second document": {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\n---\napiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: green\n",
			"second YAML document"},
		"unknown state": {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: blue\ncolors: {blue: {commit: a, state: live}, green: {commit: b, state: standby}}\n",
			`colors.green.state: "standby"`},
		"two live colors": {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: blue\ncolors: {blue: {commit: a, state: live}, green: {commit: b, state: live}}\n",
			"colors.green.state"},
		"key twice":             {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: blue\nlive: green\n", `key "live" appears twice`},
		"live without a commit": {"apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: shop\nlive: green\n", "colors.green.commit"},
	} {
		_, err := ParseRelease("bundles/shop/release.yaml", []byte(tc.in), colorsBG)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "bundles/shop/release.yaml") {
			t.Errorf("%s: err %v, want mention of %q", name, err, tc.want)
		}
	}
}

func TestParseReleaseAcceptsALeadingDocumentMarker(t *testing.T) {
	if _, err := ParseRelease("release.yaml", []byte("---\n"+sampleRelease), colorsBG); err != nil {
		t.Fatal(err)
	}
}
