package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Stages (docs/stages.md): a candidate of a bundle with spec.after or
// spec.approval passes a gate before it is offered to the bundle's driver.
// The gate reads only the branch (release.yaml of the upstreams, the
// approval trailers), so agents in several clusters agree without talking
// to each other. A waiting candidate is not offered and the bundle's seen
// commit does not move: every new tip asks the gate again, and the newest
// tip is the candidate (newest wins).

// stages is what the agent knows about stages at the newest tip.
type stages struct {
	waitingGauge *prometheus.GaugeVec

	mu      sync.Mutex
	ctx     context.Context           // the agent's, for the soak records written in the background
	disc    map[string]*render.Bundle // every valid bundle at the newest tip, by name
	tip     string
	inputs  map[string]gitsync.Paths // upstream inputs rendered at tip, by bundle
	waiting map[string]promote.Gate  // bundle → its gate while it waits
}

func newStages(m *metrics) *stages {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tandem_bundle_waiting",
		Help: "1 while a bundle's candidate waits at its stage gate, labelled with what it waits for (an upstream bundle, or approval).",
	}, []string{"bundle", "on"})
	m.reg.MustRegister(g)
	return &stages{waitingGauge: g, ctx: context.Background(), disc: map[string]*render.Bundle{},
		inputs: map[string]gitsync.Paths{}, waiting: map[string]promote.Gate{}}
}

// atTip records the bundles of a new tip (every bundle, also those another
// agent releases: they may be upstreams).
func (a *agent) atTip(ctx context.Context, tip string, disc render.Discovery) {
	s := a.stages
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ctx, s.tip = ctx, tip
	s.disc, s.inputs = map[string]*render.Bundle{}, map[string]gitsync.Paths{}
	for _, b := range disc.Bundles {
		s.disc[b.Name] = b
	}
}

// mine reports whether this agent releases the bundle named name
// (--bundles; every bundle when the flag is not given).
func (a *agent) mine(name string) bool {
	if len(a.cfg.Bundles) == 0 {
		return true
	}
	for _, pat := range a.cfg.Bundles {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// mineBroken reports whether a broken bundle.yaml is this agent's to
// report: with --bundles, one whose name it selects, or (a file that does
// not parse) one in the directory of a bundle it runs. Another agent's
// broken bundle is that agent's to report.
func (a *agent) mineBroken(br render.Broken) bool {
	if br.Name != "" {
		return a.mine(br.Name)
	}
	return len(a.cfg.Bundles) == 0 || a.runIn(br.Dir) != nil
}

// gateOpen decides whether b's candidate at snap may be offered to its
// driver now. A held (untrusted) candidate passes: it is never applied.
// When the gate cannot be read (Git did not answer), it stays shut: no
// false start.
func (a *agent) gateOpen(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, cand promote.Candidate) bool {
	st := b.Spec.Stage
	if cand.Untrusted != "" || (len(st.After) == 0 && st.Approval != render.ApprovalRequired) {
		a.setGate(b.Name, snap.Commit, promote.Open)
		return true
	}
	in, err := a.gateReader(snap).read(ctx, b)
	g := promote.Decide(in)
	if err != nil {
		g = promote.Gate{Wait: true, On: gateUnreadable, Why: "cannot read the stage gate: " + err.Error()}
	}
	a.setGate(b.Name, snap.Commit, g)
	return !g.Wait
}

// gateUnreadable is Gate.On when the gate cannot be read (Git did not
// answer, an upstream's release.yaml is broken): the candidate waits.
const gateUnreadable = "unreadable"

// setGate records b's gate, logs a change and exports it.
func (a *agent) setGate(bundle, commit string, g promote.Gate) {
	s := a.stages
	s.mu.Lock()
	old, was := s.waiting[bundle]
	if g.Wait {
		s.waiting[bundle] = g
	} else {
		delete(s.waiting, bundle)
	}
	s.mu.Unlock()
	if was && (!g.Wait || old.On != g.On) {
		s.waitingGauge.DeleteLabelValues(bundle, old.On)
	}
	log := a.log.With().Str("bundle", bundle).Str("commit", contract.Short(commit)).Str("phase", "gate").Logger()
	switch {
	case g.Wait:
		s.waitingGauge.WithLabelValues(bundle, g.On).Set(1)
		if !was || old != g {
			log.Info().Str("on", g.On).Str("detail", g.Why).Msg("waiting for " + g.On)
		}
	case was:
		log.Info().Str("on", old.On).Msg("stage gate open: the candidate goes to its bundle")
	}
}

// hasDownstream reports whether a bundle at the newest tip lists bundle in spec.after.
func (a *agent) hasDownstream(bundle string) bool {
	a.stages.mu.Lock()
	defer a.stages.mu.Unlock()
	for _, b := range a.stages.disc {
		if slices.Contains(b.Spec.Stage.After, bundle) {
			return true
		}
	}
	return false
}

// stageNote follows the driver's notes: when a soak ends healthy and some
// bundle comes after this one, release.yaml records soakedAt so that the
// agents of the downstream bundles see it in Git.
func (a *agent) stageNote(bundle string, n promote.Note) {
	if !soakEnded(n) || !a.hasDownstream(bundle) {
		return
	}
	a.stages.mu.Lock()
	ctx := a.stages.ctx
	a.stages.mu.Unlock()
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		a.recordSoaked(ctx, bundle, n.Color, n.Commit)
	}()
}

// soakEnded reports whether n is the driver's report of a soak that ran
// to its end healthy. A soak a newer commit cut short is reported with a
// detail and no duration ("soak ended early"): it did not end healthy.
func soakEnded(n promote.Note) bool {
	return n.Phase == "soak" && n.Err == nil && n.Commit != "" && n.Detail == "" && n.Duration > 0
}

// recoverSoaked records the soak of the live release when the agent
// restarts after it ended but before it was recorded: the stable Services
// select the recorded live color and its soak window is over, by the same
// reading of promotedAt with which the driver's recovery decides that the
// soak is over (the agent's own clock and record; no other cluster's).
func (a *agent) recoverSoaked(b *render.Bundle, rel *promote.Release, v promote.View) {
	if rel == nil || rel.Live == "" || v.Mixed || v.Live != rel.Live || promote.Soaked(rel, b.Spec.Soak) || !a.hasDownstream(b.Name) {
		return
	}
	live := rel.Colors[rel.Live]
	if live.PromotedAt == nil || time.Now().Before(live.PromotedAt.Add(b.Spec.Soak)) {
		return // the driver resumes the soak; its end is recorded then
	}
	a.stageNote(b.Name, promote.Note{Phase: "soak", Color: rel.Live, Commit: live.Commit, Duration: b.Spec.Soak})
}

// recordSoaked commits soakedAt for bundle's live release, retrying until
// it lands, ctx ends, or the release is no longer live.
func (a *agent) recordSoaked(ctx context.Context, bundle, color, commit string) {
	log := a.log.With().Str("bundle", bundle).Str("commit", contract.Short(commit)).Str("phase", "soak").Logger()
	for delay := time.Second; ctx.Err() == nil; delay = min(2*delay, time.Minute) {
		w, err := a.writeSoaked(ctx, bundle, color, commit)
		switch {
		case err == nil:
			log.Info().Str("recorded_in", contract.Short(w.Commit)).Msg("soak recorded in release.yaml for the bundles after this one")
			return
		case errors.Is(err, gitsync.ErrAbandon), errors.Is(err, gitsync.ErrNothingToCommit):
			return // no longer live, or already recorded
		case errors.Is(err, errNoRecord):
			log.Error().Err(err).Msg("cannot record the soak: the bundles after this one wait until its next release")
			return
		}
		log.Warn().Err(err).Dur("retry_in", delay).Msg("cannot record the soak in Git; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

// errNoRecord: release.yaml at the tip cannot take the soak record;
// retrying cannot help.
var errNoRecord = errors.New("release.yaml cannot record the soak")

// writeSoaked is one attempt: release.yaml at the tip gains soakedAt for
// the live color if it still runs commit.
func (a *agent) writeSoaked(ctx context.Context, bundle, color, commit string) (gitsync.Written, error) {
	spec := a.releases.spec(bundle)
	if spec == nil {
		return gitsync.Written{}, gitsync.ErrAbandon
	}
	file := path.Join(strings.TrimSuffix(spec.Dir, "/"), releaseFile)
	return a.repo.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		data, err := t.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errNoRecord, err)
		}
		rel, err := promote.ParseRelease(file, data, spec.Spec.Colors)
		if err != nil {
			return "", fmt.Errorf("%w: %w", errNoRecord, err)
		}
		live, ok := rel.Colors[rel.Live]
		if rel.Live != color || !ok || live.Commit != commit {
			return "", gitsync.ErrAbandon
		}
		if live.SoakedAt != nil {
			return "", gitsync.ErrNothingToCommit
		}
		at := time.Now().UTC().Truncate(time.Second)
		live.SoakedAt = &at
		rel.Colors[rel.Live] = live
		out, err := rel.Marshal()
		if err != nil {
			return "", err
		}
		return promote.SoakedMessage(bundle, color, commit), t.WriteFile(file, out)
	})
}

// keepSoaked is data (rel marshalled), except that a soakedAt the tip's
// release.yaml records for the same live release is kept: the driver
// rewrites release.yaml from its own state, which does not know of it.
func keepSoaked(t *gitsync.Tree, file string, rel *promote.Release, colors [2]string, data []byte) []byte {
	old, err := t.ReadFile(file)
	if err != nil || rel == nil || rel.Live == "" {
		return data
	}
	prior, err := promote.ParseRelease(file, old, colors)
	if err != nil || prior.Live != rel.Live {
		return data
	}
	p, cur := prior.Colors[prior.Live], rel.Colors[rel.Live]
	if p.SoakedAt == nil || cur.SoakedAt != nil || p.Commit != cur.Commit {
		return data
	}
	cp := *rel
	cp.Colors = map[string]promote.ColorRelease{}
	for c, cr := range rel.Colors {
		cp.Colors[c] = cr
	}
	cur.SoakedAt = p.SoakedAt
	cp.Colors[rel.Live] = cur
	out, err := cp.Marshal()
	if err != nil {
		return data
	}
	return out
}
