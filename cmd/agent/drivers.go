package main

import (
	"context"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// drivers are the bundles this agent runs: one promote.Driver each, with
// the adapters of package fleet. They start on a bundle's first sight and
// stop when it leaves the branch (lifecycle.go).
type drivers struct {
	cfg   *config
	repo  *gitsync.Repo
	parts fleetParts
	trail *fleet.Trail
	gates *gates
	m     *metrics
	log   zerolog.Logger
	sem   chan struct{}  // bounds bundles acting at once (not waiting on health)
	wg    sync.WaitGroup // the drivers' goroutines
	// progress tells the watchdog that a driver started.
	progress func()

	mu      sync.Mutex
	bundles map[string]*bundleRun // by bundle name
}

// bundleRun is one bundle's driver and what the loop knows of it.
type bundleRun struct {
	name   string
	driver *promote.Driver
	seen   string // commit whose bundle files the driver was last given (or that is live)
	// first is the render made when the driver started, for the first candidate.
	first *fleet.Run
	// fresh: the driver started in this pass (promote.Facts.FirstSight);
	// lastFailure is the failure release.yaml recorded then.
	fresh       bool
	lastFailure string
	// revertPending is the revert request release.yaml records for lastFailure.
	revertPending string
	dir           string        // the bundle's directory at the newest tip
	stop          func()        // ends the driver (the bundle left the repository)
	done          chan struct{} // closed when the driver returned
}

// start starts the drivers of the bundles seen for the first time,
// --concurrency at a time. Starting one renders both colors, observes the
// cluster and reads release.yaml, mostly waiting on the API server, so
// doing them one after another made the first pass grow with the bundle
// count. The pass that follows finds them running; a bundle whose driver
// could not start is tried again there, which logs why.
func (d *drivers) start(ctx context.Context, snap gitsync.Snapshot, bundles []*render.Bundle) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, d.cfg.Concurrency)
	seen := map[string]bool{}
	for _, b := range bundles {
		d.mu.Lock()
		_, running := d.bundles[b.Name]
		d.mu.Unlock()
		if running || seen[b.Name] || !d.gates.mine(b.Name) || d.trail.SkippedInput(snap, b) != nil || fleet.VetRelease(snap.Dir, b) != nil {
			continue
		}
		seen[b.Name] = true
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return
		}
		wg.Go(func() {
			defer func() { <-slots }()
			_, _ = d.runFor(ctx, snap, b)
			if d.progress != nil {
				d.progress()
			}
		})
	}
	wg.Wait()
}

// runFor returns b's driver, starting it on first sight: it reads
// release.yaml and the cluster, renders the tip and the releases they
// record, and hands promote.NewDriver the adapters of package fleet.
func (d *drivers) runFor(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) (*bundleRun, error) {
	d.parts.vis.Track(b) // the bundle's namespace, for its events
	d.mu.Lock()
	run, ok := d.bundles[b.Name]
	d.mu.Unlock()
	if ok {
		return run, nil
	}
	rel, err := fleet.ReadRelease(snap.Dir, b)
	if err != nil {
		// A broken release.yaml never moves traffic: report it and leave the
		// bundle alone until a commit fixes it.
		return nil, err
	}
	bc := fleet.NewCluster(d.parts.ten, d.parts.store, b.Name, d.parts.checks)
	tipRun := d.renderTip(ctx, snap, b) // the store then knows the bundle's namespace
	v, err := bc.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err)
	}
	d.parts.trust.Seed(b.Name, v) // the live release is where signature checks start
	run = &bundleRun{name: b.Name, first: &tipRun, dir: b.Dir, done: make(chan struct{}),
		seen: promote.Baseline(rel, v), fresh: true, lastFailure: promote.RecordedFailure(rel),
		revertPending: promote.RevertPending(rel)}
	if rel != nil && rel.Live != "" {
		d.m.setLive(b.Name, rel.Live, contract.Short(rel.Colors[rel.Live].Commit))
	}
	// Recovery acts on what the cluster and release.yaml say each color
	// runs: render those releases now, the way candidates are rendered.
	for _, err := range d.parts.render.Recorded(ctx, snap, b, tipRun, rel, v) {
		d.log.Warn().Err(err).Str("bundle", b.Name).Str("phase", "recover").
			Msg("cannot render a release the cluster runs; acting on it will fail")
	}
	base := promote.State{Bundle: b.Name, Colors: b.Spec.Colors, Policy: d.policyOf(b), Propose: d.parts.protected != nil}
	run.driver = promote.NewDriver(base, rel, bc, d.gitFor(b.Name), d.sem, notifier(d.log, d.m, d.parts.vis, b.Name))
	d.mu.Lock()
	d.bundles[b.Name] = run
	d.mu.Unlock()
	dctx, stop := context.WithCancel(ctx)
	run.stop = stop
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer close(run.done)
		run.driver.Run(dctx)
	}()
	return run, nil
}

// policyOf is the release policy of bundle.yaml; the end of a soak is
// recorded when a bundle at the newest tip comes after this one.
func (d *drivers) policyOf(b *render.Bundle) promote.Policy {
	return promote.Policy{OnFailure: b.Spec.OnFailure, HealthTimeout: b.Spec.HealthTimeout, Soak: b.Spec.Soak,
		ScaleDownAfter: b.Spec.ScaleDownAfter, ScaleDownNever: b.Spec.ScaleDownNever, Checks: b.Spec.Checks,
		RecordSoak: d.gates.hasDownstream(b.Name)}
}

// render renders candidate c of b at snap for both colors (kustomize runs
// once) into the store, and names it by its digest; the render made when
// the driver started serves when it is of the same commit.
func (d *drivers) render(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun, c promote.Candidate) promote.Candidate {
	r := run.first
	if run.first = nil; r == nil || r.Ref.Commit != snap.Commit {
		rr := d.renderTip(ctx, snap, b)
		r = &rr
	}
	if r.Err != nil {
		c.RenderErr = r.Err
		return c
	}
	c.Digest, c.Charts = r.Ref.Digest, r.Charts
	if keep, ok := run.driver.InUse(); ok {
		d.parts.store.Keep(b.Name, append(keep, r.Ref)...)
	}
	return c
}

// renderTip renders b at snap into the store, timed.
func (d *drivers) renderTip(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) fleet.Run {
	start := time.Now()
	defer func() { d.m.observePhase(b.Name, "render", time.Since(start)) }()
	return d.parts.render.Render(ctx, snap, b)
}

// runIn is the driver of the bundle in dir, if any.
func (d *drivers) runIn(dir string) *bundleRun {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, run := range d.bundles {
		if path.Clean(run.dir) == path.Clean(dir) {
			return run
		}
	}
	return nil
}

// resync asks every driver to re-apply its live color.
func (d *drivers) resync() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, run := range d.bundles {
		run.driver.Resync()
	}
}

// each calls fn for every running bundle.
func (d *drivers) each(fn func(*bundleRun)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, run := range d.bundles {
		fn(run)
	}
}
