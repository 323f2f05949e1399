package promote

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tandem-gitops/tandem/check"
)

// Driver performs Step's decisions for one bundle: it feeds Step the events
// from outside (a candidate, a resync, a due scale-down, a restart), performs
// each decision through the Cluster and Git roles and feeds the outcome back.
// It decides nothing itself. Create it with NewDriver and start Run.
type Driver struct {
	cluster Cluster
	git     Git
	notify  func(Note)
	sem     chan struct{} // shared bound on bundles releasing at once
	now     func() time.Time
	sleep   func(ctx context.Context, d time.Duration) bool

	st         State
	candidates chan Candidate
	resync     chan struct{}
	suspend    chan bool
	suspended  atomic.Bool // what the driver was last told
	summary    BundleState // the last state reported
	holding    bool        // this driver holds a slot of sem

	mu     sync.Mutex
	cancel context.CancelFunc // cancels a verification or soak in flight
	inUse  []ReleaseRef       // the releases the state refers to, for InUse
	// recovered: the start-up recovery is over, so inUse is complete.
	recovered bool
}

// NewDriver returns the driver of a bundle whose state starts at base
// (bundle name, colors, policy) and whose release.yaml is rel (nil when
// there is none). sem bounds how many drivers release at once.
func NewDriver(base State, rel *Release, cluster Cluster, git Git, sem chan struct{}, notify func(Note)) *Driver {
	if notify == nil {
		notify = func(Note) {}
	}
	base.Release = rel
	d := &Driver{cluster: cluster, git: git, notify: notify, sem: sem, now: time.Now, sleep: sleepCtx,
		st: base, candidates: make(chan Candidate, 1), resync: make(chan struct{}, 1), suspend: make(chan bool, 1)}
	d.inUse = refsOf(base)
	return d
}

// Offer hands the driver a candidate. The newest wins: it replaces one not
// yet taken and cancels a verification or soak in flight.
func (d *Driver) Offer(c Candidate) {
	select {
	case <-d.candidates:
	default:
	}
	d.candidates <- c
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.cancel != nil {
		d.cancel()
	}
}

// Suspend tells the driver whether spec.suspend is set; only a change is
// stepped (EvSuspend).
func (d *Driver) Suspend(on bool) {
	if d.suspended.Swap(on) == on {
		return
	}
	select {
	case <-d.suspend:
	default:
	}
	d.suspend <- on
}

// Resync asks the driver to re-apply its live color.
func (d *Driver) Resync() {
	select {
	case d.resync <- struct{}{}:
	default:
	}
}

// InUse lists the releases the driver's state refers to (live, previous,
// displaced, candidate): the renders the cluster adapter must keep. ok is
// false until recovery after a start is over (any release may be needed).
func (d *Driver) InUse() (refs []ReleaseRef, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]ReleaseRef(nil), d.inUse...), d.recovered
}

// Run recovers from a restart, then releases candidates, resyncs and scales
// down the previous color until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	d.run(ctx, Event{Kind: EvStart})
	d.releaseSlot() // a resumed soak takes a slot to act on its outcome
	d.mu.Lock()
	d.recovered = true
	d.mu.Unlock()
	for ctx.Err() == nil {
		d.next(ctx)
	}
}

// next waits for one event from outside and steps it.
func (d *Driver) next(ctx context.Context) {
	var due <-chan time.Time
	if at := d.st.ScaleDownTimer(); !at.IsZero() {
		t := time.NewTimer(time.Until(at))
		defer t.Stop()
		due = t.C
	}
	select {
	case <-ctx.Done():
	case c := <-d.candidates:
		d.release(ctx, c)
	case <-d.resync:
		d.run(ctx, Event{Kind: EvResync})
	case on := <-d.suspend:
		d.run(ctx, Event{Kind: EvSuspend, On: on})
	case <-due:
		d.run(ctx, Event{Kind: EvScaleDownDue})
	}
}

// release takes one candidate through Step until it settles, holding a
// concurrency slot meanwhile.
func (d *Driver) release(ctx context.Context, c Candidate) {
	select {
	case d.sem <- struct{}{}:
		d.holding = true
		defer d.releaseSlot()
	case <-ctx.Done():
		return
	}
	d.notify(Note{Phase: NoteCandidate, Commit: c.Commit, Detail: c.Digest})
	d.run(ctx, Event{Kind: EvCandidate, Candidate: &c})
}

// run steps ev and performs the decisions that follow until one needs no
// further step (or ctx ends).
func (d *Driver) run(ctx context.Context, ev Event) {
	for ctx.Err() == nil {
		ev.At = d.now()
		st, dec := Step(d.st, ev)
		d.setState(st)
		if n := dec.Say; n != nil {
			if n.Commit == "" {
				n.Commit = d.commit()
			}
			d.notify(*n)
		}
		if dec.Action == ActNone {
			return
		}
		var ok bool
		if ev, ok = d.do(ctx, dec); !ok {
			return
		}
	}
}

func (d *Driver) setState(st State) {
	d.st = st
	if sum := Summary(st); sum != d.summary {
		d.summary = sum
		d.notify(Note{Phase: NoteState, State: sum})
	}
	d.mu.Lock()
	d.inUse = refsOf(st)
	d.mu.Unlock()
}

// refsOf lists the releases st refers to.
func refsOf(st State) []ReleaseRef {
	var refs []ReleaseRef
	if st.LiveDigest != "" {
		refs = append(refs, st.liveRef())
	}
	if st.PrevDigest != "" {
		refs = append(refs, st.prevRef())
	}
	if st.Displaced != nil {
		refs = append(refs, *st.Displaced)
	}
	if c := st.Candidate; c != nil && c.Digest != "" {
		refs = append(refs, c.Ref())
	}
	return refs
}

// commit is the candidate's commit, for notes.
func (d *Driver) commit() string {
	if c := d.st.Candidate; c != nil {
		return c.Commit
	}
	return ""
}

// do performs one decision and returns the event it produced; ok is false
// when ctx ended.
func (d *Driver) do(ctx context.Context, dec Decision) (ev Event, ok bool) {
	start := time.Now()
	note := func(phase NotePhase, detail string, err error) {
		d.notify(Note{Phase: phase, Color: dec.Color, Commit: d.commit(), Detail: detail,
			Duration: time.Since(start), Err: err, Warn: err != nil})
	}
	switch dec.Action {
	case ActRetry:
		if dec.Redo.Action != ActRecord && dec.Redo.Action != ActObserve {
			note(NoteRetry, string(dec.Redo.Action), nil)
		}
		if !d.sleep(ctx, wait.Jitter(dec.After, dec.Jitter)) {
			return ev, false
		}
		return d.do(ctx, *dec.Redo)
	case ActObserve:
		v, err := d.cluster.Observe(ctx)
		ev = Event{Kind: EvObserved, View: v, Err: err}
	case ActDeploy:
		changes, err := d.cluster.Deploy(ctx, dec.Color, dec.Ref, DeployOptions{Shared: true, Verify: true})
		n := Note{Phase: NoteApply, Color: dec.Color, Commit: d.commit(), Detail: str(changes),
			Duration: time.Since(start), Err: err, Warn: err != nil}
		if p, ok := changes.(interface{ PrunedCount() int }); ok {
			n.Pruned = p.PrunedCount()
		}
		d.notify(n)
		ev = Event{Kind: EvDeployed, Err: err}
	case ActVerify:
		return d.verify(ctx, dec)
	case ActCheck:
		return d.check(ctx, dec)
	case ActFlip:
		err := d.cluster.Route(ctx, dec.Color, dec.Ref)
		n := Note{Phase: NoteFlip, Color: dec.Color, Commit: d.commit(), Detail: "stable Services switched",
			Duration: time.Since(start), Err: err, Warn: err != nil}
		if dec.Warm {
			n.Detail, n.Reason = "warm flip-back: the previous color already runs this release", ReasonWarmFlip
		}
		d.notify(n)
		ev = Event{Kind: EvFlipped, Err: err}
	case ActRecord:
		ev = d.record(ctx, dec, start)
	case ActPropose:
		ev = d.propose(ctx, dec, start)
	case ActWithdraw:
		ev = d.withdraw(ctx, dec)
	case ActSoak:
		return d.soak(ctx, dec)
	case ActFlipBack:
		err := d.cluster.Route(ctx, dec.Color, dec.Ref)
		note(NoteFlipBack, "", err)
		ev = Event{Kind: EvFlippedBack, Err: err}
	case ActFail:
		var err error
		switch {
		case dec.Restore != nil:
			_, err = d.cluster.Deploy(ctx, dec.Color, *dec.Restore, DeployOptions{})
		case dec.Color != "":
			err = d.cluster.Scale(ctx, dec.Color, false)
		}
		ev = Event{Kind: EvTakenOut, Err: err}
	case ActReroute:
		err := d.cluster.Route(ctx, dec.Color, dec.Ref)
		note(NoteRecover, "stable Services put back on the recorded live color", err)
		ev = Event{Kind: EvRerouted, Err: err}
	case ActResync:
		_, err := d.cluster.Deploy(ctx, dec.Color, dec.Ref, DeployOptions{Shared: true})
		if err == nil {
			err = d.cluster.Route(ctx, dec.Color, dec.Ref)
		}
		note(NoteResync, "", err)
		ev = Event{Kind: EvDeployed, Err: err}
	case ActScale:
		err := d.cluster.Scale(ctx, dec.Color, false)
		detail := "previous color scaled to zero"
		if err != nil {
			detail = "will retry"
		}
		note(NoteScaleDown, detail, err)
		ev = Event{Kind: EvScaled, Err: err}
	default:
		return ev, false
	}
	return ev, ctx.Err() == nil
}

// verify waits for the color's health; a newer candidate cancels it. The
// wait only watches: it gives the concurrency slot to other bundles meanwhile
// and takes one back to act on the outcome (the flip and the commit).
func (d *Driver) verify(ctx context.Context, dec Decision) (Event, bool) {
	start := time.Now()
	var (
		evidence string
		newer    bool
		err      error
	)
	if !d.withoutSlot(ctx, func() {
		newer, err = d.cancellable(ctx, func(ctx context.Context) error {
			e, err := d.cluster.Verify(ctx, dec.Color, dec.Ref, d.st.Policy.HealthTimeout)
			evidence = str(e)
			return err
		})
	}) {
		return Event{}, false
	}
	if newer {
		return Event{Kind: EvCancelled}, ctx.Err() == nil
	}
	d.notify(Note{Phase: NoteVerify, Color: dec.Color, Commit: d.commit(), Detail: evidence,
		Duration: time.Since(start), Err: err, Warn: err != nil})
	return Event{Kind: EvVerified, Err: err, Evidence: evidence}, ctx.Err() == nil
}

// check runs the verify checks; a newer candidate cancels them.
func (d *Driver) check(ctx context.Context, dec Decision) (Event, bool) {
	var rs check.Results
	newer, err := d.cancellable(ctx, func(ctx context.Context) error {
		var err error
		rs, err = d.cluster.Check(ctx, dec.Color, dec.Ref, dec.Checks)
		return err
	})
	if newer {
		return Event{Kind: EvCancelled}, ctx.Err() == nil
	}
	d.noteChecks(rs)
	return Event{Kind: EvChecked, Err: err, Checks: rs}, ctx.Err() == nil
}

// noteChecks reports each check run.
func (d *Driver) noteChecks(rs check.Results) {
	for i := range rs {
		r := rs[i]
		d.notify(Note{Phase: NoteCheck, Color: r.Color, Commit: d.commit(), Detail: r.Line(), Duration: r.Duration,
			Warn: r.Verdict != check.Passed, Check: &r})
	}
}

// record writes an outcome commit once; Step retries a failed write.
func (d *Driver) record(ctx context.Context, dec Decision, start time.Time) Event {
	written, attempts, err := d.git.Write(ctx, *dec.Commit)
	switch {
	case err == nil:
		live, liveCommit := dec.Commit.Release.Live, ""
		if live != "" {
			liveCommit = dec.Commit.Release.Colors[live].Commit
		}
		d.notify(Note{Phase: NoteCommit, Color: dec.Color, Commit: written, Result: dec.Result, Attempts: attempts,
			Duration: time.Since(start), Live: live, LiveCommit: liveCommit})
		if dec.Result == ResultPromoted {
			d.notify(Note{Phase: NotePromote, Color: dec.Color, Commit: d.commit()})
		}
	case errors.Is(err, ErrSuperseded), errors.Is(err, ErrRefused): // Step reports a refusal once
	default:
		d.notify(Note{Phase: NoteCommit, Result: dec.Result, Err: err, Warn: true, Detail: "cannot write the outcome to Git; retrying"})
	}
	return Event{Kind: EvRecorded, Err: err}
}

// propose opens (or finds) the revert request of dec through the Git role's
// Proposer.
func (d *Driver) propose(ctx context.Context, dec Decision, start time.Time) Event {
	p, ok := d.git.(Proposer)
	if !ok {
		return Event{Kind: EvProposed, Err: Refused(errors.New("this agent cannot open revert requests (no forge configured)"))}
	}
	link, err := p.Propose(ctx, *dec.Commit)
	if err != nil && !errors.Is(err, ErrRefused) {
		d.notify(Note{Phase: NoteCommit, Result: dec.Result, Err: err, Warn: true, Duration: time.Since(start),
			Detail: "cannot open the revert request; retrying"})
	}
	return Event{Kind: EvProposed, Err: err, Request: link}
}

// withdraw closes a stale revert request; a failure is reported by Step.
func (d *Driver) withdraw(ctx context.Context, dec Decision) Event {
	p, ok := d.git.(Proposer)
	if !ok {
		return Event{Kind: EvWithdrawn}
	}
	err := p.Withdraw(ctx, dec.Request, dec.Reason)
	if err == nil {
		d.notify(Note{Phase: NoteFail, Commit: dec.Failing, Reason: ReasonRevertRequest,
			Detail: "revert request " + dec.Request + " closed or merged: " + dec.Reason})
	}
	return Event{Kind: EvWithdrawn, Err: err}
}

// soak watches the new live color. A soak only watches: it gives its
// concurrency slot to other bundles meanwhile and takes one back to act on
// the outcome.
func (d *Driver) soak(ctx context.Context, dec Decision) (Event, bool) {
	start := time.Now()
	var (
		rs    check.Results
		newer bool
		err   error
	)
	if !d.withoutSlot(ctx, func() {
		newer, err = d.cancellable(ctx, func(ctx context.Context) error {
			return d.watch(ctx, dec, &rs)
		})
	}) {
		return Event{}, false
	}
	if newer {
		return Event{Kind: EvCancelled}, ctx.Err() == nil
	}
	d.noteChecks(rs)
	d.notify(Note{Phase: NoteSoak, Color: dec.Color, Commit: d.commit(), Duration: time.Since(start), Err: err, Warn: err != nil})
	return Event{Kind: EvSoaked, Err: err, Checks: rs}, ctx.Err() == nil
}

// watch is the soak: the color's health for dec.After and, meanwhile, the
// soak checks. The first to fail ends both.
func (d *Driver) watch(ctx context.Context, dec Decision, rs *check.Results) error {
	if len(dec.Checks) == 0 {
		return d.cluster.Watch(ctx, dec.Color, dec.Ref, dec.After)
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	checked := make(chan error, 1)
	go func() {
		var err error
		*rs, err = d.cluster.Check(wctx, dec.Color, dec.Ref, dec.Checks)
		if err != nil {
			cancel()
		}
		checked <- err
	}()
	err := d.cluster.Watch(wctx, dec.Color, dec.Ref, dec.After)
	if err != nil && wctx.Err() == nil {
		cancel() // the health degraded first: the checks need not go on
		<-checked
		return err
	}
	if cerr := <-checked; cerr != nil {
		return cerr // a check did not pass (and cut the watch short)
	}
	return err
}

// withoutSlot runs wait, which only watches, without a concurrency slot,
// then takes a slot to act on what it saw; ok is false when ctx ended first.
func (d *Driver) withoutSlot(ctx context.Context, wait func()) (ok bool) {
	d.releaseSlot()
	wait()
	if d.sem == nil {
		return true
	}
	select {
	case d.sem <- struct{}{}:
		d.holding = true
		return true
	case <-ctx.Done():
		return false
	}
}

// releaseSlot gives back the concurrency slot this driver holds, if any.
func (d *Driver) releaseSlot() {
	if d.holding {
		<-d.sem
		d.holding = false
	}
}

// cancellable runs fn with a context that a newer candidate cancels; newer
// reports that this is what ended it.
func (d *Driver) cancellable(ctx context.Context, fn func(context.Context) error) (newer bool, err error) {
	cctx, cancel := context.WithCancel(ctx)
	d.mu.Lock()
	d.cancel = cancel
	d.mu.Unlock()
	defer func() {
		d.mu.Lock()
		d.cancel = nil
		d.mu.Unlock()
		cancel()
	}()
	if len(d.candidates) > 0 {
		return true, nil // a newer candidate is already waiting
	}
	err = fn(cctx)
	if cctx.Err() != nil && ctx.Err() == nil {
		return true, err // cut short by a newer commit
	}
	return false, err
}

// str is s's text, "" for nil.
func str(s interface{ String() string }) string {
	if s == nil {
		return ""
	}
	return s.String()
}

// sleepCtx waits d or until ctx ends; it reports whether the wait completed.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
