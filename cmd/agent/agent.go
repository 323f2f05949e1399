package main

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/contract"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/render"
)

// agent is the loop: sync → render → (per bundle) apply → verify → promote.
// The per-bundle part runs in a driver goroutine per bundle (bundle.go); the loop
// only notices new tips, renders candidates and hands them over.
type agent struct {
	cfg      *config
	repo     *gitsync.Repo
	ap       *applier.Applier // the agent's own identity (observing the cluster)
	ten      *tenancy         // who acts for each bundle, and where (tenancy.go)
	releases *releaseStore    // renders the drivers refer to
	m        *metrics
	log      zerolog.Logger
	dir      string // checkouts live here, one directory per tip
	wake     chan struct{}

	mu       sync.Mutex
	bundles  map[string]*bundleRun // by bundle name
	tip      string                // last tip rendered
	checkout gitsync.Snapshot      // the newest tip's checkout (the others are pruned)
	offered  int                   // candidates handed to drivers in this pass
	settled  []settledBundle       // the bundles of the last full pass if all were handled; nil: none
	sem      chan struct{}         // bounds bundles acting at once (not waiting on health)
	wg       sync.WaitGroup        // drivers
	diffs    diffCache
	trust    *trust        // --verify-commits; nil when off (trust.go)
	vis      *visibility   // events, commit statuses, notifications; nil: off
	checks   *check.Runner // spec.checks of every bundle (checks.go)
	stages   *stages       // the stage gates (stages.go)
}

func newAgent(c *config, repo *gitsync.Repo, ap *applier.Applier, m *metrics, dir string, log zerolog.Logger) *agent {
	a := &agent{
		cfg: c, repo: repo, m: m, log: log, dir: dir,
		wake:    make(chan struct{}, 1),
		bundles: map[string]*bundleRun{},
		sem:     make(chan struct{}, c.Concurrency),
	}
	a.ap, a.releases, a.stages = ap, newReleaseStore(), newStages(m)
	a.checks = &check.Runner{} // run replaces it with the flags' runner
	a.ten = &tenancy{own: ap}  // run.go sets the flags' tenancy
	return a
}

// resync asks every driver to re-apply its live color.
func (a *agent) resync(context.Context) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, run := range a.bundles {
		run.driver.Resync()
	}
}

// poke wakes the loop now (webhook, file watch).
func (a *agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// webhook returns the POST /hooks/git handler, or nil when no secret is set.
func (a *agent) webhook() http.Handler {
	if a.cfg.WebhookSecret == "" {
		return nil
	}
	return gitsync.NewWebhook(a.cfg.WebhookSecret, a.poke)
}

// run polls until ctx ends. ready is called after the first successful sync.
func (a *agent) run(ctx context.Context, ready func()) {
	if dir, ok := gitsync.LocalPath(a.cfg.Repo); ok {
		go func() {
			if err := gitsync.WatchLocal(ctx, dir, a.poke); err != nil {
				a.log.Warn().Err(err).Msg("file watch off; polling only")
			}
		}()
	}
	resync := time.NewTicker(a.cfg.ResyncInterval)
	defer resync.Stop()
	var once sync.Once
	retry := syncBackoff(a.cfg.Interval)
	for {
		next := a.cfg.Interval
		if err := a.sync(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			next = retry.Step()
			a.m.transient.WithLabelValues("git").Inc()
			a.log.Error().Err(err).Str("phase", "sync").Dur("retry_in", next).Msg("sync failed; will retry")
		} else {
			retry = syncBackoff(a.cfg.Interval)
			once.Do(ready)
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-resync.C:
			a.resync(ctx)
		case <-time.After(next):
		}
		if ctx.Err() != nil {
			break
		}
	}
	a.wg.Wait()
}

// syncBackoff spaces failed syncs: the interval, doubling up to 5 minutes.
func syncBackoff(interval time.Duration) wait.Backoff {
	return wait.Backoff{Duration: interval, Factor: 2, Cap: 5 * time.Minute, Steps: math.MaxInt32}
}

// sync is one pass: a cheap head check; on a new tip, checkout, discover the
// bundles and hand every bundle whose files changed a rendered candidate.
func (a *agent) sync(ctx context.Context) error {
	start := time.Now()
	poll, err := a.repo.Poll(ctx)
	a.m.poll.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	a.m.lastSync.SetToCurrentTime()
	if poll.Tip == a.tip {
		a.m.sync.WithLabelValues("unchanged").Observe(time.Since(start).Seconds())
		return nil
	}
	defer func() { a.m.sync.WithLabelValues("new").Observe(time.Since(start).Seconds()) }()
	if a.settled != nil && a.touchesNoBundle(ctx, poll.Tip) {
		// Nothing for any bundle (a README, another tool's files, the
		// agent's own release.yaml commits): what offer would do for each
		// bundle, without checking out the whole tree.
		a.mu.Lock()
		for _, sb := range a.settled {
			if run, ok := a.bundles[sb.name]; ok {
				run.seen = poll.Tip
			}
		}
		a.mu.Unlock()
		a.tip = poll.Tip
		a.log.Info().Str("phase", "sync").Str("commit", contract.Short(poll.Tip)).Int("candidates", 0).Msg("new tip: no bundle input changed")
		return nil
	}
	log := a.log.With().Str("commit", contract.Short(poll.Tip)).Logger()
	coStart := time.Now()
	// From the last tip's checkout, writing only what changed.
	snap, err := a.repo.CheckoutFrom(ctx, a.checkout, poll.Tip, filepath.Join(a.dir, poll.Tip))
	if err != nil {
		return err
	}
	a.checkout = snap
	coTook := time.Since(coStart)
	a.prune(poll.Tip)
	a.settled = nil
	disc, err := render.DiscoverAll(snap.Dir, a.cfg.Root)
	if err != nil {
		// The root itself is unusable: the repository's problem, not a
		// transient one. Report it and wait for the next commit.
		log.Error().Err(err).Str("phase", "discover").Msg("cannot read bundles at this commit; nothing changes until a commit fixes it")
		a.tip = poll.Tip
		return nil
	}
	a.atTip(ctx, poll.Tip, disc) // stages.go: every bundle may be an upstream
	for _, sp := range snap.Skipped {
		log.Error().Str("phase", "checkout").Str("path", sp.Path).Str("reason", sp.Reason).
			Msg("tree entry not checked out (a crafted tree); a bundle that reads it fails, the others go on")
	}
	a.pass(ctx, snap, disc)
	a.tip = poll.Tip
	log.Info().Str("phase", "sync").Int("candidates", a.offered).Int("bundles", len(disc.Bundles)).Int("refused", len(disc.Broken)).
		Dur("checkout", coTook).Dur("duration", time.Since(start)).Msg("new tip: candidates handed to their bundles")
	a.offered = 0
	return nil
}

// pass hands every bundle of disc its candidate at snap (starting the drivers
// of new bundles), refuses the broken ones and removes those gone. When every
// bundle was handled, it records them as settled: a next tip that touches
// none of their inputs then needs no checkout.
func (a *agent) pass(ctx context.Context, snap gitsync.Snapshot, disc render.Discovery) {
	ok := len(disc.Broken) == 0
	settled := []settledBundle{}
	a.startDrivers(ctx, snap, disc.Bundles) // bundles seen for the first time, at once
	for _, b := range disc.Bundles {
		if !a.mine(b.Name) {
			continue // --bundles: another agent releases it
		}
		if err := a.skippedInput(snap, b); err != nil {
			a.refuse(ctx, snap, render.Broken{File: b.File, Dir: b.Dir, Err: err})
			ok = false
			continue
		}
		ok = a.offer(ctx, snap, b) && ok
		settled = append(settled, settledBundle{name: b.Name, dir: strings.TrimSuffix(b.Dir, "/"), inputs: a.inputsOf(b)})
	}
	for _, br := range disc.Broken {
		if a.mineBroken(br) {
			a.refuse(ctx, snap, br)
		}
	}
	a.removeGone(ctx, disc)
	if ok {
		a.settled = settled
	}
}

// skippedInput is an error naming the first tree entry the checkout skipped
// that is one of b's inputs (nil when none is).
func (a *agent) skippedInput(snap gitsync.Snapshot, b *render.Bundle) error {
	in := a.inputsOf(b)
	for _, sp := range snap.Skipped {
		if in.Match(sp.Path) {
			return fmt.Errorf("%s: cannot check out %w", b.File, sp)
		}
	}
	return nil
}

// settledBundle is a bundle of the last full pass.
type settledBundle struct {
	name, dir string
	inputs    gitsync.Paths
}

// touchesNoBundle reports whether tip differs from the last tip only in
// paths that concern no bundle: outside every bundle directory of the last
// full pass, or a bundle's release.yaml, and no bundle.yaml anywhere. After a
// full pass in which every bundle was handled, each bundle has seen the last
// tip, so such a tip is no candidate for any of them. Any error: full pass.
func (a *agent) touchesNoBundle(ctx context.Context, tip string) bool {
	paths, err := a.changedPaths(ctx, a.tip, tip)
	if err != nil {
		return false
	}
	for _, p := range paths {
		if path.Base(p) == "bundle.yaml" {
			return false
		}
		for _, sb := range a.settled {
			if sb.inputs.Match(p) && p != sb.dir+"/"+releaseFile {
				return false
			}
		}
	}
	return true
}

// prune removes checkouts of tips older than keep.
func (a *agent) prune(keep string) {
	entries, err := os.ReadDir(a.dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if e.Name() != keep {
			_ = os.RemoveAll(filepath.Join(a.dir, e.Name()))
		}
	}
}
