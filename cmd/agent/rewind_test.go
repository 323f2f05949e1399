package main

import (
	"net/http"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"
)

// forcePush resets the developer's clone to commit, commits what the
// clone then holds (after edit, if any) and force-pushes it over main.
func (s *scenario) forcePush(commit, msg string, edit func()) string {
	s.t.Helper()
	s.git(s.clone, "fetch", "--quiet", "origin")
	s.git(s.clone, "reset", "--quiet", "--hard", commit)
	if edit != nil {
		edit()
		s.git(s.clone, "add", "-A")
		s.git(s.clone, "commit", "--quiet", "-m", msg)
	}
	s.git(s.clone, "push", "--quiet", "--force", "origin", "HEAD:main")
	return s.git(s.clone, "rev-parse", "HEAD")
}

// rewinds reads tandem_branch_rewinds_total from the agent's /metrics.
func rewinds(t *testing.T, base string) float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d", base, code)
	}
	v, _ := metric(body, "tandem_branch_rewinds_total")
	return v
}

// TestBranchRewound: someone force-pushes the branch (the remote allows
// it). First the push drops the agent's last promotion and the human commit
// it promoted, adding another human commit: the agent reports the rewind
// once, naming both tips, writes nothing about the dropped commit and
// releases the new tip. Then a push drops only the agent's promotion: the
// agent commits again what serves. After each, the tip's release.yaml says
// what serves (fidelity) and every human commit of the branch is kept.
func TestBranchRewound(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.git(s.remote, "config", "receive.denyNonFastForwards", "false")
	s.start()
	base := metricsURL(t, s.agent)
	p0 := s.waitCommits(1)[0]
	want(t, p0, "promoted")
	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	a2 := s.waitCommits(2)[0]
	want(t, a2, "promoted")
	s.wantSelectors("green", "server")
	s.settledAt("the promotion of v2")

	v3 := s.forcePush(p0.Hash, "server v3 (force-pushed over v2)", func() {
		s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:v3"}))
	})
	ev := s.waitEvent("the rewind", time.Minute, func(e logEvent) bool {
		return e.str("phase") == "sync" && e.str("previous") != ""
	})
	if ev.str("previous") != contract.Short(a2.Hash) || ev.str("commit") != contract.Short(v3) {
		t.Errorf("rewind logged from %s to %s, want from %s to %s", ev.str("previous"), ev.str("commit"), contract.Short(a2.Hash), contract.Short(v3))
	}
	t.Logf("logged: %v", ev)
	c := s.waitCommits(2)
	want(t, c[0], "promoted")
	if c[0].Trailers["Tandem-Source"] != v3 || c[1].Hash != p0.Hash {
		t.Fatalf("agent commits after the rewind: %v, %v; want the promotion of %s on top of %s", c[0], c[1], v3, p0.Hash)
	}
	s.wantSelectors("blue", "server")
	// Recovery found green serving v2 with release.yaml saying blue and
	// wanted to commit that promotion: it was abandoned, v2 being gone.
	if !s.hasEvent(func(e logEvent) bool { return e.str("phase") == "recover" && e.str("commit") == contract.Short(v2) }) {
		t.Errorf("the restarted driver did not recover from green serving %s", contract.Short(v2))
	}
	if n := countResults(s.agentCommits(), "promoted", v2) + countResults(s.agentCommits(), "reverted", v2); n != 0 {
		t.Errorf("%d outcomes recorded for %s, which left the branch", n, contract.Short(v2))
	}
	if h := s.humanCommits(); len(h) != 2 {
		t.Errorf("human commits: %v, want the bundle's and v3", h)
	}
	if n := rewinds(t, base); n != 1 {
		t.Errorf("tandem_branch_rewinds_total = %v, want 1", n)
	}
	s.settledAt("the promotion of v3")

	// Only the agent's promotion is dropped: release.yaml at the tip no
	// longer says what serves.
	s.setImage("server", "example/server:v4")
	v4 := s.push("server v4")
	a4 := s.waitCommits(3)[0]
	want(t, a4, "promoted")
	s.wantSelectors("green", "server")
	s.settledAt("the promotion of v4")
	if got := s.forcePush(v4, "", nil); got != v4 {
		t.Fatalf("force push: tip %s, want %s", got, v4)
	}
	c = s.waitCommits(3)
	want(t, c[0], "promoted")
	if c[0].Hash == a4.Hash || c[0].Trailers["Tandem-Source"] != v4 || c[0].Trailers["Tandem-Color"] != "green" {
		t.Fatalf("after dropping the promotion of v4 the agent wrote %v, want green from %s again", c[0], v4)
	}
	s.wantSelectors("green", "server")
	if n := rewinds(t, base); n != 2 {
		t.Errorf("tandem_branch_rewinds_total = %v, want 2", n)
	}
	if h := s.humanCommits(); len(h) != 3 {
		t.Errorf("human commits: %v, want 3", h)
	}
	n := 0
	for _, e := range s.events() {
		if e.str("previous") != "" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("%d rewind log lines, want one per rewind", n)
	}
}
