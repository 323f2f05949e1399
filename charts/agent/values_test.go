package agent_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// TestSchemaIsStrict: every object of values.schema.json with named
// properties refuses unknown ones, and every free-form map types its
// values, so a typo in a value name is an error, never silently ignored.
func TestSchemaIsStrict(t *testing.T) {
	data, err := os.ReadFile("values.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(data, &schema); err != nil {
		t.Fatal(err)
	}
	var walk func(path string, s map[string]any)
	walk = func(path string, s map[string]any) {
		if props, ok := s["properties"].(map[string]any); ok {
			if s["additionalProperties"] != false {
				t.Errorf("%s: additionalProperties is %v, want false", path, s["additionalProperties"])
			}
			for k, v := range props {
				walk(path+"."+k, v.(map[string]any))
			}
		}
		if items, ok := s["items"].(map[string]any); ok {
			walk(path+"[]", items)
		}
		if ap, ok := s["additionalProperties"].(map[string]any); ok {
			walk(path+".*", ap)
		}
	}
	walk("values", schema)
	// The schema knows every value of values.yaml.
	vals, err := os.ReadFile("values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(vals, &m); err != nil {
		t.Fatal(err)
	}
	props := schema["properties"].(map[string]any)
	for k := range m {
		if _, ok := props[k]; !ok {
			t.Errorf("values.yaml has %s, the schema does not", k)
		}
	}
}

// TestLintStrictValues: helm lint passes the default values (with the
// required git.url) and fails a typo such as git.tokne.secretName, naming it.
func TestLintStrictValues(t *testing.T) {
	if out, err := helm(t, "lint", ".", "--strict", "--set", "git.url=https://example.com/r.git"); err != nil {
		t.Fatalf("helm lint of the default values: %v\n%s", err, out)
	}
	out, err := helm(t, "lint", ".", "--strict", "--set", "git.url=https://example.com/r.git", "--set", "git.tokne.secretName=tandem-git-token")
	if err == nil {
		t.Fatalf("helm lint accepted git.tokne.secretName:\n%s", out)
	}
	if !strings.Contains(out, "tokne") {
		t.Errorf("helm lint failed without naming the typo:\n%s", out)
	}
}

func agentPodSpec(t *testing.T, objs []*unstructured.Unstructured) (spec, ctr map[string]any) {
	t.Helper()
	d := find(objs, "Deployment")
	if len(d) != 1 {
		t.Fatalf("%d Deployments", len(d))
	}
	spec, _, _ = unstructured.NestedMap(d[0].Object, "spec", "template", "spec")
	return spec, spec["containers"].([]any)[0].(map[string]any)
}

// TestRenderUpgradeStrategyAndPDB: a rolling update that surges one pod and
// removes none before its replacement is Ready, with one replica or three;
// Recreate without leader election; a PDB only with more than one replica.
func TestRenderUpgradeStrategyAndPDB(t *testing.T) {
	for _, c := range []struct {
		sets     []string
		strategy string
		pdb      bool
	}{
		{nil, "RollingUpdate", false},
		{[]string{"replicaCount=3"}, "RollingUpdate", true},
		{[]string{"replicaCount=3", "podDisruptionBudget.enabled=false"}, "RollingUpdate", false},
		{[]string{"leaderElection.enabled=false"}, "Recreate", false},
	} {
		t.Run(strings.Join(c.sets, ","), func(t *testing.T) {
			objs := render(t, "tandem-system", append([]string{"git.url=https://example.com/r.git"}, c.sets...)...)
			d := find(objs, "Deployment")[0]
			st, _, _ := unstructured.NestedMap(d.Object, "spec", "strategy")
			if st["type"] != c.strategy {
				t.Errorf("strategy %v, want %s", st, c.strategy)
			}
			if c.strategy == "RollingUpdate" {
				ru := st["rollingUpdate"].(map[string]any)
				if fmt.Sprint(ru["maxSurge"]) != "1" || fmt.Sprint(ru["maxUnavailable"]) != "0" {
					t.Errorf("rollingUpdate %v, want maxSurge 1 maxUnavailable 0", ru)
				}
			}
			pdbs := find(objs, "PodDisruptionBudget")
			if (len(pdbs) == 1) != c.pdb {
				t.Fatalf("%d PDBs, want %v", len(pdbs), c.pdb)
			}
			if c.pdb {
				if mu, _, _ := unstructured.NestedFieldNoCopy(pdbs[0].Object, "spec", "maxUnavailable"); fmt.Sprint(mu) != "1" {
					t.Errorf("PDB maxUnavailable %v", mu)
				}
				sel, _, _ := unstructured.NestedStringMap(pdbs[0].Object, "spec", "selector", "matchLabels")
				podLabels, _, _ := unstructured.NestedStringMap(d.Object, "spec", "template", "metadata", "labels")
				for k, v := range sel {
					if podLabels[k] != v {
						t.Errorf("PDB selector %v does not select the pods %v", sel, podLabels)
					}
				}
			}
			_, ctr := agentPodSpec(t, objs)
			if p, _, _ := unstructured.NestedString(ctr, "livenessProbe", "httpGet", "path"); p != "/healthz" {
				t.Errorf("liveness %q", p)
			}
			if p, _, _ := unstructured.NestedString(ctr, "readinessProbe", "httpGet", "path"); p != "/readyz" {
				t.Errorf("readiness %q", p)
			}
		})
	}
}

// TestRenderPodExtras: a private CA and a proxy through extraEnv,
// extraVolumes and extraVolumeMounts; priorityClassName, node placement and
// topology spread (a constraint without labelSelector spreads the agent's
// own pods).
func TestRenderPodExtras(t *testing.T) {
	objs := render(t, "tandem-system", "git.url=https://example.com/r.git",
		"extraEnv[0].name=HTTPS_PROXY", "extraEnv[0].value=http://proxy:3128", "extraEnv[1].name=SSL_CERT_DIR", "extraEnv[1].value=/etc/tandem/ca",
		"extraVolumes[0].name=private-ca", "extraVolumes[0].configMap.name=private-ca",
		"extraVolumeMounts[0].name=private-ca", "extraVolumeMounts[0].mountPath=/etc/tandem/ca", "extraVolumeMounts[0].readOnly=true",
		"priorityClassName=system-cluster-critical", "nodeSelector.kubernetes\\.io/os=linux",
		"tolerations[0].key=dedicated", "tolerations[0].operator=Exists",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].key=pool",
		"affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms[0].matchExpressions[0].operator=Exists",
		"topologySpreadConstraints[0].maxSkew=1", "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
		"topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway")
	spec, ctr := agentPodSpec(t, objs)
	if envValue(ctr, "HTTPS_PROXY") != "http://proxy:3128" || envValue(ctr, "SSL_CERT_DIR") != "/etc/tandem/ca" || envValue(ctr, "GOMEMLIMIT") == "" {
		t.Errorf("env %v", ctr["env"])
	}
	found := false
	for _, m := range ctr["volumeMounts"].([]any) {
		if m := m.(map[string]any); m["name"] == "private-ca" && m["mountPath"] == "/etc/tandem/ca" && m["readOnly"] == true {
			found = true
		}
	}
	if !found {
		t.Errorf("volumeMounts %v", ctr["volumeMounts"])
	}
	found = false
	for _, v := range spec["volumes"].([]any) {
		if v := v.(map[string]any); v["name"] == "private-ca" && v["configMap"] != nil {
			found = true
		}
	}
	if !found {
		t.Errorf("volumes %v", spec["volumes"])
	}
	if spec["priorityClassName"] != "system-cluster-critical" {
		t.Errorf("priorityClassName %v", spec["priorityClassName"])
	}
	if ns, _, _ := unstructured.NestedStringMap(spec, "nodeSelector"); ns["kubernetes.io/os"] != "linux" {
		t.Errorf("nodeSelector %v", spec["nodeSelector"])
	}
	if spec["tolerations"] == nil || spec["affinity"] == nil {
		t.Errorf("tolerations %v affinity %v", spec["tolerations"], spec["affinity"])
	}
	tsc := spec["topologySpreadConstraints"].([]any)[0].(map[string]any)
	sel, _, _ := unstructured.NestedStringMap(tsc, "labelSelector", "matchLabels")
	if sel["app.kubernetes.io/name"] != "tandem-agent" || sel["app.kubernetes.io/instance"] != "tandem" || tsc["topologyKey"] != "topology.kubernetes.io/zone" {
		t.Errorf("topologySpreadConstraints %v", tsc)
	}
}

// TestRenderGoMemLimit: 90% of the memory limit, less the render workers'
// memory, in bytes by default, for binary and decimal quantities; an
// explicit value; none without a limit;
// a quantity the template cannot read fails and says what to set.
func TestRenderGoMemLimit(t *testing.T) {
	for _, c := range []struct {
		sets []string
		want string
	}{
		{[]string{"resources.limits.memory=1Gi"}, fmt.Sprint(int64(1<<30-256<<20) * 9 / 10)},
		{[]string{"resources.limits.memory=2G"}, fmt.Sprint((2000000000 - 256<<20) * 9 / 10)},
		{[]string{"resources.limits.memory=1Gi", "goMemLimit.percentOfLimit=80"}, fmt.Sprint(int64(1<<30-256<<20) * 8 / 10)},
		{[]string{"resources.limits.memory=1Gi", "render.workers=2", "render.workerMemoryMiB=128"}, fmt.Sprint(int64(1<<30-256<<20) * 9 / 10)},
		{[]string{"resources.limits.memory=1Gi", "render.workers=0"}, fmt.Sprint(int64(1<<30) * 9 / 10)},
		{[]string{"goMemLimit.value=300MiB"}, "300MiB"},
		{[]string{"resources.limits=null"}, ""},
	} {
		objs := render(t, "tandem-system", append([]string{"git.url=https://example.com/r.git"}, c.sets...)...)
		_, ctr := agentPodSpec(t, objs)
		if got := envValue(ctr, "GOMEMLIMIT"); got != c.want {
			t.Errorf("%v: GOMEMLIMIT %q, want %q", c.sets, got, c.want)
		}
	}
	out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set", "resources.limits.memory=1.5Gi")
	if err == nil || !strings.Contains(out, "goMemLimit.value") {
		t.Errorf("1.5Gi: err %v\n%s", err, out)
	}
}

// TestPrometheusRule: off by default; on, the rendered rule holds the three
// alerts on the agent's real metric names, and promtool (Debian's
// prometheus package) accepts its groups and fires each alert on series
// that should fire it, and not on healthy ones.
func TestPrometheusRule(t *testing.T) {
	if n := len(find(render(t, "tandem-system", "git.url=https://example.com/r.git"), "PrometheusRule")); n != 0 {
		t.Fatalf("%d PrometheusRules by default", n)
	}
	objs := render(t, "tandem-system", "git.url=https://example.com/r.git", "prometheusRule.enabled=true", "prometheusRule.labels.release=prometheus")
	rules := find(objs, "PrometheusRule")
	if len(rules) != 1 {
		t.Fatalf("%d PrometheusRules", len(rules))
	}
	if rules[0].GetLabels()["release"] != "prometheus" {
		t.Errorf("labels %v", rules[0].GetLabels())
	}
	groups, _, _ := unstructured.NestedSlice(rules[0].Object, "spec", "groups")
	exprs := map[string]string{}
	for _, g := range groups {
		for _, r := range g.(map[string]any)["rules"].([]any) {
			r := r.(map[string]any)
			exprs[fmt.Sprint(r["alert"])] = fmt.Sprint(r["expr"])
		}
	}
	for alert, want := range map[string]string{
		"TandemBundleHeld":    `tandem_bundle_state{state="held"`,
		"TandemReleaseFailed": `tandem_releases_total{result=~"reverted|held"`,
		"TandemSyncStuck":     `tandem_last_sync_timestamp_seconds{namespace="tandem-system"}) > 150`, // 5 x 30s
	} {
		if !strings.Contains(exprs[alert], want) {
			t.Errorf("%s: expr %q lacks %q", alert, exprs[alert], want)
		}
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (apt-get install prometheus; .ci/run does), which ships promtool")
	}
	dir := t.TempDir()
	spec, _ := json.Marshal(rules[0].Object["spec"])
	groupsYAML, err := yaml.JSONToYAML(spec)
	if err != nil {
		t.Fatal(err)
	}
	rulesFile := filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rulesFile, groupsYAML, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rulesFile).CombinedOutput(); err != nil {
		t.Fatalf("promtool check rules: %v\n%s\n%s", err, out, groupsYAML)
	}
	// Alerting behaviour on synthetic series (promtool test rules): a bundle
	// held for 12 minutes fires, one held for 5 does not; a revert fires;
	// an agent whose leader polled recently is fine even with a standby
	// whose gauge is stale; one whose last poll is 10 minutes old fires.
	tests := `rule_files: [rules.yaml]
evaluation_interval: 1m
tests:
- interval: 1m
  input_series:
  - series: 'tandem_bundle_state{namespace="tandem-system",bundle="shop",state="held"}'
    values: '1x15'
  - series: 'tandem_bundle_state{namespace="tandem-system",bundle="cart",state="held"}'
    values: '0x8 1x6'
  - series: 'tandem_releases_total{namespace="tandem-system",pod="a",bundle="shop",result="reverted"}'
    values: '0 0 1 1 1 1 1 1 1 1 1 1 1 1 1 1'
  - series: 'tandem_releases_total{namespace="tandem-system",pod="a",bundle="cart",result="promoted"}'
    values: '0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15'
  alert_rule_test:
  - eval_time: 14m
    alertname: TandemBundleHeld
    exp_alerts:
    - exp_labels: {severity: warning, namespace: tandem-system, bundle: shop, state: held}
      exp_annotations:
        summary: tandem holds bundle shop
        description: 'Bundle shop has been held for 10 minutes: its last candidate failed and nothing replaced it. Read lastFailure in its release.yaml, or tandem-agent status.'
  - eval_time: 5m
    alertname: TandemReleaseFailed
    exp_alerts:
    - exp_labels: {severity: warning, namespace: tandem-system, bundle: shop, result: reverted}
      exp_annotations:
        summary: tandem reverted a release of bundle shop
        description: "A candidate of bundle shop failed in the last 15 minutes (reverted); traffic stayed on the live color. The agent's commit on the branch says why."
- interval: 1m
  input_series:
  # The leader polls every 30s until minute 10, then never again; the standby's gauge stays 0.
  - series: 'tandem_last_sync_timestamp_seconds{namespace="tandem-system",pod="leader"}'
    values: '0+60x10 600x20'
  - series: 'tandem_last_sync_timestamp_seconds{namespace="tandem-system",pod="standby"}'
    values: '0x30'
  alert_rule_test:
  - eval_time: 9m
    alertname: TandemSyncStuck
  - eval_time: 20m
    alertname: TandemSyncStuck
    exp_alerts:
    - exp_labels: {severity: warning, namespace: tandem-system}
      exp_annotations:
        summary: tandem has not synced with Git for 10m 0s
        description: "No successful Git poll for more than 5 intervals (git.interval 30s): the loop is wedged, or Git is unreachable. Check the agent's log and /healthz."
`
	testFile := filepath.Join(dir, "rules_test.yaml")
	if err := os.WriteFile(testFile, []byte(tests), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(promtool, "test", "rules", testFile)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
