package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// TestTipsThatTouchNoBundle: commits that change no bundle (a README, the
// agent's own release.yaml) are passed over without a checkout, yet the next
// change to a bundle is still promoted, and a bundle added later is found.
func TestTipsThatTouchNoBundle(t *testing.T) {
	f := newFleet(t, 1, twoApps)
	f.start("--interval", "200ms")
	f.waitLive(3 * time.Minute)
	want(t, f.waitCommits(1)[0], "promoted")

	for i := 0; i < 3; i++ {
		f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
		f.write("README.md", fmt.Sprintf("notes %d\n", i))
		f.push(fmt.Sprintf("notes %d", i))
	}
	f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
	dir := "bundles/" + f.ns + "/" + f.names[0] + "/app/"
	f.write(dir+"server.yaml", fleetApp("server", "example/server:v2"))
	v2 := f.push("server v2")
	c := f.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Source"] != v2 {
		t.Errorf("promoted %s, want %s", c.Trailers["Tandem-Source"], v2)
	}

	// A second bundle appears in a later commit.
	f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
	name := f.ns + "-new"
	for rel, content := range map[string]string{
		"bundle.yaml":               fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %[1]s\nspec:\n  namespace: %[1]s\n  shared: shared\n", name),
		"shared/kustomization.yaml": "resources:\n- namespace.yaml\n",
		"shared/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n",
		"app/kustomization.yaml":    "resources:\n- server.yaml\n",
		"app/server.yaml":           fleetApp("server", "example/server:v1"),
	} {
		f.write("bundles/"+f.ns+"/"+name+"/"+rel, content)
	}
	f.push("add bundle " + name)
	commits, err := testenv.WaitAgentCommits(f.ctx, f.remote, "main", 3, 3*time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, f.agent.LogTail())
	}
	if got := commits[0].Trailers["Tandem-Bundle"]; got != name {
		t.Fatalf("newest agent commit is for %q, want the new bundle %s: %+v", got, name, commits[0])
	}
	want(t, commits[0], "promoted")
	if n := len(commits); n != 3 {
		t.Errorf("%d agent commits, want 3 (README commits are no candidates)", n)
	}
}
