package main

// End to end on a protected main: the repository served by git
// http-backend with a GH006 pre-receive hook on main, a local GitHub API
// backed by the same repository, the real control plane.

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// protect serves the scenario's remote over HTTP with main protected, and
// a local forge of kind; the agent's flags for both.
func (s *scenario) protect(kind string) (*testenv.Forge, []string) {
	s.t.Helper()
	rem := &testenv.Remote{Path: s.remote}
	s.git(s.remote, "config", "http.receivepack", "true")
	must(s.t, rem.ProtectBranch("main"))
	url, stop, err := rem.ServeHTTP(s.ctx, nil)
	must(s.t, err)
	s.t.Cleanup(stop)
	f, err := testenv.StartForge(s.ctx, kind, rem, "acme/shop", "forge-t0ken")
	must(s.t, err)
	tok := filepath.Join(s.work, "forge-token")
	must(s.t, os.WriteFile(tok, []byte("forge-t0ken\n"), 0o600))
	return f, []string{"--repo", url, "--write-mode", "status-branch", "--forge", kind, "--forge-url", f.URL,
		"--forge-repo", "acme/shop", "--forge-token-file", tok}
}

func (s *scenario) statusCommits(n int) []testenv.TrailerCommit {
	s.t.Helper()
	commits, err := testenv.WaitAgentCommits(s.ctx, s.remote, "tandem/status/main", n, 3*time.Minute)
	if err != nil {
		s.t.Fatalf("%v\nagent log:\n%s", err, s.agent.LogTail())
	}
	return commits
}

func (s *scenario) waitFor(what string, timeout time.Duration, cond func() bool) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			s.t.Fatalf("timed out waiting for %s\nagent log:\n%s", what, s.agent.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestProtectedMainStatusBranchAndRevertRequest: the first deploy is
// recorded on tandem/status/main with main untouched; a broken release
// opens one revert request, traffic never moves and the candidate is not
// retried (also across a restart); merging the request ends the pin without
// a redeploy.
func TestProtectedMainStatusBranchAndRevertRequest(t *testing.T) {
	s := newScenario(t, "revert", "30s", app{"server", "example/server:v1"})
	f, flags := s.protect("github")
	mainAt := s.git(s.remote, "rev-parse", "main")
	s.start(flags...)

	first := s.statusCommits(1)
	want(t, first[0], "promoted")
	s.wantSelectors("blue", "server")
	if got := s.git(s.remote, "rev-parse", "main"); got != mainAt {
		t.Fatalf("main moved from %s to %s", mainAt, got)
	}
	rel := s.git(s.remote, "show", "tandem/status/main:bundles/"+s.ns+"/release.yaml")
	if !strings.Contains(rel, "live: blue") {
		t.Fatalf("release.yaml on the status branch:\n%s", rel)
	}

	s.setImage("server", "missing.invalid/server:v2")
	bad := s.push("server v2")
	commits := s.statusCommits(2)
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != bad {
		t.Errorf("Tandem-Reverts %q, want %s", commits[0].Trailers["Tandem-Reverts"], bad)
	}
	pulls := f.Pulls()
	if len(pulls) != 1 || pulls[0].State != "open" || pulls[0].Base != "main" || !strings.HasPrefix(pulls[0].Head, "tandem/revert/"+s.ns+"/") {
		t.Fatalf("requests %+v: want one open revert request into main", pulls)
	}
	if !strings.Contains(pulls[0].Body, "Tandem-Reverts: "+bad) || !strings.Contains(pulls[0].Body, "missing.invalid/server:v2") {
		t.Errorf("the request does not carry the evidence and trailers:\n%s", pulls[0].Body)
	}
	if link := commits[0].Trailers["Tandem-Revert-Request"]; link != f.Link(1) {
		t.Errorf("Tandem-Revert-Request %q, want %s", link, f.Link(1))
	}
	head := s.git(s.remote, "log", "-1", "--format=%B", pulls[0].Head)
	if !strings.Contains(head, "Tandem-Result: reverted") || !strings.Contains(head, "Tandem-Reverts: "+bad) {
		t.Errorf("the request's commit lacks the revert trailers:\n%s", head)
	}
	s.wantSelectors("blue", "server")
	if got := s.git(s.remote, "rev-parse", "main"); got != bad {
		t.Fatalf("main is at %s, want the person's %s", got, bad)
	}

	// Pinned, also across a restart: no retry, no second request.
	must(t, s.agent.Stop(10*time.Second))
	s.start(flags...)
	s.waitFor("the pin after a restart", 2*time.Minute, func() bool { return s.agent.LogContains("revert pending: " + f.Link(1)) })
	time.Sleep(3 * time.Second)
	if n := len(f.Pulls()); n != 1 {
		t.Fatalf("%d requests after a restart, want 1", n)
	}
	if s.agent.LogContains(`"phase":"candidate"`) {
		t.Fatalf("the failed candidate was offered again after the restart\n%s", s.agent.LogTail())
	}

	// A person merges the request: the tip renders what is live.
	must(t, f.Merge(1))
	merged := s.git(s.remote, "rev-parse", "main")
	s.waitFor("the merge to be seen", 2*time.Minute, func() bool { return s.agent.LogContains("nothing to release") })
	s.wantSelectors("blue", "server")
	if got := s.statusCommits(2); len(got) != 2 {
		t.Fatalf("status commits after the merge: %d", len(got))
	}
	if errs := f.Errors(); len(errs) > 0 {
		t.Fatalf("the forge refused requests: %v", errs)
	}
	_ = merged
}

// TestProtectedMainDirectPushRefusedOnce: in direct mode, a protected main
// refuses the agent's record; the refusal is reported once with the fix,
// and the push is not retried in a tight loop.
func TestProtectedMainDirectPushRefusedOnce(t *testing.T) {
	s := newScenario(t, "revert", "30s", app{"server", "example/server:v1"})
	rem := &testenv.Remote{Path: s.remote}
	s.git(s.remote, "config", "http.receivepack", "true")
	must(t, rem.ProtectBranch("main"))
	url, stop, err := rem.ServeHTTP(s.ctx, nil)
	must(t, err)
	t.Cleanup(stop)
	s.start("--repo", url)
	s.waitFor("the refusal", 3*time.Minute, func() bool { return s.agent.LogContains("the remote refuses the agent") })
	time.Sleep(20 * time.Second)
	data, err := os.ReadFile(s.agent.Log)
	must(t, err)
	log := string(data)
	if n := strings.Count(log, "the remote refuses the agent"); n != 1 {
		t.Fatalf("the refusal was reported %d times, want once\n%s", n, log)
	}
	if !strings.Contains(log, "GH006") || !strings.Contains(log, "--write-mode=status-branch") {
		t.Fatalf("the report lacks the remote's words or the fix\n%s", log)
	}
	if n := strings.Count(log, "cannot write the outcome to Git; retrying"); n > 0 {
		t.Fatalf("a refused push is retried as a race (%d times)", n)
	}
}
