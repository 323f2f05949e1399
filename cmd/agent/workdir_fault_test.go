package main

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWorkDirUnwritable: the agent's checkouts directory under --workdir
// is replaced by a file after the first promotion (the tests run as root,
// so a read-only mode would not stop it; a full disk needs a mount). The
// next tip cannot be checked out: the agent logs an error naming the work
// directory and the failing path, counts it as
// tandem_transient_errors_total{dependency="workdir"} (not "git"), keeps
// running with /healthz ok and traffic where it was, and releases the tip
// once the directory is back.
func TestWorkDirUnwritable(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	base := metricsURL(t, s.agent)
	want(t, s.waitCommits(1)[0], "promoted")
	s.settledAt("the first promotion")
	work := filepath.Join(s.work, "agent")
	checkouts := filepath.Join(work, "checkouts")
	if err := os.Rename(checkouts, checkouts+".away"); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(checkouts, []byte("not a directory\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	gitBefore := transientErrors(t, base, "git")
	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	var faults []logEvent
	deadline := time.Now().Add(time.Minute)
	for len(faults) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no repeated work directory error in a minute\n%s", s.agent.LogTail())
		}
		faults = faults[:0]
		for _, e := range s.events() {
			if e.str("workdir") != "" {
				faults = append(faults, e)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	e := faults[0]
	t.Logf("logged: %s: %s (workdir %s, path %s)", e.str("message"), e.str("error"), e.str("workdir"), e.str("path"))
	if e.str("workdir") != work || !strings.HasPrefix(e.str("path"), checkouts) || !strings.Contains(e.str("message"), "work directory") {
		t.Errorf("the error does not name the work directory %s and a path under %s: %v", work, checkouts, e)
	}
	if n := transientErrors(t, base, "workdir"); n < 2 {
		t.Errorf("tandem_transient_errors_total{dependency=\"workdir\"} = %v, want ≥ 2", n)
	}
	if n := transientErrors(t, base, "git"); n != gitBefore {
		t.Errorf("a work directory fault was counted as Git's: %v → %v", gitBefore, n)
	}
	if exited, err := s.agent.Exited(); exited {
		t.Fatalf("the agent exited: %v\n%s", err, s.agent.LogTail())
	}
	if code, body := httpGet(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz %d %q while the work directory is unwritable: a restart would not help", code, body)
	}
	s.wantSelectors("blue", "server")

	if err := os.Remove(checkouts); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(checkouts+".away", checkouts); err != nil {
		t.Fatal(err)
	}
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Source"] != v2 {
		t.Errorf("promoted %s, want %s", c.Trailers["Tandem-Source"], v2)
	}
	s.wantSelectors("green", "server")
}

func TestWorkDirFault(t *testing.T) {
	pe := func(p string) error { return &os.PathError{Op: "mkdir", Path: p, Err: os.ErrPermission} }
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"a checkout", fmt.Errorf("checkout x: %w", pe("/w/checkouts/abc")), true},
		{"the directory itself", pe("/w"), true},
		{"a sibling", pe("/work/x"), false},
		{"outside", pe("/etc/x"), false},
		{"not a path error", errors.New("git fetch: connection refused"), false},
	} {
		if _, got := workDirFault(tc.err, "/w"); got != tc.want {
			t.Errorf("%s: workDirFault = %v, want %v", tc.name, got, tc.want)
		}
	}
}
