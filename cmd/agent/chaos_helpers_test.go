package main

// Helpers for the chaos tests (crashes, outages, races): reading the agent's
// JSON log as events, hooks on the bare remote, and the invariants that must
// hold after every crash.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/testenv"
)

// logEvent is one JSON line of the agent's log.
type logEvent map[string]any

func (e logEvent) str(k string) string {
	s, _ := e[k].(string)
	return s
}

// events parses every JSON line of the agent's log so far.
func (s *scenario) events() []logEvent {
	data, err := os.ReadFile(s.agent.Log)
	if err != nil {
		return nil
	}
	var out []logEvent
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e logEvent
		if json.Unmarshal(sc.Bytes(), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// phaseOf matches an event of the given phase about commit (short or full; "" for any).
func phaseOf(phase, commit string, ok bool) func(logEvent) bool {
	return func(e logEvent) bool {
		if e.str("phase") != phase || (commit != "" && e.str("commit") != contract.Short(commit)) {
			return false
		}
		return ok == (e.str("error") == "")
	}
}

// waitEvent polls the agent's log until an event matches, and returns it.
func (s *scenario) waitEvent(what string, timeout time.Duration, match func(logEvent) bool) logEvent {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, e := range s.events() {
			if match(e) {
				return e
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s in the agent log after %s\n%s", what, timeout, s.agent.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hasEvent reports whether the agent's log has an event matching.
func (s *scenario) hasEvent(match func(logEvent) bool) bool {
	for _, e := range s.events() {
		if match(e) {
			return true
		}
	}
	return false
}

// slowHook installs a pre-receive or post-receive hook that touches marker,
// then sleeps before letting the push go on. pre-receive holds the push
// before the branch moves; post-receive after it moved, before the pusher
// hears back.
func (s *scenario) slowHook(kind, marker string, sleep time.Duration) {
	s.t.Helper()
	script := fmt.Sprintf("#!/bin/sh\ncat >/dev/null\ntouch %q\nsleep %s\nexit 0\n", marker, strconv.FormatFloat(sleep.Seconds(), 'f', 2, 64))
	if err := os.WriteFile(filepath.Join(s.remote, "hooks", kind), []byte(script), 0o755); err != nil {
		s.t.Fatal(err)
	}
}

// removeHooks removes every hook slowHook or rejectPushes installed.
func (s *scenario) removeHooks() {
	s.t.Helper()
	for _, kind := range []string{"pre-receive", "post-receive"} {
		if err := os.Remove(filepath.Join(s.remote, "hooks", kind)); err != nil && !os.IsNotExist(err) {
			s.t.Fatal(err)
		}
	}
}

// waitFile waits until path exists.
func (s *scenario) waitFile(path string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(path); err == nil {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s did not appear in %s (the agent never pushed)\n%s", path, timeout, s.agent.LogTail())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitOutcome waits until the branch has an agent commit (promoted or
// reverted) for candidate and returns the agent commits, newest first.
func (s *scenario) waitOutcome(candidate string, timeout time.Duration) []testenv.TrailerCommit {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		commits, err := testenv.AgentCommits(s.ctx, s.remote, "main")
		if err == nil && countResults(commits, "promoted", candidate)+countResults(commits, "reverted", candidate) > 0 {
			return commits
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no promotion or revert of %s after %s (err %v)\n%s", contract.Short(candidate), timeout, err, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledger is what a chaos test pushed and expects: every human commit, and
// for each candidate the result it must end with.
type ledger struct {
	humans     []string          // every commit a human pushed
	candidates []string          // commits that changed the bundle, in order
	expect     map[string]string // candidate → promoted | reverted
}

func newLedger() *ledger { return &ledger{expect: map[string]string{}} }

func (l *ledger) candidate(commit, result string) {
	l.humans = append(l.humans, commit)
	l.candidates = append(l.candidates, commit)
	l.expect[commit] = result
}

// invariants checks, after the agent settled, what must hold after any
// crash: the stable twins all select one color, never empty, whose
// workloads are healthy; release.yaml on the branch records that color as
// live; each candidate has exactly one promotion or revert commit, of the
// expected kind; every human commit is still on the branch. It returns the
// live color.
func (s *scenario) invariants(l *ledger, apps ...string) string {
	s.t.Helper()
	return s.invariantsIn(s.ns, l, apps...)
}

// liveWorkloadHealthy fails the test unless the Deployment name of a live
// color runs what a user would call a healthy release: spec.replicas pods
// of its current template (told by tandem's digest on the pod template), all
// Ready, and no pod of another template left. The agent judges readiness
// from the pods too (applier/readiness.go), so the Deployment's own status
// may still lag them: after an API server restart the controller-manager
// can take many seconds to count pods it missed. That status must then
// follow, within statusLag.
func (s *scenario) liveWorkloadHealthy(ns, name string) {
	s.t.Helper()
	const statusLag = time.Minute
	d, err := s.cs.AppsV1().Deployments(ns).Get(s.ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatalf("live Deployment %s: %v", name, err)
	}
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	digest := d.Spec.Template.Annotations[contract.AnnotationDigest]
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil {
		s.t.Fatalf("Deployment %s: selector: %v", name, err)
	}
	pods, err := s.cs.CoreV1().Pods(ns).List(s.ctx, metav1.ListOptions{LabelSelector: sel.String()})
	if err != nil {
		s.t.Fatalf("pods of Deployment %s: %v", name, err)
	}
	var ready int32
	var problems []string
	for _, p := range pods.Items {
		switch {
		case p.DeletionTimestamp != nil:
			// on its way out; the EndpointSlice controller has taken it
			// out of the Service's ready endpoints
		case digest == "" || p.Annotations[contract.AnnotationDigest] != digest:
			problems = append(problems, fmt.Sprintf("%s of another template (digest %q, want %q)", p.Name, p.Annotations[contract.AnnotationDigest], digest))
		case !podIsReady(&p):
			problems = append(problems, p.Name+" not Ready")
		default:
			ready++
		}
	}
	if want == 0 || ready != want || len(problems) > 0 {
		s.t.Fatalf("stable Services select Deployment %s, which has %d/%d Ready pods of its template: %v", name, ready, want, problems)
	}
	var st appsv1.DeploymentStatus
	err = wait.PollUntilContextTimeout(s.ctx, 100*time.Millisecond, statusLag, true, func(ctx context.Context) (bool, error) {
		d, err := s.cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		st = d.Status
		return st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == want && st.ReadyReplicas == want && st.AvailableReplicas == want, nil
	})
	if err != nil {
		s.t.Fatalf("stable Services select Deployment %s, whose pods are Ready but whose status did not follow within %s: replicas %d, status %+v: %v", name, statusLag, want, st, err)
	}
}

func podIsReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// invariantsIn is invariants for the bundle (and namespace) ns of the
// remote; the ledger's candidates are those of that bundle.
func (s *scenario) invariantsIn(ns string, l *ledger, apps ...string) string {
	s.t.Helper()
	sel := s.selectorsIn(ns)
	if len(sel) != len(apps) {
		s.t.Fatalf("stable Services %v, want one per app %v", sel, apps)
	}
	live := sel[apps[0]]
	for _, a := range apps {
		if sel[a] == "" || sel[a] != live {
			s.t.Fatalf("stable Services select %v: empty or mixed", sel)
		}
	}
	for _, a := range apps {
		s.liveWorkloadHealthy(ns, a+"-"+live)
	}
	file := "bundles/" + ns + "/release.yaml"
	data := s.git(s.remote, "show", "main:"+file)
	rel, err := promote.ParseRelease(file, []byte(data), [2]string{"blue", "green"})
	if err != nil {
		s.t.Fatalf("release.yaml on the branch: %v", err)
	}
	if rel.Live != live {
		s.t.Fatalf("release.yaml records live %q, the stable Services select %q:\n%s", rel.Live, live, data)
	}
	commits := s.bundleCommits(ns)
	for _, c := range l.candidates {
		p, r := countResults(commits, "promoted", c), countResults(commits, "reverted", c)
		if p+r != 1 {
			s.t.Fatalf("bundle %s: candidate %s has %d promotion and %d revert commits, want exactly one in all", ns, contract.Short(c), p, r)
		}
		if got := map[bool]string{true: "promoted", false: "reverted"}[p == 1]; got != l.expect[c] {
			s.t.Fatalf("candidate %s was %s, want %s", contract.Short(c), got, l.expect[c])
		}
	}
	if last := l.candidates[len(l.candidates)-1]; l.expect[last] == "promoted" && rel.Colors[live].Commit != last {
		s.t.Fatalf("release.yaml: live %s runs %s, want the last promoted candidate %s", live, contract.Short(rel.Colors[live].Commit), contract.Short(last))
	}
	for _, h := range l.humans {
		if _, err := testenv.Git(s.ctx, s.remote, "merge-base", "--is-ancestor", h, "main"); err != nil {
			s.t.Fatalf("human commit %s is no longer on the branch: %v", contract.Short(h), err)
		}
	}
	s.fidelity(ns)
	return live
}

// chaosSeed is the seed of the random timings: $TANDEM_CHAOS_SEED to replay
// a run, else the clock. Tests log it.
func chaosSeed() uint64 {
	if v := os.Getenv("TANDEM_CHAOS_SEED"); v != "" {
		if n, err := strconv.ParseUint(v, 10, 64); err == nil {
			return n
		}
	}
	return uint64(time.Now().UnixNano())
}

// lockedRand is a seeded source safe for the parallel phases.
type lockedRand struct {
	mu sync.Mutex
	r  *rand.Rand
}

func newLockedRand(seed uint64) *lockedRand {
	return &lockedRand{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// upTo returns a random duration in [0, d).
func (l *lockedRand) upTo(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Duration(l.r.Int64N(int64(d)))
}

// selectorsIn returns the color each stable Service of bundle ns selects.
func (s *scenario) selectorsIn(ns string) map[string]string {
	s.t.Helper()
	list, err := s.cs.CoreV1().Services(ns).List(s.ctx, metav1.ListOptions{LabelSelector: "tandem.dev/bundle=" + ns + ",!tandem.dev/color"})
	if err != nil {
		s.t.Fatal(err)
	}
	out := map[string]string{}
	for _, svc := range list.Items {
		out[svc.Name] = svc.Spec.Selector["tandem.dev/color"]
	}
	return out
}

// bundleCommits lists the agent commits of the branch for bundle, newest first.
func (s *scenario) bundleCommits(bundle string) []testenv.TrailerCommit {
	s.t.Helper()
	var out []testenv.TrailerCommit
	for _, c := range s.agentCommits() {
		if c.Trailers["Tandem-Bundle"] == bundle {
			out = append(out, c)
		}
	}
	return out
}

// transientErrors reads tandem_transient_errors_total{dependency=dep} from
// the agent's /metrics at base (0 when the series does not exist yet).
func transientErrors(t *testing.T, base, dep string) float64 {
	t.Helper()
	code, body := httpGet(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET %s/metrics: %d", base, code)
	}
	v, _ := metric(body, "tandem_transient_errors_total", "dependency="+dep)
	return v
}

// guardSelectors watches the stable Services of bundle ns for the rest of
// the test and records every moment one of them selects no color. The
// returned func reports how many Service versions were seen and the
// violations.
func (s *scenario) guardSelectors(ns string) func() (seen int, empty []string) {
	var bad []string
	stop := testenv.WatchServices(s.ctx, s.cs, ns, metav1.ListOptions{LabelSelector: testenv.StableSelector(ns)},
		func(t watch.EventType, svc *corev1.Service) {
			if t != watch.Deleted && svc.Spec.Selector["tandem.dev/color"] == "" {
				bad = append(bad, fmt.Sprintf("%s %s/%s selector %v", t, ns, svc.Name, svc.Spec.Selector))
			}
		})
	return func() (int, []string) { return stop(), bad }
}

// settledAt waits until the agent has processed the tip of main (its sync
// event for that commit) and fails the test if that pass handed any bundle
// a candidate: then nothing more happens until a new commit arrives.
func (s *scenario) settledAt(why string) {
	s.t.Helper()
	tip := s.git(s.remote, "rev-parse", "main")
	e := s.waitEvent("sync of "+contract.Short(tip)+" ("+why+")", time.Minute, phaseOf("sync", tip, true))
	if n, _ := e["candidates"].(float64); n != 0 {
		s.t.Fatalf("%s: the agent made %v candidates of its own tip %s", why, n, contract.Short(tip))
	}
}
