package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/contract"
)

// TestTenancyFileRefusesBundlesOutsideTheirRule: with --tenancy-file, a
// bundle in a directory no rule covers, one aiming at another team's
// namespace with another ServiceAccount, and one shipping a cluster-scoped
// kind its rule does not list are each held before anything is applied,
// the commit naming the rule, the file and the field; nothing of theirs is
// in the cluster, and the bundle inside its rule promotes before and after.
func TestTenancyFileRefusesBundlesOutsideTheirRule(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	teamB := "b-" + s.ns
	file := filepath.Join(s.work, "tenancy.yaml")
	if err := os.WriteFile(file, []byte(fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Tenancy
rules:
- name: team-a
  paths: ["bundles/%[1]s"]
  namespaces: ["%[1]s"]
  kinds: ["*", "Namespace"]
- name: team-b
  paths: ["bundles/b-*"]
  namespaces: ["%[2]s"]
  serviceAccounts: ["deployer"]
`, s.ns, teamB)), 0o644); err != nil {
		t.Fatal(err)
	}
	s.start("--root", "bundles", "--tenancy-file", file)
	s.waitBundle(s.ns, "promoted", 1)

	nobody, intruder, cluster := "x-"+s.ns, "b-in-"+s.ns, "b-cr-"+s.ns
	crName := "tandem-test-" + s.ns
	s.addTeamBundle(nobody, s.ns, "", nil, app{"api", "example/api:v1"})
	s.addTeamBundle(intruder, s.ns, "  serviceAccountName: admin\n", nil, app{"api", "example/api:v1"})
	s.addTeamBundle(cluster, teamB, "", map[string]string{"role.yaml": "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: " + crName + "\nrules: []\n"},
		app{"api", "example/api:v1"})
	s.push("bundles outside their tenancy rules")
	for b, wants := range map[string][]string{
		nobody: {"bundles/" + nobody + "/bundle.yaml: directory bundles/" + nobody + " matches no rule of the tenancy file " + file},
		intruder: {
			"bundles/" + intruder + `/bundle.yaml: spec.serviceAccountName: ServiceAccount "admin" is not allowed by tenancy rule "team-b" (` + file + " rules[1].serviceAccounts: deployer)",
			"bundles/" + intruder + `/bundle.yaml: spec.namespace: namespace "` + s.ns + `" is not allowed by tenancy rule "team-b" (` + file + " rules[1].namespaces: " + teamB + ")",
		},
		cluster: {"bundles/" + cluster + "/bundle.yaml: spec.shared: ClusterRole " + crName + ": cluster-scoped kind ClusterRole.rbac.authorization.k8s.io is not allowed"},
	} {
		body := s.body(s.waitBundle(b, "held", 1))
		t.Logf("held: %s", body)
		for _, want := range wants {
			if !strings.Contains(body, want) {
				t.Errorf("commit message does not contain %q:\n%s", want, body)
			}
		}
		for _, ns := range []string{s.ns, teamB} {
			if got := s.applied(ns, contract.LabelBundle+"="+b); len(got) > 0 {
				t.Errorf("bundle %s wrote %v in %s", b, got, ns)
			}
		}
	}
	if _, err := s.cs.RbacV1().ClusterRoles().Get(s.ctx, crName, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("ClusterRole %s of a refused bundle: err = %v, want NotFound", crName, err)
	}
	// The bundle inside its rule is not held up.
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	s.waitBundle(s.ns, "promoted", 2)
	s.fidelity(s.ns)
}

// TestTenancyFileFlag: --tenancy-file is read at start; a missing or
// invalid file stops the agent with an error naming it.
func TestTenancyFileFlag(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("rules:\n- name: a\n  paths: [x]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]string{
		filepath.Join(dir, "missing.yaml"): "--tenancy-file: open " + filepath.Join(dir, "missing.yaml"),
		bad:                                bad + ": rules[0].namespaces: required",
	} {
		c, err := parseRunFlags([]string{"--repo", "/r", "--tenancy-file", f}, io.Discard, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.tenancyOptions(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("--tenancy-file %s: err = %v, want one containing %q", f, err, want)
		}
	}
}
