package promote

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/check"

	"github.com/tandem-gitops/tandem/contract"
)

// The driver against small in-package fakes of its roles. The real apply,
// health and flip are tested on the control plane (applier, cmd/agent);
// here the subject is what the driver does with them: the order of
// effects, newest wins, the concurrency slot and the retries.

// calls is an ordered log of effects, shared by a fake cluster and Git.
type calls struct {
	mu  sync.Mutex
	log []string
	ch  chan string // every call, as it happens
}

func newCalls() *calls { return &calls{ch: make(chan string, 100)} }

func (c *calls) add(s string) {
	c.mu.Lock()
	c.log = append(c.log, s)
	c.mu.Unlock()
	c.ch <- s
}

func (c *calls) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.log...)
}

// await waits for a call with prefix and returns it.
func (c *calls) await(t *testing.T, prefix string) string {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-c.ch:
			if strings.HasPrefix(s, prefix) {
				return s
			}
		case <-timeout:
			t.Fatalf("no call %q; calls: %v", prefix, c.all())
		}
	}
}

// fakeCluster records each effect. A verification or watch of a commit in
// block waits until ctx ends or the test sends on the commit's channel.
type fakeCluster struct {
	calls *calls
	view  View
	mu    sync.Mutex
	block map[string]chan error // by commit: the verify/watch result
	// deploys is the options of every Deploy, in order (mu).
	deploys []DeployOptions
}

func (f *fakeCluster) blocker(commit string) chan error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.block == nil {
		f.block = map[string]chan error{}
	}
	if f.block[commit] == nil {
		f.block[commit] = make(chan error, 1)
	}
	return f.block[commit]
}

func (f *fakeCluster) wait(ctx context.Context, commit string) error {
	f.mu.Lock()
	ch := f.block[commit]
	f.mu.Unlock()
	if ch == nil {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case err := <-ch:
		return err
	}
}

type changes string

func (c changes) String() string { return string(c) }

func (f *fakeCluster) Observe(context.Context) (View, error) {
	f.calls.add("observe")
	return f.view, nil
}
func (f *fakeCluster) Deploy(_ context.Context, color string, rel ReleaseRef, o DeployOptions) (fmt.Stringer, error) {
	f.calls.add(fmt.Sprintf("deploy %s %s", color, rel.Commit))
	f.mu.Lock()
	f.deploys = append(f.deploys, o)
	f.mu.Unlock()
	return changes("2 configured"), nil
}
func (f *fakeCluster) Scale(_ context.Context, color string, up bool) error {
	f.calls.add(fmt.Sprintf("scale %s up=%v", color, up))
	return nil
}
func (f *fakeCluster) Verify(ctx context.Context, color string, rel ReleaseRef, _ time.Duration) (fmt.Stringer, error) {
	f.calls.add(fmt.Sprintf("verify %s %s", color, rel.Commit))
	return changes("2/2 ready"), f.wait(ctx, rel.Commit)
}
func (f *fakeCluster) Watch(ctx context.Context, color string, rel ReleaseRef, _ time.Duration) error {
	f.calls.add(fmt.Sprintf("watch %s %s", color, rel.Commit))
	return f.wait(ctx, "watch "+rel.Commit)
}
func (f *fakeCluster) Check(ctx context.Context, color string, rel ReleaseRef, cs []check.Spec) (check.Results, error) {
	var names []string
	for _, c := range cs {
		names = append(names, c.Name)
	}
	f.calls.add(fmt.Sprintf("check %s %s %s", color, rel.Commit, strings.Join(names, ",")))
	err := f.wait(ctx, "check "+rel.Commit)
	var rs check.Results
	for _, c := range cs {
		r := check.Result{Name: c.Name, Kind: c.Kind(), When: c.When, Color: color, Verdict: check.Passed}
		if err != nil {
			r.Verdict, r.Values = check.Failed, []string{"0.5"}
			err = &check.Error{Results: check.Results{r}}
		}
		rs = append(rs, r)
	}
	return rs, err
}
func (f *fakeCluster) Route(_ context.Context, color string, rel ReleaseRef) error {
	f.calls.add(fmt.Sprintf("route %s %s", color, rel.Commit))
	return nil
}

// fakeGit records commits; the first fail writes return errs in turn.
type fakeGit struct {
	calls *calls
	mu    sync.Mutex
	errs  []error
	n     int
}

func (g *fakeGit) Write(_ context.Context, c Commit) (string, int, error) {
	g.mu.Lock()
	var err error
	if len(g.errs) > 0 {
		err, g.errs = g.errs[0], g.errs[1:]
	}
	g.n++
	n := g.n
	g.mu.Unlock()
	subject, _, _ := strings.Cut(c.Message, "\n")
	if err != nil {
		g.calls.add("write failed: " + subject)
		return "", 0, err
	}
	g.calls.add("write " + c.Result + ": " + subject)
	return fmt.Sprintf("agent%d", n), 1, nil
}

// harness runs one driver until the test ends.
type harness struct {
	t      *testing.T
	calls  *calls
	cl     *fakeCluster
	git    *fakeGit
	d      *Driver
	notes  chan Note
	sleeps []time.Duration
	mu     sync.Mutex
}

func startDriver(t *testing.T, rel *Release, view View, policy Policy, sem chan struct{}, calls *calls, gitErrs ...error) *harness {
	t.Helper()
	h := &harness{t: t, calls: calls, notes: make(chan Note, 1000)}
	h.cl = &fakeCluster{calls: calls, view: view}
	h.git = &fakeGit{calls: calls, errs: gitErrs}
	base := State{Bundle: "shop", Colors: [2]string{"blue", "green"}, Policy: policy}
	h.d = NewDriver(base, rel, h.cl, h.git, sem, func(n Note) { h.notes <- n })
	h.d.sleep = func(ctx context.Context, d time.Duration) bool {
		h.mu.Lock()
		h.sleeps = append(h.sleeps, d)
		h.mu.Unlock()
		return ctx.Err() == nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); h.d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func liveBlue() *Release {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	return &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: "shop", Live: "blue",
		Colors: map[string]ColorRelease{"blue": {Commit: "v1", Digest: "sha256:1", State: StateLive, PromotedAt: &at}}}
}

func blueView() View {
	return View{Live: "blue", Colors: map[string]ColorView{"blue": {Commit: "v1", Digest: "sha256:1", Healthy: true, Replicas: 1, Ready: 1}}}
}

var revertPolicy = Policy{OnFailure: OnFailureRevert, HealthTimeout: time.Minute, ScaleDownNever: true}

func offer(d *Driver, commit string) {
	d.Offer(Candidate{Commit: commit, Subject: "change " + commit, Digest: "sha256:" + commit, Policy: revertPolicy})
}

// A newer commit that arrives while the older one is being verified cancels
// that verification; only the newer one is promoted.
func TestDriverNewestWinsMidVerification(t *testing.T) {
	c := newCalls()
	h := startDriver(t, liveBlue(), blueView(), revertPolicy, make(chan struct{}, 1), c)
	h.cl.blocker("v2") // v2's verification never ends on its own
	offer(h.d, "v2")
	c.await(t, "verify green v2")
	offer(h.d, "v3")
	c.await(t, "write promoted: tandem: promote shop to green (v3)")
	want := []string{"observe", "deploy green v2", "verify green v2", "deploy green v3", "verify green v3", "route green v3",
		"write promoted: tandem: promote shop to green (v3)"}
	if got := c.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("effects:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// A soak only watches: while one bundle soaks, another bundle sharing a
// single concurrency slot is released.
func TestDriverGivesItsSlotAwayDuringASoak(t *testing.T) {
	sem := make(chan struct{}, 1)
	soak := revertPolicy
	soak.Soak, soak.ScaleDownNever = time.Hour, false
	soak.ScaleDownAfter = time.Hour
	ca, cb := newCalls(), newCalls()
	warm := blueView()
	warm.Colors["green"] = ColorView{Commit: "v0", Digest: "sha256:0", Healthy: true, Replicas: 1, Ready: 1}
	rel := liveBlue()
	rel.Colors["green"] = ColorRelease{Commit: "v0", Digest: "sha256:0", State: StatePrevious}
	a := startDriver(t, rel, warm, soak, sem, ca)
	ca.await(t, "observe")
	a.cl.blocker("watch v2")
	a.d.Offer(Candidate{Commit: "v2", Digest: "sha256:v2", Policy: soak})
	ca.await(t, "watch green v2")

	b := startDriver(t, liveBlue(), blueView(), revertPolicy, sem, cb)
	offer(b.d, "w2")
	cb.await(t, "write promoted:") // b promotes while a soaks

	a.cl.blocker("watch v2") <- nil // the soak ends well
	for n := range a.notes {
		if n.Phase == NoteSoak {
			if n.Err != nil {
				t.Fatalf("soak note: %+v", n)
			}
			break
		}
	}
}

// A verification only watches: while one bundle waits for its idle color's
// health, another bundle sharing a single concurrency slot is released, and
// the first still promotes only after its verification passed.
func TestDriverGivesItsSlotAwayDuringVerification(t *testing.T) {
	sem := make(chan struct{}, 1)
	ca, cb := newCalls(), newCalls()
	a := startDriver(t, liveBlue(), blueView(), revertPolicy, sem, ca)
	verified := a.cl.blocker("v2")
	offer(a.d, "v2")
	ca.await(t, "verify green v2")

	b := startDriver(t, liveBlue(), blueView(), revertPolicy, sem, cb)
	offer(b.d, "w2")
	cb.await(t, "write promoted:") // b promotes while a verifies
	if got := strings.Join(ca.all(), "\n"); strings.Contains(got, "route") || strings.Contains(got, "write") {
		t.Fatalf("a acted before its verification ended:\n%s", got)
	}

	verified <- nil
	ca.await(t, "write promoted: tandem: promote shop to green (v2)")
}

// A commit that cannot be written is retried with the Git policy until it
// lands; the flip it records is never given up.
func TestDriverRetriesTheOutcomeCommit(t *testing.T) {
	c := newCalls()
	down := errors.New("dial tcp 127.0.0.1:22: connection refused")
	h := startDriver(t, liveBlue(), blueView(), revertPolicy, make(chan struct{}, 1), c, down, down, down)
	offer(h.d, "v2")
	c.await(t, "write promoted:")
	if n := strings.Count(strings.Join(c.all(), "\n"), "write failed"); n != 3 {
		t.Fatalf("%d failed writes before the commit landed, want 3: %v", n, c.all())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.sleeps) != 3 || h.sleeps[2] < 4*time.Second || h.sleeps[2] > 5*time.Second {
		t.Fatalf("waits between attempts %v, want three growing to the 4s cap (plus jitter)", h.sleeps)
	}
}

// A revert that a newer human commit supersedes is given up, and the driver
// goes on with the next candidate.
func TestDriverGivesUpASupersededRevert(t *testing.T) {
	c := newCalls()
	h := startDriver(t, liveBlue(), blueView(), revertPolicy, make(chan struct{}, 1), c, ErrSuperseded)
	h.cl.blocker("v2") <- errors.New("server-green: ImagePullBackOff")
	offer(h.d, "v2")
	c.await(t, "write failed: Revert")
	offer(h.d, "v3")
	c.await(t, "write promoted: tandem: promote shop to green (v3)")
	log := strings.Join(c.all(), "\n")
	if strings.Count(log, "Revert") != 1 {
		t.Fatalf("the superseded revert was retried:\n%s", log)
	}
	if !strings.Contains(log, "scale green up=false\nwrite failed: Revert") {
		t.Fatalf("the failed color was not taken out before the revert:\n%s", log)
	}
}

// After a restart in which the flip happened but its commit did not, the
// driver commits that promotion before it takes any new candidate.
func TestDriverRecoversBeforeTakingCandidates(t *testing.T) {
	c := newCalls()
	view := blueView()
	view.Live = "green"
	view.Colors["green"] = ColorView{Commit: "v2", Digest: "sha256:2", Healthy: true, Replicas: 1, Ready: 1}
	h := &harness{}
	sem := make(chan struct{}, 1)
	h.cl = &fakeCluster{calls: c, view: view}
	h.git = &fakeGit{calls: c}
	d := NewDriver(State{Bundle: "shop", Colors: [2]string{"blue", "green"}, Policy: revertPolicy}, liveBlue(), h.cl, h.git, sem, nil)
	offer(d, "v3") // waiting before the driver even starts
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); d.Run(ctx) }()
	defer func() { cancel(); <-done }()
	c.await(t, "write promoted: tandem: promote shop to blue (v3)")
	want := []string{"observe", "write promoted: tandem: promote shop to green (v2)",
		"deploy blue v3", "verify blue v3", "route blue v3", "write promoted: tandem: promote shop to blue (v3)"}
	if got := c.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("effects:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
	refs, ok := d.InUse()
	if got := fmt.Sprint(refs); !ok || !strings.Contains(got, "{v3 sha256:v3}") || !strings.Contains(got, "{v2 sha256:2}") {
		t.Fatalf("in use after recovery and a release: %v %v, want v3 live and v2 previous", refs, ok)
	}
}

// A newer commit that arrives while the verify checks run stops them; the
// older commit never gets traffic.
func TestDriverNewestWinsMidCheck(t *testing.T) {
	c := newCalls()
	checked := revertPolicy
	checked.Checks = []check.Spec{{Name: "smoke", When: check.WhenVerify, Job: &check.Job{}}}
	h := startDriver(t, liveBlue(), blueView(), checked, make(chan struct{}, 1), c)
	h.cl.blocker("check v2") // v2's check never ends on its own
	h.d.Offer(Candidate{Commit: "v2", Digest: "sha256:v2", Policy: checked})
	c.await(t, "check green v2 smoke")
	h.d.Offer(Candidate{Commit: "v3", Digest: "sha256:v3", Policy: checked})
	c.await(t, "write promoted: tandem: promote shop to green (v3)")
	want := []string{"observe", "deploy green v2", "verify green v2", "check green v2 smoke", "deploy green v3", "verify green v3",
		"check green v3 smoke", "route green v3", "write promoted: tandem: promote shop to green (v3)"}
	if got := c.all(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("effects:\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

// Soak checks run beside the soak's health watch; the first to fail ends
// both, and traffic goes back.
func TestDriverSoakCheckFailureEndsTheSoak(t *testing.T) {
	c := newCalls()
	soak := revertPolicy
	soak.Soak = time.Hour
	soak.Checks = []check.Spec{{Name: "errors", When: check.WhenSoak, Prometheus: &check.Prometheus{}}}
	warm := blueView()
	warm.Colors["green"] = ColorView{Commit: "v0", Digest: "sha256:0", Healthy: true, Replicas: 1, Ready: 1}
	rel := liveBlue()
	rel.Colors["green"] = ColorRelease{Commit: "v0", Digest: "sha256:0", State: StatePrevious}
	h := startDriver(t, rel, warm, soak, make(chan struct{}, 1), c)
	c.await(t, "observe")
	h.cl.blocker("watch v2") // healthy for the whole (hour-long) soak
	h.cl.blocker("check v2") <- errors.New("error ratio 0.2")
	h.d.Offer(Candidate{Commit: "v2", Subject: "change v2", Digest: "sha256:v2", Policy: soak})
	c.await(t, "write reverted:")
	got := strings.Join(c.all(), "\n")
	for _, w := range []string{"watch green v2", "check green v2 errors", "route blue v1", "write reverted: Revert \"change v2\" in bundle shop"} {
		if !strings.Contains(got, w) {
			t.Errorf("effects lack %q:\n%s", w, got)
		}
	}
}

// Only a Deploy that a verification follows asks the Deployer to watch
// ahead: not the re-apply of a resync, whose watches nothing would take.
func TestDriverSaysWhichDeploysAreVerified(t *testing.T) {
	c := newCalls()
	a := startDriver(t, liveBlue(), blueView(), revertPolicy, make(chan struct{}, 1), c)
	offer(a.d, "v2")
	c.await(t, "write promoted: tandem: promote shop to green (v2)")
	a.d.Resync()
	c.await(t, "route green v2")
	a.cl.mu.Lock()
	defer a.cl.mu.Unlock()
	want := []DeployOptions{{Shared: true, Verify: true}, {Shared: true}}
	if !slices.Equal(a.cl.deploys, want) {
		t.Fatalf("deploys %+v, want %+v (the candidate's verified, the resync's not)", a.cl.deploys, want)
	}
}
