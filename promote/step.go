package promote

import (
	"errors"
	"fmt"
	"time"
)

// Phase is where a bundle's release is.
type Phase string

// Phases of the release state machine.
const (
	PhaseIdle         Phase = "Idle"
	PhaseDeploying    Phase = "Deploying"
	PhaseVerifying    Phase = "Verifying"
	PhaseFlipping     Phase = "Flipping"
	PhaseRecording    Phase = "Recording"
	PhaseSoaking      Phase = "Soaking"
	PhaseFlippingBack Phase = "FlippingBack"
)

// OnFailure values of bundle.yaml.
const (
	OnFailureRevert = "revert"
	OnFailureHold   = "hold"
)

// Results written in the Tandem-Result trailer.
const (
	ResultPromoted = "promoted"
	ResultReverted = "reverted"
	ResultHeld     = "held"
)

// ErrTransient marks errors that are retried, never treated as failures: an
// unreachable API server, a Git remote that does not answer.
var ErrTransient = errors.New("transient")

// Transient wraps err so that errors.Is(err, ErrTransient) is true.
func Transient(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrTransient, err)
}

// Policy is the part of bundle.yaml that steers a release.
type Policy struct {
	OnFailure      string        // OnFailureRevert or OnFailureHold
	HealthTimeout  time.Duration // verification bound
	Soak           time.Duration // watch the new live color this long after the flip
	ScaleDownAfter time.Duration // then scale the previous color to zero ...
	ScaleDownNever bool          // ... unless it is kept warm for ever
}

// Candidate is a commit to release. Payload is opaque to promote (the
// rendered objects); only the cluster adapter looks into it.
type Candidate struct {
	Commit, Subject, Digest string
	RenderErr               error
	Policy                  Policy
	Payload                 any

	// Untrusted, when set, says which commits lack a trusted signature:
	// the candidate is held without being rendered or applied.
	Untrusted string
}

// ReleaseRef is what one color runs: a commit and the digest of its render.
type ReleaseRef struct{ Commit, Digest string }

// State is a bundle's release state. Step never mutates its input.
type State struct {
	Bundle string
	Colors [2]string
	Policy Policy

	Live, LiveCommit, LiveDigest     string
	Previous, PrevCommit, PrevDigest string
	// PreviousWarm: the previous color still runs its release, scaled up.
	PreviousWarm bool

	Phase     Phase
	Candidate *Candidate
	Target    string // the color being deployed, verified or flipped to
	// Warm: the candidate is a flip back to the warm previous color.
	Warm bool
	// Displaced is the warm previous release that the candidate's deploy
	// replaced; a failure restores it so that a rollback stays instant.
	Displaced *ReleaseRef
	Evidence  string // what verification showed, for the promotion commit
	Attempt   int    // transient retries of the pending decision
	Pending   Decision
}

// Idle returns the color that is not live (the first color before the first deploy).
func (s State) Idle() string {
	if s.Live == s.Colors[0] {
		return s.Colors[1]
	}
	return s.Colors[0]
}

// EventKind names what happened.
type EventKind string

// Events fed to Step. Each but EvCandidate reports the outcome of the
// decision Step made before it.
const (
	EvCandidate   EventKind = "candidate"    // a new commit changes the bundle
	EvCold        EventKind = "cold"         // the previous color turned out not to run the release any more
	EvDeployed    EventKind = "deployed"     // the target color was applied
	EvVerified    EventKind = "verified"     // the target color's health is known
	EvFlipped     EventKind = "flipped"      // the stable Services select the target
	EvRecorded    EventKind = "recorded"     // the promotion commit landed
	EvSoaked      EventKind = "soaked"       // the soak window ended (Err: it degraded)
	EvFlippedBack EventKind = "flipped-back" // the stable Services are back on the previous color
)

// Event is input to Step. Err is the effect's error; a transient one
// (errors.Is(Err, ErrTransient)) is retried, never a failure.
type Event struct {
	Kind      EventKind
	Candidate *Candidate // EvCandidate
	Err       error
	Evidence  string // EvVerified: per-app readiness
}

// Action is what the driver must do.
type Action string

// Actions of a Decision.
const (
	ActNone     Action = "none"      // nothing to do; ScaleDown may name a color to scale down later
	ActDeploy   Action = "deploy"    // apply the candidate to Color
	ActVerify   Action = "verify"    // wait for Color's health within the policy's timeout
	ActFlip     Action = "flip"      // point every stable twin at Color
	ActRecord   Action = "record"    // commit the promotion (Message, Result)
	ActSoak     Action = "soak"      // watch Color for After
	ActFlipBack Action = "flip-back" // point every stable twin back at Color
	ActFail     Action = "fail"      // take Color out (scale to zero or Restore), then commit Message
	ActReroute  Action = "reroute"   // recovery: put the stable twins back on Color
	ActRetry    Action = "retry"     // repeat Redo after After
)

// Decision is what the driver must do next.
type Decision struct {
	Action Action
	Color  string
	// Warm (ActVerify, ActFlip): Color should already run the candidate, a
	// warm standby; the driver confirms it does (EvCold if not) before verifying.
	Warm    bool
	Message string        // ActRecord, ActFail: the commit message
	Result  string        // ActRecord, ActFail: ResultPromoted, ResultReverted or ResultHeld
	Reason  string        // ActFail: why, for release.yaml's lastFailure
	Failing string        // ActFail: the failing commit
	After   time.Duration // ActRetry: delay; ActSoak: duration
	// Restores is the commit whose bundle files a revert restores ("" for hold).
	Restores string
	// Restore (ActFail): re-apply this release to Color instead of scaling it
	// to zero: it is the warm previous release the candidate displaced.
	Restore *ReleaseRef
	// ScaleDown (ActNone after a promotion): the previous color, to scale
	// to zero after the policy's ScaleDownAfter.
	ScaleDown string
	Redo      *Decision // ActRetry: the decision to repeat
}

// Backoff is the capped exponential retry delay for attempt n (1s, 2s, 4s ... 1m).
func Backoff(n int) time.Duration {
	d := time.Second << min(max(n, 0), 6)
	return min(d, time.Minute)
}

// Step is the pure decision core: state and event in, new state and the
// next decision out. No I/O, no clock.
func Step(s State, e Event) (State, Decision) {
	if e.Err != nil && errors.Is(e.Err, ErrTransient) && e.Kind != EvCandidate {
		s.Attempt++
		redo := s.Pending
		return s, Decision{Action: ActRetry, After: Backoff(s.Attempt - 1), Redo: &redo}
	}
	s.Attempt = 0
	s, d := step(s, e)
	s.Pending = d
	return s, d
}

func step(s State, e Event) (State, Decision) {
	switch e.Kind {
	case EvCandidate:
		c := e.Candidate
		if c.Untrusted != "" {
			return untrusted(s, c)
		}
		s.Policy = c.Policy
		if c.RenderErr == nil && c.Digest != "" && c.Digest == s.LiveDigest {
			s.Phase = PhaseIdle
			return s, Decision{Action: ActNone}
		}
		s.Candidate, s.Target, s.Warm, s.Displaced, s.Evidence = c, s.Idle(), false, nil, ""
		if c.RenderErr != nil {
			// Nothing was applied: no color to take out of service.
			s, d := fail(s, c.RenderErr.Error())
			d.Color = ""
			return s, d
		}
		if s.PreviousWarm && s.Target == s.Previous && c.Digest == s.PrevDigest {
			// A rollback to what the warm previous color runs: no deploy,
			// no cold start; confirm it is healthy, then flip.
			s.Phase, s.Warm = PhaseVerifying, true
			return s, Decision{Action: ActVerify, Color: s.Target, Warm: true}
		}
		return deploy(s)
	case EvCold:
		s.PreviousWarm, s.Warm = false, false
		return deploy(s)
	case EvDeployed:
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		s.Phase = PhaseVerifying
		return s, Decision{Action: ActVerify, Color: s.Target}
	case EvVerified:
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		s.Phase, s.Evidence = PhaseFlipping, e.Evidence
		return s, Decision{Action: ActFlip, Color: s.Target, Warm: s.Warm}
	case EvFlipped:
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		evidence := s.Evidence
		if s.Warm {
			evidence = s.Target + " already ran this release (warm); flipped back without a cold start"
		}
		s.Previous, s.PrevCommit, s.PrevDigest, s.PreviousWarm = s.Live, s.LiveCommit, s.LiveDigest, s.Live != ""
		s.Live, s.LiveCommit, s.LiveDigest = s.Target, s.Candidate.Commit, s.Candidate.Digest
		s.Displaced = nil
		s.Phase = PhaseRecording
		return s, Decision{Action: ActRecord, Color: s.Live, Result: ResultPromoted,
			Message: PromoteMessage(s.Bundle, s.Live, s.Candidate.Commit, evidence)}
	case EvRecorded:
		if s.Policy.Soak > 0 && s.PreviousWarm {
			s.Phase = PhaseSoaking
			return s, Decision{Action: ActSoak, Color: s.Live, After: s.Policy.Soak}
		}
		return settled(s)
	case EvSoaked:
		if e.Err == nil {
			return settled(s)
		}
		s.Phase, s.Evidence = PhaseFlippingBack, e.Err.Error()
		return s, Decision{Action: ActFlipBack, Color: s.Previous}
	case EvFlippedBack:
		reason := "degraded during the soak: " + s.Evidence
		if e.Err != nil {
			// Traffic could not be moved back: record the failure, keep
			// the (degraded) live color, and let a human decide.
			s.Phase = PhaseIdle
			reason += "; flipping back to " + s.Previous + " failed: " + e.Err.Error()
			return s, Decision{Action: ActFail, Result: ResultHeld, Reason: reason, Failing: s.Candidate.Commit,
				Message: HoldMessage(s.Bundle, s.Candidate.Commit, reason)}
		}
		failed := s.Live
		s.Live, s.LiveCommit, s.LiveDigest = s.Previous, s.PrevCommit, s.PrevDigest
		s.Previous, s.PrevCommit, s.PrevDigest, s.PreviousWarm = "", "", "", false
		s.Target = failed
		return failAfterSoak(s, reason)
	}
	return s, Decision{Action: ActNone}
}

// deploy sends the candidate to the target color. If that color held the
// warm previous release, the release is remembered so a failure restores it.
func deploy(s State) (State, Decision) {
	if s.Target == s.Previous && s.Previous != "" {
		if s.PreviousWarm {
			s.Displaced = &ReleaseRef{Commit: s.PrevCommit, Digest: s.PrevDigest}
		}
		s.Previous, s.PrevCommit, s.PrevDigest, s.PreviousWarm = "", "", "", false
	}
	s.Phase = PhaseDeploying
	return s, Decision{Action: ActDeploy, Color: s.Target}
}

// settled ends a promotion: the previous color is scaled down later.
func settled(s State) (State, Decision) {
	s.Phase = PhaseIdle
	d := Decision{Action: ActNone}
	if s.PreviousWarm && !s.Policy.ScaleDownNever {
		d.ScaleDown = s.Previous
	}
	return s, d
}

// fail takes the target color out of service and records the failure:
// a revert of the bundle's files, or (hold, first deploy) release.yaml only.
func fail(s State, reason string) (State, Decision) {
	s.Phase = PhaseIdle
	c := s.Candidate
	d := Decision{Action: ActFail, Color: s.Target, Failing: c.Commit, Reason: reason}
	if s.Displaced != nil {
		d.Restore = s.Displaced
		s.Previous, s.PrevCommit, s.PrevDigest, s.PreviousWarm = s.Target, s.Displaced.Commit, s.Displaced.Digest, true
		s.Displaced = nil
	}
	if s.Live == "" || s.Policy.OnFailure == OnFailureHold {
		d.Result, d.Message = ResultHeld, HoldMessage(s.Bundle, c.Commit, reason)
		return s, d
	}
	d.Result, d.Restores = ResultReverted, s.LiveCommit
	d.Message = RevertMessage(s.Bundle, c.Subject, c.Commit, s.LiveCommit, reason, "traffic stayed on "+s.Live)
	return s, d
}

// untrusted holds a candidate that lacks trusted signatures, whatever
// onFailure says: nothing was applied, so no color is taken out of service,
// and no revert is written (reverting it would be acting on it). Its policy
// is not adopted either.
func untrusted(s State, c *Candidate) (State, Decision) {
	s.Phase, s.Candidate = PhaseIdle, c
	return s, Decision{Action: ActFail, Result: ResultHeld, Failing: c.Commit, Reason: c.Untrusted,
		Message: HoldMessage(s.Bundle, c.Commit, c.Untrusted)}
}

// failAfterSoak records a release that degraded after its flip; traffic is
// already back on the previous color.
func failAfterSoak(s State, reason string) (State, Decision) {
	s.Phase = PhaseIdle
	c := s.Candidate
	d := Decision{Action: ActFail, Color: s.Target, Failing: c.Commit, Reason: reason}
	if s.Policy.OnFailure == OnFailureHold {
		d.Result, d.Message = ResultHeld, HoldMessage(s.Bundle, c.Commit, reason)
		return s, d
	}
	d.Result, d.Restores = ResultReverted, s.LiveCommit
	d.Message = RevertMessage(s.Bundle, c.Subject, c.Commit, s.LiveCommit, reason, "traffic went back to "+s.Live)
	return s, d
}
