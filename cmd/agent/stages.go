package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
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
func (a *agent) gateOpen(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun, cand promote.Candidate) bool {
	st := b.Spec.Stage
	if cand.Untrusted != "" || (len(st.After) == 0 && st.Approval != render.ApprovalRequired) {
		a.setGate(b.Name, snap.Commit, promote.Open)
		return true
	}
	in, err := a.gateInput(ctx, snap, b, run)
	g := promote.Decide(in)
	if err != nil {
		g = promote.Gate{Wait: true, On: "git", Why: "cannot read the stage gate: " + err.Error()}
	}
	a.setGate(b.Name, snap.Commit, g)
	return !g.Wait
}

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

// gateInput reads what the gate decides on for b's candidate at snap.
func (a *agent) gateInput(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun) (promote.GateInput, error) {
	in := promote.GateInput{Bundle: b.Name, Commit: snap.Commit, ApprovalRequired: b.Spec.Stage.Approval == render.ApprovalRequired}
	mine := gitsync.Paths(a.releases.inputsAt(b.Name, snap.Commit))
	if len(mine) == 0 {
		mine = a.inputsOf(b)
	}
	var errs []error
	live := "" // the release b runs, from its release.yaml at snap
	if rel, err := readRelease(snap.Dir, b); err != nil {
		errs = append(errs, err)
	} else if rel != nil && rel.Live != "" {
		live = rel.Colors[rel.Live].Commit
	}
	for _, name := range b.Spec.Stage.After {
		u, err := a.upstream(ctx, snap, name, mine, live)
		errs = append(errs, err)
		in.Upstreams = append(in.Upstreams, u)
	}
	if in.ApprovalRequired {
		ok, err := a.approved(ctx, snap, b, run, mine)
		in.Approved = ok
		errs = append(errs, err)
	}
	return in, errors.Join(errs...)
}

// upstream is the bundle named name as the branch shows it at snap, seen
// from a downstream whose inputs are mine and which runs commit live.
func (a *agent) upstream(ctx context.Context, snap gitsync.Snapshot, name string, mine gitsync.Paths, live string) (promote.Upstream, error) {
	u := promote.Upstream{Name: name}
	a.stages.mu.Lock()
	ub := a.stages.disc[name]
	a.stages.mu.Unlock()
	if ub == nil {
		u.Missing = true
		return u, nil
	}
	theirs, err := a.upstreamInputs(ctx, snap, ub)
	if err != nil {
		return u, err
	}
	shared := func(p string) bool {
		return mine.Match(p) && theirs.Match(p) && path.Base(p) != releaseFile && path.Base(p) != render.BundleFile
	}
	var files []string
	for _, p := range append(append([]string{}, mine...), theirs...) {
		if !strings.HasSuffix(p, "/") && shared(p) && !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	if live != "" {
		// Only the shared inputs this candidate changes need the upstream.
		changed, err := a.changedPaths(ctx, live, snap.Commit)
		if err != nil {
			return u, err
		}
		files = slices.DeleteFunc(files, func(p string) bool { return !slices.Contains(changed, p) })
	}
	u.Shared = len(files) > 0
	rel, err := readRelease(snap.Dir, ub)
	if err != nil {
		return u, err
	}
	if rel == nil || rel.Live == "" {
		u.Unreleased = files
		return u, nil
	}
	u.Live, u.Soaked = rel.Colors[rel.Live].Commit, promote.Soaked(rel, ub.Spec.Soak)
	changed, err := a.changedPaths(ctx, u.Live, snap.Commit)
	if err != nil {
		return u, err
	}
	for _, p := range changed {
		if shared(p) {
			u.Unreleased = append(u.Unreleased, p)
		}
	}
	return u, nil
}

// upstreamInputs is what ub's render at snap reads: from the store when
// this agent rendered it at this commit, else rendered here (once per tip).
func (a *agent) upstreamInputs(ctx context.Context, snap gitsync.Snapshot, ub *render.Bundle) (gitsync.Paths, error) {
	if in := a.releases.inputsAt(ub.Name, snap.Commit); len(in) > 0 {
		return in, nil
	}
	s := a.stages
	s.mu.Lock()
	in, ok := s.inputs[ub.Name]
	s.mu.Unlock()
	if ok && s.tip == snap.Commit {
		return in, nil
	}
	rs, err := render.RenderColors(ctx, ub, render.Options{RepoRoot: snap.Dir, Commit: snap.Commit, AllowRemoteBases: a.cfg.AllowRemoteBases}, ub.Spec.Colors[0])
	var re *render.Error
	switch {
	case err == nil:
		in = rs[0].Inputs
	case errors.As(err, &re):
		in = re.Inputs
	default:
		return nil, fmt.Errorf("bundle %s: %w", ub.Name, err)
	}
	in = append(gitsync.Paths{strings.TrimSuffix(ub.Dir, "/") + "/"}, in...)
	s.mu.Lock()
	if s.tip == snap.Commit {
		s.inputs[ub.Name] = in
	}
	s.mu.Unlock()
	return in, nil
}

// approved reports whether a person approved b's candidate: a commit after
// the bundle's last candidate carries "Tandem-Approve: <bundle> <commit>"
// for a commit whose inputs of b equal the candidate's. The agent's own
// author never approves; with --verify-commits the approval must carry a
// trusted signature (and not the agent's).
func (a *agent) approved(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun, mine gitsync.Paths) (bool, error) {
	commits, err := a.repo.Commits(ctx, run.seen, snap.Commit)
	if err != nil {
		return false, err
	}
	self, err := mail.ParseAddress(a.cfg.GitAuthor)
	if err != nil {
		return false, err
	}
	log := a.log.With().Str("bundle", b.Name).Str("phase", "gate").Logger()
	for _, c := range commits {
		for _, ap := range promote.Approvals(c.Message) {
			if ap.Bundle != b.Name {
				continue
			}
			if c.Author == self.Name+" <"+self.Address+">" {
				log.Warn().Str("approval", contract.Short(c.Hash)).Msg("approval ignored: written by the agent's own author")
				continue
			}
			if why := a.untrustedApproval(ctx, c); why != "" {
				log.Warn().Str("approval", contract.Short(c.Hash)).Str("reason", why).Msg("approval ignored")
				continue
			}
			ok, err := a.approves(ctx, snap, b, ap, commits, mine)
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// untrustedApproval says why an approval commit does not count under
// --verify-commits ("" when it counts, or verification is off).
func (a *agent) untrustedApproval(ctx context.Context, c gitsync.Commit) string {
	if a.trust == nil {
		return ""
	}
	s, err := a.repo.VerifyCommit(ctx, c.Hash, a.trust.v)
	switch {
	case err != nil:
		return "no trusted signature: " + err.Error()
	case s.Agent:
		return "signed by the agent's own key"
	}
	return ""
}

// approves reports whether approval ap (naming one of commits) names a
// commit whose inputs of b are those of the candidate at snap.
func (a *agent) approves(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, ap promote.Approval, commits []gitsync.Commit, mine gitsync.Paths) (bool, error) {
	for _, c := range commits {
		if !ap.Names(b.Name, c.Hash) {
			continue
		}
		changed, err := a.repo.ChangedPaths(ctx, c.Hash, snap.Commit)
		if err != nil {
			return false, err
		}
		release := path.Join(b.Dir, releaseFile)
		for _, p := range changed {
			if p != release && (mine.Match(p) || strings.HasPrefix(p, strings.TrimSuffix(b.Dir, "/")+"/")) {
				return false, nil
			}
		}
		return true, nil
	}
	return false, nil
}

// waitingFor is b's gate while it waits (ok false when it does not).
func (a *agent) waitingFor(bundle string) (promote.Gate, bool) {
	a.stages.mu.Lock()
	defer a.stages.mu.Unlock()
	g, ok := a.stages.waiting[bundle]
	return g, ok
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
	if n.Phase != "soak" || n.Err != nil || n.Commit == "" || !a.hasDownstream(bundle) {
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
		}
		log.Warn().Err(err).Dur("retry_in", delay).Msg("cannot record the soak in Git; retrying")
		select {
		case <-ctx.Done():
		case <-time.After(delay):
		}
	}
}

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
			return "", err
		}
		rel, err := promote.ParseRelease(file, data, spec.Spec.Colors)
		if err != nil {
			return "", err
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
