package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatusShowsStageGates: `tandem-agent status` reads each stage gate
// from a checkout the way the agent does, in a real Git repository.
func TestStatusShowsStageGates(t *testing.T) {
	repo := t.TempDir()
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", append([]string{"-C", repo, "-c", "user.name=Dev", "-c", "user.email=dev@example.com"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(repo, rel)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
	base := func(image string) {
		write("apps/shop/base/kustomization.yaml", "resources:\n- server.yaml\n")
		write("apps/shop/base/server.yaml", appManifest(app{"server", image}))
	}
	bundle := func(name, extra string) {
		write("bundles/"+name+"/bundle.yaml", stageBundleYAML(name, extra))
		write("bundles/"+name+"/shared/kustomization.yaml", "resources: []\n")
		write("bundles/"+name+"/app/kustomization.yaml", "resources:\n- ../../../apps/shop/base\n")
	}
	release := func(name, live, prev, soaked string) {
		r := "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: " + name + "\nlive: green\ncolors:\n  green: {commit: " + live + ", digest: \"sha256:b\", state: live, promotedAt: \"2026-11-29T20:00:00Z\"" + soaked + "}\n"
		if prev != "" {
			r += "  blue: {commit: " + prev + ", digest: \"sha256:a\", state: previous}\n"
		}
		write("bundles/"+name+"/release.yaml", r)
	}
	status := func() string {
		t.Helper()
		code, out, errOut := runCLI(t, "status", repo)
		if code != 0 {
			t.Fatalf("status: exit %d: %s", code, errOut)
		}
		return out
	}
	wantLine := func(out, bundle, want string) {
		t.Helper()
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == bundle && strings.Contains(l, want) {
				return
			}
		}
		t.Errorf("status has no line %q ... %q:\n%s", bundle, want, out)
	}

	git("init", "--quiet", "-b", "main")
	base("example/server:v1")
	bundle("stg", "  soak: 1m\n")
	bundle("prd", "  after: [stg]\n")
	bundle("gated", "  approval: required\n")
	git("add", "-A")
	git("commit", "--quiet", "-m", "v1")
	v1 := git("rev-parse", "HEAD")
	release("stg", v1, "", "")
	release("prd", v1, "", "")
	release("gated", v1, "", "")
	git("add", "-A")
	git("commit", "--quiet", "-m", "releases of v1")
	out := status()
	wantLine(out, "prd", "nothing to release: "+v1[:7]+" is live")
	wantLine(out, "gated", "nothing to release")

	base("example/server:v2")
	git("commit", "--quiet", "-am", "base: v2")
	v2 := git("rev-parse", "HEAD")
	out = status()
	wantLine(out, "prd", "waiting for stg: stg runs "+v1[:7]+", without this change to apps/shop/base/server.yaml")
	wantLine(out, "gated", "waiting for approval: spec.approval is required: push a commit with the trailer \"Tandem-Approve: gated "+v2[:7]+"\"")

	release("stg", v2, v1, "")
	git("commit", "--quiet", "-am", "stg promoted v2")
	wantLine(status(), "prd", "waiting for stg: stg is soaking "+v2[:7])

	release("stg", v2, v1, ", soakedAt: \"2026-11-29T20:01:00Z\"")
	git("commit", "--quiet", "-am", "stg soaked v2")
	git("commit", "--quiet", "--allow-empty", "--author", "tandem <tandem@localhost>", "-m", "forged", "--trailer", "Tandem-Approve: gated "+v2)
	out = status()
	wantLine(out, "prd", "open: the agent releases")
	wantLine(out, "gated", "waiting for approval")

	git("commit", "--quiet", "--allow-empty", "-m", "approve", "--trailer", "Tandem-Approve: gated "+v2[:10])
	wantLine(status(), "gated", "open: the agent releases")
}
