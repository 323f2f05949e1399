package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// payload is what a candidate carries for the cluster: the bundle at the
// candidate commit and its render for each color.
type payload struct {
	bundle  *render.Bundle
	renders map[string]*render.Result
}

// bundleRun is one bundle's driver and what the loop knows of it.
type bundleRun struct {
	name   string
	driver *promote.Driver
	seen   string // commit whose bundle files the driver was last given (or that is live)
}

// runFor returns b's driver, starting it (with recovery) on first sight.
func (a *agent) runFor(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) (*bundleRun, error) {
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
	bc := &bundleCluster{cl: a.cl, b: b}
	v, err := bc.Observe(ctx)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err)
	}
	a.seedTrust(b.Name, v) // trust.go: the live release is where signature checks start
	run = &bundleRun{name: b.Name}
	if rel != nil && rel.Live != "" {
		run.seen = rel.Colors[rel.Live].Commit
		if f := rel.LastFailure; f != nil && f.Commit != "" {
			// Nothing new since the recorded failure: do not retry it.
			if changed, err := a.bundleChanged(ctx, b, f.Commit, snap.Commit); err == nil && !changed {
				run.seen = snap.Commit
			}
		}
		a.m.setLive(b.Name, rel.Live, short(rel.Colors[rel.Live].Commit))
	}
	if cv := v.Colors[v.Live]; !v.Mixed && v.Live != "" && (rel == nil || v.Live != rel.Live) && cv.Healthy && cv.Commit != "" {
		// The flip to this commit happened before a restart; the driver
		// commits it while recovering, so it is not a new candidate.
		run.seen = cv.Commit
	}
	base := promote.State{Bundle: b.Name, Colors: b.Spec.Colors, Policy: policyOf(b)}
	git := &bundleGit{repo: a.repo, dir: b.Dir}
	run.driver = promote.NewDriver(base, rel, bc, git, a.sem, a.notifier(b.Name))
	a.mu.Lock()
	a.bundles[b.Name] = run
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		run.driver.Run(ctx)
	}()
	return run, nil
}

// policyOf is the release policy of bundle.yaml.
func policyOf(b *render.Bundle) promote.Policy {
	return promote.Policy{OnFailure: b.Spec.OnFailure, HealthTimeout: b.Spec.HealthTimeout, Soak: b.Spec.Soak,
		ScaleDownAfter: b.Spec.ScaleDownAfter, ScaleDownNever: b.Spec.ScaleDownNever}
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

// candidate renders b at snap for both colors (kustomize runs once).
func (a *agent) candidate(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, since string) promote.Candidate {
	c := promote.Candidate{Commit: snap.Commit, Subject: a.subject(ctx, since, snap.Commit), Policy: policyOf(b)}
	p := &payload{bundle: b, renders: map[string]*render.Result{}}
	start := time.Now()
	// One kustomize run serves both colors.
	results, err := render.RenderColors(ctx, b, render.Options{RepoRoot: snap.Dir, Commit: snap.Commit, AllowRemoteBases: a.cfg.AllowRemoteBases},
		b.Spec.Colors[0], b.Spec.Colors[1])
	if err != nil {
		c.RenderErr = err
	}
	for _, res := range results {
		p.renders[res.Color] = res
		c.Digest = res.Digest
	}
	a.m.observePhase(b.Name, "render", time.Since(start))
	c.Payload = p
	return c
}

// subject is the subject of the newest human commit in (since, tip].
func (a *agent) subject(ctx context.Context, since, tip string) string {
	if since == "" {
		since = tip
	}
	commits, err := a.repo.Commits(ctx, since, tip)
	if err != nil {
		return short(tip)
	}
	for _, c := range commits {
		if !promote.IsAgentCommit(c.Subject + "\n\n" + c.Body) {
			return c.Subject
		}
	}
	return short(tip)
}

// phaseMessages are the log messages of the driver's notes.
var phaseMessages = map[string]string{
	"candidate":  "new candidate",
	"idle":       "nothing to release",
	"apply":      "applied",
	"verify":     "verified",
	"flip":       "stable Services switched",
	"promote":    "promoted",
	"soak":       "soak over",
	"flip-back":  "stable Services switched back",
	"fail":       "release failed",
	"commit":     "wrote the outcome to Git",
	"recover":    "recovering after a restart",
	"scale-down": "previous color scaled down",
	"resync":     "live color re-applied",
	"retry":      "transient error; retrying, not failing the release",
}

// notifier logs the driver's notes (one JSON event per step, with bundle,
// commit, color and phase) and turns them into metrics.
func (a *agent) notifier(bundle string) func(promote.Note) {
	log := a.log.With().Str("bundle", bundle).Logger()
	return func(n promote.Note) {
		var ev *zerolog.Event
		switch {
		case n.Err != nil && !errors.Is(n.Err, promote.ErrTransient) && n.Phase != "verify" && n.Phase != "apply" && n.Phase != "soak":
			ev = log.Error()
		case n.Warn:
			ev = log.Warn()
		case n.Phase == "resync":
			ev = log.Debug()
		default:
			ev = log.Info()
		}
		ev = ev.Str("phase", n.Phase)
		if n.Color != "" {
			ev = ev.Str("color", n.Color)
		}
		if n.Commit != "" {
			ev = ev.Str("commit", short(n.Commit))
		}
		if n.Result != "" {
			ev = ev.Str("result", n.Result)
		}
		if n.Detail != "" {
			ev = ev.Str("detail", n.Detail)
		}
		if n.Attempts > 0 {
			ev = ev.Int("attempts", n.Attempts)
		}
		if n.Duration > 0 {
			ev = ev.Dur("duration", n.Duration)
		}
		if n.Err != nil {
			ev = ev.Err(n.Err)
		}
		ev.Msg(phaseMessages[n.Phase])

		switch n.Phase {
		case "apply", "verify", "flip", "soak":
			if n.Err == nil || !errors.Is(n.Err, promote.ErrTransient) {
				a.m.observePhase(bundle, n.Phase, n.Duration)
			}
		case "retry":
			a.m.transient.WithLabelValues("cluster").Inc()
		case "commit":
			switch {
			case n.Err != nil:
				a.m.transient.WithLabelValues("git").Inc()
			case n.Commit != "":
				a.m.observePhase(bundle, "commit", n.Duration)
				a.m.results.WithLabelValues(bundle, n.Result).Inc()
			}
		}
		if n.Live != "" {
			a.m.setLive(bundle, n.Live, short(n.LiveCommit))
		}
	}
}

// The adapters satisfy promote's interfaces.
var (
	_ promote.Cluster = (*bundleCluster)(nil)
	_ promote.Git     = (*bundleGit)(nil)
)

// bundleCluster is promote.Cluster for one bundle, on top of the applier.
// The bundle follows the candidates (its namespace may change with them).
type bundleCluster struct {
	cl *cluster
	b  *render.Bundle
}

// classify turns applier errors into promote's vocabulary: unreachable is
// transient; a health failure is the evidence for the commit message.
func classify(err error) error {
	var he *applier.HealthError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &he):
		return errors.New(healthReason(he))
	case applier.IsTransient(err):
		return promote.Transient(err)
	}
	return err
}

// healthReason is the failure evidence for commit messages.
func healthReason(he *applier.HealthError) string {
	var parts []string
	for _, f := range he.Failures {
		parts = append(parts, f.String())
	}
	reason := strings.Join(parts, "; ")
	if he.TimedOut {
		reason = "not ready in time: " + reason
	}
	return fmt.Sprintf("%s after %s", reason, he.Report.Duration.Round(100*time.Millisecond))
}

func (c *bundleCluster) Observe(ctx context.Context) (promote.View, error) {
	obs, err := c.cl.observe(ctx, c.b)
	if err != nil {
		return promote.View{}, classify(err)
	}
	v := promote.View{Live: obs.Live, Mixed: obs.Mixed, Colors: map[string]promote.ColorView{}}
	for color, cs := range obs.Colors {
		v.Colors[color] = promote.ColorView{Commit: cs.Commit, Digest: cs.Digest, Healthy: cs.Healthy,
			ScaledDown: cs.ScaledDown, Replicas: int(cs.Replicas), Ready: int(cs.Ready)}
	}
	return v, nil
}

func (c *bundleCluster) Deploy(ctx context.Context, color string, cand *promote.Candidate) (string, error) {
	p := cand.Payload.(*payload)
	c.b = p.bundle
	cs, err := c.cl.deploy(ctx, c.b, p.renders[color], true)
	return cs.String(), classify(err)
}

func (c *bundleCluster) Verify(ctx context.Context, color string, timeout time.Duration) (string, error) {
	start := time.Now()
	rep, err := c.cl.verify(ctx, c.b, color, timeout)
	if err != nil {
		return rep.Summary(), classify(err)
	}
	return fmt.Sprintf("%s; verified in %s", rep.Summary(), time.Since(start).Round(time.Second)), nil
}

func (c *bundleCluster) Route(ctx context.Context, color string) error {
	return classify(c.cl.route(ctx, c.b, color))
}

func (c *bundleCluster) Scale(ctx context.Context, color string, up bool) error {
	return classify(c.cl.scale(ctx, c.b, color, up))
}

// Watch re-checks the color's health until d has passed; a workload that
// fails (crash loop, pull errors) or stays unready for long is a degradation.
func (c *bundleCluster) Watch(ctx context.Context, color string, d time.Duration) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		_, err := c.cl.verify(ctx, c.b, color, max(left, 5*time.Second))
		if err != nil {
			return classify(err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Restore re-applies what the color ran at commit (without shared objects,
// which follow the live release), keeping it a warm standby.
func (c *bundleCluster) Restore(ctx context.Context, color, commit string) error {
	res, err := c.cl.renderAt(ctx, c.b, commit, color)
	if err != nil {
		return fmt.Errorf("bundle %s: re-render %s at %s: %w", c.b.Name, color, short(commit), err)
	}
	_, err = c.cl.deploy(ctx, c.b, res, false)
	return classify(err)
}

func (c *bundleCluster) Resync(ctx context.Context, color string) error {
	run, err := c.cl.run(ctx, c.b, color)
	if err == nil {
		_, err = c.cl.deploy(ctx, c.b, run.res, true)
	}
	if err == nil {
		err = c.cl.route(ctx, c.b, color)
	}
	return classify(err)
}

// bundleGit is promote.Git for one bundle, on top of gitsync.
type bundleGit struct {
	repo *gitsync.Repo
	dir  string // the bundle's directory in the repository
}

// Write commits release.yaml (and a revert's restored files) on the tip of
// the branch; a revert is abandoned when a newer commit changed the bundle.
func (g *bundleGit) Write(ctx context.Context, rec promote.Commit) (promote.Written, error) {
	data, err := rec.Release.Marshal()
	if err != nil {
		return promote.Written{}, fmt.Errorf("%s: %w", path.Join(g.dir, releaseFile), err)
	}
	w, err := g.repo.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		if rv := rec.Revert; rv != nil {
			// release.yaml is the agent's own file: its promotion commits do not count.
			changed, err := t.ChangedSince(rv.Failing, g.dir, path.Join(g.dir, releaseFile))
			if err != nil {
				return "", err
			}
			if changed {
				return "", gitsync.ErrAbandon // a newer human change to the bundle wins
			}
			if err := t.RestoreDir(g.dir, rv.From); err != nil {
				return "", err
			}
		}
		return rec.Message, t.WriteFile(path.Join(g.dir, releaseFile), data)
	})
	switch {
	case errors.Is(err, gitsync.ErrAbandon):
		return promote.Written{}, promote.ErrSuperseded
	case errors.Is(err, gitsync.ErrNothingToCommit):
		return promote.Written{Commit: w.Commit, Attempts: w.Attempts}, nil
	case err != nil:
		return promote.Written{}, err
	}
	return promote.Written{Commit: w.Commit, Attempts: w.Attempts}, nil
}
