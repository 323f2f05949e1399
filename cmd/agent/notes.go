package main

import (
	"errors"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/promote"
)

// phaseMessages are the log messages of the driver's notes.
var phaseMessages = map[string]string{
	"candidate":  "new candidate",
	"idle":       "nothing to release",
	"apply":      "applied",
	"verify":     "verified",
	"check":      "check run",
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
		if n.Check != nil {
			ev = logCheck(ev, n.Check)
		}
		ev.Msg(phaseMessages[n.Phase])

		switch n.Phase {
		case "apply", "verify", "flip", "soak":
			if n.Err == nil || !errors.Is(n.Err, promote.ErrTransient) {
				a.m.observePhase(bundle, n.Phase, n.Duration)
			}
		case "check":
			a.m.observeCheck(bundle, n.Check)
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
			a.m.setLive(bundle, n.Live, contract.Short(n.LiveCommit))
		}
		a.observe(bundle, n) // events, commit statuses, notifications (notify.go)
		// stages.go: a finished soak is recorded for downstream bundles
		a.stageNote(bundle, n)
	}
}
