package render

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandem-gitops/tandem/internal/yamlguard"

	"sigs.k8s.io/kustomize/kyaml/filesys"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
)

// maxInputBytes limits every file kustomize reads.
const maxInputBytes = 4 << 20

// ErrOutsideRoot is wrapped by errors for paths that resolve outside the repository root.
var ErrOutsideRoot = fmt.Errorf("path resolves outside the repository root")

// confinedFS is a read-only view of the disk limited to root, plus one
// in-memory overlay directory (virtual) that holds the generated kustomization.
type confinedFS struct {
	disk        filesys.FileSystem
	root        string // absolute, symlinks resolved
	virtual     string // absolute path of the in-memory overlay dir
	overlay     []byte // its kustomization.yaml
	allowRemote bool
	firstErr    *error
	// inputs collects the repository paths kustomize read or probed
	// (slash-separated, relative to root; "dir/" for a directory listed).
	inputs map[string]bool
	// top is the directory built without a generated level (empty when
	// building the overlay); twoLevel says why that build cannot stand in
	// for the generated level (see needsTwoLevel), empty if it can.
	top, twoLevel string
	// ctx ends the render: every read after it is done fails.
	ctx context.Context
	// onRead, when set, sees every repository file read but kustomization
	// files (rel is slash-separated, relative to root); an error refuses it.
	onRead func(rel string, data []byte) error
	// charts renders the charts a kustomization names (helm.go); nil
	// refuses them.
	charts *chartEnv
	// virtualFiles are files that exist only in this view (absolute
	// paths): the rendered charts of a kustomization (chartOutput).
	virtualFiles map[string][]byte
	// plain is the directory built (absolute): when it has no
	// kustomization file, one listing its YAML files stands in for it.
	plain string
}

func newConfinedFS(root, virtual string, overlay []byte, allowRemote bool, firstErr *error) *confinedFS {
	return &confinedFS{disk: filesys.MakeFsOnDisk(), root: root, virtual: virtual, overlay: overlay, allowRemote: allowRemote,
		firstErr: firstErr, inputs: map[string]bool{}, virtualFiles: map[string][]byte{}}
}

// plainKustomization returns the kustomization that stands in for a
// missing one in f.plain (p is its kustomization.yaml): the directory's
// YAML files as resources, sorted by name; bundle.yaml, release.yaml (the
// agent's) and hidden files are left out, subdirectories are not read. ok is false when p is not
// that file, the directory has a kustomization file, or no YAML file.
func (f *confinedFS) plainKustomization(p string) (data []byte, ok bool) {
	p = filepath.Clean(p)
	if f.plain == "" || p != filepath.Join(f.plain, "kustomization.yaml") {
		return nil, false
	}
	if data, ok := f.virtualFiles[p]; ok {
		return data, true
	}
	for _, n := range []string{"kustomization.yaml", "kustomization.yml", "Kustomization"} {
		if _, err := os.Lstat(filepath.Join(f.plain, n)); err == nil {
			return nil, false
		}
	}
	if f.check(f.plain) != nil {
		return nil, false
	}
	f.input(f.plain, true)
	entries, err := os.ReadDir(f.plain)
	if err != nil {
		return nil, false
	}
	var files []string
	for _, e := range entries { // os.ReadDir sorts by name
		n := e.Name()
		ext := filepath.Ext(n)
		if strings.HasPrefix(n, ".") || n == BundleFile || n == "release.yaml" || (ext != ".yaml" && ext != ".yml") {
			continue
		}
		if fi, err := os.Stat(filepath.Join(f.plain, n)); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		files = append(files, n)
	}
	if len(files) == 0 {
		return nil, false
	}
	k := map[string]any{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": files}
	data, err = kyaml.Marshal(k)
	if err != nil {
		return nil, false
	}
	f.virtualFiles[p] = data
	return data, true
}

// virtualFile returns the content of a file that exists only in this view.
func (f *confinedFS) virtualFile(p string) ([]byte, bool) {
	if data, ok := f.virtualFiles[filepath.Clean(p)]; ok {
		return data, true
	}
	return f.plainKustomization(p)
}

// input records p (a file, or with dir a directory whose listing was read)
// as read by the render, when it lies inside the repository.
func (f *confinedFS) input(p string, dir bool) {
	if f.isVirtual(p) || !within(f.root, filepath.Clean(p)) {
		return
	}
	r := f.rel(p)
	if dir {
		r = strings.TrimSuffix(r, "/") + "/"
		if r == "./" {
			r = ""
		}
	}
	f.inputs[r] = true
}

func (f *confinedFS) record(err error) error {
	if *f.firstErr == nil {
		*f.firstErr = err
	}
	return err
}

func (f *confinedFS) rel(p string) string {
	if r, err := filepath.Rel(f.root, p); err == nil {
		return filepath.ToSlash(r)
	}
	return p
}

func (f *confinedFS) isVirtual(p string) bool {
	p = filepath.Clean(p)
	return p == f.virtual || p == filepath.Join(f.virtual, "kustomization.yaml")
}

// check resolves p (and any symlinks in it) and refuses it if it leaves root.
func (f *confinedFS) check(p string) error {
	if within(f.virtual, filepath.Clean(p)) {
		return fmt.Errorf("%s: %w", p, os.ErrNotExist)
	}
	if !filepath.IsAbs(p) {
		return f.record(fmt.Errorf("%s: relative path: %w", p, ErrOutsideRoot))
	}
	c := filepath.Clean(p)
	root, realRoot := f.root, f.root
	if f.allowRemote {
		if clone, realClone, ok := remoteClone(c); ok {
			// A remote base is confined to its own clone.
			root, realRoot = clone, realClone
		}
	}
	if !within(root, c) {
		return f.record(fmt.Errorf("%s: %w", f.rel(c), ErrOutsideRoot))
	}
	// Resolve the longest existing prefix.
	probe := c
	for {
		r, err := filepath.EvalSymlinks(probe)
		if err == nil {
			if !within(realRoot, r) {
				return f.record(fmt.Errorf("%s: symlink to %s: %w", f.rel(c), r, ErrOutsideRoot))
			}
			return nil
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return nil
		}
		probe = parent
	}
}

func within(root, p string) bool {
	return p == root || strings.HasPrefix(p, root+string(filepath.Separator))
}

var errReadOnly = fmt.Errorf("render filesystem is read-only")

func (f *confinedFS) Create(string) (filesys.File, error) { return nil, errReadOnly }
func (f *confinedFS) Mkdir(string) error                  { return errReadOnly }
func (f *confinedFS) MkdirAll(string) error               { return errReadOnly }
func (f *confinedFS) RemoveAll(string) error              { return errReadOnly }
func (f *confinedFS) WriteFile(string, []byte) error      { return errReadOnly }

// done fails once the render's context is done, so that kustomize stops
// at its next read.
func (f *confinedFS) done() error {
	if f.ctx == nil || f.ctx.Err() == nil {
		return nil
	}
	return f.record(f.ctx.Err())
}

func (f *confinedFS) Open(p string) (filesys.File, error) {
	if err := f.done(); err != nil {
		return nil, err
	}
	if _, ok := f.virtualFile(p); f.isVirtual(p) || ok {
		return nil, fmt.Errorf("%s: cannot open a generated file", p)
	}
	if err := f.check(p); err != nil {
		return nil, err
	}
	f.input(p, false)
	return f.disk.Open(p)
}

func (f *confinedFS) CleanedAbs(p string) (filesys.ConfirmedDir, string, error) {
	if !filepath.IsAbs(p) {
		// kustomize resolves relative paths against the working directory; refuse.
		return "", "", f.record(fmt.Errorf("%s: relative path: %w", p, ErrOutsideRoot))
	}
	if filepath.Clean(p) == f.virtual {
		return filesys.ConfirmedDir(f.virtual), "", nil
	}
	if filepath.Clean(p) == filepath.Join(f.virtual, "kustomization.yaml") {
		return filesys.ConfirmedDir(f.virtual), "kustomization.yaml", nil
	}
	if _, ok := f.virtualFile(p); ok {
		return filesys.ConfirmedDir(filepath.Dir(filepath.Clean(p))), filepath.Base(p), nil
	}
	if err := f.check(p); err != nil {
		return "", "", err
	}
	d, name, err := f.disk.CleanedAbs(p)
	if err != nil {
		return d, name, err
	}
	if err := f.check(string(d)); err != nil {
		return "", "", err
	}
	return d, name, nil
}

func (f *confinedFS) Exists(p string) bool {
	if _, ok := f.virtualFile(p); f.isVirtual(p) || ok {
		return true
	}
	f.input(p, false) // a file that appears later changes the render too
	return f.check(p) == nil && f.disk.Exists(p)
}

func (f *confinedFS) IsDir(p string) bool {
	if filepath.Clean(p) == f.virtual {
		return true
	}
	if _, ok := f.virtualFile(p); f.isVirtual(p) || ok {
		return false
	}
	return f.check(p) == nil && f.disk.IsDir(p)
}

func (f *confinedFS) Glob(pattern string) ([]string, error) {
	if err := f.check(pattern); err != nil {
		return nil, err
	}
	f.input(filepath.Dir(pattern), true)
	ms, err := f.disk.Glob(pattern)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, m := range ms {
		if err := f.check(m); err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	return out, nil
}

func (f *confinedFS) ReadDir(p string) ([]string, error) {
	if filepath.Clean(p) == f.virtual {
		return []string{"kustomization.yaml"}, nil
	}
	if err := f.check(p); err != nil {
		return nil, err
	}
	f.input(p, true)
	return f.disk.ReadDir(p)
}

func (f *confinedFS) Walk(p string, fn filepath.WalkFunc) error {
	if err := f.check(p); err != nil {
		return err
	}
	f.input(p, true)
	return f.disk.Walk(p, func(q string, info os.FileInfo, err error) error {
		if cerr := f.check(q); cerr != nil {
			return cerr
		}
		return fn(q, info, err)
	})
}

func (f *confinedFS) ReadFile(p string) ([]byte, error) {
	if filepath.Clean(p) == filepath.Join(f.virtual, "kustomization.yaml") {
		return f.overlay, nil
	}
	if err := f.done(); err != nil {
		return nil, err
	}
	if data, ok := f.virtualFile(p); ok {
		return data, nil
	}
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
	data, err := f.disk.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if err := yamlguard.CheckExpansion(data); err != nil {
		return nil, f.record(fmt.Errorf("%s: %w", f.rel(p), err))
	}
	for _, s := range twoLevelMarkers {
		if f.twoLevel == "" && bytes.Contains(data, []byte(s)) {
			f.twoLevel = fmt.Sprintf("%s mentions %s", f.rel(p), s)
		}
	}
	switch filepath.Base(p) {
	case "kustomization.yaml", "kustomization.yml", "Kustomization":
		k, err := f.vetKustomization(p, data)
		if err != nil {
			return nil, f.record(err)
		}
		rewritten, err := f.kustomizationCharts(p, k)
		if err != nil {
			return nil, f.record(err)
		}
		if rewritten != nil {
			return rewritten, nil
		}
	default:
		if f.onRead != nil {
			if err := f.onRead(f.rel(p), data); err != nil {
				return nil, f.record(err)
			}
		}
	}
	return data, nil
}

// vetKustomization refuses the kustomization features tandem does not allow.
// It returns the kustomization parsed.
func (f *confinedFS) vetKustomization(p string, data []byte) (map[string]any, error) {
	name := f.rel(p)
	var k map[string]any
	if err := kyaml.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, field := range []string{"generators", "transformers", "validators"} {
		list, _ := k[field].([]any)
		for _, e := range list {
			s, ok := e.(string)
			if !ok {
				return nil, fmt.Errorf("%s: %s: inline plugin configs are not allowed", name, field)
			}
			if isRemote(s) {
				return nil, fmt.Errorf("%s: %s: remote %q is not allowed", name, field, s)
			}
			// An entry is either a kustomization dir or a plugin config file; plugin
			// configs (exec, Go, KRM functions) are refused.
			abs := filepath.Join(filepath.Dir(p), s)
			if err := f.check(abs); err != nil {
				return nil, err
			}
			if !f.disk.IsDir(abs) {
				if err := f.vetPluginConfig(abs); err != nil {
					return nil, fmt.Errorf("%s: %s: plugin config %q is not allowed (plugins and KRM functions are disabled): %w", name, field, s, err)
				}
			}
		}
	}
	for _, field := range []string{"resources", "components", "bases"} {
		list, _ := k[field].([]any)
		for _, e := range list {
			s, _ := e.(string)
			if isRemote(s) && !f.allowRemote {
				return nil, fmt.Errorf("%s: %s: remote base %q is not allowed (start the agent with --allow-remote-bases)", name, field, s)
			}
			if filepath.IsAbs(s) {
				return nil, fmt.Errorf("%s: %s: absolute path %q is not allowed", name, field, s)
			}
		}
	}
	if bytes.Contains(data, []byte("config.kubernetes.io/function")) {
		return nil, fmt.Errorf("%s: KRM functions are not allowed", name)
	}
	if f.twoLevel == "" {
		f.twoLevel = needsTwoLevel(k, filepath.Dir(p) == f.top)
		if f.twoLevel != "" {
			f.twoLevel = name + ": " + f.twoLevel
		}
	}
	return k, nil
}

// twoLevelMarkers are texts in any file read that make a one-level build
// differ from the user's level under a generated one: resources dropped as
// local config only at the top level, hash suffixes asked for by
// annotation or by a HashTransformer config.
var twoLevelMarkers = []string{"config.kubernetes.io/local-config", "needsHashSuffix", "needs-hash", "HashTransformer"}

// needsTwoLevel says why kustomization k (top: the directory built) cannot
// be built without the generated level on top and colored afterwards:
// fields that act at the top level only (vars, buildMetadata, openapi) or
// change the transformer config the top level uses (configurations, crds),
// or a Component built on its own (refused as under a generated level).
func needsTwoLevel(k map[string]any, top bool) string {
	for _, field := range []string{"vars", "configurations", "crds", "buildMetadata", "openapi"} {
		if _, ok := k[field]; ok {
			return field
		}
	}
	if top && k["kind"] == "Component" {
		return "kind Component"
	}
	return ""
}

func isRemote(s string) bool {
	return strings.Contains(s, "://") || strings.HasPrefix(s, "git@") || strings.HasPrefix(s, "github.com/") ||
		strings.HasPrefix(s, "gitlab.com/") || strings.Contains(s, "?ref=") || strings.Contains(s, ".git//")
}

// builtinKinds are kustomize's built-in generator and transformer configs,
// which run in process; everything else in generators/transformers/validators
// is an exec, Go or KRM function plugin.
var builtinKinds = map[string]bool{
	"ConfigMapGenerator": true, "SecretGenerator": true, "PatchTransformer": true,
	"PatchStrategicMergeTransformer": true, "PatchJson6902Transformer": true, "ImageTagTransformer": true,
	"LabelTransformer": true, "AnnotationsTransformer": true, "NamespaceTransformer": true,
	"PrefixSuffixTransformer": true, "PrefixTransformer": true, "SuffixTransformer": true,
	"ReplicaCountTransformer": true, "HashTransformer": true, "ReplacementTransformer": true,
	"ValueAddTransformer": true, "SortOrderTransformer": true,
}

func (f *confinedFS) vetPluginConfig(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.Size() > maxInputBytes {
		return fmt.Errorf("file is larger than the %d byte limit", maxInputBytes)
	}
	data, err := f.disk.ReadFile(p)
	if err != nil {
		return err
	}
	if bytes.Contains(data, []byte("config.kubernetes.io/function")) || bytes.Contains(data, []byte("config.k8s.io/function")) {
		return fmt.Errorf("it is a KRM function")
	}
	for _, doc := range strings.Split(string(data), "\n---") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var m struct {
			Kind string `json:"kind"`
		}
		if err := kyaml.Unmarshal([]byte(doc), &m); err != nil {
			return err
		}
		if !builtinKinds[m.Kind] {
			return fmt.Errorf("kind %q is not a built-in generator or transformer", m.Kind)
		}
	}
	return nil
}

// remoteClone returns the temporary directory kustomize cloned a remote base
// into when p lies in one (only consulted with AllowRemoteBases): as p names
// it, and with symlinks resolved, so that links inside the clone are checked
// against the clone and not against the repository root.
func remoteClone(p string) (dir, realDir string, ok bool) {
	t := os.TempDir()
	real, err := filepath.EvalSymlinks(t)
	if err != nil {
		real = t
	}
	for _, base := range []string{real, t} {
		rel, err := filepath.Rel(base, p)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			continue
		}
		first := strings.SplitN(filepath.ToSlash(rel), "/", 2)[0]
		if strings.HasPrefix(first, "kustomize-") {
			return filepath.Join(base, first), filepath.Join(real, first), true
		}
	}
	return "", "", false
}
