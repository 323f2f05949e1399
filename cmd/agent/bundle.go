package main

import (
	"context"
	"errors"
	"fmt"
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

// payload is what a candidate carries for the cluster: the bundle at the
// candidate commit and its render for each color.
type payload struct {
	bundle  *render.Bundle
	renders map[string]*render.Result
}

// bundleRun is one bundle's driver and what the loop knows of it.
type bundleRun struct {
	name       string
	candidates chan promote.Candidate // capacity 1: latest wins
	resync     chan struct{}
	seen       string // commit whose bundle files the driver was last given (or that is live)

	mu           sync.Mutex
	cancelVerify context.CancelFunc // set while a verification runs
}

// newer tells a running verification that a newer candidate arrived.
func (r *bundleRun) newer() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cancelVerify != nil {
		r.cancelVerify()
	}
}

// runFor returns b's driver, starting it (with recovery) on first sight.
func (a *agent) runFor(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) (*bundleRun, error) {
	a.mu.Lock()
	run, ok := a.bundles[b.Name]
	a.mu.Unlock()
	if ok {
		return run, nil
	}
	log := a.log.With().Str("bundle", b.Name).Logger()
	rel, err := readRelease(snap.Dir, b)
	if err != nil {
		// A broken release.yaml never moves traffic: report it and leave the
		// bundle alone until a commit fixes it.
		return nil, err
	}
	obs, err := a.cl.observe(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err)
	}
	run = &bundleRun{name: b.Name, candidates: make(chan promote.Candidate, 1), resync: make(chan struct{}, 1)}
	st := initialState(b, rel, obs)
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
	if cs := obs.Colors[obs.Live]; !obs.Mixed && obs.Live != "" && (rel == nil || obs.Live != rel.Live) && cs.Healthy && cs.Commit != "" {
		// The flip to this commit happened before a restart; the driver
		// commits it (recover), so it is not a new candidate.
		run.seen = cs.Commit
	}
	d := &driver{a: a, run: run, b: b, st: st, rel: rel, log: log}
	a.mu.Lock()
	a.bundles[b.Name] = run
	a.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		d.loop(ctx, obs)
	}()
	return run, nil
}

// readRelease parses b's release.yaml at a checkout; nil when there is none.
func readRelease(dir string, b *render.Bundle) (*promote.Release, error) {
	file := path.Join(b.Dir, releaseFile)
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return promote.ParseRelease(file, data, b.Spec.Colors)
}

// initialState is the promote.State implied by release.yaml and the cluster.
func initialState(b *render.Bundle, rel *promote.Release, obs applier.Observed) promote.State {
	st := promote.State{Bundle: b.Name, Colors: b.Spec.Colors, OnFailure: b.Spec.OnFailure, Phase: promote.PhaseIdle}
	if rel == nil || rel.Live == "" {
		return st
	}
	st.Live = rel.Live
	st.LiveCommit = rel.Colors[rel.Live].Commit
	st.LiveDigest = rel.Colors[rel.Live].Digest
	prev := st.Idle()
	if pc, ok := rel.Colors[prev]; ok && pc.State == "previous" {
		st.Previous, st.PrevDigest = prev, pc.Digest
		cs := obs.Colors[prev]
		st.PreviousWarm = cs.Healthy && !cs.ScaledDown && cs.Replicas > 0 && cs.Digest == pc.Digest
	}
	return st
}

// candidate renders b at snap for both colors.
func (a *agent) candidate(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, since string) promote.Candidate {
	c := promote.Candidate{Commit: snap.Commit, Subject: a.subject(ctx, since, snap.Commit)}
	p := &payload{bundle: b, renders: map[string]*render.Result{}}
	start := time.Now()
	for _, color := range b.Spec.Colors {
		res, err := render.Render(ctx, b, render.Options{RepoRoot: snap.Dir, Color: color, Commit: snap.Commit, AllowRemoteBases: a.cfg.AllowRemoteBases})
		if err != nil {
			c.RenderErr = err
			break
		}
		p.renders[color] = res
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

// driver performs promote.Step's decisions for one bundle.
type driver struct {
	a   *agent
	run *bundleRun
	b   *render.Bundle // the bundle as of the latest candidate
	st  promote.State
	rel *promote.Release
	log zerolog.Logger

	scaleDownAt time.Time // when the previous color goes to zero; zero: nothing planned
}

// loop recovers from a restart, then takes candidates and resyncs until ctx ends.
func (d *driver) loop(ctx context.Context, obs applier.Observed) {
	d.recover(ctx, obs)
	for {
		var timer <-chan time.Time
		if !d.scaleDownAt.IsZero() {
			timer = time.After(time.Until(d.scaleDownAt))
		}
		select {
		case <-ctx.Done():
			return
		case c := <-d.run.candidates:
			d.release(ctx, c)
		case <-d.run.resync:
			d.resync(ctx)
		case <-timer:
			d.scaleDownPrevious(ctx)
		}
	}
}

// release takes one candidate through Step until it settles.
func (d *driver) release(ctx context.Context, c promote.Candidate) {
	d.a.sem <- struct{}{}
	defer func() { <-d.a.sem }()
	if p, ok := c.Payload.(*payload); ok {
		d.b = p.bundle
		d.st.OnFailure = p.bundle.Spec.OnFailure
	}
	log := d.log.With().Str("commit", short(c.Commit)).Logger()
	log.Info().Str("phase", "candidate").Str("digest", c.Digest).Msg("new candidate")
	obs := promote.Observation{Kind: "candidate", Candidate: &c}
	var last promote.Observation // the observation a retry repeats
	var evidence string
	warm := false
	for {
		st, dec := promote.Step(d.st, obs)
		d.st = st
		if dec.Kind == "retry" {
			d.a.m.transient.WithLabelValues("cluster").Inc()
			log.Warn().Err(obs.Err).Dur("retry_in", dec.After).Msg("transient error; retrying, not failing the release")
			if !sleep(ctx, dec.After) {
				return
			}
			obs = last
			obs.Err, obs.Transient = nil, false
			// Redo the action that failed: step back to the decision before it.
			dec = d.redo(last)
		} else {
			last = obs
		}
		start := time.Now()
		switch dec.Kind {
		case "none":
			log.Info().Str("phase", "idle").Msg("nothing to release: the candidate renders what is live")
			return
		case "deploy":
			res := c.Payload.(*payload).renders[dec.Color]
			cs, err := d.a.cl.deploy(ctx, d.b, res)
			d.a.m.observePhase(d.b.Name, "apply", time.Since(start))
			if err == nil {
				log.Info().Str("phase", "apply").Str("color", dec.Color).Str("changes", cs.String()).Dur("duration", time.Since(start)).Msg("applied")
			}
			obs = d.observe("deployed", err)
		case "verify":
			rep, err, newer := d.verify(ctx, dec.Color)
			if newer {
				log.Info().Str("phase", "verify").Str("color", dec.Color).Msg("a newer commit arrived; cancelling this verification")
				return
			}
			d.a.m.observePhase(d.b.Name, "verify", time.Since(start))
			evidence = fmt.Sprintf("%s; verified in %s", rep.Summary(), time.Since(start).Round(time.Second))
			if err == nil {
				log.Info().Str("phase", "verify").Str("color", dec.Color).Str("report", rep.Summary()).Dur("duration", time.Since(start)).Msg("healthy")
			}
			obs = d.observe("verified", err)
		case "flip":
			if last.Kind == "candidate" {
				// A revert to what the warm previous color runs: flip back
				// at once, without a cold start, if the cluster confirms the
				// color still runs that release, scaled up and healthy.
				res := c.Payload.(*payload).renders[dec.Color]
				if !d.warm(ctx, dec.Color, c.Digest) {
					log.Info().Str("phase", "flip").Str("color", dec.Color).Msg("previous color is not warm any more; deploying it instead")
					d.st.Previous, d.st.PrevDigest, d.st.PreviousWarm = "", "", false
					obs = last
					continue
				}
				warm = true
				evidence = fmt.Sprintf("%s already ran this release (warm); flipped back without a cold start", dec.Color)
				d.a.cl.remember(d.b.Name, dec.Color, colorRun{res: res, objects: res.Objects})
				log.Info().Str("phase", "flip").Str("color", dec.Color).Msg("warm flip-back: the previous color already runs this release")
			}
			err := d.a.cl.route(ctx, d.b, dec.Color)
			d.a.m.observePhase(d.b.Name, "flip", time.Since(start))
			if err == nil {
				log.Info().Str("phase", "flip").Str("color", dec.Color).Dur("duration", time.Since(start)).Msg("stable Services switched")
			}
			obs = d.observe("flipped", err)
			obs.Reason = evidence
		case "record":
			d.recordPromotion(ctx, c, dec, warm)
			return
		case "scaledown+record":
			d.recordFailure(ctx, c, dec)
			return
		default:
			log.Error().Str("decision", dec.Kind).Msg("unknown decision; leaving the bundle as it is")
			return
		}
	}
}

// warm reports whether color runs digest, scaled up and healthy.
func (d *driver) warm(ctx context.Context, color, digest string) bool {
	obs, err := d.a.cl.observe(ctx, d.b)
	if err != nil {
		return false
	}
	cs := obs.Colors[color]
	return cs.Healthy && !cs.ScaledDown && cs.Replicas > 0 && cs.Digest == digest
}

// redo returns the decision whose effect produced obs, to repeat it after a
// transient error.
func (d *driver) redo(obs promote.Observation) promote.Decision {
	switch obs.Kind {
	case "candidate":
		return promote.Decision{Kind: "deploy", Color: d.st.Target}
	case "deployed":
		return promote.Decision{Kind: "verify", Color: d.st.Target}
	default:
		return promote.Decision{Kind: "flip", Color: d.st.Target}
	}
}

// observe turns an effect's error into an observation: transient errors are
// retried, a cancelled context is nobody's failure.
func (d *driver) observe(kind string, err error) promote.Observation {
	o := promote.Observation{Kind: kind, Err: err}
	if err != nil {
		var he *applier.HealthError
		o.Transient = !errors.As(err, &he) && (applier.IsTransient(err) || errors.Is(err, promote.ErrTransient))
		if he != nil {
			o.Err = errors.New(healthReason(he))
		}
	}
	return o
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

// verify waits for the color's health; it stops early (newer=true) when a
// newer candidate arrives.
func (d *driver) verify(ctx context.Context, color string) (applier.HealthReport, error, bool) {
	vctx, cancel := context.WithCancel(ctx)
	d.run.mu.Lock()
	d.run.cancelVerify = cancel
	d.run.mu.Unlock()
	defer func() {
		d.run.mu.Lock()
		d.run.cancelVerify = nil
		d.run.mu.Unlock()
		cancel()
	}()
	rep, err := d.a.cl.verify(vctx, d.b, color, d.b.Spec.HealthTimeout)
	if err != nil && vctx.Err() != nil && ctx.Err() == nil {
		return rep, err, true
	}
	return rep, err, false
}

// recordPromotion writes release.yaml and the promotion commit, retrying
// push failures until it lands (a flip that happened is committed).
func (d *driver) recordPromotion(ctx context.Context, c promote.Candidate, dec promote.Decision, warm bool) {
	now := time.Now().UTC().Truncate(time.Second)
	rel := d.record()
	prev := rel.Live
	if prev != "" && prev != dec.Color {
		pc := rel.Colors[prev]
		pc.State = "previous"
		pc.PromotedAt = nil
		rel.Colors[prev] = pc
	}
	rel.Live = dec.Color
	rel.Colors[dec.Color] = promote.ColorRelease{Commit: c.Commit, Digest: c.Digest, State: "live", PromotedAt: &now}
	d.write(ctx, "promoted", dec.Message, rel, nil)
	d.a.m.results.WithLabelValues(d.b.Name, "promoted").Inc()
	d.a.m.setLive(d.b.Name, dec.Color, short(c.Commit))
	d.log.Info().Str("phase", "promote").Str("color", dec.Color).Str("commit", short(c.Commit)).Bool("warm", warm).Msg("promoted")
	if prev != "" && prev != dec.Color && !d.b.Spec.ScaleDownNever {
		d.scaleDownAt = time.Now().Add(d.b.Spec.ScaleDownAfter)
	}
}

// recordFailure scales the failed color to zero (objects kept) and commits
// a revert, or with onFailure hold (or on a first deploy) records the
// failure in release.yaml only. Traffic never moved.
func (d *driver) recordFailure(ctx context.Context, c promote.Candidate, dec promote.Decision) {
	reason := reasonOf(dec.Message)
	d.log.Warn().Str("phase", "fail").Str("color", dec.Color).Str("reason", reason).Msg("release failed; traffic stays")
	for attempt := 0; ; attempt++ {
		err := d.a.cl.scale(ctx, d.b, dec.Color, false)
		if err == nil || !applier.IsTransient(err) || !sleep(ctx, promote.Backoff(attempt)) {
			if err != nil {
				d.log.Error().Err(err).Str("color", dec.Color).Msg("cannot scale the failed color to zero")
			}
			break
		}
	}
	rel := d.record()
	rel.LastFailure = &promote.Failure{Commit: c.Commit, Reason: reason, At: time.Now().UTC().Truncate(time.Second)}
	result := "held"
	var restore *revert
	if dec.Restores != "" {
		result = "reverted"
		restore = &revert{failing: c.Commit, from: dec.Restores}
	}
	d.write(ctx, result, dec.Message, rel, restore)
	d.a.m.results.WithLabelValues(d.b.Name, result).Inc()
}

// reasonOf extracts the body of a message (the evidence).
func reasonOf(msg string) string {
	parts := strings.SplitN(msg, "\n\n", 3)
	if len(parts) < 2 {
		return msg
	}
	return strings.TrimSpace(parts[1])
}

// record returns a copy of the bundle's release record to change.
func (d *driver) record() *promote.Release {
	rel := &promote.Release{APIVersion: promote.APIVersion, Kind: promote.KindRelease, Bundle: d.b.Name, Colors: map[string]promote.ColorRelease{}}
	if d.rel != nil {
		rel.Live, rel.LastFailure = d.rel.Live, d.rel.LastFailure
		for k, v := range d.rel.Colors {
			rel.Colors[k] = v
		}
	}
	return rel
}

// revert says which bundle files a commit restores.
type revert struct{ failing, from string }

// write commits release.yaml (and a revert's restored files) on the branch
// tip, retrying until it lands or the change is moot.
func (d *driver) write(ctx context.Context, result, msg string, rel *promote.Release, rv *revert) {
	data, err := rel.Marshal()
	if err != nil {
		d.log.Error().Err(err).Msg("cannot encode release.yaml")
		return
	}
	file := path.Join(d.b.Dir, releaseFile)
	start := time.Now()
	for attempt := 0; ; attempt++ {
		w, err := d.a.repo.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
			if rv != nil {
				changed, err := t.ChangedSince(rv.failing, d.b.Dir)
				if err != nil {
					return "", err
				}
				if changed {
					return "", gitsync.ErrAbandon // a newer human change to the bundle wins
				}
				if err := t.RestoreDir(d.b.Dir, rv.from); err != nil {
					return "", err
				}
			}
			return msg, t.WriteFile(file, data)
		})
		switch {
		case err == nil || errors.Is(err, gitsync.ErrNothingToCommit):
			d.rel = rel
			d.a.m.observePhase(d.b.Name, "commit", time.Since(start))
			d.log.Info().Str("phase", "commit").Str("result", result).Str("commit", short(w.Commit)).Int("attempts", w.Attempts).Dur("duration", time.Since(start)).Msg("wrote the outcome to Git")
			return
		case errors.Is(err, gitsync.ErrAbandon):
			d.rel = rel
			d.log.Info().Str("phase", "commit").Msg("a newer commit changed the bundle; no revert written over it")
			return
		case ctx.Err() != nil:
			return
		}
		d.a.m.transient.WithLabelValues("git").Inc()
		wait := promote.Backoff(attempt)
		d.log.Error().Err(err).Str("phase", "commit").Dur("retry_in", wait).Msg("cannot write the outcome to Git; retrying")
		if !sleep(ctx, wait) {
			return
		}
	}
}

// recover converges after a restart: a flip that happened is committed, a
// flip to an unhealthy color is put back, and mixed twins are made whole.
func (d *driver) recover(ctx context.Context, obs applier.Observed) {
	recorded := ""
	if d.rel != nil {
		recorded = d.rel.Live
	}
	switch {
	case obs.Live == "" && !obs.Mixed:
		return // no twins yet: first deploy, or a bundle without Services
	case !obs.Mixed && obs.Live == recorded:
		d.planScaleDown()
		return
	}
	cs := obs.Colors[obs.Live]
	if !obs.Mixed && cs.Healthy && cs.Commit != "" {
		d.log.Warn().Str("phase", "recover").Str("color", obs.Live).Str("commit", short(cs.Commit)).
			Msg("the stable Services select a color release.yaml does not record: committing that promotion")
		c := promote.Candidate{Commit: cs.Commit, Digest: cs.Digest}
		d.st.Previous, d.st.PrevDigest, d.st.PreviousWarm = d.st.Live, d.st.LiveDigest, d.st.Live != ""
		d.st.Live, d.st.LiveCommit, d.st.LiveDigest = obs.Live, cs.Commit, cs.Digest
		d.recordPromotion(ctx, c, promote.Decision{Kind: "record", Color: obs.Live,
			Message: promote.PromoteMessage(d.b.Name, obs.Live, cs.Commit, "recovered after a restart: the flip had happened; "+fmt.Sprintf("%s %d/%d ready", obs.Live, cs.Ready, cs.Replicas))}, false)
		return
	}
	if recorded == "" {
		d.log.Error().Str("phase", "recover").Msg("stable Services select an unhealthy or mixed color and release.yaml records none; waiting for a candidate")
		return
	}
	d.log.Warn().Str("phase", "recover").Str("color", recorded).Msg("stable Services are mixed or on an unhealthy color: putting them back on the recorded live color")
	for attempt := 0; ; attempt++ {
		err := d.a.cl.route(ctx, d.b, recorded)
		if err == nil || !sleep(ctx, promote.Backoff(attempt)) {
			if err != nil {
				d.log.Error().Err(err).Msg("cannot put the stable Services back")
			}
			return
		}
	}
}

// planScaleDown schedules the previous color's scale-down after a restart.
func (d *driver) planScaleDown() {
	if d.rel == nil || d.b.Spec.ScaleDownNever || !d.st.PreviousWarm {
		return
	}
	if at := d.rel.Colors[d.rel.Live].PromotedAt; at != nil {
		d.scaleDownAt = at.Add(d.b.Spec.ScaleDownAfter)
	}
}

// scaleDownPrevious scales the previous color to zero; it is cold afterwards.
func (d *driver) scaleDownPrevious(ctx context.Context) {
	d.scaleDownAt = time.Time{}
	if d.st.Previous == "" || d.st.Previous == d.st.Live {
		return
	}
	if err := d.a.cl.scale(ctx, d.b, d.st.Previous, false); err != nil {
		d.log.Error().Err(err).Str("color", d.st.Previous).Msg("cannot scale the previous color down; will retry")
		d.scaleDownAt = time.Now().Add(time.Minute)
		return
	}
	d.st.PreviousWarm = false
	d.log.Info().Str("phase", "scale-down").Str("color", d.st.Previous).Msg("previous color scaled to zero")
}

// resync re-applies the live color and points the stable Services at it
// (drift correction; idempotent server-side apply).
func (d *driver) resync(ctx context.Context) {
	if d.st.Live == "" {
		return
	}
	run, err := d.a.cl.run(ctx, d.b, d.st.Live)
	if err == nil {
		_, err = d.a.cl.deploy(ctx, d.b, run.res)
	}
	if err == nil {
		err = d.a.cl.route(ctx, d.b, d.st.Live)
	}
	if err != nil {
		d.log.Warn().Err(err).Str("phase", "resync").Msg("drift correction failed; will retry at the next resync")
		return
	}
	d.log.Debug().Str("phase", "resync").Str("color", d.st.Live).Msg("live color re-applied")
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
