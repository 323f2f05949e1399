package render

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"

	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// helmCLI returns the helm binary the tests compare with (TANDEM_HELM,
// which `make test` sets), failing the test when it is not there.
func helmCLI(t testing.TB) string {
	t.Helper()
	bin := os.Getenv("TANDEM_HELM")
	if bin == "" {
		t.Fatal("TANDEM_HELM is not set: run `make test` (it builds helm and sets it), or export TANDEM_HELM=~/.cache/tandem/tools/helm-v3.22.0 after `make test` or `make ~/.cache/tandem/tools/helm-v3.22.0` built it")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("TANDEM_HELM=%s: %v (the Makefile builds it: make test, or make %s)", bin, err, bin)
	}
	return bin
}

// runHelmTemplate runs `helm template` as kustomize's helmCharts would for
// entry h of the kustomization in dir.
func runHelmTemplate(t testing.TB, bin, dir, ns string, h types.HelmChart) []byte {
	t.Helper()
	tmp := t.TempDir()
	release := h.ReleaseName
	if release == "" {
		release = h.Name
	}
	args := []string{"template", release, filepath.Join(dir, "charts", h.Name), "--namespace", ns}
	if h.ValuesFile != "" {
		args = append(args, "-f", filepath.Join(dir, h.ValuesFile))
	}
	for _, v := range h.AdditionalValuesFiles {
		args = append(args, "-f", filepath.Join(dir, v))
	}
	if h.ValuesInline != nil {
		data, err := yaml.Marshal(h.ValuesInline)
		must(t, err)
		p := filepath.Join(tmp, "inline.yaml")
		must(t, os.WriteFile(p, data, 0o644))
		args = append(args, "-f", p)
	}
	if h.SkipTests {
		args = append(args, "--skip-tests")
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+tmp, "HELM_CONFIG_HOME="+tmp, "HELM_DATA_HOME="+tmp)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// normalizeManifests parses a YAML stream into its objects as JSON, sorted.
func normalizeManifests(t testing.TB, data []byte) []string {
	t.Helper()
	var out []string
	for _, doc := range strings.Split(string(data), "\n---") {
		var m map[string]any
		must(t, yaml.Unmarshal([]byte(doc), &m))
		if m == nil {
			continue
		}
		// A test hook kept as a job check loses its hook annotations.
		if meta, ok := m["metadata"].(map[string]any); ok {
			if ann, ok := meta["annotations"].(map[string]any); ok {
				for k := range ann {
					if strings.HasPrefix(k, "helm.sh/hook") {
						delete(ann, k)
					}
				}
			}
		}
		j, err := json.Marshal(m)
		must(t, err)
		out = append(out, string(j))
	}
	sort.Strings(out)
	return out
}

// chartsOf renders only the charts of the kustomization in dir (inside the
// repository root), as kustomize is then given them.
func chartsOf(t testing.TB, root, dir, ns string, env *chartEnv) ([]byte, []types.HelmChart, error) {
	t.Helper()
	var ferr error
	root, _ = filepath.Abs(root)
	dir, _ = filepath.Abs(dir)
	f := newConfinedFS(root, filepath.Join(filepath.Dir(root), ".virtual"), nil, false, &ferr)
	if env == nil {
		env = &chartEnv{namespace: ns, rendered: map[string][]byte{}}
	}
	f.charts = env
	p := filepath.Join(dir, "kustomization.yaml")
	data, err := os.ReadFile(p)
	must(t, err)
	var k map[string]any
	must(t, yaml.Unmarshal(data, &k))
	var spec struct {
		HelmCharts []types.HelmChart `json:"helmCharts"`
	}
	must(t, yaml.Unmarshal(data, &spec))
	if _, err := f.kustomizationCharts(p, k); err != nil {
		return nil, spec.HelmCharts, err
	}
	return f.virtualFiles[filepath.Join(dir, chartOutput)], spec.HelmCharts, nil
}

// helmCases are the repositories of testdata/helm and the storefront example.
func helmCases(t testing.TB) []string {
	cases, err := os.ReadDir("testdata/helm")
	must(t, err)
	var out []string
	for _, c := range cases {
		out = append(out, filepath.Join("testdata/helm", c.Name()))
	}
	return append(out, "../examples/storefront")
}

// TestHelmMatchesCLI renders the charts of every testdata/helm case and of
// examples/storefront in process and with the `helm template` CLI, and
// compares the objects.
func TestHelmMatchesCLI(t *testing.T) {
	bin := helmCLI(t)
	for _, root := range helmCases(t) {
		t.Run(filepath.Base(root), func(t *testing.T) {
			bs, err := Discover(root, ".")
			must(t, err)
			dir := filepath.Join(root, bs[0].Dir, bs[0].Spec.Path)
			got, charts, err := chartsOf(t, root, dir, bs[0].Spec.Namespace, nil)
			must(t, err)
			var want []byte
			for _, h := range charts {
				want = append(want, runHelmTemplate(t, bin, dir, bs[0].Spec.Namespace, h)...)
			}
			g, w := normalizeManifests(t, got), normalizeManifests(t, want)
			if strings.Join(g, "\n") != strings.Join(w, "\n") {
				t.Errorf("in process:\n%s\n\nhelm template:\n%s", strings.Join(g, "\n"), strings.Join(w, "\n"))
			}
		})
	}
}

// TestHelmGolden renders every testdata/helm case fully (colored, with
// twins) and compares with its expected.yaml.
func TestHelmGolden(t *testing.T) {
	cases, err := os.ReadDir("testdata/helm")
	must(t, err)
	for _, c := range cases {
		t.Run(c.Name(), func(t *testing.T) {
			root := filepath.Join("testdata/helm", c.Name())
			bs, err := Discover(root, ".")
			must(t, err)
			res, err := Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "green", Live: "blue", Commit: "c0ffee"})
			must(t, err)
			var buf bytes.Buffer
			must(t, WriteYAML(&buf, res.Shared, res.Objects, res.Twins))
			want := filepath.Join(root, "expected.yaml")
			if *update {
				must(t, os.WriteFile(want, buf.Bytes(), 0o644))
			}
			exp, err := os.ReadFile(want)
			must(t, err)
			if !bytes.Equal(exp, buf.Bytes()) {
				t.Errorf("render differs from %s (run with -update to accept):\n%s", want, buf.String())
			}
			for _, in := range res.Inputs {
				if strings.HasSuffix(in, chartOutput) {
					t.Errorf("inputs list the generated %s", in)
				}
			}
		})
	}
}

// BenchmarkHelm measures rendering the charts of the testdata/helm cases,
// examples/storefront and a chart of 500 objects in process, and, for
// comparison, the `helm template` CLI named by $TANDEM_HELM on the same
// charts and values (run through `make bench`), in wall time (ns/op) and
// CPU time (cpu-ms).
func BenchmarkHelm(b *testing.B) {
	cases := helmCases(b)
	big := b.TempDir()
	writeFiles(b, big, map[string]string{
		"bundle.yaml":                 strings.Replace(testBundle, "%s", "big", 1),
		"app/kustomization.yaml":      "helmCharts:\n- name: many\n  valuesFile: values.yaml\n",
		"app/values.yaml":             "count: 250\n",
		"app/charts/many/Chart.yaml":  "apiVersion: v2\nname: many\nversion: 0.1.0\n",
		"app/charts/many/values.yaml": "count: 1\nimage: example/app:v1\n",
		"app/charts/many/templates/all.yaml": `{{- range $i := until (int .Values.count) }}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: app{{ $i }}
  labels: {app: app{{ $i }}, release: {{ $.Release.Name }}}
spec:
  selector: {matchLabels: {app: app{{ $i }}}}
  template:
    metadata: {labels: {app: app{{ $i }}}}
    spec:
      containers:
      - {name: app, image: {{ $.Values.image }}}
---
apiVersion: v1
kind: Service
metadata:
  name: app{{ $i }}
spec:
  selector: {app: app{{ $i }}}
  ports: [{port: 80}]
{{- end }}
`,
	})
	cases = append(cases, big)
	for _, root := range cases {
		bs, err := Discover(root, ".")
		must(b, err)
		name := filepath.Base(root)
		if root == big {
			name = "many-500"
		}
		dir := filepath.Join(root, bs[0].Dir, bs[0].Spec.Path)
		ns := bs[0].Spec.Namespace
		b.Run("chart="+name, func(b *testing.B) {
			start := cpuTime(b, syscall.RUSAGE_SELF)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, _, err := chartsOf(b, root, dir, ns, nil); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, syscall.RUSAGE_SELF, start)
		})
		b.Run("helm-cli/chart="+name, func(b *testing.B) {
			bin := helmCLI(b)
			_, charts, err := chartsOf(b, root, dir, ns, nil)
			must(b, err)
			start := cpuTime(b, syscall.RUSAGE_CHILDREN)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				for _, h := range charts {
					runHelmTemplate(b, bin, dir, ns, h)
				}
			}
			b.StopTimer()
			reportCPU(b, syscall.RUSAGE_CHILDREN, start)
		})
	}
}
