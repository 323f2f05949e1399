package main

// Operations: what an operator sees of a running agent (/metrics, probes)
// and leader election between two replicas.

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandem-gitops/tandem/testenv"
)

// metricsURL waits for the agent's "serving" log line and returns its base URL.
func metricsURL(t *testing.T, a *testenv.Agent) string {
	t.Helper()
	re := regexp.MustCompile(`"addr":"([^"]+)","time":"[^"]+","message":"serving`)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		data, _ := os.ReadFile(a.Log)
		if m := re.FindStringSubmatch(string(data)); m != nil {
			return "http://" + m[1]
		}
	}
	t.Fatalf("the agent never logged its listen address:\n%s", a.LogTail())
	return ""
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// metric returns the value of the sample name{labels...} in a Prometheus
// text exposition; labels are "key=value" pairs that must all match.
func metric(text, name string, labels ...string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		set, value := "", rest
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			set, value = rest[1:end], rest[end+1:]
		}
		match := true
		for _, l := range labels {
			k, v, _ := strings.Cut(l, "=")
			if !strings.Contains(","+set+",", fmt.Sprintf(",%s=%q,", k, v)) {
				match = false
			}
		}
		if match {
			f, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// TestMetricsAndProbes: after a promotion and a revert, /metrics reports them
// per bundle and result, the phase durations, the live color and commit, the
// last sync time and the poll durations; /healthz and /readyz answer ok.
func TestMetricsAndProbes(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	start := time.Now()
	s.start()
	first := s.waitCommits(1)
	want(t, first[0], "promoted")
	s.setImage("server", "missing.invalid/server:v2")
	s.push("server v2")
	want(t, s.waitCommits(2)[0], "reverted")

	base := metricsURL(t, s.agent)
	for _, probe := range []string{"/healthz", "/readyz"} {
		if code, body := httpGet(t, base+probe); code != http.StatusOK {
			t.Errorf("%s: %d %s", probe, code, body)
		}
	}
	b := "bundle=" + s.ns
	checks := []struct {
		name   string
		labels []string
		ok     func(float64) bool
		want   string
	}{
		{"tandem_releases_total", []string{b, "result=promoted"}, func(v float64) bool { return v == 1 }, "1"},
		{"tandem_releases_total", []string{b, "result=reverted"}, func(v float64) bool { return v == 1 }, "1"},
		{"tandem_live_info", []string{b, "color=blue", "commit=" + first[0].Trailers["Tandem-Source"][:7]}, func(v float64) bool { return v == 1 }, "1"},
		{"tandem_phase_duration_seconds_count", []string{b, "phase=render"}, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"tandem_phase_duration_seconds_count", []string{b, "phase=apply"}, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"tandem_phase_duration_seconds_count", []string{b, "phase=verify"}, func(v float64) bool { return v >= 2 }, ">= 2"},
		{"tandem_phase_duration_seconds_count", []string{b, "phase=flip"}, func(v float64) bool { return v == 1 }, "1"},
		{"tandem_phase_duration_seconds_count", []string{b, "phase=commit"}, func(v float64) bool { return v == 2 }, "2"},
		{"tandem_last_sync_timestamp_seconds", nil, func(v float64) bool { return v >= float64(start.Unix()) }, "after the test started"},
		{"tandem_git_poll_duration_seconds_count", nil, func(v float64) bool { return v >= 2 }, ">= 2"},
	}
	// The commits are on the remote; the agent updates its metrics right
	// after each push returns, so read until they agree (or time out).
	var text string
	var failures []string
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		var code int
		code, text = httpGet(t, base+"/metrics")
		if code != http.StatusOK {
			t.Fatalf("/metrics: %d", code)
		}
		failures = nil
		for _, c := range checks {
			if v, ok := metric(text, c.name, c.labels...); !ok || !c.ok(v) {
				failures = append(failures, fmt.Sprintf("%s%v = %v (found %v), want %s", c.name, c.labels, v, ok, c.want))
			}
		}
		if len(failures) == 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, f := range failures {
		t.Error(f)
	}
	if _, ok := metric(text, "tandem_live_info", b, "color=green"); ok {
		t.Errorf("tandem_live_info reports green, where traffic never went:\n%s", text)
	}
}

// TestTwoReplicasNeverActAtOnce: two agents with leader election on the same
// repository and cluster; only the Lease holder acts, every release is
// committed once, and when the leader dies the other takes over.
func TestTwoReplicasNeverActAtOnce(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	lease := "tandem-" + s.ns
	replica := func(name string) *testenv.Agent { return s.leaderReplica(name, lease) }
	a, b := replica("a"), replica("b")
	want(t, s.waitCommits(1)[0], "promoted")
	leader, follower := a, b
	if b.LogContains(`"message":"leading"`) {
		leader, follower = b, a
	}
	if !leader.LogContains(`"message":"leading"`) || follower.LogContains(`"message":"leading"`) {
		t.Fatalf("want exactly one leader: a leading=%v, b leading=%v", a.LogContains(`"message":"leading"`), b.LogContains(`"message":"leading"`))
	}
	if follower.LogContains(`"phase":"apply"`) || follower.LogContains(`"phase":"candidate"`) {
		t.Fatalf("the follower acted while the other replica held the Lease")
	}

	// The leader dies without releasing the Lease; the follower takes over
	// once it expires and releases the next commit, exactly once.
	leader.Kill()
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	commits := s.waitCommits(2)
	want(t, commits[0], "promoted")
	if !follower.LogContains(`"message":"leading"`) {
		t.Errorf("the follower released v2 without holding the Lease")
	}
	s.agent = follower
	s.settledAt("after the takeover") // a second commit of v2 would need a candidate
	if all, err := testenv.AgentCommits(s.ctx, s.remote, "main"); err != nil || len(all) != 2 {
		t.Errorf("agent commits: %d (err %v), want 2: every release committed once", len(all), err)
	}
	s.wantSelectors("green", "server")
}

// TestDriftIsCorrectedAndSIGTERMIsGraceful: someone edits the cluster by hand
// (deletes the live Deployment, points a stable Service elsewhere); at the
// next --resync-interval the agent re-applies the live color and its stable
// twins. SIGTERM then stops the agent cleanly.
func TestDriftIsCorrectedAndSIGTERMIsGraceful(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start("--resync-interval", "2s")
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "server")

	if err := s.cs.AppsV1().Deployments(s.ns).Delete(s.ctx, "server-blue", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	patch := `{"spec":{"selector":{"tandem.dev/color":"green"}}}`
	if _, err := s.cs.CoreV1().Services(s.ns).Patch(s.ctx, "server", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, err := s.cs.AppsV1().Deployments(s.ns).Get(s.ctx, "server-blue", metav1.GetOptions{})
		if err == nil && s.selectors()["server"] == "blue" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drift not corrected within 30s: deployment err %v, selectors %v", err, s.selectors())
		}
	}
	if n := len(s.waitCommits(1)); n != 1 {
		t.Errorf("drift correction wrote %d commits, want none", n-1)
	}

	if err := s.agent.Stop(10 * time.Second); err != nil {
		t.Fatalf("SIGTERM: the agent did not exit cleanly: %v", err)
	}
	if !s.agent.LogContains(`"message":"stopped"`) {
		t.Errorf("no clean shutdown in the log:\n%s", s.agent.LogTail())
	}
}

// leaderReplica starts one replica of the agent with leader election on
// the Lease named lease, its log kept under name.
func (s *scenario) leaderReplica(name, lease string) *testenv.Agent {
	s.t.Helper()
	args := []string{"run", "--repo", "file://" + s.remote, "--kubeconfig", env.Kubeconfig,
		"--interval", "500ms", "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(s.work, name),
		"--root", "bundles/" + s.ns, "--leader-elect", "--leader-election-namespace", "default", "--leader-election-id", lease}
	a, err := testenv.StartAgent(agentBin, args, filepath.Join(s.work, name+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = a.Stop(10 * time.Second)
		if s.t.Failed() {
			s.t.Logf("%s log:\n%s", name, a.LogTail())
		}
	})
	return a
}
