package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/kustomize/kyaml/openapi"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/yaml"

	"github.com/tandem-gitops/tandem/render"
)

// TenancyFile is the platform team's tenancy configuration (--tenancy-file):
// rules that bind the bundles under some repository paths to namespaces, the
// ServiceAccounts they act as and the kinds they may ship. A bundle's own
// bundle.yaml may only narrow what its rule allows, never widen it; a bundle
// that matches no rule is refused.
//
//	apiVersion: tandem.dev/v1alpha1
//	kind: Tenancy
//	rules:
//	- name: team-a
//	  paths: ["teams/a/**"]          # globs on the bundle's directory
//	  namespaces: ["team-a", "team-a-*"]
//	  serviceAccounts: ["deployer"]  # the first acts when bundle.yaml names none
//	  kinds: ["*", "HTTPRoute.gateway.networking.k8s.io"]
type TenancyFile struct {
	// Path is the file's name, for errors.
	Path string
	// Rules are tried in order; the first whose paths match a bundle's
	// directory is its rule.
	Rules []TenancyRule
}

// TenancyRule binds the bundles under Paths.
type TenancyRule struct {
	// Name names the rule in errors.
	Name string `json:"name"`
	// Paths are globs on a bundle's directory relative to the repository
	// root, slash-separated: "*" matches within one path element, "**"
	// any number of elements (also none).
	Paths []string `json:"paths"`
	// Namespaces are the namespaces (names or globs) the bundle may use:
	// spec.namespace and the namespace of every object it renders (a
	// Namespace object counts as in its own name).
	Namespaces []string `json:"namespaces"`
	// ServiceAccounts are the ServiceAccounts, in spec.namespace, the bundle
	// may act as: spec.serviceAccountName must be one of them, and without
	// it the first acts. Empty: the bundle may not name one and acts as
	// --default-service-account, else as the agent.
	ServiceAccounts []string `json:"serviceAccounts"`
	// Kinds are the kinds the bundle may ship, as Kind.group ("Deployment.apps";
	// "Service" for the core group) or globs ("*.example.com"). "*" stands
	// for every namespaced kind built into Kubernetes. Empty: "*". A
	// cluster-scoped kind, or a custom resource, is refused unless listed.
	Kinds []string `json:"kinds"`
}

// tenancyDoc is the file's YAML.
type tenancyDoc struct {
	APIVersion string        `json:"apiVersion"`
	Kind       string        `json:"kind"`
	Rules      []TenancyRule `json:"rules"`
}

// LoadTenancyFile reads and checks the tenancy file at name.
func LoadTenancyFile(name string) (*TenancyFile, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("--tenancy-file: %w", err)
	}
	return ParseTenancyFile(name, data)
}

// ParseTenancyFile parses and checks a tenancy file's content; name is its
// path, for errors. Unknown fields, a rule without name, paths or
// namespaces, a bad glob or name are errors naming the rule and field.
func ParseTenancyFile(name string, data []byte) (*TenancyFile, error) {
	var doc tenancyDoc
	if err := yaml.UnmarshalStrict(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, fmt.Errorf("%s: empty: a tenancy file needs rules", name)
	}
	var errs []error
	if doc.APIVersion != "" && doc.APIVersion != "tandem.dev/v1alpha1" {
		errs = append(errs, fmt.Errorf("apiVersion %q: want tandem.dev/v1alpha1", doc.APIVersion))
	}
	if doc.Kind != "" && doc.Kind != "Tenancy" {
		errs = append(errs, fmt.Errorf("kind %q: want Tenancy", doc.Kind))
	}
	if len(doc.Rules) == 0 {
		errs = append(errs, errors.New("rules: none; every bundle would be refused"))
	}
	names := map[string]bool{}
	for i, r := range doc.Rules {
		at := fmt.Sprintf("rules[%d]", i)
		switch {
		case r.Name == "":
			errs = append(errs, fmt.Errorf("%s.name: required", at))
		case names[r.Name]:
			errs = append(errs, fmt.Errorf("%s.name: %q is the name of an earlier rule", at, r.Name))
		}
		names[r.Name] = true
		if len(r.Paths) == 0 {
			errs = append(errs, fmt.Errorf("%s.paths: required", at))
		}
		for _, p := range r.Paths {
			if err := checkGlob(p); err != nil || strings.HasPrefix(p, "/") {
				errs = append(errs, fmt.Errorf("%s.paths: %q is not a relative slash-separated glob", at, p))
			}
		}
		if len(r.Namespaces) == 0 {
			errs = append(errs, fmt.Errorf("%s.namespaces: required", at))
		}
		for _, ns := range r.Namespaces {
			probe := strings.NewReplacer("*", "a", "?", "a").Replace(ns)
			if _, err := path.Match(ns, ""); err != nil || strings.ContainsAny(ns, "[]\\") || len(validation.IsDNS1123Label(probe)) > 0 {
				errs = append(errs, fmt.Errorf("%s.namespaces: %q is not a namespace name or a glob of one", at, ns))
			}
		}
		for _, sa := range r.ServiceAccounts {
			if bad := validation.IsDNS1123Subdomain(sa); len(bad) > 0 {
				errs = append(errs, fmt.Errorf("%s.serviceAccounts: %q: %s", at, sa, strings.Join(bad, "; ")))
			}
		}
		for _, k := range r.Kinds {
			if _, err := path.Match(k, ""); err != nil || k == "" || strings.ContainsAny(k, "/ ") {
				errs = append(errs, fmt.Errorf("%s.kinds: %q is not Kind.group, Kind or a glob of one", at, k))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &TenancyFile{Path: name, Rules: doc.Rules}, nil
}

// checkGlob checks every element of a path glob.
func checkGlob(p string) error {
	if p == "" {
		return errors.New("empty")
	}
	for _, el := range strings.Split(p, "/") {
		if _, err := path.Match(el, ""); err != nil {
			return err
		}
	}
	return nil
}

// matchPath reports whether the slash-separated dir matches glob, where
// "**" matches any number of elements (also none) and other elements match
// as path.Match does.
func matchPath(glob, dir string) bool {
	g := strings.Split(strings.Trim(glob, "/"), "/")
	d := strings.Split(strings.Trim(dir, "/"), "/")
	if dir == "." || dir == "" {
		d = nil
	}
	if glob == "." {
		g = nil
	}
	var match func(g, d []string) bool
	match = func(g, d []string) bool {
		for len(g) > 0 {
			if g[0] == "**" {
				for i := 0; i <= len(d); i++ {
					if match(g[1:], d[i:]) {
						return true
					}
				}
				return false
			}
			if len(d) == 0 {
				return false
			}
			if ok, _ := path.Match(g[0], d[0]); !ok {
				return false
			}
			g, d = g[1:], d[1:]
		}
		return len(d) == 0
	}
	return match(g, d)
}

// RuleFor is the rule of the bundle in directory dir (slash-separated,
// relative to the repository root) and its index; -1 when none matches.
func (f *TenancyFile) RuleFor(dir string) (*TenancyRule, int) {
	for i := range f.Rules {
		for _, p := range f.Rules[i].Paths {
			if matchPath(p, dir) {
				return &f.Rules[i], i
			}
		}
	}
	return nil, -1
}

// boundRule is a bundle's rule with where it is, for errors.
type boundRule struct {
	*TenancyRule
	loc string // "/etc/tandem/tenancy.yaml rules[0]"
}

// field names a field of the rule and its values for an error:
// `tenancy rule "a" (/etc/tandem/tenancy.yaml rules[0].namespaces: x, y)`.
func (r boundRule) field(name string, values []string) string {
	v := strings.Join(values, ", ")
	if len(values) == 0 {
		v = "none"
	}
	return fmt.Sprintf("tenancy rule %q (%s.%s: %s)", r.Name, r.loc, name, v)
}

// ruleOf is b's rule, or the error refusing b when it matches none.
func (t *Tenancy) ruleOf(b *render.Bundle) (boundRule, error) {
	r, i := t.file.RuleFor(b.Dir)
	if r == nil {
		return boundRule{}, fmt.Errorf("%s: directory %s matches no rule of the tenancy file %s; a bundle outside every rule is refused",
			b.File, b.Dir, t.file.Path)
	}
	return boundRule{r, fmt.Sprintf("%s rules[%d]", t.file.Path, i)}, nil
}

// allowsNamespace reports whether the rule lets a bundle use ns.
func (r boundRule) allowsNamespace(ns string) bool {
	for _, p := range r.Namespaces {
		if ok, _ := path.Match(p, ns); ok {
			return true
		}
	}
	return false
}

// kindRefusal says why the rule refuses u's kind ("" when it allows it).
func (r boundRule) kindRefusal(u *unstructured.Unstructured) string {
	gvk := u.GroupVersionKind()
	gk := gvk.GroupKind().String() // "Deployment.apps", "Service"
	namespaced, builtin := openapi.IsNamespaceScoped(kyaml.TypeMeta{APIVersion: u.GetAPIVersion(), Kind: gvk.Kind})
	kinds := r.Kinds
	if len(kinds) == 0 {
		kinds = []string{"*"}
	}
	for _, k := range kinds {
		if k == "*" {
			if builtin && namespaced {
				return ""
			}
			continue
		}
		if ok, _ := path.Match(k, gk); ok {
			return ""
		}
	}
	what := "kind " + gk + " is not allowed"
	switch {
	case builtin && !namespaced:
		what = "cluster-scoped kind " + gk + " is not allowed (cluster-scoped kinds must be listed)"
	case !builtin:
		what = "kind " + gk + " is not allowed (kinds not built into Kubernetes must be listed)"
	}
	if len(r.Kinds) == 0 {
		return fmt.Sprintf("%s by tenancy rule %q (%s.kinds: not set, every namespaced built-in kind)", what, r.Name, r.loc)
	}
	return what + " by " + r.field("kinds", r.Kinds)
}

// checkRule refuses what b and its render res do outside b's rule: a
// ServiceAccount the rule does not list, a namespace or a kind it does not
// allow.
func (t *Tenancy) checkRule(b *render.Bundle, res *render.Result) error {
	r, err := t.ruleOf(b)
	if err != nil {
		return err
	}
	var errs []error
	if sa := b.Spec.ServiceAccountName; sa != "" && !slices.Contains(r.ServiceAccounts, sa) {
		errs = append(errs, fmt.Errorf("%s: spec.serviceAccountName: ServiceAccount %q is not allowed by %s",
			b.File, sa, r.field("serviceAccounts", r.ServiceAccounts)))
	}
	if !r.allowsNamespace(b.Spec.Namespace) {
		errs = append(errs, fmt.Errorf("%s: spec.namespace: namespace %q is not allowed by %s",
			b.File, b.Spec.Namespace, r.field("namespaces", r.Namespaces)))
	}
	if res == nil {
		return errors.Join(errs...)
	}
	check := func(field string, objs []*unstructured.Unstructured) {
		for _, u := range objs {
			if why := r.kindRefusal(u); why != "" {
				errs = append(errs, fmt.Errorf("%s: %s: %s %s: %s", b.File, field, u.GetKind(), u.GetName(), why))
				continue
			}
			ns := u.GetNamespace()
			if u.GetKind() == "Namespace" && u.GroupVersionKind().Group == "" {
				ns = u.GetName()
			}
			if ns != "" && ns != b.Spec.Namespace && !r.allowsNamespace(ns) {
				errs = append(errs, fmt.Errorf("%s: %s: %s %s: namespace %q is not allowed by %s",
					b.File, field, u.GetKind(), u.GetName(), ns, r.field("namespaces", r.Namespaces)))
			}
		}
	}
	check("spec.path", res.Objects)
	check("spec.shared", res.Shared)
	for _, name := range sortedKeys(res.CheckJobs) {
		check("spec.checks "+name, []*unstructured.Unstructured{res.CheckJobs[name]})
	}
	return errors.Join(errs...)
}

// sortedKeys are m's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
