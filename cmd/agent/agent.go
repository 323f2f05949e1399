package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// agent is the loop: sync → render → (per bundle) apply → verify → promote.
// The per-bundle part runs in a driver goroutine per bundle (bundle.go); the loop
// only notices new tips, renders candidates and hands them over.
type agent struct {
	cfg  *config
	repo *gitsync.Repo
	cl   *cluster
	m    *metrics
	log  zerolog.Logger
	dir  string // checkouts live here, one directory per tip
	wake chan struct{}

	mu      sync.Mutex
	bundles map[string]*bundleRun // by bundle name
	tip     string                // last tip rendered
	settled []settledBundle       // the bundles of the last full pass if all were handled; nil: none
	sem     chan struct{}         // bounds bundles reconciled at once
	wg      sync.WaitGroup        // drivers
	diffs   diffCache
	trust   *trust // --verify-commits; nil when off (trust.go)
}

func newAgent(c *config, repo *gitsync.Repo, ap *applier.Applier, m *metrics, dir string, log zerolog.Logger) *agent {
	a := &agent{
		cfg: c, repo: repo, m: m, log: log, dir: dir,
		wake:    make(chan struct{}, 1),
		bundles: map[string]*bundleRun{},
		sem:     make(chan struct{}, c.Concurrency),
	}
	a.cl = newCluster(ap, a.renderAt)
	return a
}

// renderAt checks commit out and renders b there for color (used to act on
// a color after a restart, when only the cluster says what it runs).
func (a *agent) renderAt(ctx context.Context, b *render.Bundle, commit, color string) (*render.Result, error) {
	dir := filepath.Join(filepath.Dir(a.dir), "at", commit)
	snap, err := a.repo.Checkout(ctx, commit, dir)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	return render.Render(ctx, b, render.Options{RepoRoot: snap.Dir, Color: color, Commit: commit, AllowRemoteBases: a.cfg.AllowRemoteBases})
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
	retry := a.cfg.Interval
	for {
		wait := a.cfg.Interval
		if err := a.sync(ctx); err != nil {
			if ctx.Err() != nil {
				break
			}
			a.m.transient.WithLabelValues("git").Inc()
			a.log.Error().Err(err).Str("phase", "sync").Dur("retry_in", retry).Msg("sync failed; will retry")
			wait, retry = retry, backoff(retry, 5*time.Minute)
		} else {
			retry = a.cfg.Interval
			once.Do(ready)
		}
		select {
		case <-ctx.Done():
		case <-a.wake:
		case <-resync.C:
			a.resync(ctx)
		case <-time.After(wait):
		}
		if ctx.Err() != nil {
			break
		}
	}
	a.wg.Wait()
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
		return nil
	}
	log := a.log.With().Str("commit", short(poll.Tip)).Logger()
	snap, err := a.repo.Checkout(ctx, poll.Tip, filepath.Join(a.dir, poll.Tip))
	if err != nil {
		return err
	}
	a.prune(poll.Tip)
	a.settled = nil
	bundles, err := render.Discover(snap.Dir, a.cfg.Root)
	if err != nil {
		// A broken bundle.yaml layout is the repository's problem, not a
		// transient one: report it and wait for the next commit.
		log.Error().Err(err).Str("phase", "discover").Msg("cannot read bundles at this commit; nothing changes until a commit fixes it")
		a.tip = poll.Tip
		return nil
	}
	ok := true
	settled := []settledBundle{}
	for _, b := range bundles {
		ok = a.offer(ctx, snap, b) && ok
		settled = append(settled, settledBundle{name: b.Name, dir: strings.TrimSuffix(b.Dir, "/")})
	}
	if ok {
		a.settled = settled
	}
	a.tip = poll.Tip
	return nil
}

// settledBundle is a bundle of the last full pass.
type settledBundle struct{ name, dir string }

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
			if strings.HasPrefix(p, sb.dir+"/") && p != sb.dir+"/"+releaseFile {
				return false
			}
		}
	}
	return true
}

// offer starts b's driver on first sight, and gives it a candidate when b's
// files (other than release.yaml) differ from those it last saw.
// It reports false when it could not (the next new tip gets a full pass).
func (a *agent) offer(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) bool {
	log := a.log.With().Str("bundle", b.Name).Str("commit", short(snap.Commit)).Logger()
	if err := vetRelease(snap.Dir, b); err != nil {
		log.Error().Err(err).Str("phase", "discover").Msg("refusing the bundle at this commit; nothing changes until a commit fixes it")
		return false // a fix may touch release.yaml only: no skipping passes until then
	}
	run, err := a.runFor(ctx, snap, b)
	if err != nil {
		log.Error().Err(err).Msg("cannot start the bundle's driver")
		return false
	}
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
	if !ok {
		return false
	}
	run.seen = snap.Commit
	run.driver.Offer(cand) // latest wins, and cancels a verification in flight
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
		if c.Author != author.Name+" <"+author.Address+">" || !promote.IsAgentCommit(c.Subject+"\n\n"+c.Body) ||
			!a.signedByAgent(ctx, c.Hash) {
			return false
		}
	}
	return true
}

// bundleChanged reports whether any file under b's directory other than
// release.yaml differs between two commits.
func (a *agent) bundleChanged(ctx context.Context, b *render.Bundle, from, to string) (bool, error) {
	paths, err := a.changedPaths(ctx, from, to)
	if err != nil {
		return false, err
	}
	prefix := strings.TrimSuffix(b.Dir, "/") + "/"
	for _, p := range paths {
		if strings.HasPrefix(p, prefix) && p != path.Join(b.Dir, releaseFile) {
			return true, nil
		}
	}
	return false, nil
}

const releaseFile = "release.yaml"

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
	if err := render.CheckYAML(data); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
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

func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}
