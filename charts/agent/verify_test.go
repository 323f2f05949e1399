package agent_test

import (
	"strings"
	"testing"
)

// TestRenderVerifyCommits: verifyCommits turns on --verify-commits with the
// trusted keys of a ConfigMap or a Secret mounted read-only as a directory.
func TestRenderVerifyCommits(t *testing.T) {
	for _, c := range []struct {
		name, set, source string
	}{
		{"configMap", "verifyCommits.configMapName=trusted", "configMap"},
		{"secret", "verifyCommits.secretName=trusted", "secret"},
	} {
		t.Run(c.name, func(t *testing.T) {
			objs := render(t, "tandem-system", "git.url=https://example.com/r.git", "verifyCommits.enabled=true", c.set)
			spec := find(objs, "Deployment")[0].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
			ctr := spec["containers"].([]any)[0].(map[string]any)
			args := strings.Join(toStrings(ctr["args"]), " ")
			for _, want := range []string{"--verify-commits", "--trusted-keys=/etc/tandem/trusted-keys"} {
				if !strings.Contains(args, want) {
					t.Errorf("args %q lack %q", args, want)
				}
			}
			mounted := false
			for _, m := range ctr["volumeMounts"].([]any) {
				m := m.(map[string]any)
				if m["mountPath"] == "/etc/tandem/trusted-keys" && m["readOnly"] == true && m["name"] == "trusted-keys" {
					mounted = true
				}
			}
			if !mounted {
				t.Errorf("trusted keys not mounted read-only: %v", ctr["volumeMounts"])
			}
			found := false
			for _, v := range spec["volumes"].([]any) {
				v := v.(map[string]any)
				if v["name"] == "trusted-keys" && v[c.source] != nil {
					found = true
				}
			}
			if !found {
				t.Errorf("no trusted-keys volume from a %s: %v", c.source, spec["volumes"])
			}
		})
	}
	t.Run("off by default", func(t *testing.T) {
		objs := render(t, "tandem-system", "git.url=https://example.com/r.git")
		ctr := find(objs, "Deployment")[0].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
		if args := strings.Join(toStrings(ctr["args"]), " "); strings.Contains(args, "verify-commits") || strings.Contains(args, "trusted-keys") {
			t.Errorf("args %q verify commits by default", args)
		}
	})
	t.Run("enabled without keys", func(t *testing.T) {
		out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set", "verifyCommits.enabled=true")
		if err == nil || !strings.Contains(out, "verifyCommits.configMapName") {
			t.Fatalf("helm template accepted verifyCommits without keys (err %v):\n%s", err, out)
		}
	})
}
