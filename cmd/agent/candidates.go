package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/internal/yamlguard"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// releaseFile is the agent's record in each bundle directory.
const releaseFile = "release.yaml"

// bundleRun is one bundle's driver and what the loop knows of it.
type bundleRun struct {
	name   string
	driver *promote.Driver
	seen   string // commit whose bundle files the driver was last given (or that is live)
	// first is the render made when the driver started, for the first candidate.
	first *renderRun
	dir   string        // the bundle's directory at the newest tip
	stop  func()        // ends the driver (the bundle left the repository)
	done  chan struct{} // closed when the driver returned
}

// startDrivers starts the drivers of the bundles seen for the first time,
// --concurrency at a time. Starting one renders both colors, observes the
// cluster and reads release.yaml, mostly waiting on the API server, so on a
// fresh agent with many bundles doing them one after another made the first
// pass, and with it the time until all are live, grow with the bundle count.
// The pass that follows finds them running; a bundle whose driver could not
// start is tried again there, which logs why.
func (a *agent) startDrivers(ctx context.Context, snap gitsync.Snapshot, bundles []*render.Bundle) {
	var wg sync.WaitGroup
	slots := make(chan struct{}, a.cfg.Concurrency)
	seen := map[string]bool{}
	for _, b := range bundles {
		a.mu.Lock()
		_, running := a.bundles[b.Name]
		a.mu.Unlock()
		if running || seen[b.Name] || !a.mine(b.Name) || a.skippedInput(snap, b) != nil || vetRelease(snap.Dir, b) != nil {
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
			_, _ = a.runFor(ctx, snap, b)
		})
	}
	wg.Wait()
}

// runFor returns b's driver, starting it (with recovery) on first sight.
func (a *agent) runFor(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) (*bundleRun, error) {
	a.track(b) // the bundle's namespace, for its events (notify.go)
	a.mu.Lock()
	run, ok := a.bundles[b.Name]
	a.mu.Unlock()
	if ok {
		return run, nil
	}
	rel, err := readRelease(snap.Dir, b)
	if err != nil {
		// A broken release.yaml never moves traffic: report it and leave the
		// bundle alone until a commit fixes it.
		return nil, err
	}
	bc := newBundleCluster(a.ten, a.releases, b.Name, a.checks)
	tipRun := a.render(ctx, snap, b) // the store then knows the bundle's namespace
	v, err := bc.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err)
	}
	a.seedTrust(b.Name, v) // trust.go: the live release is where signature checks start
	// stages.go: record a soak that ended before a restart
	a.recoverSoaked(b, rel, v)
	run = &bundleRun{name: b.Name, first: &tipRun, dir: b.Dir, done: make(chan struct{})}
	if rel != nil && rel.Live != "" {
		run.seen = rel.Colors[rel.Live].Commit
		if f := rel.LastFailure; f != nil && f.Commit != "" {
			// Nothing new since the recorded failure: do not retry it.
			if changed, err := a.bundleChanged(ctx, b, f.Commit, snap.Commit); err == nil && !changed {
				run.seen = snap.Commit
			}
		}
		a.m.setLive(b.Name, rel.Live, contract.Short(rel.Colors[rel.Live].Commit))
	}
	if cv := v.Colors[v.Live]; !v.Mixed && v.Live != "" && (rel == nil || v.Live != rel.Live) && cv.Healthy && cv.Commit != "" {
		// The flip to this commit happened before a restart; the driver
		// commits it while recovering, so it is not a new candidate.
		run.seen = cv.Commit
	}
	// Recovery acts on what the cluster and release.yaml say each color
	// runs: render those releases now, the way candidates are rendered.
	a.renderRecorded(ctx, snap, b, tipRun, rel, v)
	base := promote.State{Bundle: b.Name, Colors: b.Spec.Colors, Policy: policyOf(b)}
	git := &bundleGit{repo: a.repo, store: a.releases, bundle: b.Name}
	run.driver = promote.NewDriver(base, rel, bc, git, a.sem, a.notifier(b.Name))
	a.mu.Lock()
	a.bundles[b.Name] = run
	a.mu.Unlock()
	dctx, stop := context.WithCancel(ctx)
	run.stop = stop
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		defer close(run.done)
		run.driver.Run(dctx)
	}()
	return run, nil
}

// policyOf is the release policy of bundle.yaml.
func policyOf(b *render.Bundle) promote.Policy {
	return promote.Policy{OnFailure: b.Spec.OnFailure, HealthTimeout: b.Spec.HealthTimeout, Soak: b.Spec.Soak,
		ScaleDownAfter: b.Spec.ScaleDownAfter, ScaleDownNever: b.Spec.ScaleDownNever, Checks: b.Spec.Checks}
}

// readRelease parses b's release.yaml at a checkout; nil when there is none.
// It vets the file first (a regular file of the checkout, bounded, one
// YAML document without repeated keys), so no caller can skip that.
func readRelease(dir string, b *render.Bundle) (*promote.Release, error) {
	if err := vetRelease(dir, b); err != nil {
		return nil, err
	}
	file := path.Join(b.Dir, releaseFile)
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	rel, err := promote.ParseRelease(file, data, b.Spec.Colors)
	if err == nil && rel.Bundle != b.Name {
		return nil, fmt.Errorf("%s: bundle: %q is not this bundle (%q)", file, rel.Bundle, b.Name)
	}
	return rel, err
}

// candidate renders b at snap for both colors (kustomize runs once) into
// the store, and names the result to promote.
func (a *agent) candidate(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, since string, run *bundleRun) promote.Candidate {
	c := promote.Candidate{Commit: snap.Commit, Subject: a.subject(ctx, since, snap.Commit), Policy: policyOf(b)}
	r, d := run.first, run.driver
	if run.first = nil; r == nil || r.ref.Commit != snap.Commit {
		rr := a.render(ctx, snap, b)
		r = &rr
	}
	if r.err != nil {
		c.RenderErr = r.err
		return c
	}
	c.Digest = r.ref.Digest
	if keep, ok := d.InUse(); ok {
		a.releases.keep(b.Name, append(keep, r.ref)...)
	}
	return c
}

// renderRun is one render of a bundle at a commit.
type renderRun struct {
	ref promote.ReleaseRef
	err error
}

// render renders b at snap for both colors and stores the result.
func (a *agent) render(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) renderRun {
	start := time.Now()
	defer func() { a.m.observePhase(b.Name, "render", time.Since(start)) }()
	a.releases.setSpec(b) // the newest bundle.yaml, even when its render fails
	r, err := a.renderIn(ctx, snap.Dir, snap.Commit, b)
	var re *render.Error
	switch {
	case err == nil:
		a.releases.setInputs(b.Name, snap.Commit, r.colors[b.Spec.Colors[0]].Inputs)
	case errors.As(err, &re):
		a.releases.setInputs(b.Name, snap.Commit, re.Inputs)
	}
	if err != nil {
		return renderRun{err: err}
	}
	ref := promote.ReleaseRef{Commit: snap.Commit, Digest: r.colors[b.Spec.Colors[0]].Digest}
	a.releases.put(ref, r)
	return renderRun{ref: ref}
}

// renderIn renders b in the checkout dir, stamped with commit.
func (a *agent) renderIn(ctx context.Context, dir, commit string, b *render.Bundle) (*rendered, error) {
	results, err := render.RenderColors(ctx, b, render.Options{RepoRoot: dir, Commit: commit, AllowRemoteBases: a.cfg.AllowRemoteBases},
		b.Spec.Colors[0], b.Spec.Colors[1])
	if err == nil {
		err = a.ten.check(b, results[0]) // tenancy.go: --allowed-namespaces
	}
	if err != nil {
		return nil, err
	}
	r := &rendered{bundle: b, colors: map[string]*render.Result{}}
	for _, res := range results {
		r.colors[res.Color] = res
	}
	return r, nil
}

// renderRecorded stores the releases release.yaml and the cluster say the
// colors run, for the driver's recovery (resync, flip back, soak). A
// release whose inputs equal the tip's is rendered from the tip's checkout;
// others are checked out at their commit. What cannot be rendered is
// logged: acting on it later fails with a clear error.
func (a *agent) renderRecorded(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, tip renderRun, rel *promote.Release, v promote.View) {
	var refs []promote.ReleaseRef
	if rel != nil {
		for _, cr := range rel.Colors {
			refs = append(refs, promote.ReleaseRef{Commit: cr.Commit, Digest: cr.Digest})
		}
	}
	for _, cv := range v.Colors {
		refs = append(refs, promote.ReleaseRef{Commit: cv.Commit, Digest: cv.Digest})
	}
	for _, ref := range refs {
		if ref.Commit == "" || ref.Digest == "" || a.releases.has(b.Name, ref) {
			continue
		}
		if err := a.renderRelease(ctx, snap, b, tip, ref); err != nil {
			a.log.Warn().Err(err).Str("bundle", b.Name).Str("commit", contract.Short(ref.Commit)).Str("phase", "recover").
				Msg("cannot render a release the cluster runs; acting on it will fail")
		}
	}
}

// renderRelease renders ref: from the tip's checkout when the tip renders
// the same digest, else from a checkout of ref's commit.
func (a *agent) renderRelease(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, tip renderRun, ref promote.ReleaseRef) error {
	dir := snap.Dir
	if tip.err != nil || tip.ref.Digest != ref.Digest {
		// Per bundle: drivers start concurrently (startDrivers), and two
		// bundles recovering the same commit must not share a checkout.
		dir = filepath.Join(filepath.Dir(a.dir), "at", b.Name+"@"+ref.Commit)
		if _, err := a.repo.Checkout(ctx, ref.Commit, dir); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	r, err := a.renderIn(ctx, dir, ref.Commit, b)
	if err != nil {
		return err
	}
	if got := r.colors[b.Spec.Colors[0]].Digest; got != ref.Digest {
		return fmt.Errorf("bundle %s: %s renders %s now, not the recorded %s", b.Name, contract.Short(ref.Commit), got, ref.Digest)
	}
	a.releases.put(ref, r)
	return nil
}

// subject is the subject of the newest human commit in (since, tip].
func (a *agent) subject(ctx context.Context, since, tip string) string {
	if since == "" {
		since = tip
	}
	commits, err := a.repo.Commits(ctx, since, tip)
	if err != nil {
		return contract.Short(tip)
	}
	for _, c := range commits {
		if !promote.IsAgentCommit(c.Message) {
			return c.Subject
		}
	}
	return contract.Short(tip)
}

// offer starts b's driver on first sight, and gives it a candidate when b's
// files (other than release.yaml) differ from those it last saw.
// It reports false when it could not (the next new tip gets a full pass).
func (a *agent) offer(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) bool {
	log := a.log.With().Str("bundle", b.Name).Str("commit", contract.Short(snap.Commit)).Logger()
	if err := vetRelease(snap.Dir, b); err != nil {
		a.m.refused.WithLabelValues(b.File).Inc()
		log.Error().Err(err).Str("phase", "discover").Msg("refusing the bundle at this commit; nothing changes until a commit fixes it")
		return false // a fix may touch release.yaml only: no skipping passes until then
	}
	run, err := a.runFor(ctx, snap, b)
	if err != nil {
		log.Error().Err(err).Msg("cannot start the bundle's driver")
		return false
	}
	run.dir = b.Dir // a bundle moved under the same name keeps its driver
	if run.seen != "" {
		changed, err := a.bundleChanged(ctx, b, run.seen, snap.Commit)
		if err != nil {
			log.Error().Err(err).Msg("cannot diff the bundle; will retry on the next poll")
			return false
		}
		if !changed || a.onlyAgentCommits(ctx, run.seen, snap.Commit) {
			// The agent's own commits (a revert restores what is live) are
			// never candidates.
			run.seen = snap.Commit
			return true
		}
	}
	cand, ok := a.vetted(ctx, snap, b, run) // trust.go: unsigned commits make a hold
	// stages.go: a candidate waiting at its stage gate is not offered (seen stays)
	if !ok || !a.gateOpen(ctx, snap, b, cand) {
		return false
	}
	run.seen = snap.Commit
	run.driver.Offer(cand) // latest wins, and cancels a verification in flight
	a.offered++
	return true
}

// onlyAgentCommits reports whether every commit in (from, to] is the
// agent's: written by its author and carrying its trailers. A human commit
// with forged trailers is still a candidate.
func (a *agent) onlyAgentCommits(ctx context.Context, from, to string) bool {
	commits, err := a.repo.Commits(ctx, from, to)
	if err != nil || len(commits) == 0 {
		return false
	}
	author, err := mail.ParseAddress(a.cfg.GitAuthor)
	if err != nil {
		return false
	}
	for _, c := range commits {
		if c.Author != author.Name+" <"+author.Address+">" || !promote.IsAgentCommit(c.Message) ||
			!a.signedByAgent(ctx, c.Hash) {
			return false
		}
	}
	return true
}

// bundleChanged reports whether any input of b other than its
// release.yaml differs between two commits: a file under its directory, or
// a file its newest render read (a base elsewhere in the repository).
func (a *agent) bundleChanged(ctx context.Context, b *render.Bundle, from, to string) (bool, error) {
	paths, err := a.changedPaths(ctx, from, to)
	if err != nil {
		return false, err
	}
	in := a.inputsOf(b)
	for _, p := range paths {
		if in.Match(p) && p != path.Join(b.Dir, releaseFile) {
			return true, nil
		}
	}
	return false, nil
}

// inputsOf names b's inputs: its directory and what its newest render read.
func (a *agent) inputsOf(b *render.Bundle) gitsync.Paths {
	return append(gitsync.Paths{strings.TrimSuffix(b.Dir, "/") + "/"}, a.releases.latestInputs(b.Name)...)
}

// diffCache remembers ChangedPaths(from, to) for the newest to. Bundles mostly
// last saw the same commit, so a pass over a new tip diffs the two trees once
// instead of once per bundle (each diff walks both whole trees).
type diffCache struct {
	mu   sync.Mutex
	to   string
	from map[string][]string
}

func (a *agent) changedPaths(ctx context.Context, from, to string) ([]string, error) {
	a.diffs.mu.Lock()
	defer a.diffs.mu.Unlock()
	if a.diffs.to != to {
		a.diffs.to, a.diffs.from = to, map[string][]string{}
	}
	if p, ok := a.diffs.from[from]; ok {
		return p, nil
	}
	p, err := a.repo.ChangedPaths(ctx, from, to)
	if err != nil {
		return nil, err
	}
	a.diffs.from[from] = p
	return p, nil
}

// maxReleaseBytes bounds release.yaml; the agent's own stays far below.
const maxReleaseBytes = 1 << 20

// vetRelease refuses a release.yaml that is not a plain file of the checkout:
// a symlink (to /dev/zero, a credential file, anything outside the
// repository), a directory, an oversized file or several YAML documents.
// Without this check it would be read unbounded on a driver's first start.
func vetRelease(dir string, b *render.Bundle) error {
	file := path.Join(b.Dir, releaseFile)
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: must be a regular file, not %s", file, fi.Mode().Type())
	}
	if fi.Size() > maxReleaseBytes {
		return fmt.Errorf("%s: file is %d bytes, larger than the %d byte limit", file, fi.Size(), maxReleaseBytes)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := yamlguard.Check(data); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
