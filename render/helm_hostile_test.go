package render

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// chartBundle writes a bundle whose kustomization renders chart c from
// app/charts/c with app/values.yaml; extra files are added (paths under
// b/), and spec adds to the bundle's spec.
func chartBundle(t testing.TB, spec, entry string, files map[string]string) (string, *Bundle) {
	t.Helper()
	root := t.TempDir()
	all := map[string]string{
		"b/bundle.yaml":                  strings.Replace(testBundle, "%s", "b", 1) + spec,
		"b/app/kustomization.yaml":       "helmCharts:\n- name: c\n  releaseName: r\n  valuesFile: values.yaml\n" + entry,
		"b/app/values.yaml":              "{}\n",
		"b/app/charts/c/Chart.yaml":      "apiVersion: v2\nname: c\nversion: 1.0.0\n",
		"b/app/charts/c/templates/.keep": "",
	}
	for p, c := range files {
		all["b/"+p] = c
	}
	writeFiles(t, root, all)
	bs, err := Discover(root, ".")
	must(t, err)
	return root, bs[0]
}

const cmTemplate = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n  a: b\n"

func wantError(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("render succeeded, want an error with %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Fatalf("error %q does not say %q", err, p)
		}
	}
}

// TestChartSchemaFailure: values that break the chart's values.schema.json
// are refused, naming the values file, the chart and the value.
func TestChartSchemaFailure(t *testing.T) {
	root, b := chartBundle(t, "", "", map[string]string{
		"app/values.yaml":                 "replicas: two\n",
		"app/charts/c/values.yaml":        "replicas: 1\n",
		"app/charts/c/values.schema.json": `{"type": "object", "properties": {"replicas": {"type": "integer", "minimum": 1}}}`,
		"app/charts/c/templates/cm.yaml":  cmTemplate,
	})
	_, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "b/app/values.yaml", "values.schema.json", "replicas", "helmCharts[0] (c)")
	t.Log(err)
}

// TestChartOtherNamespace: a chart object in another namespace is refused,
// and so is a release namespace other than the bundle's.
func TestChartOtherNamespace(t *testing.T) {
	root, b := chartBundle(t, "", "", map[string]string{
		"app/charts/c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: evil\n  namespace: kube-system\n",
	})
	_, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "c/templates/cm.yaml", "ConfigMap evil", `"kube-system"`)

	root, b = chartBundle(t, "", "  namespace: kube-system\n", map[string]string{"app/charts/c/templates/cm.yaml": cmTemplate})
	_, err = Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, `namespace "kube-system"`)

	root, b = chartBundle(t, "", "", map[string]string{
		"app/charts/c/templates/crb.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: evil\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\n",
	})
	_, err = Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "cluster-scoped ClusterRoleBinding evil")
}

// TestChartFilesConfined: .Files sees only the chart's own files, and a
// chart file that is a symlink out of the repository is refused.
func TestChartFilesConfined(t *testing.T) {
	outside := t.TempDir()
	must(t, os.WriteFile(filepath.Join(outside, "secret.txt"), []byte("TOP-SECRET"), 0o644))
	root, b := chartBundle(t, "", "", map[string]string{
		"app/charts/c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\ndata:\n" +
			"  a: {{ .Files.Get \"../../values.yaml\" | quote }}\n  b: {{ .Files.Get \"/etc/passwd\" | quote }}\n" +
			"  c: {{ .Files.Get \"" + filepath.Join(outside, "secret.txt") + "\" | quote }}\n  d: {{ .Files.Glob \"../**\" | len | quote }}\n",
	})
	res, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	must(t, err)
	data := res.Objects[0].Object["data"].(map[string]any)
	for k, v := range data {
		if v != "" && v != "0" {
			t.Errorf("data.%s = %q: .Files read outside the chart", k, v)
		}
	}

	must(t, os.Symlink(filepath.Join(outside, "secret.txt"), filepath.Join(root, "b/app/charts/c/secret.txt")))
	_, err = Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	if !errors.Is(err, ErrOutsideRoot) {
		t.Fatalf("error %v, want ErrOutsideRoot for a chart file linked out of the repository", err)
	}
}

// TestChartHuge: a chart file over the per-file limit, and a vendored
// subchart archive that unpacks past the chart limit, are refused.
func TestChartHuge(t *testing.T) {
	root, b := chartBundle(t, "", "", map[string]string{
		"app/charts/c/templates/cm.yaml": cmTemplate,
		"app/charts/c/files/big.txt":     strings.Repeat("x", maxInputBytes+1),
	})
	_, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "big.txt", "byte limit")

	// 70 MiB of zeros compress to about 70 KiB.
	bomb := packageChart(t, "bomb", map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: bomb\nversion: 0.1.0\n",
		"zeros.txt":   strings.Repeat("\x00", maxChartFiles+(6<<20)),
		"values.yaml": "{}\n",
	})
	root, b = chartBundle(t, "", "", map[string]string{
		"app/charts/c/templates/cm.yaml": cmTemplate,
		"app/charts/c/charts/bomb.tgz":   string(bomb),
	})
	_, err = Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != LimitChartBytes {
		t.Fatalf("error %v, want a %s limit error", err, LimitChartBytes)
	}
}

const hookJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-%s
  annotations:
    helm.sh/hook: %s
%s
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: t
        image: example/test:1
`

// TestChartHooks: a hook other than test is refused, naming the template
// and the hook (left out with skipHooks); a test hook Job annotated
// tandem.dev/check is the Job of that job check; other test hooks are
// left out.
func TestChartHooks(t *testing.T) {
	job := func(name, hook, extra string) string {
		s := strings.Replace(hookJob, "%s", name, 1)
		s = strings.Replace(s, "%s", hook, 1)
		return strings.Replace(s, "%s", extra, 1)
	}
	files := map[string]string{
		"app/charts/c/templates/cm.yaml":       cmTemplate,
		"app/charts/c/templates/migrate.yaml":  job("migrate", "pre-install,pre-upgrade", ""),
		"app/charts/c/templates/test-pod.yaml": "apiVersion: v1\nkind: Pod\nmetadata:\n  name: probe\n  annotations:\n    helm.sh/hook: test\nspec:\n  containers: [{name: p, image: busybox}]\n",
	}
	root, b := chartBundle(t, "", "", files)
	_, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "c/templates/migrate.yaml", "Job r-migrate", "helm.sh/hook: pre-install,pre-upgrade", "skipHooks")
	t.Log(err)

	root, b = chartBundle(t, "", "  skipHooks: true\n", files)
	res, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	must(t, err)
	if len(res.Objects) != 1 || res.Objects[0].GetKind() != "ConfigMap" {
		t.Fatalf("objects %v, want only the ConfigMap (hooks and the test Pod left out)", res.Objects)
	}

	files["app/charts/c/templates/e2e.yaml"] = job("e2e", "test", "    tandem.dev/check: e2e")
	delete(files, "app/charts/c/templates/migrate.yaml")
	root, b = chartBundle(t, "  checks:\n  - name: e2e\n    job: {}\n", "", files)
	res, err = Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	must(t, err)
	j := res.CheckJobs["e2e"]
	if j == nil || j.GetName() != "r-e2e-blue" {
		t.Fatalf("check jobs %v, want the test hook r-e2e-blue", res.CheckJobs)
	}
	for k := range j.GetAnnotations() {
		if strings.HasPrefix(k, "helm.sh/hook") {
			t.Errorf("the check Job keeps annotation %s", k)
		}
	}
	if len(res.Objects) != 1 {
		t.Fatalf("%d objects, want the ConfigMap only", len(res.Objects))
	}
}

// TestChartUnknownField: a misspelt helmCharts field is an error, not
// ignored.
func TestChartUnknownField(t *testing.T) {
	root, b := chartBundle(t, "", "  valueFile: other.yaml\n", map[string]string{"app/charts/c/templates/cm.yaml": cmTemplate})
	_, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	wantError(t, err, "b/app/kustomization.yaml", "valueFile")
}

// TestChartInputs: the values file and every chart file are inputs (so a
// change to any makes a candidate); a chart directory's listing too.
func TestChartInputs(t *testing.T) {
	root, b := chartBundle(t, "", "", map[string]string{"app/charts/c/templates/cm.yaml": cmTemplate})
	res, err := Render(context.Background(), b, Options{RepoRoot: root, Color: "blue"})
	must(t, err)
	in := " " + strings.Join(res.Inputs, " ") + " "
	for _, want := range []string{"b/app/values.yaml", "b/app/charts/c/Chart.yaml", "b/app/charts/c/templates/cm.yaml", "b/app/charts/c/templates/", "b/app/kustomization.yaml"} {
		if !strings.Contains(in, " "+want+" ") {
			t.Errorf("inputs %v lack %s", res.Inputs, want)
		}
	}
}

// TestPlainDirectoryInputs: a directory without a kustomization renders
// its YAML files only (sorted; hidden files, bundle.yaml, release.yaml,
// other files and subdirectories left out), and its listing is an input, so a new file
// changes the bundle.
func TestPlainDirectoryInputs(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":      strings.Replace(testBundle, "%s", "b", 1) + "  path: .\n",
		"b/b.yaml":           strings.Replace(cmTemplate, "name: cm", "name: second", 1),
		"b/a.yml":            cmTemplate,
		"b/.hidden.yaml":     strings.Replace(cmTemplate, "name: cm", "name: hidden", 1),
		"b/notes.txt":        "not yaml\n",
		"b/release.yaml":     "apiVersion: tandem.dev/v1alpha1\nkind: Release\nbundle: b\n",
		"b/sub/ignored.yaml": strings.Replace(cmTemplate, "name: cm", "name: ignored", 1),
	})
	bs, err := Discover(root, ".")
	must(t, err)
	res, err := Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "blue"})
	must(t, err)
	var names []string
	for _, u := range res.Objects {
		names = append(names, u.GetName())
	}
	if strings.Join(names, " ") != "cm-blue second-blue" {
		t.Fatalf("objects %v, want cm-blue and second-blue only", names)
	}
	in := " " + strings.Join(res.Inputs, " ") + " "
	for _, want := range []string{"b/", "b/a.yml", "b/b.yaml"} {
		if !strings.Contains(in, " "+want+" ") {
			t.Errorf("inputs %v lack %s", res.Inputs, want)
		}
	}
}
