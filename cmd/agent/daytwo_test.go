package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/testenv"
)

// leaseDuration is the agent's leader Lease duration (leader.go).
const leaseDuration = 15 * time.Second

// TestUpgradeHandsOverWithoutAStall is `helm upgrade` of the agent with the
// chart's RollingUpdate: the new replica starts while the old one holds the
// Lease and must be Ready as a standby (else the rollout stalls); the old
// one is then stopped, and the new one takes the Lease within the Lease
// duration and releases the commit pushed meanwhile.
func TestUpgradeHandsOverWithoutAStall(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	lease := "tandem-" + s.ns
	replica := func(name string) *testenv.Agent {
		args := []string{"run", "--repo", "file://" + s.remote, "--kubeconfig", env.Kubeconfig,
			"--interval", "500ms", "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(s.work, name),
			"--root", "bundles/" + s.ns, "--leader-elect", "--leader-election-namespace", "default", "--leader-election-id", lease}
		a, err := testenv.StartAgent(agentBin, args, filepath.Join(s.work, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = a.Stop(10 * time.Second)
			if t.Failed() {
				t.Logf("%s log:\n%s", name, a.LogTail())
			}
		})
		return a
	}
	old := replica("old")
	s.agent = old
	want(t, s.waitCommits(1)[0], "promoted")
	if !old.LogContains(`"message":"leading"`) {
		t.Fatal("the only replica does not lead")
	}
	next := replica("new")
	base := metricsURL(t, next)
	if code, body := waitStatus(t, base+"/readyz", http.StatusOK, time.Minute); code != http.StatusOK || !strings.Contains(body, "standby") {
		t.Fatalf("the new replica's /readyz while the old one leads: %d %q, want 200 (standby)", code, body)
	}
	if next.LogContains(`"message":"leading"`) {
		t.Fatal("the new replica leads while the old one holds the Lease")
	}
	if code, body := httpGet(t, metricsURL(t, old)+"/readyz"); code != http.StatusOK {
		t.Errorf("the leader's /readyz: %d %q", code, body)
	}

	// The rollout stops the old replica (SIGTERM: it releases the Lease),
	// with a commit waiting.
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	if err := old.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop the old replica: %v", err)
	}
	stopped := time.Now()
	for !next.LogContains(`"message":"leading"`) {
		if time.Since(stopped) > leaseDuration {
			t.Fatalf("the new replica did not take the Lease within %s of the old one stopping", leaseDuration)
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.agent = next
	commits := s.waitCommits(2)
	want(t, commits[0], "promoted")
	if got := commits[0].Trailers["Tandem-Source"]; got != s.git(s.remote, "rev-parse", "main~1") {
		t.Errorf("the new replica promoted %s, want the commit pushed during the upgrade", got)
	}
	if code, body := waitStatus(t, base+"/readyz", http.StatusOK, time.Minute); code != http.StatusOK || strings.Contains(body, "standby") {
		t.Errorf("the new leader's /readyz: %d %q, want 200 as the acting replica", code, body)
	}
}

// TestWedgedLoopFailsLiveness: a Git server that accepts the connection and
// never answers, with a Git timeout longer than the liveness bound, wedges
// the sync pass; /healthz turns 503 (so the kubelet restarts the agent),
// while /readyz still says the first sync never finished.
func TestWedgedLoopFailsLiveness(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // hold it open, say nothing
		}
	}()
	work := t.TempDir()
	a, err := testenv.StartAgent(agentBin, []string{"run", "--repo", "http://" + ln.Addr().String() + "/shop.git",
		"--kubeconfig", env.Kubeconfig, "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(work, "agent"),
		"--git-timeout", "1h", "--liveness-timeout", "2s"}, filepath.Join(work, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = a.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("agent log:\n%s", a.LogTail())
		}
	})
	base := metricsURL(t, a)
	code, body := waitStatus(t, base+"/healthz", http.StatusServiceUnavailable, time.Minute)
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "no progress") {
		t.Fatalf("/healthz with a wedged loop: %d %q, want 503 naming the stall", code, body)
	}
	if code, _ := httpGet(t, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz before any sync: %d, want 503", code)
	}
}

// waitStatus polls url until it answers want (or timeout) and returns the
// last answer.
func waitStatus(t *testing.T, url string, want int, timeout time.Duration) (int, string) {
	t.Helper()
	var code int
	var body string
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		code, body = httpGet(t, url)
		if code == want || time.Now().After(deadline) {
			return code, body
		}
	}
}

// TestSuspendFromGit: spec.suspend: true pauses a bundle during an
// incident: a change pushed meanwhile is not released (the stable Services
// stay), the log, an Event and the state gauge say so; removing the field
// releases what changed meanwhile.
func TestSuspendFromGit(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	base := metricsURL(t, s.agent)
	s.waitMetric(base, "tandem_bundle_state", []string{"bundle=" + s.ns, "state=live"}, 1)
	if _, ok := s.metricNow(base, "tandem_build_info"); !ok {
		t.Error("no tandem_build_info")
	}

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	appendSpec(s, "bundles/"+s.ns, "  suspend: true\n")
	s.setImage("server", "example/server:v2")
	paused := s.push("suspend during the incident, and a change")
	s.waitEvent("the suspend note", time.Minute, func(e logEvent) bool { return e.str("phase") == "suspend" })
	s.settledAt("suspended") // the tip made no candidate
	if ev := s.waitEventReason("Suspended"); !strings.Contains(ev.Message, "suspended") {
		t.Errorf("Suspended event: %q", ev.Message)
	}
	s.waitMetric(base, "tandem_bundle_state", []string{"bundle=" + s.ns, "state=suspended"}, 1)
	if commits, err := testenv.AgentCommits(s.ctx, s.remote, "main"); err != nil || len(commits) != 1 {
		t.Fatalf("agent commits while suspended: %d (%v), want 1", len(commits), err)
	}
	s.wantSelectors("blue", "server")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	data, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "bundle.yaml"))
	must(t, err)
	s.write("bundles/"+s.ns+"/bundle.yaml", strings.Replace(string(data), "  suspend: true\n", "", 1))
	s.push("resume")
	commits := s.waitCommits(2)
	want(t, commits[0], "promoted")
	s.wantSelectors("green", "server")
	if got := s.git(s.remote, "show", commits[0].Hash+":bundles/"+s.ns+"/app/server.yaml"); !strings.Contains(got, "example/server:v2") {
		t.Errorf("after resuming the live release lacks the change made while suspended (%s):\n%s", contract.Short(paused), got)
	}
	s.waitMetric(base, "tandem_bundle_state", []string{"bundle=" + s.ns, "state=live"}, 1)
}

// metricNow reads one sample from the agent's /metrics.
func (s *scenario) metricNow(base, name string, labels ...string) (float64, bool) {
	s.t.Helper()
	code, body := httpGet(s.t.(*testing.T), base+"/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics: %d", code)
	}
	return metric(body, name, labels...)
}

// waitMetric waits up to a minute until name{labels} is want.
func (s *scenario) waitMetric(base, name string, labels []string, want float64) {
	s.t.Helper()
	var v float64
	var ok bool
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if v, ok = s.metricNow(base, name, labels...); ok && v == want {
			return
		}
	}
	s.t.Fatalf("%s%v = %v (found %v), want %v", name, labels, v, ok, want)
}
