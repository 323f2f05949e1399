package render

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tandem-gitops/tandem/check"

	"helm.sh/helm/v4/pkg/chart/common"
	cutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	"helm.sh/helm/v4/pkg/ignore"
	release "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/yaml"
)

// maxChartFiles bounds the decompressed bytes of one chart (its archive
// unpacked, or the files of a chart directory read).
const maxChartFiles = 64 << 20

// chartOutput is the file name, in a kustomization's directory, under
// which the rendered charts of that kustomization are served to kustomize
// as one more resource. It exists only in the render's filesystem.
const chartOutput = ".tandem-charts.yaml"

// ChartSource is one chart a render used.
type ChartSource struct {
	// Kustomization is the kustomization file that names the chart.
	Kustomization string
	// Name and Version are the chart's, from its Chart.yaml.
	Name, Version string
	// Repo is the chart repository (https:// or oci://); empty for a
	// chart directory in the repository.
	Repo string `json:",omitempty"`
	// Digest is the fetched archive's (HTTP repository) or manifest's
	// (OCI) digest; empty for a chart directory in the repository.
	Digest string `json:",omitempty"`
}

// chartEnv is what rendering a chart needs beyond the filesystem: the
// render's options for charts, and the charts rendered so far (by
// kustomization file) so that a second kustomize run of the same render
// does not render or fetch them again.
type chartEnv struct {
	namespace   string
	kubeVersion string
	apiVersions []string
	fetch       *chartFetcher // nil: remote charts are not allowed
	rendered    map[string][]byte
	sources     []ChartSource
}

// newChartEnv is the chart environment of one render of b.
func newChartEnv(b *Bundle, o Options) *chartEnv {
	env := &chartEnv{namespace: b.Spec.Namespace, kubeVersion: o.KubeVersion, apiVersions: o.APIVersions, rendered: map[string][]byte{}}
	if o.AllowRemoteCharts {
		env.fetch = &chartFetcher{cacheDir: o.ChartCache, credentials: o.ChartCredentials, maxBytes: o.MaxChartBytes,
			client: &http.Client{Transport: http.DefaultTransport}}
	}
	return env
}

// helmFields are the kustomization fields that name charts.
var helmFields = []string{"helmCharts", "helmGlobals", "helmChartInflationGenerator"}

// kustomizationCharts renders the charts of kustomization file p (parsed
// as k) and returns the kustomization kustomize should see instead: the
// helm fields removed, the rendered output added to its resources under
// chartOutput. It returns nil when k names no chart.
func (f *confinedFS) kustomizationCharts(p string, k map[string]any) ([]byte, error) {
	if _, ok := k["helmCharts"]; !ok {
		if _, ok := k["helmChartInflationGenerator"]; !ok {
			if _, ok := k["helmGlobals"]; ok {
				return nil, fmt.Errorf("%s: helmGlobals without helmCharts", f.rel(p))
			}
			return nil, nil
		}
	}
	name := f.rel(p)
	if f.charts == nil {
		return nil, fmt.Errorf("%s: helmCharts: charts are not available in this render", name)
	}
	var spec struct {
		HelmCharts  []types.HelmChart     `json:"helmCharts"`
		HelmGlobals types.HelmGlobals     `json:"helmGlobals"`
		Legacy      []types.HelmChartArgs `json:"helmChartInflationGenerator"`
	}
	only := map[string]any{}
	for _, field := range helmFields {
		if v, ok := k[field]; ok {
			only[field] = v
		}
	}
	data, err := yaml.Marshal(only)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Strict: a misspelt field (valueFile) must not be ignored.
	if err := yaml.UnmarshalStrict(data, &spec); err != nil {
		return nil, fmt.Errorf("%s: helmCharts: %w", name, err)
	}
	if len(spec.Legacy) > 0 {
		charts, globals := types.SplitHelmParameters(spec.Legacy)
		spec.HelmCharts = append(spec.HelmCharts, charts...)
		if spec.HelmGlobals.ChartHome == "" {
			spec.HelmGlobals.ChartHome = globals.ChartHome
		}
	}
	dir := filepath.Dir(p)
	virtual := filepath.Join(dir, chartOutput)
	if _, err := os.Lstat(virtual); err == nil {
		return nil, fmt.Errorf("%s: %s is a name tandem keeps for rendered charts: rename the file", name, f.rel(virtual))
	}
	out, ok := f.charts.rendered[name]
	if !ok {
		var buf bytes.Buffer
		for i, h := range spec.HelmCharts {
			docs, err := f.renderChart(name, dir, h, spec.HelmGlobals)
			if err != nil {
				return nil, fmt.Errorf("%s: helmCharts[%d] (%s): %w", name, i, h.Name, err)
			}
			buf.Write(docs)
		}
		out = buf.Bytes()
		f.charts.rendered[name] = out
	}
	if f.onRead != nil {
		if err := f.onRead(f.rel(virtual), out); err != nil {
			return nil, err
		}
	}
	f.virtualFiles[virtual] = out
	for _, field := range helmFields {
		delete(k, field)
	}
	res, _ := k["resources"].([]any)
	k["resources"] = append(res, chartOutput)
	return yaml.Marshal(k)
}

// renderChart renders one helmCharts entry of kustomization kname (in
// directory dir) as `helm template` would, and returns its objects as a
// YAML stream.
func (f *confinedFS) renderChart(kname, dir string, h types.HelmChart, g types.HelmGlobals) ([]byte, error) {
	env := f.charts
	if h.Name == "" {
		return nil, errors.New("name is required")
	}
	if h.Namespace != "" && h.Namespace != env.namespace {
		return nil, fmt.Errorf("namespace %q: a chart is rendered into the bundle's namespace %q (leave namespace out)", h.Namespace, env.namespace)
	}
	switch {
	case h.NameTemplate != "":
		return nil, errors.New("nameTemplate is not supported: set releaseName")
	case h.IncludeCRDs:
		return nil, errors.New("includeCRDs: CRDs are cluster-scoped and cannot be colored: put them in the bundle's spec.shared")
	case h.ValuesMerge != "" && h.ValuesMerge != "override" && h.ValuesMerge != "merge" && h.ValuesMerge != "replace":
		return nil, fmt.Errorf("valuesMerge %q: must be override, merge or replace", h.ValuesMerge)
	}
	src := ChartSource{Kustomization: kname, Repo: h.Repo}
	// Values first: their files are inputs even when the chart cannot load.
	vals, err := f.chartValues(dir, h)
	if err != nil {
		return nil, err
	}
	var ch *chart.Chart
	if h.Repo == "" {
		home := g.ChartHome
		if home == "" {
			home = types.HelmDefaultHome
		}
		if filepath.IsAbs(home) || strings.Contains(home, "://") {
			return nil, fmt.Errorf("helmGlobals.chartHome %q: must be a path relative to the kustomization", home)
		}
		if ch, err = f.loadChartDir(filepath.Join(dir, filepath.FromSlash(home), h.Name)); err != nil {
			return nil, err
		}
		if h.Version != "" && h.Version != ch.Metadata.Version {
			return nil, fmt.Errorf("version %q: the chart in %s is version %s", h.Version, f.rel(filepath.Join(dir, home, h.Name)), ch.Metadata.Version)
		}
	} else {
		if env.fetch == nil {
			return nil, fmt.Errorf("remote chart from %s is not allowed (start the agent with --allow-remote-charts)", h.Repo)
		}
		data, digest, err := env.fetch.fetch(f.ctx, h.Repo, h.Name, h.Version)
		if err != nil {
			return nil, err
		}
		src.Digest = digest
		if ch, err = loadChartArchive(data); err != nil {
			return nil, fmt.Errorf("chart %s %s from %s: %w", h.Name, h.Version, h.Repo, err)
		}
	}
	src.Name, src.Version = ch.Metadata.Name, ch.Metadata.Version
	docs, err := renderLoadedChart(contextOr(f.ctx), ch, vals, h, env)
	var se cutil.JSONSchemaValidationError
	if errors.As(err, &se) || (err != nil && strings.Contains(err.Error(), "values don't meet the specifications of the schema")) {
		err = fmt.Errorf("the values (%s) do not match the chart's values.schema.json: %w", f.valueSources(dir, h), err)
	}
	if err != nil {
		return nil, err
	}
	env.sources = append(env.sources, src)
	return docs, nil
}

func contextOr(ctx context.Context) context.Context {
	if ctx == nil {
		return context.Background()
	}
	return ctx
}

// chartValues reads the values files of h (relative to the kustomization
// directory dir, confined, recorded as inputs) and merges them with
// valuesInline as kustomize's valuesMerge says.
func (f *confinedFS) chartValues(dir string, h types.HelmChart) (map[string]any, error) {
	vals := map[string]any{}
	files := h.AdditionalValuesFiles
	if h.ValuesFile != "" {
		files = append([]string{h.ValuesFile}, files...)
	}
	for _, v := range files {
		if strings.Contains(v, "://") || filepath.IsAbs(v) {
			return nil, fmt.Errorf("values file %q: must be a path in the repository, relative to the kustomization", v)
		}
		data, err := f.ReadFile(filepath.Join(dir, filepath.FromSlash(v)))
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", v, err)
		}
		var m map[string]any
		if err := yaml.Unmarshal(data, &m); err != nil {
			return nil, fmt.Errorf("values file %s: %w", f.rel(filepath.Join(dir, v)), err)
		}
		vals = loader.MergeMaps(vals, m)
	}
	if h.ValuesInline != nil {
		inline, err := normalize(h.ValuesInline)
		if err != nil {
			return nil, fmt.Errorf("valuesInline: %w", err)
		}
		switch h.ValuesMerge {
		case "replace":
			vals = inline
		case "merge":
			vals = loader.MergeMaps(inline, vals)
		default:
			vals = loader.MergeMaps(vals, inline)
		}
	}
	return vals, nil
}

// valueSources names where h's values come from, for messages.
func (f *confinedFS) valueSources(dir string, h types.HelmChart) string {
	var out []string
	if h.ValuesFile != "" {
		out = append(out, f.rel(filepath.Join(dir, filepath.FromSlash(h.ValuesFile))))
	}
	for _, v := range h.AdditionalValuesFiles {
		out = append(out, f.rel(filepath.Join(dir, filepath.FromSlash(v))))
	}
	if h.ValuesInline != nil {
		out = append(out, "valuesInline")
	}
	out = append(out, "the chart's values.yaml")
	return strings.Join(out, ", ")
}

// normalize round-trips m through JSON-compatible YAML, as values files
// are read, so that inline values hold the same types.
func normalize(m map[string]any) (map[string]any, error) {
	data, err := yaml.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out map[string]any
	return out, yaml.Unmarshal(data, &out)
}

// loadChartDir loads the chart in directory dir through the confined
// filesystem: every file is checked against the repository root and
// recorded as an input; .helmignore is honored as helm does.
func (f *confinedFS) loadChartDir(dir string) (*chart.Chart, error) {
	if err := f.check(dir); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dir)
	f.input(dir, true)
	if err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("chart directory %s: not found (a chart without repo is a directory under the kustomization's helmGlobals.chartHome, default charts/)", f.rel(dir))
	}
	rules := ignore.Empty()
	if data, err := f.readChartFile(filepath.Join(dir, ignore.HelmIgnore)); err == nil {
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", f.rel(filepath.Join(dir, ignore.HelmIgnore)), err)
		}
	}
	rules.AddDefaults()
	var files []*archive.BufferedFile
	var total int64
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := f.done(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		n := filepath.ToSlash(rel)
		if err := f.check(p); err != nil {
			return err
		}
		info, err := os.Stat(p) // follows a symlink that check found inside the repository
		if err != nil {
			return err
		}
		if d.IsDir() || info.IsDir() {
			if rules.Ignore(n, info) {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				return fmt.Errorf("%s: a symlink to a directory in a chart is not supported", f.rel(p))
			}
			f.input(p, true)
			return nil
		}
		if rules.Ignore(n, info) {
			return nil
		}
		if !info.Mode().IsRegular() {
			return fmt.Errorf("%s: not a regular file", f.rel(p))
		}
		if total += info.Size(); total > maxChartFiles {
			return &LimitError{Limit: LimitBytes, Max: fmt.Sprintf("%d bytes", maxChartFiles), File: f.rel(p),
				Detail: "the chart's files exceed the chart size limit"}
		}
		data, err := f.readChartFile(p)
		if err != nil {
			return err
		}
		if strings.HasSuffix(n, ".tgz") {
			// A vendored subchart: helm unpacks it into memory.
			if err := checkUnpackedSize(data, maxChartFiles-total); err != nil {
				return fmt.Errorf("%s: %w", f.rel(p), err)
			}
		}
		files = append(files, &archive.BufferedFile{Name: n, Data: bytes.TrimPrefix(data, []byte("\xEF\xBB\xBF"))})
		return nil
	})
	if err != nil {
		return nil, f.record(err)
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", f.rel(dir), err)
	}
	return ch, nil
}

// readChartFile reads one file of a chart directory: confined, recorded
// as an input, within the per-file limit; chart files are templates, not
// kustomize resources, so they are not counted as objects.
func (f *confinedFS) readChartFile(p string) ([]byte, error) {
	if err := f.check(p); err != nil {
		return nil, err
	}
	f.input(p, false)
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > maxInputBytes {
		return nil, f.record(fmt.Errorf("%s: file is %d bytes, larger than the %d byte limit", f.rel(p), fi.Size(), maxInputBytes))
	}
	return os.ReadFile(p)
}

// loadChartArchive loads a packaged chart (.tgz) after checking that it
// unpacks within maxChartFiles.
func loadChartArchive(data []byte) (*chart.Chart, error) {
	if err := checkUnpackedSize(data, maxChartFiles); err != nil {
		return nil, err
	}
	files, err := archive.LoadArchiveFiles(bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(files)
}

// renderLoadedChart renders ch with vals as `helm template` does (release
// name and namespace, .Capabilities, schema validation, dependencies
// enabled by condition and tags) and returns the manifests, each headed by
// a "# Source:" comment. `lookup` finds nothing: the engine has no cluster.
// Hooks: a test hook that is a Job annotated tandem.dev/check is kept (as
// the Job of that job check, without its hook annotations); other test
// hooks are left out; any other hook is an error unless h.SkipHooks.
func renderLoadedChart(ctx context.Context, ch *chart.Chart, vals map[string]any, h types.HelmChart, env *chartEnv) (out []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the helm engine panicked: %v", r)
		}
	}()
	if err := checkDependencies(ch); err != nil {
		return nil, err
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, fmt.Errorf("chart dependencies: %w", err)
	}
	caps := common.DefaultCapabilities.Copy()
	kv := h.KubeVersion
	if kv == "" {
		kv = env.kubeVersion
	}
	if kv != "" {
		v, err := common.ParseKubeVersion(kv)
		if err != nil {
			return nil, fmt.Errorf("kubeVersion %q: %w", kv, err)
		}
		caps.KubeVersion = *v
	}
	caps.APIVersions = append(caps.APIVersions, env.apiVersions...)
	caps.APIVersions = append(caps.APIVersions, h.ApiVersions...)
	if ch.Metadata.KubeVersion != "" && !chartutil.IsCompatibleRange(ch.Metadata.KubeVersion, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart %s requires kubeVersion %s, which is incompatible with Kubernetes %s", ch.Name(), ch.Metadata.KubeVersion, caps.KubeVersion.Version)
	}
	release := h.ReleaseName
	if release == "" {
		release = ch.Name()
	}
	ro := common.ReleaseOptions{Name: release, Namespace: env.namespace, Revision: 1, IsInstall: true}
	rv, err := cutil.ToRenderValuesWithSchemaValidation(ch, vals, ro, caps, false)
	if err != nil {
		return nil, err
	}
	var e engine.Engine
	files, err := e.RenderWithContext(ctx, ch, rv)
	if err != nil {
		return nil, err
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	emit := func(source, content string) error {
		if err := checkChartNamespace(source, content, env.namespace); err != nil {
			return err
		}
		fmt.Fprintf(&buf, "---\n# Source: %s\n%s\n", source, content)
		return nil
	}
	for _, m := range manifests {
		if err := emit(m.Name, m.Content); err != nil {
			return nil, err
		}
	}
	sort.SliceStable(hooks, func(i, j int) bool { return hooks[i].Path < hooks[j].Path })
	for _, hk := range hooks {
		content, keep, err := vetHook(hk, h)
		if err != nil {
			return nil, err
		}
		if keep {
			if err := emit(hk.Path, content); err != nil {
				return nil, err
			}
		}
	}
	return buf.Bytes(), nil
}

// vetHook decides what to do with a rendered hook (see renderLoadedChart).
func vetHook(hk *release.Hook, h types.HelmChart) (content string, keep bool, err error) {
	var events []string
	test := false
	for _, ev := range hk.Events {
		events = append(events, ev.String())
		if ev == release.HookTest {
			test = true
		}
	}
	if !test {
		if h.SkipHooks {
			return "", false, nil
		}
		return "", false, fmt.Errorf("%s: %s %s is a helm hook (helm.sh/hook: %s): tandem does not run helm hooks (set skipHooks: true to leave them out, or make it a job check)",
			hk.Path, hk.Kind, hk.Name, strings.Join(events, ","))
	}
	if len(hk.Events) > 1 {
		return "", false, fmt.Errorf("%s: %s %s is a test hook and also a %s hook: tandem does not run helm hooks", hk.Path, hk.Kind, hk.Name, strings.Join(events, ","))
	}
	var m map[string]any
	if err := yaml.Unmarshal([]byte(hk.Manifest), &m); err != nil {
		return "", false, fmt.Errorf("%s: %w", hk.Path, err)
	}
	meta, _ := m["metadata"].(map[string]any)
	ann, _ := meta["annotations"].(map[string]any)
	if h.SkipTests || hk.Kind != "Job" || ann[check.AnnotationCheck] == nil {
		return "", false, nil // a test hook that is no job check: left out, as with helm template --skip-tests
	}
	for k := range ann {
		if strings.HasPrefix(k, "helm.sh/hook") {
			delete(ann, k)
		}
	}
	data, err := yaml.Marshal(m)
	if err != nil {
		return "", false, fmt.Errorf("%s: %w", hk.Path, err)
	}
	return string(data), true, nil
}

// checkChartNamespace refuses an object of a chart's output that names a
// namespace other than the bundle's.
func checkChartNamespace(source, content, ns string) error {
	for _, doc := range releaseutil.SplitManifests(content) {
		var m struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return fmt.Errorf("%s: %w", source, err)
		}
		if m.Metadata.Namespace != "" && m.Metadata.Namespace != ns {
			return fmt.Errorf("%s: %s %s is in namespace %q: a chart renders into the bundle's namespace %q only",
				source, m.Kind, m.Metadata.Name, m.Metadata.Namespace, ns)
		}
	}
	return nil
}

// checkDependencies refuses a chart whose Chart.yaml dependencies are not
// in its charts/ directory, as `helm template` does: tandem does not
// fetch dependencies (vendor them with `helm dependency build`).
func checkDependencies(ch *chart.Chart) error {
	have := map[string]bool{}
	for _, d := range ch.Dependencies() {
		have[d.Name()] = true
	}
	var missing []string
	for _, d := range ch.Metadata.Dependencies {
		if !have[d.Name] {
			missing = append(missing, d.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("chart %s: dependencies %s are in Chart.yaml but not in its charts/ directory (run `helm dependency build` and commit them)",
			ch.Name(), strings.Join(missing, ", "))
	}
	return nil
}
