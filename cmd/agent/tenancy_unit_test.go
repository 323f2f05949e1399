package main

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/render"
)

// TestTenancyFlags: --allowed-namespaces takes comma lists (repeatable)
// and refuses names that are no namespace; --default-service-account is
// checked; --help lists both.
func TestTenancyFlags(t *testing.T) {
	c, err := parseRunFlags([]string{"--repo", "/r", "--allowed-namespaces", "b, a", "--allowed-namespaces=c,a", "--default-service-account", "deployer"}, io.Discard, io.Discard)
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
	if _, err := parseRunFlags([]string{"--repo", "/r", "--allowed-namespaces", "Team_A"}, io.Discard, &out); err == nil || !strings.Contains(out.String(), `"Team_A" is not a namespace name`) {
		t.Errorf("--allowed-namespaces Team_A: err %v, output %q", err, out.String())
	}
	if _, err := parseRunFlags([]string{"--repo", "/r", "--default-service-account", "../admin"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "--default-service-account") {
		t.Errorf("--default-service-account ../admin: err %v", err)
	}
	out.Reset()
	_, _ = parseRunFlags([]string{"--help"}, &out, io.Discard)
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
	ten := fleet.NewTenancy(env.Config, applier.Options{}, own, fleet.TenancyOptions{})
	b := func(ns, sa string) *render.Bundle {
		return &render.Bundle{Name: "x", File: "x/bundle.yaml", Spec: render.Spec{Namespace: ns, ServiceAccountName: sa}}
	}
	if ap, _ := ten.ApplierFor(b("a", "")); ap != own {
		t.Error("a bundle without a ServiceAccount does not act as the agent")
	}
	a1, err := ten.ApplierFor(b("a", "deployer"))
	if err != nil {
		t.Fatal(err)
	}
	a2, _ := ten.ApplierFor(b("a", "deployer"))
	a3, _ := ten.ApplierFor(b("b", "deployer"))
	if a1 == own || a1 != a2 || a1 == a3 {
		t.Errorf("appliers: own %p, a/deployer %p and %p, b/deployer %p: want one per identity, kept", own, a1, a2, a3)
	}
	if got, want := ten.Actor(b("a", "deployer")), "ServiceAccount a/deployer (spec.serviceAccountName of x/bundle.yaml)"; got != want {
		t.Errorf("actor %q, want %q", got, want)
	}
	ten = fleet.NewTenancy(env.Config, applier.Options{}, own, fleet.TenancyOptions{DefaultServiceAccount: "ci"})
	if got, want := ten.Actor(b("a", "")), "ServiceAccount a/ci (--default-service-account)"; got != want {
		t.Errorf("actor %q, want %q", got, want)
	}
	if ap, _ := ten.ApplierFor(b("a", "")); ap == own {
		t.Error("with --default-service-account a bundle without one still acts as the agent")
	}
}
