package agent_test

import (
	"slices"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/fleet"
)

// TestTenancyRulesBecomeTheAgentsTenancyFile: tenancy.rules render a
// ConfigMap holding a tenancy file the agent accepts, mounted where
// --tenancy-file points, with a checksum that rolls the pods when the
// rules change; the rules' ServiceAccounts are the only names the agent
// may impersonate; a rule naming a ServiceAccount without impersonation,
// or one impersonation does not list, fails the install.
func TestTenancyRulesBecomeTheAgentsTenancyFile(t *testing.T) {
	rules := []string{"git.url=https://example.com/r.git", "rbac.namespaces={team-a}", "tenancy.impersonation.enabled=true",
		"tenancy.rules[0].name=team-a", "tenancy.rules[0].paths={teams/a/**}", "tenancy.rules[0].namespaces={team-a}",
		"tenancy.rules[0].serviceAccounts={deployer}", "tenancy.rules[0].kinds={*,HTTPRoute.gateway.networking.k8s.io}"}
	objs := render(t, "tandem", rules...)
	noWildcards(t, objs)
	var data string
	for _, cm := range find(objs, "ConfigMap") {
		if cm.GetName() == "tandem-tandem-agent-tenancy" {
			data, _ = cm.Object["data"].(map[string]any)["tenancy.yaml"].(string)
		}
	}
	f, err := fleet.ParseTenancyFile("tenancy.yaml", []byte(data))
	if err != nil {
		t.Fatalf("the chart's tenancy file: %v\n%s", err, data)
	}
	if len(f.Rules) != 1 || f.Rules[0].Name != "team-a" || !slices.Equal(f.Rules[0].Kinds, []string{"*", "HTTPRoute.gateway.networking.k8s.io"}) ||
		!slices.Equal(f.Rules[0].ServiceAccounts, []string{"deployer"}) {
		t.Errorf("rules %+v", f.Rules)
	}
	if r, _ := f.RuleFor("teams/a/shop"); r == nil {
		t.Error("teams/a/shop matches no rule")
	}
	dep := find(objs, "Deployment")[0]
	pod := dep.Object["spec"].(map[string]any)["template"].(map[string]any)
	c := pod["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	if args := toStrings(c["args"]); !slices.Contains(args, "--tenancy-file=/etc/tandem/tenancy/tenancy.yaml") {
		t.Errorf("args %v lack --tenancy-file", args)
	}
	mounted := false
	for _, m := range c["volumeMounts"].([]any) {
		m := m.(map[string]any)
		mounted = mounted || m["name"] == "tenancy" && m["mountPath"] == "/etc/tandem/tenancy"
	}
	if !mounted {
		t.Errorf("the tenancy ConfigMap is not mounted at /etc/tandem/tenancy: %v", c["volumeMounts"])
	}
	ann, _ := pod["metadata"].(map[string]any)["annotations"].(map[string]any)
	sum, _ := ann["checksum/tenancy"].(string)
	if sum == "" {
		t.Error("no checksum/tenancy annotation: a change of the rules would not restart the agent")
	}
	other := render(t, "tandem", append(rules, "tenancy.rules[0].namespaces={team-a,team-a2}")...)
	otherPod := find(other, "Deployment")[0].Object["spec"].(map[string]any)["template"].(map[string]any)
	if s2 := otherPod["metadata"].(map[string]any)["annotations"].(map[string]any)["checksum/tenancy"]; s2 == sum {
		t.Error("checksum/tenancy does not change with the rules")
	}
	var names []string
	for _, r := range find(objs, "Role") {
		if strings.HasSuffix(r.GetName(), "-impersonate") {
			for _, rule := range r.Object["rules"].([]any) {
				names = append(names, toStrings(rule.(map[string]any)["resourceNames"])...)
			}
		}
	}
	if !slices.Equal(names, []string{"deployer"}) {
		t.Errorf("the agent may impersonate %v, want [deployer] (the rules' ServiceAccounts)", names)
	}

	for _, c := range []struct {
		name string
		sets []string
		want string
	}{
		{"without impersonation", []string{"tenancy.impersonation.enabled=false"}, "tenancy.rules name serviceAccounts: they need tenancy.impersonation.enabled"},
		{"not impersonated", []string{"tenancy.impersonation.serviceAccountNames={ci}"}, `tenancy.rules name ServiceAccount "deployer", which tenancy.impersonation.serviceAccountNames does not`},
		{"a rule without namespaces", []string{"tenancy.rules[1].name=b", "tenancy.rules[1].paths={b}"}, "namespaces"},
	} {
		t.Run(c.name, func(t *testing.T) {
			args := []string{"template", "tandem", ".", "--namespace", "tandem"}
			for _, s := range append(rules, c.sets...) {
				args = append(args, "--set", s)
			}
			out, err := helm(t, args...)
			if err == nil || !strings.Contains(out, c.want) {
				t.Errorf("helm template: err %v, want a failure containing %q:\n%s", err, c.want, out)
			}
		})
	}
	// Without rules: no file, no flag.
	for _, o := range render(t, "tandem", "git.url=https://example.com/r.git") {
		if strings.HasSuffix(o.GetName(), "-tenancy") {
			t.Errorf("%s %s rendered without tenancy.rules", o.GetKind(), o.GetName())
		}
	}
}
