package main

// End-to-end tests: the real tandem-agent binary, the real control plane from
// testenv, and a real bare Git remote that refuses non-fast-forward updates
// (so any force push by the agent would fail the test).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"
)

var (
	env      *testenv.Env
	agentBin string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "tandem-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin = filepath.Join(dir, "tandem-agent")
	args := []string{"build", "-o", agentBin, "."}
	if raceEnabled {
		args = []string{"build", "-race", "-o", agentBin, "."}
	}
	if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: build tandem-agent: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testenv.RunTests(m, func(e *testenv.Env) { env = e })
	os.RemoveAll(dir)
	os.Exit(code)
}

// scenario is one repository, one bundle and one agent.
type scenario struct {
	t      testing.TB
	ctx    context.Context
	ns     string // the bundle's namespace (also its name)
	remote string // bare repository
	clone  string // a developer's clone
	work   string
	agent  *testenv.Agent
	cs     *kubernetes.Clientset
	// renderOpts are the options the fidelity check renders the tip with
	// (remote charts, for one).
	renderOpts render.Options
}

// app describes one app of the test bundle.
type app struct{ name, image string }

// newScenario makes a remote holding bundles/<ns> with the given apps.
func newScenario(t testing.TB, onFailure, healthTimeout string, apps ...app) *scenario {
	t.Helper()
	s := emptyScenario(t, 5*time.Minute)
	s.git(s.remote, "config", "receive.denyNonFastForwards", "true")
	s.git(s.remote, "config", "receive.denyDeletes", "true")
	s.git(".", "clone", "--quiet", s.remote, s.clone)
	s.write("bundles/"+s.ns+"/bundle.yaml", fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata:
  name: %s
spec:
  namespace: %s
  shared: shared
  healthTimeout: %s
  scaleDownAfter: never
  onFailure: %s
`, s.ns, s.ns, healthTimeout, onFailure))
	s.write("bundles/"+s.ns+"/shared/kustomization.yaml", "resources:\n- namespace.yaml\n")
	s.write("bundles/"+s.ns+"/shared/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+s.ns+"\n")
	var res []string
	for _, a := range apps {
		res = append(res, "- "+a.name+".yaml")
		s.write("bundles/"+s.ns+"/app/"+a.name+".yaml", appManifest(a))
	}
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", "resources:\n"+strings.Join(res, "\n")+"\n")
	s.write("README.md", "human notes\n")
	s.push("add bundle " + s.ns)
	return s
}

// emptyScenario makes a bare remote (branch main, no commits) and names
// the developer's clone (the caller clones it) and a fresh namespace; its
// context ends after timeout.
func emptyScenario(t testing.TB, timeout time.Duration) *scenario {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	work := t.TempDir()
	cs, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{t: t, ctx: ctx, work: work, cs: cs,
		remote: filepath.Join(work, "remote.git"), clone: filepath.Join(work, "dev")}
	s.ns = uniqueName(t)
	s.git(".", "init", "--quiet", "--bare", "-b", "main", s.remote)
	return s
}

func appManifest(a app) string { return appWithReplicas(a, 2) }

// appWithReplicas is an app's Deployment of n replicas and its Service.
func appWithReplicas(a app, n int) string { return testenv.AppManifest(a.name, a.image, n) }

func uniqueName(testing.TB) string {
	return fmt.Sprintf("e2e-%d", time.Now().UnixNano()%1_000_000_000)
}

func (s *scenario) git(dir string, args ...string) string {
	s.t.Helper()
	out, err := testenv.Git(s.ctx, dir, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

func (s *scenario) write(rel, content string) {
	s.t.Helper()
	p := filepath.Join(s.clone, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		s.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		s.t.Fatal(err)
	}
}

// push commits everything in the clone (after pulling) and returns the commit.
func (s *scenario) push(msg string) string {
	s.t.Helper()
	s.git(s.clone, "add", "-A")
	s.git(s.clone, "commit", "--quiet", "-m", msg)
	for i := 0; ; i++ {
		if _, err := testenv.Git(s.ctx, s.clone, "push", "--quiet", "origin", "HEAD:main"); err == nil {
			break
		} else if i == 10 {
			s.t.Fatal(err)
		}
		s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	}
	return s.git(s.clone, "rev-parse", "HEAD")
}

// setImage changes one app's image in the clone (after pulling).
func (s *scenario) setImage(name, image string) {
	s.t.Helper()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write("bundles/"+s.ns+"/app/"+name+".yaml", appManifest(app{name, image}))
}

// start runs the agent against the remote and the control plane.
func (s *scenario) start(extra ...string) {
	s.t.Helper()
	args := append([]string{"run", "--repo", "file://" + s.remote, "--kubeconfig", env.Kubeconfig,
		"--interval", "500ms", "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(s.work, "agent"),
		"--root", "bundles/" + s.ns}, extra...)
	a, err := testenv.StartAgent(agentBin, args, filepath.Join(s.work, fmt.Sprintf("agent-%d.log", time.Now().UnixNano())))
	if err != nil {
		s.t.Fatal(err)
	}
	s.agent = a
	s.t.Cleanup(func() {
		_ = a.Stop(10 * time.Second)
		if s.t.Failed() {
			s.t.Logf("agent log:\n%s", a.LogTail())
		}
	})
}

// waitCommits waits for n agent commits and returns them, newest first.
func (s *scenario) waitCommits(n int) []testenv.TrailerCommit {
	s.t.Helper()
	commits, err := testenv.WaitAgentCommits(s.ctx, s.remote, "main", n, 3*time.Minute)
	if err != nil {
		s.t.Fatalf("%v\nagent log:\n%s", err, s.agent.LogTail())
	}
	if s.git(s.remote, "rev-parse", "main") == commits[0].Hash {
		s.fidelity(s.ns) // the agent's outcome is the tip: the promise must hold
	}
	return commits
}

// selectors returns the color each stable Service of the bundle selects.
func (s *scenario) selectors() map[string]string {
	s.t.Helper()
	return s.selectorsIn(s.ns)
}

func (s *scenario) wantSelectors(color string, apps ...string) {
	s.t.Helper()
	got := s.selectors()
	if len(got) != len(apps) {
		s.t.Fatalf("stable Services: got %v, want %v selecting %s", got, apps, color)
	}
	for _, a := range apps {
		if got[a] != color {
			s.t.Fatalf("stable Service %s selects %q, want %q (all: %v)", a, got[a], color, got)
		}
	}
}

// humanCommits lists the subjects of commits without a Tandem-Result trailer.
func (s *scenario) humanCommits() []string {
	s.t.Helper()
	out := s.git(s.remote, "log", "--format=%s%x1f%(trailers:key=Tandem-Result,valueonly)%x1e", "main")
	var subjects []string
	for _, rec := range strings.Split(out, "\x1e") {
		subj, result, ok := strings.Cut(strings.TrimSpace(rec), "\x1f")
		if ok && strings.TrimSpace(result) == "" {
			subjects = append(subjects, subj)
		}
	}
	return subjects
}

func want(t *testing.T, c testenv.TrailerCommit, result string) {
	t.Helper()
	if got := c.Trailers["Tandem-Result"]; got != result {
		t.Fatalf("agent commit %q: Tandem-Result %q, want %q (trailers %v)", c.Subject, got, result, c.Trailers)
	}
}

// TestBundleMovesTogetherOrNotAtAll is the motivating case: client and server
// change together, only the client's new image fails, and neither app's
// traffic moves; the revert names the client as the cause.
func TestBundleMovesTogetherOrNotAtAll(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	s.start()
	first := s.waitCommits(1)
	want(t, first[0], "promoted")
	s.wantSelectors("blue", "client", "server")

	s.setImage("client", "missing.invalid/client:v2")
	s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:v2"}))
	bad := s.push("client and server v2 (breaking API change)")

	commits := s.waitCommits(2)
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != bad {
		t.Errorf("Tandem-Reverts = %q, want %s", commits[0].Trailers["Tandem-Reverts"], bad)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	if !strings.Contains(body, "client-green") || !strings.Contains(body, "missing.invalid/client:v2") {
		t.Errorf("revert body does not name client-green and its image:\n%s", body)
	}
	s.wantSelectors("blue", "client", "server")
	// The bundle's files are back to v1 on the branch.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	data, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "app", "server.yaml"))
	if err != nil || !strings.Contains(string(data), "example/server:v1") {
		t.Errorf("server.yaml after the revert is not v1 (err %v):\n%s", err, data)
	}
	if h := s.humanCommits(); len(h) != 2 {
		t.Errorf("human commits on the branch: %v, want both kept", h)
	}
}

// TestDemoSteps follows the demo: first deploy on blue; v2 verified
// on green and promoted; a server image that does not exist is reverted while
// traffic stays on green (and blue is restored to v1, its warm standby); a
// human git revert of v2 then flips back to the warm blue at once.
func TestDemoSteps(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "client", "server")

	s.setImage("client", "example/client:v2")
	s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:v2"}))
	v2 := s.push("v2")
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Color"] != "green" || c.Trailers["Tandem-Source"] != v2 {
		t.Errorf("promotion trailers %v, want green from %s", c.Trailers, v2)
	}
	s.wantSelectors("green", "client", "server")

	s.setImage("server", "missing.invalid/server:v3")
	v3 := s.push("server v3")
	c = s.waitCommits(3)[0]
	want(t, c, "reverted")
	if c.Trailers["Tandem-Reverts"] != v3 {
		t.Errorf("Tandem-Reverts = %q, want %s", c.Trailers["Tandem-Reverts"], v3)
	}
	s.wantSelectors("green", "client", "server")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.git(s.clone, "revert", "--no-edit", v2)
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	start := time.Now()
	c = s.waitCommits(4)[0]
	want(t, c, "promoted")
	t.Logf("git revert to the warm color promoted in %s", time.Since(start).Round(10*time.Millisecond))
	if c.Trailers["Tandem-Color"] != "blue" {
		t.Errorf("rollback went to %q, want blue", c.Trailers["Tandem-Color"])
	}
	s.wantSelectors("blue", "client", "server")
	if !s.agent.LogContains("warm flip-back") {
		t.Errorf("the agent did not flip back to the warm color:\n%s", s.agent.LogTail())
	}
	if h := s.humanCommits(); len(h) != 4 {
		t.Errorf("human commits on the branch: %v, want all 4 kept", h)
	}
}

// TestOnFailureHold records the failure in release.yaml and writes no revert.
func TestOnFailureHold(t *testing.T) {
	s := newScenario(t, "hold", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2-crash")
	bad := s.push("server v2")
	c := s.waitCommits(2)[0]
	want(t, c, "held")
	s.wantSelectors("blue", "server")
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	data, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "app", "server.yaml"))
	if err != nil || !strings.Contains(string(data), "v2-crash") {
		t.Errorf("hold must keep the human change on the branch; server.yaml:\n%s", data)
	}
	rel, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "release.yaml"))
	if err != nil || !strings.Contains(string(rel), bad) || !strings.Contains(string(rel), "CrashLoopBackOff") {
		t.Errorf("release.yaml does not record the failure of %s:\n%s", bad, rel)
	}
}

// TestNewestWins: a newer commit cancels the verification of an older one.
func TestNewestWins(t *testing.T) {
	s := newScenario(t, "revert", "120s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2-unready") // would wait the full 120s
	v2 := s.push("server v2 (never ready)")
	s.waitEvent("v2 applied", time.Minute, phaseOf("apply", v2, true)) // its verification begins
	s.setImage("server", "example/server:v3")
	v3 := s.push("server v3")
	start := time.Now()
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Source"] != v3 {
		t.Errorf("promoted %s, want the newest commit %s", c.Trailers["Tandem-Source"], v3)
	}
	if d := time.Since(start); d > 60*time.Second {
		t.Errorf("v3 took %s: the older candidate was not cancelled", d)
	}
	s.wantSelectors("green", "server")
}

// TestOtherWriterDuringCommit: a writer pushing to the same branch while the
// agent promotes loses nothing, and the agent's commit lands on top.
func TestOtherWriterDuringCommit(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	writer := filepath.Join(s.work, "writer")
	s.git(".", "clone", "--quiet", s.remote, writer)
	s.start()
	done := make(chan []string)
	go func() {
		var pushed []string
		for i := 0; i < 15; i++ {
			p := filepath.Join(writer, "notes", fmt.Sprintf("n%d.txt", i))
			_ = os.MkdirAll(filepath.Dir(p), 0o755)
			_ = os.WriteFile(p, []byte("note\n"), 0o644)
			if _, err := testenv.Git(s.ctx, writer, "add", "-A"); err != nil {
				break
			}
			msg := fmt.Sprintf("writer note %d", i)
			if _, err := testenv.Git(s.ctx, writer, "commit", "--quiet", "-m", msg); err != nil {
				break
			}
			for {
				if _, err := testenv.Git(s.ctx, writer, "push", "--quiet", "origin", "HEAD:main"); err == nil {
					break
				}
				if _, err := testenv.Git(s.ctx, writer, "pull", "--quiet", "--rebase", "origin", "main"); err != nil {
					break
				}
			}
			pushed = append(pushed, msg)
			time.Sleep(150 * time.Millisecond)
		}
		done <- pushed
	}()
	want(t, s.waitCommits(1)[0], "promoted")
	pushed := <-done
	human := strings.Join(s.humanCommits(), "\n")
	for _, msg := range pushed {
		if !strings.Contains(human, msg) {
			t.Errorf("writer commit %q is missing from the branch", msg)
		}
	}
	if n := len(s.waitCommits(1)); n != 1 {
		t.Errorf("%d agent commits, want exactly 1", n)
	}
}

// rejectPushes makes the remote decline every push (a pre-receive hook).
func (s *scenario) rejectPushes(on bool) {
	s.t.Helper()
	hook := filepath.Join(s.remote, "hooks", "pre-receive")
	if !on {
		if err := os.Remove(hook); err != nil {
			s.t.Fatal(err)
		}
		return
	}
	if err := os.WriteFile(hook, []byte("#!/bin/sh\necho 'declined by test hook' >&2\nexit 1\n"), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// countResults counts agent commits with result whose source or reverted
// commit is src.
func countResults(commits []testenv.TrailerCommit, result, src string) int {
	n := 0
	for _, c := range commits {
		if c.Trailers["Tandem-Result"] == result && (c.Trailers["Tandem-Source"] == src || c.Trailers["Tandem-Reverts"] == src) {
			n++
		}
	}
	return n
}

// TestCrashAfterFlipBeforeCommit kills the agent when traffic has moved but
// its promotion commit could not land; the restarted agent commits exactly
// that promotion and keeps the selectors on the healthy new color.
func TestCrashAfterFlipBeforeCommit(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	s.rejectPushes(true)
	deadline := time.Now().Add(time.Minute)
	for s.selectors()["server"] != "green" {
		if time.Now().After(deadline) {
			t.Fatalf("the flip to green did not happen: %v\n%s", s.selectors(), s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitEvent("a declined push", time.Minute, phaseOf("commit", "", false))
	s.agent.Kill()
	s.rejectPushes(false)
	if got := s.selectors()["server"]; got != "green" {
		t.Fatalf("selector after the crash: %q", got)
	}
	s.start()
	commits := s.waitCommits(2)
	if n := countResults(commits, "promoted", v2); n != 1 {
		t.Fatalf("%d promotion commits for %s, want exactly 1: %+v", n, v2, commits)
	}
	s.settledAt("after the recovered commit") // a second promotion would need a candidate
	if n := countResults(s.waitCommits(2), "promoted", v2); n != 1 {
		t.Fatalf("%d promotion commits for %s after settling, want 1", n, v2)
	}
	s.wantSelectors("green", "server")
	if h := s.humanCommits(); len(h) != 2 {
		t.Errorf("human commits: %v, want 2", h)
	}
}

// TestCrashDuringVerification kills the agent while it waits for a color
// that never becomes ready; the restarted agent verifies again, fails, and
// writes exactly one revert, with traffic never moved.
func TestCrashDuringVerification(t *testing.T) {
	s := newScenario(t, "revert", "6s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2-unready")
	v2 := s.push("server v2 (never ready)")
	deadline := time.Now().Add(time.Minute)
	for !s.agent.LogContains(`"phase":"apply","color":"green"`) {
		if time.Now().After(deadline) {
			t.Fatalf("green was never applied:\n%s", s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.agent.Kill()
	s.wantSelectors("blue", "server")
	s.start()
	commits := s.waitCommits(2)
	want(t, commits[0], "reverted")
	if n := countResults(commits, "reverted", v2); n != 1 {
		t.Fatalf("%d reverts of %s, want 1", n, v2)
	}
	s.wantSelectors("blue", "server")
}
