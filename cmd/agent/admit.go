package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// admission asks promote.Admit about each bundle at a tip and does what it
// says. It gathers the facts (cheap ones first, costly ones when Admit asks
// for them) and decides nothing itself.
type admission struct {
	cfg     *config
	drivers *drivers
	trail   *fleet.Trail
	gates   *gates
	trust   *fleet.Trust // nil: --verify-commits is off
	m       *metrics
	log     zerolog.Logger
	offered int // candidates handed to drivers in this pass
}

// bundle gathers b's facts at snap, asks promote.Admit and does what it
// says. It reports false when the bundle was not handled (the next new tip
// then gets a full pass).
func (a *admission) bundle(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) bool {
	f := promote.Facts{Mine: true, Tip: snap.Commit, VerifyCommits: a.trust != nil, Staged: staged(b), Suspended: b.Spec.Suspend}
	var run *bundleRun
	if err := a.trail.SkippedInput(snap, b); err != nil {
		a.broken(ctx, snap, render.Broken{File: b.File, Dir: b.Dir, Name: b.Name, Err: err})
		return false
	}
	if err := fleet.VetRelease(snap.Dir, b); err != nil {
		f.Broken, f.Err = promote.BrokenRelease, err
	} else {
		var err error
		if run, err = a.drivers.runFor(ctx, snap, b); err != nil {
			a.log.Error().Err(err).Str("bundle", b.Name).Str("commit", contract.Short(snap.Commit)).Msg("cannot start the bundle's driver")
			return false
		}
		run.dir = b.Dir // a bundle moved under the same name keeps its driver
		run.driver.Suspend(b.Spec.Suspend)
		a.m.setSuspended(b.Name, b.Spec.Suspend)
		f.Running, f.Seen, f.FirstSight, f.LastFailure = true, run.seen, run.fresh, run.lastFailure
		f.RevertPending = run.revertPending
		run.fresh = false
	}
	v := a.decide(ctx, snap, b, &f)
	if f.Gate == nil && v.Kind != promote.Refuse {
		a.gates.set(b.Name, snap.Commit, promote.Open)
	}
	return a.act(ctx, snap, b, run, v)
}

// broken handles a bundle.yaml that cannot be used at this tip: that
// bundle's failure, never a reason to hold up another.
func (a *admission) broken(ctx context.Context, snap gitsync.Snapshot, br render.Broken) {
	f := promote.Facts{Mine: a.mineBroken(br), Tip: snap.Commit, Broken: promote.BrokenBundle, Err: br.Err}
	run := a.drivers.runIn(br.Dir)
	var spec *render.Bundle
	if run != nil {
		spec = a.drivers.parts.store.Spec(run.name)
	}
	if spec != nil {
		f.Running, f.Seen = true, run.seen
	}
	v := a.decide(ctx, snap, spec, &f)
	if v.Kind == promote.Skip {
		return // another agent's to report
	}
	a.log.Error().Err(br.Err).Str("file", br.File).Str("commit", contract.Short(snap.Commit)).Str("phase", "discover").
		Msg("bundle refused at this commit; the other bundles go on")
	a.m.refused.WithLabelValues(br.File).Inc()
	if v.Kind == promote.Offer {
		// The driver fails it by the last valid policy (revert or hold).
		a.offer(run, promote.Candidate{Commit: snap.Commit, Subject: a.trail.Subject(ctx, run.seen, snap.Commit),
			Policy: a.drivers.policyOf(spec), RenderErr: v.Failed})
	}
}

// decide asks promote.Admit about f, gathering each fact it asks for.
func (a *admission) decide(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, f *promote.Facts) promote.Verdict {
	for {
		v := promote.Admit(*f)
		if v.Kind != promote.Ask {
			return v
		}
		a.gather(ctx, snap, b, f, v.Need)
	}
}

// gather fills in the fact Admit needs. A fact that cannot be read sets
// f.FactErr: Admit then waits (or only reports a broken bundle).
func (a *admission) gather(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, f *promote.Facts, need promote.Need) {
	switch need {
	case promote.NeedChanged:
		changed, err := a.trail.Changed(ctx, b, f.Seen, f.Tip)
		if err != nil {
			f.FactErr = fmt.Errorf("cannot diff the bundle; will retry on the next poll: %w", err)
		}
		f.Changed = &changed
	case promote.NeedAgentCommits:
		only := a.trail.OnlyAgentCommits(ctx, f.Seen, f.Tip)
		f.OnlyAgentCommits = &only
	case promote.NeedChangedSinceFailure:
		changed, err := a.trail.Changed(ctx, b, f.LastFailure, f.Tip)
		changed = changed || err != nil // unknown: not skipped
		f.ChangedSinceFailure = &changed
	case promote.NeedTrust:
		f.Trust = a.checkTrust(ctx, snap, b, f)
	case promote.NeedGate:
		g := a.gates.gate(ctx, snap, b)
		f.Gate = &g
	default:
		f.FactErr = fmt.Errorf("admission asked for an unknown fact %q", need)
	}
}

// checkTrust is --verify-commits' finding for b's candidate at snap; nil
// with f.FactErr set when the starting point could not be read.
func (a *admission) checkTrust(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, f *promote.Facts) *promote.TrustFact {
	log := a.log.With().Str("bundle", b.Name).Str("commit", contract.Short(snap.Commit)).Str("phase", "trust").Logger()
	fi, err := a.trust.Check(ctx, b, a.trail.InputsOf(b), snap.Commit)
	if err != nil {
		f.FactErr = fmt.Errorf("cannot tell which commits to check; nothing is released until the next commit: %w", err)
		return &promote.TrustFact{}
	}
	if fi.Err != nil {
		log.Error().Err(fi.Err).Msg("cannot check commit signatures; the candidate is held")
	}
	a.m.untrusted.WithLabelValues(b.Name).Add(float64(fi.Fresh))
	for _, r := range fi.Refused {
		ev := log.Warn().Str("refused", contract.Short(r.Commit)).Str("reason", r.Reason)
		if r.Signer != "" {
			ev = ev.Str("signer", r.Signer)
		}
		ev.Msg("commit lacks a trusted signature; the candidate is held")
	}
	return &promote.TrustFact{Untrusted: fi.Untrusted}
}

// act performs a verdict for b (run is its driver, when it has one). It
// reports whether the bundle was handled at this tip.
func (a *admission) act(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun, v promote.Verdict) bool {
	log := a.log.With().Str("bundle", b.Name).Str("commit", contract.Short(snap.Commit)).Logger()
	switch v.Kind {
	case promote.Skip:
		if run != nil {
			run.seen = snap.Commit
		}
		if v.Reason == promote.ReasonRevertPending {
			log.Warn().Str("phase", "admit").Str("detail", v.Detail).Msg("failed candidate pinned out: " + v.Detail)
		}
		return true
	case promote.Offer:
		c := a.drivers.candidate(ctx, snap, b, run)
		if v.Failed != nil {
			c.RenderErr, c.Digest = v.Failed, ""
		}
		a.offer(run, c)
		return v.Reason != promote.ReasonBroken
	case promote.Hold:
		a.offer(run, promote.Candidate{Commit: snap.Commit, Subject: a.trail.Subject(ctx, run.seen, snap.Commit),
			Policy: a.drivers.policyOf(b), Untrusted: v.Detail})
		return true
	case promote.Refuse: // release.yaml: a fix may touch release.yaml only
		a.m.refused.WithLabelValues(b.File).Inc()
		log.Error().Str("error", v.Detail).Str("phase", "discover").Msg("refusing the bundle at this commit; nothing changes until a commit fixes it")
	case promote.Wait:
		if v.Reason == promote.ReasonUnknown {
			log.Error().Str("error", v.Detail).Msg("cannot admit the tip; will retry on the next poll")
		}
	}
	return false
}

// offer hands run's driver c (newest wins, and cancels a verification in
// flight); the bundle has seen c's commit.
func (a *admission) offer(run *bundleRun, c promote.Candidate) {
	run.seen = c.Commit
	run.driver.Offer(c)
	a.offered++
}

// mineBroken reports whether a broken bundle.yaml is this agent's to
// report: with --bundles, one whose name it selects, or (a file that does
// not parse) one in the directory of a bundle it runs. Another agent's
// broken bundle is that agent's to report.
func (a *admission) mineBroken(br render.Broken) bool {
	if br.Name != "" {
		return a.gates.mine(br.Name)
	}
	return len(a.cfg.Bundles) == 0 || a.drivers.runIn(br.Dir) != nil
}
