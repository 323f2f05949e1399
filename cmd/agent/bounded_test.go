package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/contract"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pathologicalConfigMaps is a 57,600-object file (about 4 MiB, under the
// repository's file size limit): kustomize's resource map makes such a
// file take minutes and hundreds of MB to render.
func pathologicalConfigMaps() string {
	var b strings.Builder
	for i := range 57600 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c%d}\n", i)
	}
	return b.String()
}

// TestPathologicalBundleBesideANormalOne: a bundle whose file holds 57,600
// objects shares an agent with a normal bundle. The big one fails alone,
// with an error naming the limit and the file, and nothing of it applied;
// the normal one goes live, and a later change of it is released.
func TestPathologicalBundleBesideANormalOne(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	big := s.ns + "-big"
	s.write("bundles/"+big+"/bundle.yaml", fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata:
  name: %[1]s
spec:
  namespace: %[1]s
  onFailure: revert
`, big))
	s.write("bundles/"+big+"/app/kustomization.yaml", "resources:\n- cms.yaml\n")
	s.write("bundles/"+big+"/app/cms.yaml", pathologicalConfigMaps())
	s.push("a careless pusher's bundle")
	s.start("--root", "bundles")

	var normal, held bool
	for _, c := range s.waitCommits(2) {
		switch c.Trailers["Tandem-Bundle"] {
		case s.ns:
			normal = c.Trailers["Tandem-Result"] == "promoted"
		case big:
			held = c.Trailers["Tandem-Result"] == "held"
			body := s.body(c)
			if !strings.Contains(body, "bundles/"+big+"/app/cms.yaml") || !strings.Contains(body, "5000 objects") {
				t.Errorf("the hold does not name the file and the limit:\n%s", body)
			}
		}
	}
	if !normal || !held {
		t.Fatalf("want the normal bundle promoted and the big one held: promoted %v, held %v", normal, held)
	}
	s.wantSelectors("blue", "server")
	if cms, err := s.cs.CoreV1().ConfigMaps(big).List(s.ctx, metav1.ListOptions{}); err == nil && len(cms.Items) > 0 {
		t.Errorf("%d ConfigMaps of the big bundle were applied", len(cms.Items))
	}

	// The normal bundle keeps releasing while the big one stays broken.
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	var next bool
	for _, c := range s.waitCommits(3) {
		if c.Trailers["Tandem-Bundle"] == s.ns && c.Trailers["Tandem-Result"] == "promoted" && c.Trailers["Tandem-Color"] == "green" {
			next = true
		}
	}
	if !next {
		t.Error("the normal bundle's next release did not go live")
	}
}

// configMaps is a file of n ConfigMaps whose data says v.
func configMaps(n int, v string) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {k: %s}\n", i, v)
	}
	return b.String()
}

// TestSlowRenderHoldsUpNoOtherBundle: one commit changes a bundle whose
// render takes seconds (2,000 objects, under the limit) and a normal one.
// Their renders run at once and each candidate goes to its bundle when its
// own render is done: the normal bundle's release starts before the slow
// one's render ends.
func TestSlowRenderHoldsUpNoOtherBundle(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	slow := s.ns + "-slow"
	s.addBundle(slow)
	s.write("bundles/"+slow+"/app/kustomization.yaml", "resources:\n- cms.yaml\n")
	s.write("bundles/"+slow+"/app/cms.yaml", configMaps(2000, "v1"))
	s.push("a slow bundle")
	s.start("--root", "bundles", "--render-timeout", "5m")
	s.waitCommits(2) // both live

	s.setImage("server", "example/server:v2") // pulls first
	s.write("bundles/"+slow+"/app/cms.yaml", configMaps(2000, "v2"))
	both := s.push("change both")
	s.waitCommits(4)
	var normalApplied, slowCandidate string
	for _, e := range s.events() {
		switch {
		case e.str("bundle") == s.ns && e.str("phase") == "apply" && e.str("commit") == contract.Short(both) && normalApplied == "":
			normalApplied = e.str("time")
		case e.str("bundle") == slow && e.str("phase") == "candidate" && e.str("commit") == contract.Short(both):
			slowCandidate = e.str("time")
		}
	}
	if normalApplied == "" || slowCandidate == "" {
		t.Fatalf("log lacks the normal bundle's apply (%q) or the slow bundle's candidate (%q) of %s", normalApplied, slowCandidate, contract.Short(both))
	}
	if normalApplied >= slowCandidate {
		t.Errorf("the normal bundle's release started at %s, after the slow bundle's render ended at %s: the slow render held it up", normalApplied, slowCandidate)
	}
}
