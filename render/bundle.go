package render

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/internal/yamlguard"

	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/yaml"
)

// KindBundle identifies a bundle.yaml (with contract.APIVersion).
const (
	KindBundle = "Bundle"
	// BundleFile is the file name that marks a bundle directory.
	BundleFile = "bundle.yaml"
)

// Bundle is one parsed bundle.yaml.
type Bundle struct {
	// Name is metadata.name.
	Name string
	// File is the bundle.yaml path relative to the repository root, slash-separated.
	File string
	// Dir is the bundle directory relative to the repository root, slash-separated ("." for the root).
	Dir string
	// Spec is the validated spec with defaults filled in.
	Spec Spec
}

// Spec is the validated spec of a bundle.
type Spec struct {
	Namespace, Path, Shared string
	Colors                  [2]string
	HealthTimeout, Soak     time.Duration
	ScaleDownAfter          time.Duration
	ScaleDownNever          bool
	OnFailure               string // "revert" | "hold"
	// Adopt lets the bundle take over existing objects that no bundle
	// owns (spec.adopt; default false).
	Adopt bool
	// Checks are spec.checks: end-to-end checks at verify and soak time.
	Checks []check.Spec
	// ServiceAccountName is the ServiceAccount in Namespace that the
	// agent impersonates for every apply, wait, flip and prune of the
	// bundle (spec.serviceAccountName; "": the agent's
	// --default-service-account, else its own identity).
	ServiceAccountName string
	// Stage is spec.after and spec.approval (stages.go).
	Stage Stage
	// Suspend (spec.suspend): no candidate of the bundle is released and
	// drift correction stops; traffic stays as it is until it is removed.
	Suspend bool
}

type rawBundle struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Namespace      string      `json:"namespace"`
		Path           *string     `json:"path"`
		Shared         string      `json:"shared"`
		Colors         []string    `json:"colors"`
		HealthTimeout  string      `json:"healthTimeout"`
		Soak           string      `json:"soak"`
		ScaleDownAfter string      `json:"scaleDownAfter"`
		OnFailure      string      `json:"onFailure"`
		Adopt          bool        `json:"adopt"`
		ServiceAccount string      `json:"serviceAccountName"`
		Checks         []check.Raw `json:"checks"`
		After          []string    `json:"after"`
		Approval       string      `json:"approval"`
		Suspend        bool        `json:"suspend"`
	} `json:"spec"`
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

func validLabel(s string) bool { return len(s) <= 63 && dnsLabel.MatchString(s) }

// ParseBundle strictly parses a bundle.yaml; file is used in errors and
// becomes Bundle.File (Dir is its directory). Unknown fields are errors.
func ParseBundle(file string, data []byte) (*Bundle, error) {
	file = filepath.ToSlash(file)
	if n := yamlguard.Documents(data); n > 1 {
		return nil, fmt.Errorf("%s: a second YAML document is not allowed (one Bundle per file, found %d documents)", file, n)
	}
	var r rawBundle
	if err := yaml.UnmarshalStrict(data, &r); err != nil {
		// Name the field with its full path where the decoder says which one.
		if f := unknownField(data); f != "" {
			return nil, fmt.Errorf("%s: unknown field %q", file, f)
		}
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	bad := fieldError(file)
	if r.APIVersion != contract.APIVersion {
		return nil, bad("apiVersion", "must be %s, not %q", contract.APIVersion, r.APIVersion)
	}
	if r.Kind != KindBundle {
		return nil, bad("kind", "must be %s, not %q", KindBundle, r.Kind)
	}
	b := &Bundle{Name: r.Metadata.Name, File: file, Dir: path.Dir(file)}
	if !validLabel(b.Name) {
		return nil, bad("metadata.name", "%q is not a DNS label", b.Name)
	}
	s := &b.Spec
	s.Namespace = r.Spec.Namespace
	if s.Namespace == "" {
		return nil, bad("spec.namespace", "required")
	}
	if !validLabel(s.Namespace) {
		return nil, bad("spec.namespace", "%q is not a DNS label", s.Namespace)
	}
	s.Adopt, s.Suspend = r.Spec.Adopt, r.Spec.Suspend
	if sa := r.Spec.ServiceAccount; sa != "" {
		if errs := validation.IsDNS1123Subdomain(sa); len(errs) > 0 {
			return nil, bad("spec.serviceAccountName", "%q is not a valid ServiceAccount name: %s", sa, strings.Join(errs, "; "))
		}
		s.ServiceAccountName = sa
	}
	for _, parse := range []func(*rawBundle, *Spec, func(string, string, ...any) error) error{parsePaths, parseColors, parsePolicy, parseChecks, parseStage} {
		if err := parse(&r, s, bad); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// fieldError returns a constructor of errors naming file and a field.
func fieldError(file string) func(field, format string, a ...any) error {
	return func(field, format string, a ...any) error {
		return fmt.Errorf("%s: %s: %s", file, field, fmt.Sprintf(format, a...))
	}
}

// parsePaths reads spec.path and spec.shared.
func parsePaths(r *rawBundle, s *Spec, bad func(string, string, ...any) error) error {
	s.Path = "app"
	if r.Spec.Path != nil {
		s.Path = *r.Spec.Path
	}
	p, err := cleanRel(s.Path)
	if err != nil {
		return bad("spec.path", "%v", err)
	}
	s.Path = p
	if r.Spec.Shared != "" {
		p, err := cleanRel(r.Spec.Shared)
		if err != nil {
			return bad("spec.shared", "%v", err)
		}
		if p == s.Path {
			return bad("spec.shared", "must differ from spec.path %q", s.Path)
		}
		s.Shared = p
	}
	return nil
}

// parseColors reads spec.colors (default blue, green).
func parseColors(r *rawBundle, s *Spec, bad func(string, string, ...any) error) error {
	s.Colors = [2]string{"blue", "green"}
	if r.Spec.Colors == nil {
		return nil
	}
	if len(r.Spec.Colors) != 2 {
		return bad("spec.colors", "need exactly two colors, got %d", len(r.Spec.Colors))
	}
	for i, c := range r.Spec.Colors {
		if !validLabel(c) {
			return bad("spec.colors", "%q is not a DNS label", c)
		}
		s.Colors[i] = c
	}
	if s.Colors[0] == s.Colors[1] {
		return bad("spec.colors", "the two colors must differ, both are %q", s.Colors[0])
	}
	return nil
}

// parsePolicy reads the durations and onFailure.
func parsePolicy(r *rawBundle, s *Spec, bad func(string, string, ...any) error) error {
	dur := func(field, v string, def time.Duration) (time.Duration, error) {
		if v == "" {
			return def, nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, bad(field, "%q is not a duration", v)
		}
		if d < 0 {
			return 0, bad(field, "%q is negative", v)
		}
		return d, nil
	}
	var err error
	if s.HealthTimeout, err = dur("spec.healthTimeout", r.Spec.HealthTimeout, 5*time.Minute); err != nil {
		return err
	}
	if s.HealthTimeout == 0 {
		return bad("spec.healthTimeout", "must be positive")
	}
	if s.Soak, err = dur("spec.soak", r.Spec.Soak, 0); err != nil {
		return err
	}
	if r.Spec.ScaleDownAfter == "never" {
		s.ScaleDownNever = true
	} else if s.ScaleDownAfter, err = dur("spec.scaleDownAfter", r.Spec.ScaleDownAfter, 10*time.Minute); err != nil {
		return err
	}
	switch r.Spec.OnFailure {
	case "":
		s.OnFailure = "revert"
	case "revert", "hold":
		s.OnFailure = r.Spec.OnFailure
	default:
		return bad("spec.onFailure", "must be revert or hold, not %q", r.Spec.OnFailure)
	}
	return nil
}

// cleanRel checks that p is a relative path that stays inside its base.
func cleanRel(p string) (string, error) {
	if p == "" {
		return "", errors.New("must not be empty")
	}
	if path.IsAbs(p) || filepath.IsAbs(p) || strings.Contains(p, `\`) {
		return "", fmt.Errorf("%q must be a relative path", p)
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", fmt.Errorf("%q leaves the bundle directory", p)
	}
	return c, nil
}

// Discover finds and parses every bundle.yaml under repoRoot/root. Duplicate
// bundle names, nested bundles and missing spec paths are errors naming both
// files. It fails on the first broken bundle; see DiscoverAll.
func Discover(repoRoot, root string) ([]*Bundle, error) {
	d, err := DiscoverAll(repoRoot, root)
	if err != nil {
		return nil, err
	}
	if len(d.Broken) > 0 {
		return nil, d.Broken[0].Err
	}
	return d.Bundles, nil
}

// Discovery is every bundle under a root: those that parse and those that
// do not. One broken bundle is that bundle's problem, not the others'.
type Discovery struct {
	Bundles []*Bundle
	Broken  []Broken
}

// Broken is a bundle.yaml that cannot be used, and why (the error names
// the file and field).
type Broken struct {
	File, Dir string // slash-separated, relative to the repository root
	Err       error
	// Name is metadata.name when the file parsed ("" when it did not).
	Name string
}

// DiscoverAll is Discover that keeps going past broken bundles: each is
// reported in Broken and left out of Bundles. The error is for the walk
// itself (a root outside the repository).
func DiscoverAll(repoRoot, root string) (Discovery, error) {
	if root == "" {
		root = "."
	}
	r, err := cleanRel(root)
	if err != nil {
		return Discovery{}, fmt.Errorf("root: %w", err)
	}
	var d Discovery
	base := filepath.Join(repoRoot, filepath.FromSlash(r))
	if _, err := os.Lstat(base); errors.Is(err, fs.ErrNotExist) {
		return d, nil // no root directory: no bundles (the caller guards an empty tip)
	}
	err = filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if de.IsDir() && de.Name() == ".git" {
			return filepath.SkipDir
		}
		if de.IsDir() || de.Name() != BundleFile {
			return nil
		}
		rel, err := filepath.Rel(repoRoot, p)
		if err != nil {
			return err
		}
		b, err := readBundle(repoRoot, p, rel, de)
		if err != nil {
			file := filepath.ToSlash(rel)
			d.Broken = append(d.Broken, Broken{File: file, Dir: path.Dir(file), Err: err})
			return nil
		}
		d.Bundles = append(d.Bundles, b)
		return nil
	})
	if err != nil {
		return Discovery{}, err
	}
	sort.Slice(d.Bundles, func(i, j int) bool { return d.Bundles[i].File < d.Bundles[j].File })
	d.vet(repoRoot)
	return d, nil
}

// readBundle reads and parses one bundle.yaml found by the walk.
func readBundle(repoRoot, p, rel string, de fs.DirEntry) (*Bundle, error) {
	if de.Type()&fs.ModeSymlink != 0 {
		if err := insideRoot(repoRoot, p); err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.ToSlash(rel), err)
		}
	}
	data, err := readLimited(p, maxInputBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.ToSlash(rel), err)
	}
	return ParseBundle(rel, data)
}

// vet moves bundles that clash with another (a name used twice, a bundle
// nested in another) or miss a spec directory to Broken.
func (d *Discovery) vet(repoRoot string) {
	names := map[string]*Bundle{}
	var ok []*Bundle
	for _, b := range d.Bundles {
		if err := vetBundle(repoRoot, b, d.Bundles, names); err != nil {
			d.Broken = append(d.Broken, Broken{File: b.File, Dir: b.Dir, Err: err})
			continue
		}
		names[b.Name] = b
		ok = append(ok, b)
	}
	d.Bundles = ok
	d.vetStages()
}

func vetBundle(repoRoot string, b *Bundle, all []*Bundle, names map[string]*Bundle) error {
	if o, ok := names[b.Name]; ok {
		return fmt.Errorf("%s: metadata.name %q is also used by %s", b.File, b.Name, o.File)
	}
	for _, o := range all {
		if o != b && (o.Dir == "." || strings.HasPrefix(b.Dir+"/", o.Dir+"/")) && o.Dir != b.Dir {
			return fmt.Errorf("%s: bundle is nested inside the bundle of %s", b.File, o.File)
		}
	}
	for _, sub := range []struct{ field, p string }{{"spec.path", b.Spec.Path}, {"spec.shared", b.Spec.Shared}} {
		if sub.p == "" {
			continue
		}
		if fi, err := os.Stat(filepath.Join(repoRoot, filepath.FromSlash(b.Dir), filepath.FromSlash(sub.p))); err != nil || !fi.IsDir() {
			return fmt.Errorf("%s: %s: directory %q does not exist", b.File, sub.field, sub.p)
		}
	}
	return nil
}

// LoadBundleDir parses dir/bundle.yaml and finds the repository root: the
// nearest ancestor of dir (or dir itself) containing .git, else dir's parent.
func LoadBundleDir(dir string) (repoRoot string, b *Bundle, err error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", dir, err)
	}
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return "", nil, fmt.Errorf("%s: %w", dir, err)
	}
	repoRoot = filepath.Dir(abs)
	for d := abs; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, ".git")); err == nil {
			repoRoot = d
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	file := filepath.Join(abs, BundleFile)
	data, err := readLimited(file, maxInputBytes)
	if err != nil {
		return "", nil, fmt.Errorf("%s: %w", file, err)
	}
	rel, err := filepath.Rel(repoRoot, file)
	if err != nil {
		return "", nil, err
	}
	b, err = ParseBundle(rel, data)
	if err != nil {
		return "", nil, err
	}
	return repoRoot, b, nil
}

// insideRoot refuses p if it resolves (through symlinks) outside repoRoot.
func insideRoot(repoRoot, p string) error {
	root, err := filepath.EvalSymlinks(repoRoot)
	if err != nil {
		return err
	}
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		return fmt.Errorf("symlink: %w", err)
	}
	if !within(root, r) {
		return fmt.Errorf("symlink to %s: %w", r, ErrOutsideRoot)
	}
	return nil
}

func readLimited(p string, limit int64) ([]byte, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, err
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("file is %d bytes, larger than the %d byte limit", fi.Size(), limit)
	}
	return os.ReadFile(p)
}

// unknownField returns the path of the first field of data that
// rawBundle does not have ("spec.checks[0].shell"), or "".
func unknownField(data []byte) string {
	var m any
	if yaml.Unmarshal(data, &m) != nil {
		return ""
	}
	return unknownIn(m, reflect.TypeOf(rawBundle{}), "")
}

// unknownIn walks v (decoded YAML) along t's json fields.
func unknownIn(v any, t reflect.Type, at string) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch x := v.(type) {
	case map[string]any:
		if t.Kind() != reflect.Struct {
			return ""
		}
		fields := map[string]reflect.Type{}
		for i := 0; i < t.NumField(); i++ {
			name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
			fields[name] = t.Field(i).Type
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := k
			if at != "" {
				p = at + "." + k
			}
			ft, ok := fields[k]
			if !ok {
				return p
			}
			if f := unknownIn(x[k], ft, p); f != "" {
				return f
			}
		}
	case []any:
		if t.Kind() != reflect.Slice {
			return ""
		}
		for i, e := range x {
			if f := unknownIn(e, t.Elem(), fmt.Sprintf("%s[%d]", at, i)); f != "" {
				return f
			}
		}
	}
	return ""
}
