package main

import (
	"errors"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/fleet"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/promote"
)

// phaseMessages are the log messages of the driver's notes.
var phaseMessages = map[promote.NotePhase]string{
	promote.NoteCandidate: "new candidate",
	promote.NoteIdle:      "nothing to release",
	promote.NoteApply:     "applied",
	promote.NoteVerify:    "verified",
	promote.NoteCheck:     "check run",
	promote.NoteFlip:      "stable Services switched",
	promote.NotePromote:   "promoted",
	promote.NoteSoak:      "soak over",
	promote.NoteFlipBack:  "stable Services switched back",
	promote.NoteFail:      "release failed",
	promote.NoteCommit:    "wrote the outcome to Git",
	promote.NoteRecover:   "recovering after a restart",
	promote.NoteScaleDown: "previous color scaled down",
	promote.NoteResync:    "live color re-applied",
	promote.NoteRetry:     "transient error; retrying, not failing the release",
	promote.NoteSuspend:   "spec.suspend changed",
	promote.NoteState:     "bundle state",
}

// reasonMessages override the phase's message for notes whose reason says more.
var reasonMessages = map[promote.NoteReason]string{
	promote.ReasonRefused: "the remote refuses the agent's write; retrying slowly",
}

// notifier logs the driver's notes (one JSON event per step, with bundle,
// commit, color and phase), turns them into metrics and hands them to vis
// (events, commit statuses, notifications). Notes only report: nothing
// here acts on a release.
func notifier(log zerolog.Logger, m *metrics, vis *fleet.Visibility, bundle string) func(promote.Note) {
	log = log.With().Str("bundle", bundle).Logger()
	return func(n promote.Note) {
		var ev *zerolog.Event
		switch {
		case n.Err != nil && !errors.Is(n.Err, promote.ErrTransient) && n.Phase != promote.NoteVerify && n.Phase != promote.NoteApply && n.Phase != promote.NoteSoak:
			ev = log.Error()
		case n.Warn:
			ev = log.Warn()
		case n.Phase == promote.NoteResync, n.Phase == promote.NoteState:
			ev = log.Debug()
		default:
			ev = log.Info()
		}
		ev = ev.Str("phase", string(n.Phase))
		if n.Color != "" {
			ev = ev.Str("color", n.Color)
		}
		if n.Commit != "" {
			ev = ev.Str("commit", contract.Short(n.Commit))
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
		if n.State != "" {
			ev = ev.Str("state", string(n.State))
		}
		if n.Check != nil {
			ev = logCheck(ev, n.Check)
		}
		msg := phaseMessages[n.Phase]
		if n.Phase == promote.NoteCommit && n.Result == promote.ResultSoaked {
			msg = "soak recorded in release.yaml for the bundles after this one"
		}
		if m, ok := reasonMessages[n.Reason]; ok {
			msg = m
		}
		ev.Msg(msg)

		switch n.Phase {
		case promote.NoteApply, promote.NoteVerify, promote.NoteFlip, promote.NoteSoak:
			if n.Err == nil || !errors.Is(n.Err, promote.ErrTransient) {
				m.observePhase(bundle, string(n.Phase), n.Duration)
			}
		case promote.NoteCheck:
			m.observeCheck(bundle, n.Check)
		case promote.NoteRetry:
			m.transient.WithLabelValues("cluster").Inc()
		case promote.NoteState:
			m.setDriverState(bundle, n.State)
		case promote.NoteCommit:
			switch {
			case n.Err != nil:
				m.transient.WithLabelValues("git").Inc()
			case n.Commit != "" && n.Result != promote.ResultSoaked:
				m.observePhase(bundle, "commit", n.Duration)
				m.results.WithLabelValues(bundle, n.Result).Inc()
			}
		}
		if n.Live != "" {
			m.setLive(bundle, n.Live, contract.Short(n.LiveCommit))
		}
		vis.Observe(bundle, n) // events, commit statuses, notifications
	}
}
