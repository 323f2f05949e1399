package main

import (
	"context"
	"math"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/render"
)

// agent is the loop: sync → admit → render → (per bundle) apply → verify →
// promote. The per-bundle part runs in a driver goroutine per bundle
// (promote.Driver); the loop notices new tips, gathers each bundle's facts,
// asks promote.Admit what to do and does it (admit.go).
type agent struct {
	cfg     *config
	repo    *gitsync.Repo
	m       *metrics
	log     zerolog.Logger
	dir     string // checkouts live here, one directory per tip
	wake    chan struct{}
	drivers *drivers     // the bundles' drivers (drivers.go)
	admit   *admission   // what each bundle does with a tip (admit.go)
	gates   *gates       // stage gates at the newest tip (stages.go)
	trail   *fleet.Trail // what the branch says between commits (package fleet)
	watch   *watchdog    // tells /healthz whether the loop makes progress

	tip      string           // last tip handled
	checkout gitsync.Snapshot // the newest tip's checkout (the others are pruned)
	settled  []settledBundle  // the bundles of the last full pass if all were handled; nil: none
	// statusAt and statusSnap: the status branch's tip whose records are
	// laid over checkout, and its checkout (--write-mode=status-branch).
	statusAt   string
	statusSnap gitsync.Snapshot
}

// fleetParts are the adapters the loop hands its drivers (package fleet).
type fleetParts struct {
	store  *fleet.Store
	render *fleet.Renderer
	ten    *fleet.Tenancy
	trust  *fleet.Trust      // --verify-commits; nil when off
	vis    *fleet.Visibility // events, commit statuses, notifications; nil: off
	checks *check.Runner     // spec.checks of every bundle
	// renderOpts bound every render (limits, worker pool).
	renderOpts render.Options
	// protected: the tracked branch takes no pushes (protect.go); nil: direct.
	protected *fleet.Protected
}

func newAgent(c *config, repo *gitsync.Repo, parts fleetParts, m *metrics, dir string, log zerolog.Logger) *agent {
	if parts.store == nil {
		parts.store = fleet.NewStore()
	}
	if parts.checks == nil {
		parts.checks = &check.Runner{}
	}
	ro := parts.renderOpts
	ro.AllowRemoteBases = c.AllowRemoteBases
	parts.render = &fleet.Renderer{Store: parts.store, Tenancy: parts.ten, Repo: repo,
		Scratch: filepath.Join(filepath.Dir(dir), "at"), Options: ro, LimitNames: map[render.Limit]string{
			render.LimitTime: "--render-timeout", render.LimitObjects: "--render-max-objects",
			render.LimitBytes: "--render-max-bytes", render.LimitMemory: "--render-worker-memory"}}
	g := newGates(c, repo, parts, m, log)
	t := fleet.NewTrail(repo, parts.store, parts.trust, c.identity)
	d := &drivers{cfg: c, repo: repo, parts: parts, trail: t, gates: g, m: m, log: log,
		sem: make(chan struct{}, c.Concurrency), bundles: map[string]*bundleRun{}}
	w := &watchdog{bound: c.LivenessTimeout}
	d.progress = w.progress
	return &agent{cfg: c, repo: repo, m: m, log: log, dir: dir, wake: make(chan struct{}, 1),
		drivers: d, gates: g, trail: t, watch: w,
		admit: &admission{cfg: c, drivers: d, trail: t, gates: g, trust: parts.trust, m: m, log: log}}
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
		a.watch.start()
		err := a.sync(ctx)
		a.watch.done()
		if err != nil {
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
			a.drivers.resync()
		case <-time.After(next):
		}
		if ctx.Err() != nil {
			break
		}
	}
	a.drivers.wg.Wait()
}

// syncBackoff spaces failed syncs: the interval, doubling up to 5 minutes.
func syncBackoff(interval time.Duration) wait.Backoff {
	return wait.Backoff{Duration: interval, Factor: 2, Cap: 5 * time.Minute, Steps: math.MaxInt32}
}

// sync is one pass: a cheap head check; on a new tip, checkout, discover the
// bundles and admit the tip for each of them.
func (a *agent) sync(ctx context.Context) error {
	start := time.Now()
	poll, err := a.repo.Poll(ctx)
	a.m.poll.Observe(time.Since(start).Seconds())
	if err != nil {
		return err
	}
	a.m.lastSync.SetToCurrentTime()
	statusTip, err := a.statusTip(ctx)
	if err != nil {
		return err
	}
	if poll.Tip == a.tip && statusTip == a.statusAt {
		a.m.sync.WithLabelValues("unchanged").Observe(time.Since(start).Seconds())
		return nil
	}
	if poll.Tip == a.tip {
		return a.repass(ctx, statusTip) // only the agent's records moved
	}
	defer func() { a.m.sync.WithLabelValues("new").Observe(time.Since(start).Seconds()) }()
	if a.settled != nil && a.touchesNoBundle(ctx, poll.Tip) {
		// Nothing for any bundle (a README, another tool's files, the
		// agent's own release.yaml commits): what admission would say for
		// each bundle, without checking out the whole tree.
		settled := map[string]bool{}
		for _, sb := range a.settled {
			settled[sb.name] = true
		}
		a.drivers.each(func(run *bundleRun) {
			if settled[run.name] {
				run.seen = poll.Tip
			}
		})
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
	if err := a.overlay(ctx, snap, statusTip); err != nil {
		return err
	}
	a.statusAt = statusTip
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
	a.gates.atTip(poll.Tip, disc) // every bundle may be an upstream
	for _, sp := range snap.Skipped {
		log.Error().Str("phase", "checkout").Str("path", sp.Path).Str("reason", sp.Reason).
			Msg("tree entry not checked out (a crafted tree); a bundle that reads it fails, the others go on")
	}
	a.pass(ctx, snap, disc)
	a.tip = poll.Tip
	log.Info().Str("phase", "sync").Int("candidates", a.admit.offered).Int("bundles", len(disc.Bundles)).Int("refused", len(disc.Broken)).
		Dur("checkout", coTook).Dur("duration", time.Since(start)).Msg("new tip: candidates handed to their bundles")
	a.admit.offered = 0
	return nil
}

// pass admits snap for every bundle of disc (starting the drivers of new
// bundles), the broken ones and those gone. When every bundle was handled,
// it records them as settled: a next tip that touches none of their inputs
// then needs no checkout.
func (a *agent) pass(ctx context.Context, snap gitsync.Snapshot, disc render.Discovery) {
	ok := len(disc.Broken) == 0
	settled := []settledBundle{}
	a.drivers.start(ctx, snap, disc.Bundles) // bundles seen for the first time, at once
	for _, b := range disc.Bundles {
		if !a.gates.mine(b.Name) {
			continue // --bundles: another agent releases it
		}
		a.watch.progress()
		if !a.admit.bundle(ctx, snap, b) {
			ok = false
			continue
		}
		settled = append(settled, settledBundle{name: b.Name, inputs: a.trail.InputsOf(b)})
	}
	for _, br := range disc.Broken {
		a.admit.broken(ctx, snap, br)
	}
	a.drivers.removeGone(ctx, disc)
	if ok {
		a.settled = settled
	}
}

// settledBundle is a bundle of the last full pass.
type settledBundle struct {
	name   string
	inputs fleet.Inputs
}

// touchesNoBundle reports whether tip differs from the last tip only in
// paths that concern no bundle: no input of any bundle of the last full
// pass, and no bundle.yaml anywhere. After a full pass in which every
// bundle was handled, each bundle has seen the last tip, so such a tip is no
// candidate for any of them. Any error: full pass.
func (a *agent) touchesNoBundle(ctx context.Context, tip string) bool {
	paths, err := a.trail.ChangedPaths(ctx, a.tip, tip)
	if err != nil {
		return false
	}
	for _, p := range paths {
		if path.Base(p) == render.BundleFile {
			return false
		}
		for _, sb := range a.settled {
			if sb.inputs.Match(p) {
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
