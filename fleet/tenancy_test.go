package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/render"
)

// TestTenancyNamespaces: which namespaces a bundle may use, with and
// without --allowed-namespaces, and the error naming file and field.
func TestTenancyNamespaces(t *testing.T) {
	bundle := func(ns string) *render.Bundle {
		return &render.Bundle{Name: "api", File: "bundles/api/bundle.yaml", Spec: render.Spec{Namespace: ns}}
	}
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "team-b"}}}
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "kube-public"}}}
	for _, c := range []struct {
		name    string
		allowed []string
		ns      string
		shared  []*unstructured.Unstructured
		want    string // "" = allowed
	}{
		{"any namespace by default", nil, "team-a", nil, ""},
		{"kube-system refused by default", nil, "kube-system", nil, `bundles/api/bundle.yaml: spec.namespace: namespace "kube-system" is a system namespace`},
		{"kube-node-lease refused by default", nil, "kube-node-lease", nil, "is a system namespace"},
		{"a shared object in kube-public", nil, "team-a", []*unstructured.Unstructured{cm}, `bundles/api/bundle.yaml: spec.shared: ConfigMap x: namespace "kube-public" is a system namespace`},
		{"listed", []string{"team-a"}, "team-a", nil, ""},
		{"not listed", []string{"team-a"}, "team-b", nil, `bundles/api/bundle.yaml: spec.namespace: namespace "team-b" is not allowed: the agent runs with --allowed-namespaces=team-a`},
		{"kube-system when listed", []string{"kube-system"}, "kube-system", nil, ""},
		{"a shared Namespace not listed", []string{"team-a"}, "team-a", []*unstructured.Unstructured{nsObj}, `spec.shared: Namespace team-b: namespace "team-b" is not allowed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ten := &tenancy{allowed: c.allowed}
			err := ten.check(bundle(c.ns), &render.Result{Shared: c.shared})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}

// TestTenancyFlags: --allowed-namespaces takes comma lists (repeatable)
// and refuses names that are no namespace; --default-service-account is
// checked; --help lists both.
func TestTenancyFlags(t *testing.T) {
	c, err := parseRunFlags([]string{"--repo", "/r", "--allowed-namespaces", "b, a", "--allowed-namespaces=c,a", "--default-service-account", "deployer"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.AllowedNamespaces.list(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("allowed namespaces %v, want [a b c]", got)
	}
	if c.DefaultServiceAccount != "deployer" {
		t.Errorf("default service account %q", c.DefaultServiceAccount)
	}
	var out strings.Builder
	if _, err := parseRunFlags([]string{"--repo", "/r", "--allowed-namespaces", "Team_A"}, &out); err == nil || !strings.Contains(out.String(), `"Team_A" is not a namespace name`) {
		t.Errorf("--allowed-namespaces Team_A: err %v, output %q", err, out.String())
	}
	if _, err := parseRunFlags([]string{"--repo", "/r", "--default-service-account", "../admin"}, io.Discard); err == nil || !strings.Contains(err.Error(), "--default-service-account") {
		t.Errorf("--default-service-account ../admin: err %v", err)
	}
	out.Reset()
	_, _ = parseRunFlags([]string{"--help"}, &out)
	for _, f := range []string{"-allowed-namespaces", "-default-service-account"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("--help does not list %s", f)
		}
	}
}

// TestTenancyApplierPerIdentity: a bundle without a ServiceAccount uses
// the agent's Applier; one with a ServiceAccount (its own or the default)
// gets an impersonating Applier, one per identity, kept.
func TestTenancyApplierPerIdentity(t *testing.T) {
	own, err := applier.New(env.Config, applier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ten := newTenancy(env.Config, applier.Options{}, own, &config{})
	b := func(ns, sa string) *render.Bundle {
		return &render.Bundle{Name: "x", File: "x/bundle.yaml", Spec: render.Spec{Namespace: ns, ServiceAccountName: sa}}
	}
	if ap, _ := ten.applierFor(b("a", "")); ap != own {
		t.Error("a bundle without a ServiceAccount does not act as the agent")
	}
	a1, err := ten.applierFor(b("a", "deployer"))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ten.applierFor(b("a", "deployer"))
	a3, _ := ten.applierFor(b("b", "deployer"))
	if a1 == own || a1 != a2 || a1 == a3 {
		t.Errorf("appliers: own %p, a/deployer %p and %p, b/deployer %p: want one per identity, kept", own, a1, a2, a3)
	}
	if got, want := ten.actor(b("a", "deployer")), "ServiceAccount a/deployer (spec.serviceAccountName of x/bundle.yaml)"; got != want {
		t.Errorf("actor %q, want %q", got, want)
	}
	ten = newTenancy(env.Config, applier.Options{}, own, &config{DefaultServiceAccount: "ci"})
	if got, want := ten.actor(b("a", "")), "ServiceAccount a/ci (--default-service-account)"; got != want {
		t.Errorf("actor %q, want %q", got, want)
	}
	if ap, _ := ten.applierFor(b("a", "")); ap == own {
		t.Error("with --default-service-account a bundle without one still acts as the agent")
	}
}
