package fleet

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"k8s.io/client-go/rest"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/render"
)

// systemNamespaces are refused as a bundle's target unless
// --allowed-namespaces names them: a bundle writing there could take over
// the cluster's own components.
var systemNamespaces = []string{"kube-system", "kube-public", "kube-node-lease"}

// Tenancy decides, per bundle, who acts for it and where it may act: the
// ServiceAccount the agent impersonates for the bundle's applies, waits,
// flips and prunes (spec.serviceAccountName, else --default-service-account,
// else the agent's own identity), and whether its namespaces are allowed
// (--allowed-namespaces). It builds one Applier per impersonated identity
// and keeps it.
type Tenancy struct {
	base      *rest.Config
	opts      applier.Options
	own       *applier.Applier // the agent's own identity
	defaultSA string
	allowed   []string     // nil: any namespace but the system ones
	file      *TenancyFile // nil: bundles bind themselves (no --tenancy-file)

	mu    sync.Mutex
	cache map[string]*applier.Applier // by impersonated user name
}

// TenancyOptions are the platform's rules for who acts for a bundle and where.
type TenancyOptions struct {
	// DefaultServiceAccount acts for bundles without spec.serviceAccountName
	// ("": the agent's own identity).
	DefaultServiceAccount string
	// AllowedNamespaces are the namespaces bundles may use (nil: any but
	// the system namespaces).
	AllowedNamespaces []string
	// File, when set, binds each bundle to the rule its directory matches
	// (--tenancy-file); a bundle matching none is refused.
	File *TenancyFile
}

// NewTenancy builds the tenancy of o; own is the Applier of the agent's own
// identity, built from base and opts (base nil: never impersonate).
func NewTenancy(base *rest.Config, opts applier.Options, own *applier.Applier, o TenancyOptions) *Tenancy {
	return &Tenancy{base: base, opts: opts, own: own, defaultSA: o.DefaultServiceAccount,
		allowed: o.AllowedNamespaces, file: o.File, cache: map[string]*applier.Applier{}}
}

// Own is the Applier of the agent's own identity (observing the cluster).
func (t *Tenancy) Own() *applier.Applier { return t.own }

// serviceAccount is the ServiceAccount that acts for b and where its name
// comes from ("" when the agent acts as itself). With a tenancy file, b's
// rule decides: spec.serviceAccountName must be one it lists, else its
// first acts; an error when b is outside its rule.
func (t *Tenancy) serviceAccount(b *render.Bundle) (name, from string, err error) {
	if t.file != nil {
		r, err := t.ruleOf(b)
		if err != nil {
			return "", "", err
		}
		switch sa := b.Spec.ServiceAccountName; {
		case sa != "" && !slices.Contains(r.ServiceAccounts, sa):
			return "", "", fmt.Errorf("%s: spec.serviceAccountName: ServiceAccount %q is not allowed by %s",
				b.File, sa, r.field("serviceAccounts", r.ServiceAccounts))
		case sa != "":
			return sa, fmt.Sprintf("spec.serviceAccountName of %s, allowed by tenancy rule %q", b.File, r.Name), nil
		case len(r.ServiceAccounts) > 0:
			return r.ServiceAccounts[0], fmt.Sprintf("tenancy rule %q, %s.serviceAccounts", r.Name, r.loc), nil
		}
	}
	switch {
	case b.Spec.ServiceAccountName != "":
		return b.Spec.ServiceAccountName, "spec.serviceAccountName of " + b.File, nil
	case t.defaultSA != "":
		return t.defaultSA, "--default-service-account", nil
	}
	return "", "", nil
}

// Actor names who acts for b, for errors: "ServiceAccount team/deployer
// (spec.serviceAccountName of bundles/x/bundle.yaml)"; "" for the agent.
func (t *Tenancy) Actor(b *render.Bundle) string {
	sa, from, _ := t.serviceAccount(b)
	if sa == "" {
		return ""
	}
	return fmt.Sprintf("ServiceAccount %s/%s (%s)", b.Spec.Namespace, sa, from)
}

// ApplierFor is the Applier that acts for b: impersonating
// system:serviceaccount:<spec.namespace>:<name>, or the agent's own.
func (t *Tenancy) ApplierFor(b *render.Bundle) (*applier.Applier, error) {
	sa, _, err := t.serviceAccount(b)
	if err != nil {
		return nil, err // outside its tenancy rule: never act for it
	}
	if sa == "" || t.base == nil {
		return t.own, nil
	}
	user := "system:serviceaccount:" + b.Spec.Namespace + ":" + sa
	t.mu.Lock()
	defer t.mu.Unlock()
	if ap, ok := t.cache[user]; ok {
		return ap, nil
	}
	cfg := rest.CopyConfig(t.base)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	ap, err := applier.New(cfg, t.opts)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: client impersonating %s: %w", b.Name, user, err)
	}
	t.cache[user] = ap
	return ap, nil
}

// As wraps err with who acted for b, when it was an impersonated
// ServiceAccount (a forbidden error then says whose rights are missing).
func (t *Tenancy) As(b *render.Bundle, err error) error {
	if err == nil || b == nil {
		return err
	}
	if who := t.Actor(b); who != "" {
		return fmt.Errorf("acting as %s: %w", who, err)
	}
	return err
}

// allowNamespace says why b may not use namespace ns (nil when it may);
// field names where ns comes from, for the error.
func (t *Tenancy) allowNamespace(b *render.Bundle, field, ns string) error {
	if t.allowed != nil {
		if slices.Contains(t.allowed, ns) {
			return nil
		}
		return fmt.Errorf("%s: %s: namespace %q is not allowed: the agent runs with --allowed-namespaces=%s",
			b.File, field, ns, strings.Join(t.allowed, ","))
	}
	if slices.Contains(systemNamespaces, ns) {
		return fmt.Errorf("%s: %s: namespace %q is a system namespace; a bundle may use it only when --allowed-namespaces names it",
			b.File, field, ns)
	}
	return nil
}

// Check refuses, before anything is applied, a bundle whose namespaces are
// not allowed: spec.namespace, and the namespace of every shared object
// (a Namespace object counts as its own name); with a tenancy file, also a
// bundle outside its rule (checkRule).
func (t *Tenancy) Check(b *render.Bundle, res *render.Result) error {
	if err := t.allowNamespace(b, "spec.namespace", b.Spec.Namespace); err != nil {
		return err
	}
	if t.file != nil {
		if err := t.checkRule(b, res); err != nil {
			return err
		}
	}
	if res == nil {
		return nil
	}
	var errs []error
	for _, u := range res.Shared {
		ns := u.GetNamespace()
		if u.GetKind() == "Namespace" && u.GroupVersionKind().Group == "" {
			ns = u.GetName()
		}
		if ns == "" {
			continue
		}
		if err := t.allowNamespace(b, "spec.shared: "+u.GetKind()+" "+u.GetName(), ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
