package render

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// stageBundle is a bundle.yaml named name with extra spec lines.
func stageBundle(name, extra string) string {
	return "apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: " + name + "}\nspec:\n  namespace: " + name + "\n" + extra
}

// stageRepo writes one bundle directory (with an empty app/) per entry.
func stageRepo(t *testing.T, bundles map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, yaml := range bundles {
		dir := filepath.Join(root, "bundles", name)
		must(t, os.MkdirAll(filepath.Join(dir, "app"), 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "bundle.yaml"), []byte(yaml), 0o644))
	}
	return root
}

func TestParseStage(t *testing.T) {
	for _, tc := range []struct {
		name, extra, err string
		after            []string
		approval         string
	}{
		{name: "defaults", approval: ApprovalNone},
		{name: "after and approval", extra: "  after: [shop-staging, shop-qa]\n  approval: required\n",
			after: []string{"shop-staging", "shop-qa"}, approval: ApprovalRequired},
		{name: "approval none", extra: "  approval: none\n", approval: ApprovalNone},
		{name: "bad approval", extra: "  approval: maybe\n", err: `b.yaml: spec.approval: must be required or none, not "maybe"`},
		{name: "bad name", extra: "  after: [Shop_Staging]\n", err: `b.yaml: spec.after[0]: "Shop_Staging" is not a bundle name`},
		{name: "twice", extra: "  after: [a, a]\n", err: `b.yaml: spec.after[1]: "a" is listed twice`},
		{name: "not a list", extra: "  after: a\n", err: "b.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := ParseBundle("b.yaml", []byte(stageBundle("shop-prod", tc.extra)))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(b.Spec.Stage.After, ","); got != strings.Join(tc.after, ",") {
				t.Errorf("after %q, want %q", got, tc.after)
			}
			if b.Spec.Stage.Approval != tc.approval {
				t.Errorf("approval %q, want %q", b.Spec.Stage.Approval, tc.approval)
			}
		})
	}
}

func TestDiscoverRefusesBadStages(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bundles map[string]string
		ok      []string
		broken  map[string]string // file → error text
	}{
		{name: "pipeline", bundles: map[string]string{
			"dev": stageBundle("dev", ""), "staging": stageBundle("staging", "  after: [dev]\n"),
			"prod": stageBundle("prod", "  after: [staging]\n")},
			ok: []string{"dev", "prod", "staging"}},
		{name: "unknown upstream", bundles: map[string]string{
			"staging": stageBundle("staging", ""), "prod": stageBundle("prod", "  after: [stagin]\n")},
			ok:     []string{"staging"},
			broken: map[string]string{"bundles/prod/bundle.yaml": `bundles/prod/bundle.yaml: spec.after[0]: no bundle named "stagin" in the repository`}},
		{name: "cycle", bundles: map[string]string{
			"a": stageBundle("a", "  after: [b]\n"), "b": stageBundle("b", "  after: [a]\n"), "c": stageBundle("c", "  after: [a]\n")},
			ok: []string{"c"},
			broken: map[string]string{
				"bundles/a/bundle.yaml": "bundles/a/bundle.yaml: spec.after: a cycle (each bundle comes after the next): a → b → a",
				"bundles/b/bundle.yaml": "bundles/b/bundle.yaml: spec.after: a cycle (each bundle comes after the next): b → a → b"}},
		{name: "itself", bundles: map[string]string{"a": stageBundle("a", "  after: [a]\n")},
			broken: map[string]string{"bundles/a/bundle.yaml": `bundles/a/bundle.yaml: spec.after[0]: "a" is this bundle`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := DiscoverAll(stageRepo(t, tc.bundles), ".")
			if err != nil {
				t.Fatal(err)
			}
			var ok []string
			for _, b := range d.Bundles {
				ok = append(ok, b.Name)
			}
			if strings.Join(ok, ",") != strings.Join(tc.ok, ",") {
				t.Errorf("bundles %v, want %v", ok, tc.ok)
			}
			if len(d.Broken) != len(tc.broken) {
				t.Errorf("broken %v, want %d", d.Broken, len(tc.broken))
			}
			for _, br := range d.Broken {
				if want := tc.broken[br.File]; want == "" || !strings.Contains(br.Err.Error(), want) {
					t.Errorf("%s: %v, want %q", br.File, br.Err, want)
				}
			}
		})
	}
}

// A bundle.yaml that does not parse has no known name: a bundle after an
// unknown name is then not refused (it may be the broken one); it waits.
func TestUnknownUpstreamWithABrokenBundleIsNotRefused(t *testing.T) {
	root := stageRepo(t, map[string]string{"staging": "kind: Bundle\n", "prod": stageBundle("prod", "  after: [staging]\n")})
	d, err := DiscoverAll(root, ".")
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Bundles) != 1 || d.Bundles[0].Name != "prod" || len(d.Broken) != 1 || d.Broken[0].File != "bundles/staging/bundle.yaml" {
		t.Fatalf("bundles %v, broken %v", d.Bundles, d.Broken)
	}
}
