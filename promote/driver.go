package promote

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Cluster is what a Driver needs of the cluster for one bundle. cmd/agent
// implements it on top of the applier. An error wrapped with Transient is
// retried; any other error fails the release.
type Cluster interface {
	// Observe reads which color the stable twins select and what each color runs.
	Observe(ctx context.Context) (View, error)
	// Deploy applies the candidate's render for color (shared objects first)
	// and says what changed.
	Deploy(ctx context.Context, color string, c *Candidate) (changes string, err error)
	// Verify waits until every workload of color is healthy and returns
	// the evidence (per-app readiness), or an error naming what failed.
	Verify(ctx context.Context, color string, timeout time.Duration) (evidence string, err error)
	// Route points every stable twin of the bundle at color.
	Route(ctx context.Context, color string) error
	// Watch checks that color stays healthy for d (the soak).
	Watch(ctx context.Context, color string, d time.Duration) error
	// Scale takes color to zero replicas (objects kept) or back up.
	Scale(ctx context.Context, color string, up bool) error
	// Restore re-applies the release at commit to color (a warm standby).
	Restore(ctx context.Context, color, commit string) error
	// Resync re-applies the live color and its stable twins (drift).
	Resync(ctx context.Context, color string) error
}

// Git writes an outcome to the tracked branch.
type Git interface {
	// Write commits rec and pushes it, retrying rejected pushes on the new
	// tip; it returns ErrSuperseded when a newer commit changed the bundle
	// and a revert must not be written over it.
	Write(ctx context.Context, rec Commit) (Written, error)
}

// Commit is one outcome for Git: release.yaml and, for a revert, the bundle
// files restored from Revert.From.
type Commit struct {
	Result  string
	Message string
	Release *Release
	Revert  *Revert
}

// Revert says which bundle files a revert commit restores.
type Revert struct{ Failing, From string }

// Written is a commit that landed.
type Written struct {
	Commit   string
	Attempts int
}

// ErrSuperseded: a newer commit changed the bundle; the revert was not written.
var ErrSuperseded = errors.New("a newer commit changed the bundle")

// Note is one step of a release, for logs and metrics.
type Note struct {
	Phase    string // candidate, apply, verify, flip, promote, soak, flip-back, fail, commit, recover, scale-down, resync, retry
	Color    string
	Commit   string
	Result   string // for commit notes: promoted, reverted, held
	Detail   string // evidence, change summary, reason
	Duration time.Duration
	Attempts int
	Err      error
	Warn     bool // something needs attention (a failure, a retry)
	// Live and LiveCommit: after a commit landed, the color the stable
	// Services select and the commit it runs.
	Live, LiveCommit string
}

// Driver performs Step's decisions for one bundle: it takes candidates one
// at a time, retries transient errors, records every outcome in Git and
// converges after a restart. Create it with NewDriver and start Run.
type Driver struct {
	cluster Cluster
	git     Git
	notify  func(Note)
	sem     chan struct{} // shared bound on bundles releasing at once
	now     func() time.Time

	st          State
	rel         *Release
	scaleDownAt time.Time
	candidates  chan Candidate
	resync      chan struct{}

	holding bool // this driver holds a slot of sem

	mu     sync.Mutex
	cancel context.CancelFunc // cancels a verification or soak in flight
}

// NewDriver returns the driver of a bundle whose state starts at base
// (bundle name, colors, policy) and whose release.yaml is rel (nil when
// there is none). sem bounds how many drivers release at once.
func NewDriver(base State, rel *Release, cluster Cluster, git Git, sem chan struct{}, notify func(Note)) *Driver {
	if notify == nil {
		notify = func(Note) {}
	}
	return &Driver{cluster: cluster, git: git, notify: notify, sem: sem, now: time.Now,
		st: base, rel: rel, candidates: make(chan Candidate, 1), resync: make(chan struct{}, 1)}
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

// Resync asks the driver to re-apply its live color.
func (d *Driver) Resync() {
	select {
	case d.resync <- struct{}{}:
	default:
	}
}

// Run recovers from a restart, then releases candidates, resyncs and scales
// down the previous color until ctx ends.
func (d *Driver) Run(ctx context.Context) {
	d.recover(ctx)
	for {
		var timer <-chan time.Time
		if !d.scaleDownAt.IsZero() {
			timer = time.After(time.Until(d.scaleDownAt))
		}
		select {
		case <-ctx.Done():
			return
		case c := <-d.candidates:
			d.release(ctx, c)
		case <-d.resync:
			d.doResync(ctx)
		case <-timer:
			d.scaleDownPrevious(ctx)
		}
	}
}

// recover converges with what the cluster shows (see Recover).
func (d *Driver) recover(ctx context.Context) {
	var v View
	for attempt := 0; ; attempt++ {
		var err error
		if v, err = d.cluster.Observe(ctx); err == nil {
			break
		}
		d.notify(Note{Phase: "recover", Err: err, Warn: true, Duration: Backoff(attempt)})
		if !sleep(ctx, Backoff(attempt)) {
			return
		}
	}
	st, dec := Recover(d.st, d.rel, v, d.now())
	d.st = st
	if dec.Reason != "" {
		d.notify(Note{Phase: "recover", Color: dec.Color, Detail: dec.Reason, Warn: true})
	}
	if dec.Action == ActRecord {
		d.notify(Note{Phase: "recover", Color: dec.Color, Commit: st.LiveCommit, Warn: true,
			Detail: "the stable Services select a color release.yaml does not record: committing that promotion"})
	}
	d.perform(ctx, dec)
	d.releaseSlot() // a resumed soak takes a slot to act on its outcome
}

// releaseSlot gives back the concurrency slot this driver holds, if any.
func (d *Driver) releaseSlot() {
	if d.holding {
		<-d.sem
		d.holding = false
	}
}

// release takes one candidate through Step until it settles.
func (d *Driver) release(ctx context.Context, c Candidate) {
	select {
	case d.sem <- struct{}{}:
		d.holding = true
		defer d.releaseSlot()
	case <-ctx.Done():
		return
	}
	d.notify(Note{Phase: "candidate", Commit: c.Commit, Detail: c.Digest})
	st, dec := Step(d.st, Event{Kind: EvCandidate, Candidate: &c})
	d.st = st
	if dec.Action == ActNone {
		d.notify(Note{Phase: "idle", Commit: c.Commit, Detail: "nothing to release: the candidate renders what is live"})
		return
	}
	d.perform(ctx, dec)
}

// perform carries out decisions until one needs no further step.
func (d *Driver) perform(ctx context.Context, dec Decision) {
	for ctx.Err() == nil {
		if dec.Action == ActRetry {
			d.notify(Note{Phase: "retry", Color: dec.Redo.Color, Detail: string(dec.Redo.Action), Duration: dec.After, Warn: true})
			if !sleep(ctx, dec.After) {
				return
			}
			dec = *dec.Redo
		}
		ev, ok := d.do(ctx, dec)
		if !ok {
			return
		}
		d.st, dec = Step(d.st, ev)
	}
}

// do performs one decision and returns the event it produced; ok is false
// when the release is over (or was cancelled by a newer candidate).
func (d *Driver) do(ctx context.Context, dec Decision) (ev Event, ok bool) {
	c := d.st.Candidate
	commit := ""
	if c != nil {
		commit = c.Commit
	}
	start := time.Now()
	note := func(phase, detail string, err error) {
		d.notify(Note{Phase: phase, Color: dec.Color, Commit: commit, Detail: detail, Duration: time.Since(start), Err: err, Warn: err != nil})
	}
	switch dec.Action {
	case ActNone:
		if dec.ScaleDown != "" {
			d.planScaleDown()
		}
		return ev, false
	case ActDeploy:
		changes, err := d.cluster.Deploy(ctx, dec.Color, c)
		note("apply", changes, err)
		return Event{Kind: EvDeployed, Err: err}, true
	case ActVerify:
		if dec.Warm {
			v, err := d.cluster.Observe(ctx)
			if err != nil {
				return Event{Kind: EvVerified, Err: Transient(err)}, true
			}
			if !v.Colors[dec.Color].Runs(c.Digest) {
				note("verify", dec.Color+" does not run this release any more; deploying it instead", nil)
				return Event{Kind: EvCold}, true
			}
		}
		evidence, err, newer := d.cancellable(ctx, func(ctx context.Context) (string, error) {
			return d.cluster.Verify(ctx, dec.Color, d.st.Policy.HealthTimeout)
		})
		if newer {
			note("verify", "a newer commit arrived; verification cancelled", nil)
			return ev, false
		}
		note("verify", evidence, err)
		return Event{Kind: EvVerified, Err: err, Evidence: evidence}, true
	case ActFlip:
		err := d.cluster.Route(ctx, dec.Color)
		detail := "stable Services switched"
		if dec.Warm {
			detail = "warm flip-back: the previous color already runs this release"
		}
		note("flip", detail, err)
		return Event{Kind: EvFlipped, Err: err}, true
	case ActRecord:
		d.commit(ctx, dec, nil)
		note("promote", "", nil)
		return Event{Kind: EvRecorded}, true
	case ActSoak:
		// A soak only watches: it gives its concurrency slot to other
		// bundles meanwhile and takes one back to act on the outcome.
		d.releaseSlot()
		_, err, newer := d.cancellable(ctx, func(ctx context.Context) (string, error) {
			return "", d.cluster.Watch(ctx, dec.Color, dec.After)
		})
		if d.sem != nil {
			select {
			case d.sem <- struct{}{}:
				d.holding = true
			case <-ctx.Done():
				return ev, false
			}
		}
		if newer {
			note("soak", "a newer commit arrived; soak ended early", nil)
			d.planScaleDown()
			return ev, false
		}
		note("soak", "", err)
		return Event{Kind: EvSoaked, Err: err}, true
	case ActFlipBack:
		err := d.cluster.Route(ctx, dec.Color)
		note("flip-back", "", err)
		return Event{Kind: EvFlippedBack, Err: err}, true
	case ActReroute:
		for attempt := 0; ; attempt++ {
			err := d.cluster.Route(ctx, dec.Color)
			note("recover", "stable Services put back on the recorded live color", err)
			if err == nil || !errors.Is(err, ErrTransient) || !sleep(ctx, Backoff(attempt)) {
				return ev, false
			}
		}
	case ActFail:
		d.failOut(ctx, dec)
		d.notify(Note{Phase: "fail", Color: dec.Color, Commit: commit, Detail: dec.Reason, Warn: true})
		d.commit(ctx, dec, &Failure{Commit: dec.Failing, Reason: dec.Reason, At: d.now().UTC().Truncate(time.Second)})
		return ev, false
	}
	return ev, false
}

// failOut takes the failed color out of service: it restores the warm
// release the candidate displaced, or scales the color to zero (objects
// kept for debugging). Transient errors are retried.
func (d *Driver) failOut(ctx context.Context, dec Decision) {
	if dec.Color == "" {
		return
	}
	for attempt := 0; ; attempt++ {
		var err error
		if dec.Restore != nil {
			err = d.cluster.Restore(ctx, dec.Color, dec.Restore.Commit)
		} else {
			err = d.cluster.Scale(ctx, dec.Color, false)
		}
		if err == nil {
			return
		}
		d.notify(Note{Phase: "fail", Color: dec.Color, Err: err, Warn: true, Detail: "cannot take the failed color out"})
		if !errors.Is(err, ErrTransient) || !sleep(ctx, Backoff(attempt)) {
			if dec.Restore != nil {
				d.st.PreviousWarm = false // restoring failed: it is not a warm copy
			}
			return
		}
	}
}

// commitRetryMax caps the wait between attempts to write an outcome.
const commitRetryMax = 4 * time.Second

// commit writes the outcome of dec to Git, retrying until it lands or a
// newer commit makes it moot. A flip that happened is always committed.
func (d *Driver) commit(ctx context.Context, dec Decision, failure *Failure) {
	rel := Record(d.rel, d.st, d.now(), failure)
	rec := Commit{Result: dec.Result, Message: dec.Message, Release: rel}
	if dec.Restores != "" {
		rec.Revert = &Revert{Failing: dec.Failing, From: dec.Restores}
	}
	start := time.Now()
	for attempt := 0; ; attempt++ {
		w, err := d.git.Write(ctx, rec)
		switch {
		case err == nil:
			d.rel = rel
			d.notify(Note{Phase: "commit", Color: dec.Color, Commit: w.Commit, Result: dec.Result, Attempts: w.Attempts,
				Duration: time.Since(start), Live: d.st.Live, LiveCommit: d.st.LiveCommit})
			return
		case errors.Is(err, ErrSuperseded):
			d.rel = rel
			d.notify(Note{Phase: "commit", Result: dec.Result, Detail: "a newer commit changed the bundle; no revert written over it"})
			return
		case ctx.Err() != nil:
			return
		}
		// Short waits: a rejected push means the branch moved (retry on the
		// new tip soon, or busy teams starve the agent); an unreachable
		// remote costs one cheap attempt every few seconds.
		wait := min(Backoff(attempt), commitRetryMax)
		d.notify(Note{Phase: "commit", Result: dec.Result, Err: err, Warn: true, Duration: wait, Detail: "cannot write the outcome to Git; retrying"})
		if !sleep(ctx, wait) {
			return
		}
	}
}

// cancellable runs fn with a context that a newer candidate cancels; newer
// reports that this is what ended it.
func (d *Driver) cancellable(ctx context.Context, fn func(context.Context) (string, error)) (out string, err error, newer bool) {
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
		return "", nil, true // a newer candidate is already waiting
	}
	out, err = fn(cctx)
	if err != nil && cctx.Err() != nil && ctx.Err() == nil {
		return out, err, true
	}
	if err == nil && cctx.Err() != nil && ctx.Err() == nil {
		return out, err, true // a soak cut short by a newer commit
	}
	return out, err, false
}

// planScaleDown schedules the previous color's scale-down.
func (d *Driver) planScaleDown() {
	if !d.st.PreviousWarm || d.st.Policy.ScaleDownNever || d.st.Previous == "" {
		d.scaleDownAt = time.Time{}
		return
	}
	from := d.now()
	if d.rel != nil {
		if at := d.rel.Colors[d.rel.Live].PromotedAt; at != nil {
			from = *at
		}
	}
	d.scaleDownAt = from.Add(d.st.Policy.ScaleDownAfter)
}

// scaleDownPrevious scales the previous color to zero; it is cold afterwards.
func (d *Driver) scaleDownPrevious(ctx context.Context) {
	d.scaleDownAt = time.Time{}
	if d.st.Previous == "" || d.st.Previous == d.st.Live || !d.st.PreviousWarm {
		return
	}
	if err := d.cluster.Scale(ctx, d.st.Previous, false); err != nil {
		d.notify(Note{Phase: "scale-down", Color: d.st.Previous, Err: err, Warn: true, Detail: "will retry in a minute"})
		d.scaleDownAt = d.now().Add(time.Minute)
		return
	}
	d.st.PreviousWarm = false
	d.notify(Note{Phase: "scale-down", Color: d.st.Previous, Detail: "previous color scaled to zero"})
}

// doResync re-applies the live color (drift correction).
func (d *Driver) doResync(ctx context.Context) {
	if d.st.Live == "" {
		return
	}
	start := time.Now()
	err := d.cluster.Resync(ctx, d.st.Live)
	d.notify(Note{Phase: "resync", Color: d.st.Live, Err: err, Warn: err != nil, Duration: time.Since(start)})
}

// sleep waits d or until ctx ends; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
