package render

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// DefaultMaxBytes is the default limit on a bundle's rendered output.
const DefaultMaxBytes = 32 << 20

// sentinel stands in for the color while rendering so that one kustomize run
// serves both colors and the digest does not depend on the color.
const sentinel = "tandem0color0sentinel"

// Options are the parameters of one render.
type Options struct {
	// RepoRoot is the checked-out repository; nothing outside it is read.
	RepoRoot string
	// Color is the color to render (one of the bundle's colors).
	Color string
	// Live is the color the stable twins select (default Color).
	Live string
	// Commit is written to the tandem.dev/commit and tandem.dev/live-commit annotations.
	Commit string
	// AllowRemoteBases permits URLs and git references in resources.
	AllowRemoteBases bool
	// AllowRemoteCharts permits helmCharts entries with a repo (a Helm
	// HTTP repository or oci://); without it only chart directories in
	// the repository render.
	AllowRemoteCharts bool
	// ChartCache is the directory where remote chart archives are cached
	// by digest and each version's first digest is pinned (a later,
	// different digest for the same version is refused). Empty: nothing
	// is cached or pinned.
	ChartCache string
	// ChartCredentials is a Docker-style config.json ("auths" by host,
	// with username and password or auth) for chart repositories and
	// registries, read at every fetch.
	ChartCredentials string
	// MaxChartBytes limits a remote chart's archive (default
	// DefaultMaxChartBytes).
	MaxChartBytes int64
	// KubeVersion is the Kubernetes version charts see in
	// .Capabilities.KubeVersion ("v1.33.0"; default: the Helm SDK's
	// default). A helmCharts entry's kubeVersion takes precedence.
	KubeVersion string
	// APIVersions are added to the API versions charts see in
	// .Capabilities.APIVersions ("group/version" or "group/version/Kind").
	APIVersions []string
	// MaxBytes limits the rendered output (default DefaultMaxBytes).
	MaxBytes int64
	// MaxObjects limits the objects a render reads and produces (default
	// DefaultMaxObjects). The documents of every file kustomize reads are
	// counted as it reads them, so an oversized file is refused before
	// kustomize's quadratic resource map works on it.
	MaxObjects int
	// Timeout limits the render's wall time (default DefaultTimeout). In
	// process, kustomize stops only at its next file read; with Workers
	// the worker process is killed at the deadline.
	Timeout time.Duration
	// Workers, when set, runs the render in a worker process from this
	// pool (see NewWorkerPool): killed at the deadline, its memory
	// bounded, and not serialized with other renders.
	Workers *WorkerPool

	// twoLevel builds under a generated kustomization level always (tests
	// compare it with the one-level build and color overlay).
	twoLevel bool
}

// Result is a rendered bundle for one color.
type Result struct {
	Bundle, Color, Live string
	// Objects are the colored objects, in apply order.
	Objects []*unstructured.Unstructured
	// Twins are the stable Services selecting Live.
	Twins []*unstructured.Unstructured
	// Shared are the uncolored objects of spec.shared, in apply order.
	Shared []*unstructured.Unstructured
	// Digest is "sha256:<hex>" over the content; equal for both colors of one tree.
	Digest string
	// CheckJobs are the Jobs of job checks (spec.checks), colored, by check
	// name: created afresh for each check run, not applied with Objects.
	CheckJobs map[string]*unstructured.Unstructured
	// Charts are the charts rendered, in the order kustomize read them.
	Charts []ChartSource
	// Inputs are the repository files the render read (slash-separated,
	// sorted; "dir/" for a directory whose listing it read), bundle.yaml
	// included: a commit that changes none of them renders the same.
	Inputs []string
}

// krustyMu serializes kustomize, which is not safe for concurrent use.
var krustyMu sync.Mutex

// Render renders bundle b for o.Color.
func Render(ctx context.Context, b *Bundle, o Options) (*Result, error) {
	rs, err := RenderColors(ctx, b, o, o.Color)
	if err != nil {
		return nil, err
	}
	return rs[0], nil
}

// RenderColors renders bundle b once and returns a Result for each of
// colors (o.Color is ignored; o.Live, when empty, is each result's color).
// kustomize runs once whatever the number of colors: the color is a
// sentinel while it runs and is substituted per color afterwards.
func RenderColors(ctx context.Context, b *Bundle, o Options, colors ...string) ([]*Result, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", b.Name, err)
	}
	valid := func(c string) bool { return c == b.Spec.Colors[0] || c == b.Spec.Colors[1] }
	for _, c := range colors {
		if !valid(c) {
			return nil, fmt.Errorf("bundle %s: color %q is not one of %v", b.Name, c, b.Spec.Colors)
		}
	}
	if o.Live != "" && !valid(o.Live) {
		return nil, fmt.Errorf("bundle %s: live color %q is not one of %v", b.Name, o.Live, b.Spec.Colors)
	}
	o = o.withDefaults()
	if o.Workers != nil {
		return o.Workers.render(ctx, b, o, colors)
	}
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	rs, err := renderColors(rctx, b, o, colors)
	if err != nil && ctx.Err() == nil && errors.Is(rctx.Err(), context.DeadlineExceeded) {
		err = &Error{Err: fmt.Errorf("bundle %s: %w", b.Name, timeoutError(b, o)), Inputs: inputsOf(err)}
	}
	return rs, err
}

// withDefaults fills in the default limits.
func (o Options) withDefaults() Options {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.MaxObjects <= 0 {
		o.MaxObjects = DefaultMaxObjects
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxChartBytes <= 0 {
		o.MaxChartBytes = DefaultMaxChartBytes
	}
	return o
}

func timeoutError(b *Bundle, o Options) *LimitError {
	return &LimitError{Limit: LimitTime, Max: o.Timeout.String(), File: b.File, Detail: "the render did not finish in time"}
}

// inputsOf returns the inputs of a render *Error.
func inputsOf(err error) []string {
	var re *Error
	if errors.As(err, &re) {
		return re.Inputs
	}
	return nil
}

// renderColors is RenderColors in this process, o's defaults filled in.
func renderColors(ctx context.Context, b *Bundle, o Options, colors []string) ([]*Result, error) {
	root, err := filepath.Abs(o.RepoRoot)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: repository root: %w", b.Name, err)
	}
	if root, err = filepath.EvalSymlinks(root); err != nil {
		return nil, fmt.Errorf("bundle %s: repository root: %w", b.Name, err)
	}
	bc := &buildCtx{ctx: ctx, root: root, b: b, allowRemote: o.AllowRemoteBases, budget: o.MaxBytes, maxBytes: o.MaxBytes,
		maxObjects: o.MaxObjects, inputs: map[string]bool{b.File: true}, twoLevel: o.twoLevel, charts: newChartEnv(b, o)}
	colored, shared, err := bc.buildBoth()
	if err != nil {
		return nil, &Error{Err: err, Inputs: bc.inputList()}
	}
	colored, jobs, err := splitCheckJobs(colored, b.Spec.Checks)
	if err != nil {
		return nil, &Error{Err: fmt.Errorf("bundle %s: %s: %w", b.Name, b.File, err), Inputs: bc.inputList()}
	}
	digest, err := digestOf(append(slices.Clip(colored), SortedCheckJobs(jobs)...), shared)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: digest: %w", b.Name, err)
	}
	var out []*Result
	for i, color := range colors {
		live := o.Live
		if live == "" {
			live = color
		}
		res := &Result{Bundle: b.Name, Color: color, Live: live, Digest: digest, Shared: shared, Inputs: bc.inputList(),
			Charts: slices.Clone(bc.charts.sources)}
		if i > 0 {
			res.Shared = deepCopy(shared) // results do not share objects
		}
		objs := colored
		if i < len(colors)-1 {
			objs = deepCopy(colored) // the last color takes the originals
		}
		if err := res.color(objs, o.Commit); err != nil {
			return nil, fmt.Errorf("bundle %s: %s: %w", b.Name, b.File, err)
		}
		res.colorJobs(jobs, o.Commit, i < len(colors)-1)
		out = append(out, res)
	}
	return out, nil
}

// Error is a failed render, with the repository files it read before it
// failed (a change to any of them may fix it).
type Error struct {
	Err    error
	Inputs []string
}

func (e *Error) Error() string { return e.Err.Error() }

// Unwrap returns the render error.
func (e *Error) Unwrap() error { return e.Err }

// buildCtx is one render's kustomize runs over a repository.
type buildCtx struct {
	ctx         context.Context
	root        string
	b           *Bundle
	allowRemote bool
	budget      int64           // bytes of output left
	maxBytes    int64           // Options.MaxBytes
	objects     int             // objects of the builds done
	maxObjects  int             // Options.MaxObjects
	inputs      map[string]bool // repository paths read (see confinedFS.input)
	twoLevel    bool            // always build under a generated level
	charts      *chartEnv       // charts of helmCharts fields (helm.go)
}

// inputList is the sorted list of paths read.
func (bc *buildCtx) inputList() []string {
	out := make([]string, 0, len(bc.inputs))
	for p := range bc.inputs {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

// buildBoth builds spec.path (colored, with the sentinel color) and
// spec.shared, sorted in apply order.
func (bc *buildCtx) buildBoth() (colored, shared []*unstructured.Unstructured, err error) {
	b := bc.b
	bundleDir := filepath.Join(bc.root, filepath.FromSlash(b.Dir))
	colored, err = bc.build(filepath.Join(bundleDir, filepath.FromSlash(b.Spec.Path)), true)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %s %s: %w", b.Name, b.File, "spec.path", err)
	}
	for _, u := range colored {
		if isClusterScoped(u) {
			return nil, nil, fmt.Errorf("bundle %s: %s: spec.path %q: cluster-scoped %s %s is not allowed in a colored path (move it to spec.shared)",
				b.Name, b.File, b.Spec.Path, u.GetKind(), strings.TrimSuffix(u.GetName(), "-"+sentinel))
		}
	}
	if b.Spec.Shared != "" {
		shared, err = bc.build(filepath.Join(bundleDir, filepath.FromSlash(b.Spec.Shared)), false)
		if err != nil {
			return nil, nil, fmt.Errorf("bundle %s: %s %s: %w", b.Name, b.File, "spec.shared", err)
		}
		for _, u := range shared {
			// Namespaced shared objects without a namespace go to spec.namespace.
			if u.GetNamespace() == "" && !isClusterScoped(u) {
				u.SetNamespace(b.Spec.Namespace)
			}
		}
	}
	if err := checkDuplicates(colored, shared); err != nil {
		return nil, nil, fmt.Errorf("bundle %s: %w", b.Name, err)
	}
	sortObjects(colored)
	sortObjects(shared)
	return colored, shared, nil
}

// color turns the sentinel-colored objects into res.Color's: the color
// substituted, the commit and digest stamped, the stable twins derived.
func (res *Result) color(objs []*unstructured.Unstructured, commit string) error {
	for _, u := range objs {
		u.Object = substitute(u.Object, sentinel, res.Color).(map[string]any)
		setAnnotation(u, contract.AnnotationCommit, commit)
		setAnnotation(u, contract.AnnotationDigest, res.Digest)
		stampTemplate(u, res.Digest)
		res.Objects = append(res.Objects, u)
	}
	for _, u := range res.Objects {
		if u.GetKind() != "Service" || u.GetAPIVersion() != "v1" || u.GetAnnotations()[contract.AnnotationRoute] == "false" {
			continue
		}
		res.Twins = append(res.Twins, twin(u, res.Color, res.Live, commit))
	}
	sortObjects(res.Twins)
	return checkTwins(res.Twins, res.Objects, res.Shared)
}

// colorJobs colors the check Jobs for res.Color (copies when cp is set).
func (res *Result) colorJobs(jobs map[string]*unstructured.Unstructured, commit string, cp bool) {
	if len(jobs) == 0 {
		return
	}
	res.CheckJobs = map[string]*unstructured.Unstructured{}
	for name, u := range jobs {
		if cp {
			u = u.DeepCopy()
		}
		u.Object = substitute(u.Object, sentinel, res.Color).(map[string]any)
		setAnnotation(u, contract.AnnotationCommit, commit)
		setAnnotation(u, contract.AnnotationDigest, res.Digest)
		stampTemplate(u, res.Digest)
		res.CheckJobs[name] = u
	}
}

// SortedCheckJobs lists check Jobs (Result.CheckJobs) by check name.
func SortedCheckJobs(jobs map[string]*unstructured.Unstructured) []*unstructured.Unstructured {
	names := make([]string, 0, len(jobs))
	for n := range jobs {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*unstructured.Unstructured, len(names))
	for i, n := range names {
		out[i] = jobs[n]
	}
	return out
}

// deepCopy copies a list of objects.
func deepCopy(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, u := range objs {
		out[i] = u.DeepCopy()
	}
	return out
}

// build runs kustomize on dir once and applies tandem's level to its
// objects: for colored objects the suffix, the color labels and the name
// references (with the sentinel color; see colorOverlay), for shared ones
// the bundle label. Where that one build cannot stand in for the user's
// level under a generated one (see needsTwoLevel), it builds dir under a
// generated overlay kustomization instead, as kustomize would.
func (bc *buildCtx) build(dir string, colored bool) (objs []*unstructured.Unstructured, err error) {
	b := bc.b
	overlay := func(m resmap.ResMap) error {
		if colored {
			return colorOverlay(m, b.Name, sentinel)
		}
		return sharedOverlay(m, b.Name)
	}
	var out []byte
	twoLevel, err := "forced", error(nil)
	if !bc.twoLevel {
		out, twoLevel, err = bc.kustomize(dir, nil, overlay)
	}
	if err == nil && twoLevel != "" {
		out, err = bc.buildTwoLevel(dir, colored)
	}
	if err != nil {
		return nil, err
	}
	bc.budget -= int64(len(out))
	if bc.budget < 0 {
		return nil, &LimitError{Limit: LimitBytes, Max: fmt.Sprintf("%d bytes", bc.maxBytes), File: bc.b.File,
			Detail: fmt.Sprintf("rendered output exceeds the limit: %d bytes more", -bc.budget)}
	}
	objs, err = decode(out, b.Name, colored)
	if err != nil {
		return nil, err
	}
	if bc.objects += len(objs); bc.objects > bc.maxObjects {
		return nil, &LimitError{Limit: LimitObjects, Max: fmt.Sprintf("%d objects", bc.maxObjects), File: bc.b.File,
			Detail: fmt.Sprintf("the render produces %d objects", bc.objects)}
	}
	if colored {
		setNamespace(objs, b.Spec.Namespace)
	}
	return objs, nil
}

// buildTwoLevel runs kustomize on dir under a generated overlay; colored
// adds the suffix and color label (with the sentinel color).
func (bc *buildCtx) buildTwoLevel(dir string, colored bool) ([]byte, error) {
	b := bc.b
	k := map[string]any{
		"apiVersion": "kustomize.config.k8s.io/v1beta1",
		"kind":       "Kustomization",
	}
	if colored {
		k["nameSuffix"] = "-" + sentinel
		// No "namespace" here: kustomize's namespace transformer checks every
		// object against every other for ID conflicts (quadratic, 35% of a
		// 2000-object render); setNamespace does the same job afterwards.
		k["labels"] = []map[string]any{{
			"pairs":            map[string]string{contract.LabelBundle: b.Name, contract.LabelColor: sentinel},
			"includeSelectors": true,
			"includeTemplates": true,
		}}
	} else {
		k["labels"] = []map[string]any{{"pairs": map[string]string{contract.LabelBundle: b.Name}}}
	}
	out, _, err := bc.kustomize(dir, k, nil)
	return out, err
}

// kustomize builds dir (under the generated kustomization overlay, when
// not nil), applies after to the result (when not nil) and returns it as
// YAML; or, without overlay, why dir needs a generated level instead of
// after (then it returns no output).
func (bc *buildCtx) kustomize(dir string, overlay map[string]any, after func(resmap.ResMap) error) (out []byte, twoLevel string, err error) {
	root := bc.root
	virtual := filepath.Join(filepath.Dir(root), ".tandem-overlay-"+bc.b.Name)
	target := dir
	var kustomization []byte
	if overlay != nil {
		relDir, err := filepath.Rel(virtual, dir)
		if err != nil {
			return nil, "", err
		}
		overlay["resources"] = []string{filepath.ToSlash(relDir)}
		if kustomization, err = yaml.Marshal(overlay); err != nil {
			return nil, "", err
		}
		target = virtual
	}
	var fsErr error
	fsys := newConfinedFS(root, virtual, kustomization, bc.allowRemote, &fsErr)
	needsTwoLevel := func() bool { return overlay == nil && fsys.twoLevel != "" }
	if overlay == nil {
		fsys.top = dir
	}
	fsys.plain = dir
	fsys.charts = bc.charts
	fsys.ctx = bc.ctx
	read := bc.objects // objects of this build's files, on top of the builds done
	fsys.onRead = func(rel string, data []byte) error {
		if read += countObjects(data); read > bc.maxObjects {
			return &LimitError{Limit: LimitObjects, Max: fmt.Sprintf("%d objects", bc.maxObjects), File: rel,
				Detail: fmt.Sprintf("%d objects read so far (YAML documents in the files kustomize read)", read)}
		}
		return nil
	}
	defer func() {
		for p := range fsys.inputs {
			bc.inputs[p] = true
		}
	}()
	opts := krusty.MakeDefaultOptions()
	opts.PluginConfig = types.DisabledPluginConfig()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly

	if err := bc.ctx.Err(); err != nil {
		return nil, "", err
	}
	krustyMu.Lock()
	out, err = func() (out []byte, err error) {
		if err := bc.ctx.Err(); err != nil {
			return nil, err // waited for the lock past the deadline
		}
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("kustomize panicked: %v", r)
			}
		}()
		m, err := krusty.MakeKustomizer(opts).Run(fsys, target)
		if err != nil || needsTwoLevel() {
			return nil, err
		}
		if after != nil {
			if err := after(m); err != nil {
				return nil, err
			}
		}
		return m.AsYaml()
	}()
	krustyMu.Unlock()
	if fsErr != nil {
		// The confinement error is clearer than kustomize's wrapping of it.
		return nil, "", fsErr
	}
	if err != nil {
		return nil, "", strip(err, virtual)
	}
	if needsTwoLevel() {
		return nil, fsys.twoLevel, nil
	}
	return out, "", nil
}

// setNamespace puts colored objects in ns, as a kustomize "namespace:" in
// the overlay would: metadata.namespace of every namespaced object, and the
// namespace of RoleBinding subjects that are ServiceAccounts named "default"
// (kustomize's defaultOnly rule) or of the bundle (renamed with the suffix).
// Cluster-scoped objects are left alone; Render refuses them in colored paths.
// Duplicates this could create are caught by checkDuplicates.
func setNamespace(objs []*unstructured.Unstructured, ns string) {
	for _, u := range objs {
		if isClusterScoped(u) {
			continue
		}
		u.SetNamespace(ns)
		if u.GetKind() != "RoleBinding" || u.GroupVersionKind().Group != "rbac.authorization.k8s.io" {
			continue
		}
		subjects, _ := u.Object["subjects"].([]any)
		for _, s := range subjects {
			m, ok := s.(map[string]any)
			if !ok || m["kind"] != "ServiceAccount" {
				continue
			}
			if name, _ := m["name"].(string); name == "default" || strings.HasSuffix(name, "-"+sentinel) {
				m["namespace"] = ns
			}
		}
	}
}

// strip removes the virtual overlay path from kustomize's messages.
func strip(err error, virtual string) error {
	msg := strings.ReplaceAll(err.Error(), virtual, "<overlay>")
	msg = strings.ReplaceAll(msg, "-"+sentinel, "")
	msg = strings.ReplaceAll(msg, sentinel, "<color>")
	return errors.New(msg)
}

// decode splits kustomize's output and substitutes ${TANDEM_BUNDLE} and, for
// colored output, ${TANDEM_COLOR} (with the placeholder; the real color later).
// Shared objects have no color, so ${TANDEM_COLOR} stays as written there.
func decode(out []byte, bundle string, colored bool) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(string(out), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		m = substitute(m, "${TANDEM_BUNDLE}", bundle).(map[string]any)
		if colored {
			m = substitute(m, "${TANDEM_COLOR}", sentinel).(map[string]any)
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs, nil
}

// substitute replaces old with new in every string value of v.
func substitute(v any, old, new string) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = substitute(e, old, new)
		}
		return t
	case []any:
		for i, e := range t {
			t[i] = substitute(e, old, new)
		}
		return t
	case string:
		return strings.ReplaceAll(t, old, new)
	}
	return v
}

func isClusterScoped(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return resid.NewGvk(gvk.Group, gvk.Version, gvk.Kind).IsClusterScoped()
}

func checkDuplicates(lists ...[]*unstructured.Unstructured) error {
	seen := map[string]bool{}
	for _, l := range lists {
		for _, u := range l {
			id := u.GroupVersionKind().GroupKind().String() + " " + u.GetNamespace() + "/" + u.GetName()
			if seen[id] {
				return fmt.Errorf("%s: duplicate object", id)
			}
			seen[id] = true
		}
	}
	return nil
}

// checkTwins refuses a stable twin whose name is taken by a colored or
// shared object: applying both would make them overwrite each other.
func checkTwins(twins []*unstructured.Unstructured, colored, shared []*unstructured.Unstructured) error {
	id := func(u *unstructured.Unstructured) string {
		return u.GroupVersionKind().GroupKind().String() + " " + u.GetNamespace() + "/" + u.GetName()
	}
	taken := map[string]string{}
	for _, u := range colored {
		taken[id(u)] = "a colored object of spec.path"
	}
	for _, u := range shared {
		taken[id(u)] = "an object of spec.shared"
	}
	for _, t := range twins {
		if what, ok := taken[id(t)]; ok {
			return fmt.Errorf("Service %s/%s: the stable Service of this name conflicts with %s of the same name (rename one, or annotate the colored Service %s: \"false\")",
				t.GetNamespace(), t.GetName(), what, contract.AnnotationRoute)
		}
		taken[id(t)] = "another stable Service"
	}
	return nil
}

var kindOrder = map[string]int{
	"Namespace": 0, "CustomResourceDefinition": 1, "ServiceAccount": 2, "ClusterRole": 3, "Role": 4,
	"ClusterRoleBinding": 5, "RoleBinding": 6, "ConfigMap": 7, "Secret": 8, "PersistentVolumeClaim": 9,
	"Service": 10, "Deployment": 11, "StatefulSet": 12, "DaemonSet": 13, "Job": 14, "CronJob": 15,
}

func rank(u *unstructured.Unstructured) int {
	if r, ok := kindOrder[u.GetKind()]; ok {
		return r
	}
	return 100
}

func sortObjects(objs []*unstructured.Unstructured) {
	sort.SliceStable(objs, func(i, j int) bool {
		a, b := objs[i], objs[j]
		if ra, rb := rank(a), rank(b); ra != rb {
			return ra < rb
		}
		if a.GetKind() != b.GetKind() {
			return a.GetKind() < b.GetKind()
		}
		if a.GetAPIVersion() != b.GetAPIVersion() {
			return a.GetAPIVersion() < b.GetAPIVersion()
		}
		if a.GetNamespace() != b.GetNamespace() {
			return a.GetNamespace() < b.GetNamespace()
		}
		return a.GetName() < b.GetName()
	})
}

// digestOf hashes the canonical (sentinel-colored, sorted) objects; JSON
// encoding sorts map keys, so map order does not matter.
func digestOf(lists ...[]*unstructured.Unstructured) (string, error) {
	h := sha256.New()
	for i, l := range lists {
		fmt.Fprintf(h, "list %d\n", i)
		for _, u := range l {
			data, err := json.Marshal(u.Object)
			if err != nil {
				return "", err
			}
			h.Write(data)
			h.Write([]byte{'\n'})
		}
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func setAnnotation(u *unstructured.Unstructured, k, v string) {
	a := u.GetAnnotations()
	if a == nil {
		a = map[string]string{}
	}
	a[k] = v
	u.SetAnnotations(a)
}

// rolledKinds are the workloads whose pod template carries the release
// digest, so that every release (a ConfigMap or Secret change too) starts
// new pods, and a warm flip back to the same digest restarts nothing.
var rolledKinds = map[string]bool{"Deployment": true, "StatefulSet": true, "DaemonSet": true}

// stampTemplate puts the release digest on a workload's pod template.
func stampTemplate(u *unstructured.Unstructured, digest string) {
	if u.GroupVersionKind().Group != "apps" || !rolledKinds[u.GetKind()] {
		return
	}
	if _, ok, _ := unstructured.NestedMap(u.Object, "spec", "template"); !ok {
		return
	}
	ann, _, _ := unstructured.NestedStringMap(u.Object, "spec", "template", "metadata", "annotations")
	if ann == nil {
		ann = map[string]string{}
	}
	ann[contract.AnnotationDigest] = digest
	_ = unstructured.SetNestedStringMap(u.Object, ann, "spec", "template", "metadata", "annotations")
}

// twin builds the stable Service for colored Service s.
func twin(s *unstructured.Unstructured, color, live, commit string) *unstructured.Unstructured {
	t := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
	}}
	t.SetName(strings.TrimSuffix(s.GetName(), "-"+color))
	t.SetNamespace(s.GetNamespace())
	labels := s.GetLabels()
	delete(labels, contract.LabelColor)
	t.SetLabels(labels)
	ann := s.GetAnnotations()
	delete(ann, contract.AnnotationCommit)
	delete(ann, contract.AnnotationDigest)
	if ann == nil {
		ann = map[string]string{}
	}
	ann[contract.AnnotationLiveCommit] = commit
	t.SetAnnotations(ann)
	spec, _, _ := unstructured.NestedMap(s.Object, "spec")
	if spec == nil {
		spec = map[string]any{}
	}
	for _, f := range []string{"clusterIP", "clusterIPs", "healthCheckNodePort"} {
		delete(spec, f)
	}
	if ports, ok := spec["ports"].([]any); ok {
		for _, p := range ports {
			if pm, ok := p.(map[string]any); ok {
				delete(pm, "nodePort")
			}
		}
	}
	sel, _ := spec["selector"].(map[string]any)
	if sel == nil {
		sel = map[string]any{}
	}
	sel[contract.LabelColor] = live
	spec["selector"] = sel
	t.Object["spec"] = spec
	return t
}

// WriteYAML writes the objects as multi-document YAML separated by "---".
func WriteYAML(w io.Writer, objs ...[]*unstructured.Unstructured) error {
	first := true
	for _, l := range objs {
		for _, u := range l {
			data, err := yaml.Marshal(u.Object)
			if err != nil {
				return fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
			}
			if !first {
				if _, err := io.WriteString(w, "---\n"); err != nil {
					return err
				}
			}
			first = false
			if _, err := w.Write(data); err != nil {
				return err
			}
		}
	}
	return nil
}
