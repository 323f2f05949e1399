package main

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// pathologicalConfigMaps is a 57,600-object file (about 4 MiB, under the
// repository's file size limit): kustomize's resource map makes such a
// file take minutes and hundreds of MB to render.
func pathologicalConfigMaps() string {
	var b strings.Builder
	for i := range 57600 {
		fmt.Fprintf(&b, "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d}\ndata: {k: v}\n", i)
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
