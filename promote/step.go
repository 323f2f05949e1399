package promote

import (
	"fmt"
	"time"
)

// Phase is where a bundle's release is.
type Phase string

// Phases of the release state machine.
const (
	PhaseIdle      Phase = "Idle"
	PhaseDeploying Phase = "Deploying"
	PhaseVerifying Phase = "Verifying"
	PhaseFlipping  Phase = "Flipping"
	PhaseRecording Phase = "Recording"
)

// ErrTransient marks errors that are retried, never treated as failures.
var ErrTransient = transientErr{}

type transientErr struct{}

func (transientErr) Error() string { return "transient" }

// Candidate is a commit to release. Payload is opaque to promote (the rendered objects).
type Candidate struct {
	Commit, Subject, Digest string
	RenderErr               error
	Payload                 any
}

// State is a bundle's release state. Step never mutates its input.
type State struct {
	Bundle       string
	Colors       [2]string
	OnFailure    string // "revert" | "hold"
	Live         string // "" before the first deploy
	LiveCommit   string
	LiveDigest   string
	Previous     string
	PrevDigest   string
	PreviousWarm bool
	Phase        Phase
	Candidate    *Candidate
	Target       string // color being deployed/verified/flipped to
	Attempt      int
}

// Idle returns the color that is not live (colors[0] before the first deploy).
func (s State) Idle() string {
	if s.Live == s.Colors[0] {
		return s.Colors[1]
	}
	if s.Live == "" {
		return s.Colors[0]
	}
	return s.Colors[0]
}

// Observation is input to Step: NewCandidate, Deployed, Verified, Flipped.
type Observation struct {
	Kind      string // "candidate" | "deployed" | "verified" | "flipped"
	Candidate *Candidate
	Err       error
	Transient bool
	Reason    string
}

// Decision is what the driver must do next.
type Decision struct {
	Kind     string // "none" | "deploy" | "verify" | "flip" | "scaledown+record" | "record" | "retry"
	Color    string
	Message  string
	After    time.Duration
	Failing  string
	Restores string
}

// Backoff is the capped exponential retry delay for attempt n.
func Backoff(n int) time.Duration {
	d := time.Second << min(n, 6)
	return min(d, time.Minute)
}

// Step is the pure decision core: no I/O, no clock.
func Step(s State, o Observation) (State, Decision) {
	if o.Err != nil && o.Transient {
		s.Attempt++
		return s, Decision{Kind: "retry", After: Backoff(s.Attempt - 1)}
	}
	s.Attempt = 0
	switch o.Kind {
	case "candidate":
		c := o.Candidate
		if c.Digest != "" && c.Digest == s.LiveDigest && c.RenderErr == nil {
			s.Phase = PhaseIdle
			return s, Decision{Kind: "none"}
		}
		s.Candidate = c
		s.Target = s.Idle()
		if c.RenderErr != nil {
			return fail(s, c.RenderErr.Error())
		}
		if s.PreviousWarm && c.Digest == s.PrevDigest {
			s.Phase = PhaseFlipping
			return s, Decision{Kind: "flip", Color: s.Target}
		}
		s.Phase = PhaseDeploying
		if s.Target == s.Previous {
			// The candidate replaces what the previous color ran: it is
			// no longer a warm copy of an earlier release.
			s.Previous, s.PrevDigest, s.PreviousWarm = "", "", false
		}
		return s, Decision{Kind: "deploy", Color: s.Target}
	case "deployed":
		if o.Err != nil {
			return fail(s, o.Err.Error())
		}
		s.Phase = PhaseVerifying
		return s, Decision{Kind: "verify", Color: s.Target}
	case "verified":
		if o.Err != nil {
			return fail(s, o.Err.Error())
		}
		s.Phase = PhaseFlipping
		return s, Decision{Kind: "flip", Color: s.Target}
	case "flipped":
		if o.Err != nil {
			return fail(s, o.Err.Error())
		}
		s.Previous, s.PrevDigest, s.PreviousWarm = s.Live, s.LiveDigest, s.Live != ""
		s.Live, s.LiveCommit, s.LiveDigest = s.Target, s.Candidate.Commit, s.Candidate.Digest
		s.Phase = PhaseIdle
		return s, Decision{Kind: "record", Color: s.Live,
			Message: PromoteMessage(s.Bundle, s.Live, s.Candidate.Commit, o.Reason)}
	}
	return s, Decision{Kind: "none"}
}

func fail(s State, reason string) (State, Decision) {
	s.Phase = PhaseIdle
	c := s.Candidate
	if s.Live == "" || s.OnFailure == "hold" {
		return s, Decision{Kind: "scaledown+record", Color: s.Target, Failing: c.Commit,
			Message: HoldMessage(s.Bundle, c.Commit, reason)}
	}
	return s, Decision{Kind: "scaledown+record", Color: s.Target, Failing: c.Commit, Restores: s.LiveCommit,
		Message: RevertMessage(s.Bundle, c.Subject, c.Commit, s.LiveCommit, reason, s.Live)}
}

// Transient wraps err so that errors.Is(err, ErrTransient) is true.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}
