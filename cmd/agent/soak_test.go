package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// TestSoakDegradationFlipsBackAndReverts: a release that passes verification
// and is promoted, then degrades during its soak, is flipped back to the
// previous color (still warm) and reverted in Git.
func TestSoakDegradationFlipsBackAndReverts(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	spec := strings.Replace(s.read("bundles/"+s.ns+"/bundle.yaml"), "scaleDownAfter: never", "scaleDownAfter: never\n  soak: 40s", 1)
	s.write("bundles/"+s.ns+"/bundle.yaml", spec)
	s.push("soak for 40s")
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "client", "server")

	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	s.wantSelectors("green", "client", "server")

	// The new live color degrades during the soak: its server starts crashing.
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"server","image":"example/server:v2-crash"}]}}}}`
	if _, err := s.cs.AppsV1().Deployments(s.ns).Patch(s.ctx, "server-green", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	c = s.waitCommits(3)[0]
	want(t, c, "reverted")
	if c.Trailers["Tandem-Reverts"] != v2 {
		t.Errorf("Tandem-Reverts = %q, want %s", c.Trailers["Tandem-Reverts"], v2)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", c.Hash)
	if !strings.Contains(body, "degraded during the soak") || !strings.Contains(body, "server-green") || !strings.Contains(body, "traffic went back to blue") {
		t.Errorf("revert body does not explain the soak failure:\n%s", body)
	}
	s.wantSelectors("blue", "client", "server")
	rel := s.git(s.remote, "show", "main:bundles/"+s.ns+"/release.yaml")
	if !strings.Contains(rel, "live: blue") || !strings.Contains(rel, "lastFailure") {
		t.Errorf("release.yaml after the soak failure:\n%s", rel)
	}
	// Nothing new happens afterwards: the revert restores v1, which is live.
	s.settledAt("after the revert")
	if n := len(s.waitCommits(3)); n != 3 {
		t.Errorf("%d agent commits, want 3", n)
	}
}

// read returns a file of the developer's clone.
func (s *scenario) read(rel string) string {
	s.t.Helper()
	data, err := os.ReadFile(filepath.Join(s.clone, rel))
	if err != nil {
		s.t.Fatal(err)
	}
	return string(data)
}

// TestForgedTrailersAreStillACandidate: a human commit that carries the
// agent's trailers is not mistaken for the agent's own: it is released.
func TestForgedTrailersAreStillACandidate(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2")
	s.push("server v2\n\nTandem-Bundle: " + s.ns + "\nTandem-Result: promoted\n")
	for deadline := time.Now().Add(time.Minute); s.selectors()["server"] != "green"; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("a human commit with forged trailers was not released; selectors %v", s.selectors())
		}
	}
}
