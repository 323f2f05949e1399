package main

import (
	"fmt"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/testenv"
)

// TestAnotherBundlesObjectsAreRefused: bundle two arrives in the namespace
// of the live bundle one and renders the same Deployment and Service. Its
// first release is refused before anything is applied and held, with a
// commit naming the object and both bundles; one's stable Service selects
// one's color at every moment (watched throughout) and one's Deployment is
// untouched.
func TestAnotherBundlesObjectsAreRefused(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	s.start("--root", "bundles")
	if c := s.waitCommits(1)[0]; c.Trailers["Tandem-Result"] != "promoted" {
		t.Fatalf("first commit %q: %v", c.Subject, c.Trailers)
	}
	s.wantSelectors("blue", "server")
	before, err := s.cs.AppsV1().Deployments(s.ns).Get(s.ctx, "server-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}

	stopWatch := s.watchSelector(s.ns, "server") // it must never change while two arrives

	two := "two-" + s.ns
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write("bundles/"+two+"/bundle.yaml", fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %s\nspec:\n  namespace: %s\n  healthTimeout: 1m\n", two, s.ns))
	s.write("bundles/"+two+"/app/kustomization.yaml", "resources:\n- server.yaml\n")
	s.write("bundles/"+two+"/app/server.yaml", appManifest(app{"server", "example/server:v2"}))
	s.push("add bundle " + two)

	var held testenv.TrailerCommit
	for _, c := range s.waitCommits(2) {
		if c.Trailers["Tandem-Bundle"] == two {
			held = c
		}
	}
	if held.Trailers["Tandem-Result"] != "held" {
		t.Fatalf("bundle %s: commit %q %v, want held", two, held.Subject, held.Trailers)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", held.Hash)
	t.Logf("held: %s", body)
	if want := "Deployment " + s.ns + "/server-blue: belongs to bundle " + s.ns + "; bundle " + two + " may not change it"; !strings.Contains(body, want) {
		t.Errorf("commit message does not contain %q:\n%s", want, body)
	}
	s.wantSelectors("blue", "server")
	if seen, changes := stopWatch(); len(changes) > 0 {
		t.Errorf("one's stable Service server changed while bundle %s arrived (%d versions seen): %v", two, seen, changes)
	}
	after, err := s.cs.AppsV1().Deployments(s.ns).Get(s.ctx, "server-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.Generation != before.Generation || after.Labels["tandem.dev/bundle"] != s.ns || after.Spec.Template.Spec.Containers[0].Image != "example/server:v1" {
		t.Errorf("one's Deployment changed: generation %d -> %d, labels %v, image %s",
			before.Generation, after.Generation, after.Labels, after.Spec.Template.Spec.Containers[0].Image)
	}
	if r := after.Spec.Replicas; r == nil || *r != 2 {
		t.Errorf("one's Deployment replicas %v, want 2 (two's failure must not scale it)", r)
	}
}
