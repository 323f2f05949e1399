package main

import (
	"context"
	"path"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Stages (docs/stages.md): a candidate of a bundle with spec.after or
// spec.approval passes a gate before it is offered to the bundle's driver.
// The gate reads only the branch (release.yaml of the upstreams, the
// approval trailers), so agents in several clusters agree without talking
// to each other. promote.Decide is the gate; promote.Admit waits on it.

// gates is what the agent knows about stages at the newest tip, and which
// bundles are its to release (--bundles).
type gates struct {
	waitingGauge *prometheus.GaugeVec
	m            *metrics
	cfg          *config
	repo         *gitsync.Repo
	store        *fleet.Store
	trust        *fleet.Trust
	renderOpts   render.Options
	log          zerolog.Logger

	mu      sync.Mutex
	disc    map[string]*render.Bundle // every valid bundle at the newest tip, by name
	tip     string
	inputs  map[string]gitsync.Paths // upstream inputs rendered at tip, by bundle
	waiting map[string]promote.Gate  // bundle → its gate while it waits
}

func newGates(c *config, repo *gitsync.Repo, parts fleetParts, m *metrics, log zerolog.Logger) *gates {
	g := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tandem_bundle_waiting",
		Help: "1 while a bundle's candidate waits at its stage gate, labelled with what it waits for (an upstream bundle, or approval).",
	}, []string{"bundle", "on"})
	m.reg.MustRegister(g)
	return &gates{waitingGauge: g, m: m, cfg: c, repo: repo, store: parts.store, trust: parts.trust, renderOpts: parts.render.Options, log: log, disc: map[string]*render.Bundle{},
		inputs: map[string]gitsync.Paths{}, waiting: map[string]promote.Gate{}}
}

// atTip records the bundles of a new tip (every bundle, also those another
// agent releases: they may be upstreams).
func (s *gates) atTip(tip string, disc render.Discovery) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tip = tip
	s.disc, s.inputs = map[string]*render.Bundle{}, map[string]gitsync.Paths{}
	for _, b := range disc.Bundles {
		s.disc[b.Name] = b
	}
}

// hasDownstream reports whether a bundle at the newest tip lists bundle in spec.after.
func (s *gates) hasDownstream(bundle string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, b := range s.disc {
		if slices.Contains(b.Spec.Stage.After, bundle) {
			return true
		}
	}
	return false
}

// staged reports whether b has a stage gate.
func staged(b *render.Bundle) bool {
	return len(b.Spec.Stage.After) > 0 || b.Spec.Stage.Approval == render.ApprovalRequired
}

// mine reports whether this agent releases the bundle named name
// (--bundles; every bundle when the flag is not given).
func (s *gates) mine(name string) bool {
	if len(s.cfg.Bundles) == 0 {
		return true
	}
	for _, pat := range s.cfg.Bundles {
		if ok, _ := path.Match(pat, name); ok {
			return true
		}
	}
	return false
}

// gate reads b's stage gate at snap and records it. When the gate cannot be
// read (Git did not answer), it stays shut: no false start.
func (s *gates) gate(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) promote.Gate {
	in, err := s.reader(snap).Read(ctx, b)
	g := promote.Decide(in)
	if err != nil {
		g = promote.Gate{Wait: true, On: gateUnreadable, Why: "cannot read the stage gate: " + err.Error()}
	}
	s.set(b.Name, snap.Commit, g)
	return g
}

// gateUnreadable is Gate.On when the gate cannot be read (Git did not
// answer, an upstream's release.yaml is broken): the candidate waits.
const gateUnreadable = "unreadable"

// set records bundle's gate, logs a change and exports it.
func (s *gates) set(bundle, commit string, g promote.Gate) {
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
	s.m.setWaiting(bundle, g.Wait)
	log := s.log.With().Str("bundle", bundle).Str("commit", contract.Short(commit)).Str("phase", "gate").Logger()
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

// reader is the agent's reader of stage gates at snap: renders it made are
// reused, upstreams are rendered once per tip.
func (s *gates) reader(snap gitsync.Snapshot) *fleet.GateReader {
	s.mu.Lock()
	all := s.disc
	s.mu.Unlock()
	return &fleet.GateReader{Git: s.repo, Dir: snap.Dir, Commit: snap.Commit, All: all, Author: s.cfg.identity,
		Inputs: func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error) {
			if in := s.store.InputsAt(b.Name, snap.Commit); len(in) > 0 {
				return in, nil
			}
			s.mu.Lock()
			in, ok := s.inputs[b.Name]
			ok = ok && s.tip == snap.Commit
			s.mu.Unlock()
			if ok {
				return in, nil
			}
			in, err := fleet.RenderInputs(ctx, snap.Dir, snap.Commit, b, s.renderOpts)
			if err == nil {
				s.mu.Lock()
				if s.tip == snap.Commit {
					s.inputs[b.Name] = in
				}
				s.mu.Unlock()
			}
			return in, err
		},
		Untrusted: s.trust.UntrustedApproval,
		Ignored: func(c gitsync.Commit, why string) {
			s.log.Warn().Str("phase", "gate").Str("approval", contract.Short(c.Hash)).Str("reason", why).Msg("approval ignored: " + why)
		},
	}
}
