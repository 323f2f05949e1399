package promote

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tandem-gitops/tandem/check"
)

// Phase is where a bundle's release is.
type Phase string

// Phases of the release state machine.
const (
	PhaseIdle         Phase = "Idle"
	PhaseRecovering   Phase = "Recovering"   // reading the cluster after a (re)start
	PhaseConfirming   Phase = "Confirming"   // checking that a warm standby still runs the candidate
	PhaseDeploying    Phase = "Deploying"    // applying the candidate to the target color
	PhaseVerifying    Phase = "Verifying"    // waiting for the target color's health
	PhaseChecking     Phase = "Checking"     // running the verify checks against the healthy target
	PhaseFlipping     Phase = "Flipping"     // pointing the stable Services at the target
	PhaseRecording    Phase = "Recording"    // committing an outcome
	PhaseSoaking      Phase = "Soaking"      // watching the new live color
	PhaseFlippingBack Phase = "FlippingBack" // the soak failed: traffic goes back
	PhaseFailing      Phase = "Failing"      // taking a failed color out of service
	PhaseRerouting    Phase = "Rerouting"    // recovery: stable Services back on the live color
	PhaseResyncing    Phase = "Resyncing"    // re-applying the live color (drift)
	PhaseScalingDown  Phase = "ScalingDown"  // scaling the previous color to zero
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
	// Checks are spec.checks: verify checks run before the flip, soak
	// checks during the soak.
	Checks []check.Spec
	// RecordSoak: another bundle lists this one in spec.after, so the end
	// of a healthy soak is recorded in release.yaml (soakedAt) for the
	// agents of those bundles to read.
	RecordSoak bool
}

// checks are the policy's checks that run at when.
func (p Policy) checks(when string) []check.Spec {
	var out []check.Spec
	for _, c := range p.Checks {
		if c.When == when {
			out = append(out, c)
		}
	}
	return out
}

// Candidate is a commit to release: the commit, the digest of its render
// (the agent keeps the rendered objects, keyed by Ref) and the policy of
// bundle.yaml at that commit.
type Candidate struct {
	Commit, Subject, Digest string
	RenderErr               error
	Policy                  Policy
	// Untrusted, when set, says which commits lack a trusted signature:
	// the candidate is held without being rendered or applied.
	Untrusted string
	// Charts are the Helm charts its render used, one "name@version" each
	// (followed by the repository and digest of a remote chart), recorded
	// in release.yaml and the promotion's Tandem-Chart trailers.
	Charts []string
}

// Ref is the release the candidate would run.
func (c *Candidate) Ref() ReleaseRef { return ReleaseRef{Commit: c.Commit, Digest: c.Digest} }

// ReleaseRef names a rendered release: a commit and the digest of its render.
// The cluster adapter resolves it to the objects it applies.
type ReleaseRef struct{ Commit, Digest string }

// State is a bundle's release state. Step never mutates its input, nor
// anything its pointers reach.
type State struct {
	Bundle string
	Colors [2]string
	Policy Policy

	Live, LiveCommit, LiveDigest     string
	Previous, PrevCommit, PrevDigest string
	// LiveCharts and PrevCharts are the Helm charts each runs
	// (Candidate.Charts), for release.yaml.
	LiveCharts, PrevCharts []string
	// PreviousWarm: the previous color still runs its release, scaled up.
	PreviousWarm bool
	// Release is release.yaml as last read or written (nil: none).
	Release *Release

	Phase     Phase
	Candidate *Candidate
	Target    string // the color being deployed, verified or flipped to
	// Warm: the candidate is a flip back to the warm previous color.
	Warm bool
	// Displaced is the warm previous release that the candidate's deploy
	// replaced; a failure restores it so that a rollback stays instant.
	Displaced *ReleaseRef
	Evidence  string // what verification showed, for the promotion commit
	// Checks are the candidate's check results so far (verify, then soak),
	// for the outcome commit.
	Checks  check.Results
	Outcome Decision // the ActFail decision whose commit follows the take-out
	// ScaleDownAt is when the previous color is due to scale to zero (zero: never).
	ScaleDownAt time.Time
	Attempt     int // transient retries of the pending decision
	Pending     Decision
	// Suspended: spec.suspend is set; no resync, no scale-down until it
	// is removed (candidates are not offered: Admit).
	Suspended bool
	// Last is the result of the last outcome recorded (ResultPromoted,
	// ResultReverted, ResultHeld; "" before any).
	Last string
	// Propose: the tracked branch takes no pushes (--write-mode
	// status-branch); a revert is proposed as a request (protect.go).
	Propose bool
	// refusals counts the refused attempts of the pending decision.
	refusals int
}

// ScaleDownTimer is when the driver must send EvScaleDownDue (zero: no
// timer; none while suspended).
func (s State) ScaleDownTimer() time.Time {
	if s.Suspended {
		return time.Time{}
	}
	return s.ScaleDownAt
}

// Idle returns the color that is not live (the first color before the first deploy).
func (s State) Idle() string {
	if s.Live == s.Colors[0] {
		return s.Colors[1]
	}
	return s.Colors[0]
}

// idle: no release is under way.
func (s State) idle() bool { return s.Phase == PhaseIdle || s.Phase == "" }

func (s State) liveRef() ReleaseRef { return ReleaseRef{Commit: s.LiveCommit, Digest: s.LiveDigest} }
func (s State) prevRef() ReleaseRef { return ReleaseRef{Commit: s.PrevCommit, Digest: s.PrevDigest} }

// EventKind names what happened.
type EventKind string

// Events fed to Step. EvStart, EvCandidate, EvResync and EvScaleDownDue come
// from outside a release; the others report the outcome of the decision
// Step made before them.
const (
	EvStart        EventKind = "start"          // the driver (re)started: recover
	EvCandidate    EventKind = "candidate"      // a new commit changes the bundle
	EvResync       EventKind = "resync"         // re-apply the live color (drift)
	EvScaleDownDue EventKind = "scale-down-due" // ScaleDownAt has passed
	EvObserved     EventKind = "observed"       // the cluster's View was read
	EvDeployed     EventKind = "deployed"       // a color was applied
	EvVerified     EventKind = "verified"       // the target color's health is known
	EvChecked      EventKind = "checked"        // the verify checks reached a verdict
	EvFlipped      EventKind = "flipped"        // the stable Services select the target
	EvRecorded     EventKind = "recorded"       // the outcome commit landed (or was superseded)
	EvSoaked       EventKind = "soaked"         // the soak window ended (Err: it degraded)
	EvFlippedBack  EventKind = "flipped-back"   // the stable Services are back on the previous color
	EvTakenOut     EventKind = "taken-out"      // the failed color was restored or scaled down
	EvRerouted     EventKind = "rerouted"       // recovery put the stable Services back
	EvScaled       EventKind = "scaled"         // the previous color was scaled to zero
	EvCancelled    EventKind = "cancelled"      // a newer candidate ended a verification or soak
	EvSuspend      EventKind = "suspend"        // spec.suspend was set (Event.On) or removed
)

// Event is input to Step. Err is the effect's error; a transient one
// (errors.Is(Err, ErrTransient)) is retried, never a failure. At is the
// driver's clock when the event happened.
type Event struct {
	Kind      EventKind
	Candidate *Candidate // EvCandidate
	View      View       // EvObserved
	Err       error
	Evidence  string // EvVerified: per-app readiness
	// Checks (EvChecked, EvSoaked) are the check results, when checks ran.
	Checks check.Results
	// On (EvSuspend): spec.suspend is set.
	On bool
	// Request (EvProposed) is the link of the revert request.
	Request string
	At      time.Time
}

// Action is what the driver must do.
type Action string

// Actions of a Decision. Each maps to one effect and one Event back.
const (
	ActNone     Action = "none"      // nothing to do; ScaleDown may name a color to scale down later
	ActObserve  Action = "observe"   // read the cluster's View (EvObserved)
	ActDeploy   Action = "deploy"    // apply Ref to Color (EvDeployed)
	ActVerify   Action = "verify"    // wait for Color's health within the policy's timeout (EvVerified)
	ActCheck    Action = "check"     // run Checks against Color (EvChecked)
	ActFlip     Action = "flip"      // point every stable twin at Color (EvFlipped)
	ActRecord   Action = "record"    // commit Commit (EvRecorded)
	ActSoak     Action = "soak"      // watch Color for After, running Checks meanwhile (EvSoaked)
	ActFlipBack Action = "flip-back" // point every stable twin back at Color (EvFlippedBack)
	ActFail     Action = "fail"      // take Color out: re-apply Restore to it, or scale it to zero (EvTakenOut)
	ActReroute  Action = "reroute"   // recovery: put the stable twins back on Color (EvRerouted)
	ActResync   Action = "resync"    // re-apply Ref to Color with shared objects, then its twins (EvDeployed)
	ActScale    Action = "scale"     // scale Color to zero (EvScaled)
	ActRetry    Action = "retry"     // repeat Redo after After
)

// Decision is what the driver must do next.
type Decision struct {
	Action Action
	Color  string
	// Ref is the release Color runs or is to run (deploy, verify, flip, soak, resync).
	Ref ReleaseRef
	// Warm (ActVerify, ActFlip): Color already runs the candidate, a warm standby.
	Warm bool
	// Checks (ActCheck, ActSoak) are the checks to run against Color.
	Checks  []check.Spec
	Message string        // ActFail, ActRecord: the commit message
	Result  string        // ActFail, ActRecord: ResultPromoted, ResultReverted or ResultHeld
	Reason  string        // ActFail: why, for release.yaml's lastFailure; ActNone: what recovery found
	Failing string        // ActFail: the failing commit
	After   time.Duration // ActRetry: delay before Redo (add Jitter); ActSoak: duration
	Jitter  float64       // ActRetry: the retry policy's jitter factor
	// Restores is the commit whose bundle inputs a revert restores ("" for hold).
	Restores string
	// Restore (ActFail): re-apply this release to Color instead of scaling it
	// to zero: it is the warm previous release the candidate displaced.
	Restore *ReleaseRef
	// Commit (ActRecord) is the outcome to write: message and release.yaml.
	Commit *Commit
	// ScaleDown (ActNone after a promotion): the previous color, due to scale
	// to zero at State.ScaleDownAt.
	ScaleDown string
	Redo      *Decision // ActRetry: the decision to repeat
	// Say is a step to report before acting (a decision worth a log line).
	Say *Note
	// Propose (ActFail): the revert is proposed as a request, not committed.
	Propose bool
	// Request (ActWithdraw) is the revert request to close.
	Request string
}

// Step is the pure decision core: state and event in, new state and the
// next decision out. No I/O; the only clock is the event's At.
func Step(s State, e Event) (State, Decision) {
	if e.Err != nil && errors.Is(e.Err, ErrRefused) && (e.Kind == EvRecorded || e.Kind == EvProposed) {
		return refusedRetry(s, e)
	}
	if e.Err != nil && retryable(s, e) {
		s.Attempt++
		redo := s.Pending
		b := retryPolicy(redo.Action)
		return s, Decision{Action: ActRetry, After: backoffDelay(b, s.Attempt-1), Jitter: b.Jitter, Redo: &redo}
	}
	s.Attempt, s.refusals = 0, 0
	s, d := step(s, e)
	s.Pending = d
	return s, d
}

// retryable: transient errors, any failure to read the cluster, and any
// failure to write an outcome other than a newer commit superseding it (a
// flip that happened is always committed).
func retryable(s State, e Event) bool {
	switch e.Kind {
	case EvCandidate, EvCancelled:
		return false
	case EvObserved:
		return true
	case EvRecorded:
		return !errors.Is(e.Err, ErrSuperseded)
	case EvProposed:
		return !errors.Is(e.Err, ErrSuperseded)
	}
	return errors.Is(e.Err, ErrTransient)
}

func step(s State, e Event) (State, Decision) {
	switch e.Kind {
	case EvStart:
		s.Phase = PhaseRecovering
		return s, Decision{Action: ActObserve}
	case EvCandidate:
		if s, d, ok := withdraw(s, e.Candidate); ok {
			return s, d
		}
		return candidate(s, e.Candidate)
	case EvWithdrawn:
		return withdrawn(s, e)
	case EvProposed:
		return proposed(s, e)
	case EvObserved:
		if s.Phase == PhaseRecovering {
			return Recover(s, s.Release, e.View, e.At)
		}
		return confirmWarm(s, e.View)
	case EvDeployed:
		if s.Phase == PhaseResyncing {
			s.Phase = PhaseIdle
			return s, Decision{Action: ActNone}
		}
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		s.Phase = PhaseVerifying
		return s, Decision{Action: ActVerify, Color: s.Target, Ref: s.Candidate.Ref()}
	case EvVerified:
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		s.Evidence = e.Evidence
		if cs := s.Policy.checks(check.WhenVerify); len(cs) > 0 {
			s.Phase = PhaseChecking
			return s, Decision{Action: ActCheck, Color: s.Target, Ref: s.Candidate.Ref(), Checks: cs}
		}
		return flip(s)
	case EvChecked:
		s.Checks = e.Checks
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		return flip(s)
	case EvFlipped:
		if e.Err != nil {
			return fail(s, e.Err.Error())
		}
		return promoted(s, e.At)
	case EvRecorded:
		return recorded(s, e)
	case EvSoaked:
		s.Checks = append(slices.Clip(s.Checks), e.Checks...)
		if e.Err == nil {
			return soaked(s, e.At)
		}
		s.Phase, s.Evidence = PhaseFlippingBack, e.Err.Error()
		return s, Decision{Action: ActFlipBack, Color: s.Previous, Ref: s.prevRef()}
	case EvFlippedBack:
		return flippedBack(s, e)
	case EvTakenOut:
		return takenOut(s, e)
	case EvCancelled:
		return cancelled(s, e.At)
	case EvRerouted:
		s.Phase = PhaseIdle
		return s, Decision{Action: ActNone}
	case EvSuspend:
		if s.Suspended == e.On {
			return s, Decision{Action: ActNone}
		}
		s.Suspended = e.On
		n := &Note{Phase: NoteSuspend, Reason: ReasonPaused, Detail: "suspended: no candidate is released and drift correction stops until spec.suspend is removed"}
		if !e.On {
			n.Reason, n.Detail = ReasonResumed, "resumed: spec.suspend was removed"
		}
		return s, Decision{Action: ActNone, Say: n}
	case EvResync:
		if !s.idle() || s.Live == "" || s.Suspended {
			return s, Decision{Action: ActNone}
		}
		s.Phase = PhaseResyncing
		return s, Decision{Action: ActResync, Color: s.Live, Ref: s.liveRef()}
	case EvScaleDownDue:
		return scaleDownDue(s)
	case EvScaled:
		s.Phase = PhaseIdle
		if e.Err != nil {
			s.ScaleDownAt = e.At.Add(time.Minute) // try again later
			return s, Decision{Action: ActNone}
		}
		s.PreviousWarm, s.ScaleDownAt = false, time.Time{}
		return s, Decision{Action: ActNone}
	}
	return s, Decision{Action: ActNone}
}

// candidate starts a release: nothing when it renders what is live, a
// failure when it cannot render, a warm flip back when the previous color
// already runs it, otherwise a deploy to the idle color.
func candidate(s State, c *Candidate) (State, Decision) {
	if c.Untrusted != "" {
		return untrusted(s, c)
	}
	s.Policy = c.Policy
	if c.RenderErr == nil && c.Digest != "" && c.Digest == s.LiveDigest {
		s.Phase = PhaseIdle
		return s, Decision{Action: ActNone, Say: &Note{Phase: NoteIdle, Commit: c.Commit,
			Detail: "nothing to release: the candidate renders what is live"}}
	}
	s.Candidate, s.Target, s.Warm, s.Displaced, s.Evidence, s.Checks = c, s.Idle(), false, nil, "", nil
	if c.RenderErr != nil {
		// Nothing was applied: no color to take out of service.
		s, d := fail(s, c.RenderErr.Error())
		d.Color = ""
		return s, d
	}
	if s.PreviousWarm && s.Target == s.Previous && c.Digest == s.PrevDigest {
		// A rollback to what the warm previous color runs: no deploy, no
		// cold start, once the cluster confirms the color still runs it.
		s.Phase, s.Warm = PhaseConfirming, true
		return s, Decision{Action: ActObserve, Color: s.Target}
	}
	return deploy(s)
}

// confirmWarm decides warm or cold from what the target color runs.
func confirmWarm(s State, v View) (State, Decision) {
	if v.Colors[s.Target].Runs(s.Candidate.Digest) {
		s.Phase = PhaseVerifying
		return s, Decision{Action: ActVerify, Color: s.Target, Ref: s.Candidate.Ref(), Warm: true}
	}
	s.PreviousWarm, s.Warm = false, false
	s, d := deploy(s)
	d.Say = &Note{Phase: NoteVerify, Color: s.Target, Reason: ReasonNotWarm, Detail: s.Target + " does not run this release any more; deploying it instead"}
	return s, d
}

// deploy sends the candidate to the target color. If that color held the
// warm previous release, the release is remembered so a failure restores it.
func deploy(s State) (State, Decision) {
	if s.Target == s.Previous && s.Previous != "" {
		if s.PreviousWarm {
			s.Displaced = &ReleaseRef{Commit: s.PrevCommit, Digest: s.PrevDigest}
		}
		s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts, s.PreviousWarm = "", "", "", nil, false
		s.ScaleDownAt = time.Time{}
	}
	s.Phase = PhaseDeploying
	return s, Decision{Action: ActDeploy, Color: s.Target, Ref: s.Candidate.Ref()}
}

// flip points traffic at the verified target.
func flip(s State) (State, Decision) {
	s.Phase = PhaseFlipping
	return s, Decision{Action: ActFlip, Color: s.Target, Ref: s.Candidate.Ref(), Warm: s.Warm}
}

// promoted records a flip that happened: the target is live, the old live
// color is the warm previous one.
func promoted(s State, at time.Time) (State, Decision) {
	evidence := s.Evidence
	if s.Warm {
		evidence = s.Target + " already ran this release (warm); flipped back without a cold start"
	}
	s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts, s.PreviousWarm = s.Live, s.LiveCommit, s.LiveDigest, s.LiveCharts, s.Live != ""
	s.Live, s.LiveCommit, s.LiveDigest, s.LiveCharts = s.Target, s.Candidate.Commit, s.Candidate.Digest, s.Candidate.Charts
	s.Displaced, s.ScaleDownAt = nil, time.Time{}
	return record(s, Decision{Action: ActRecord, Color: s.Live, Result: ResultPromoted,
		Message: WithCharts(PromoteMessage(s.Bundle, s.Live, s.Candidate.Commit, evidence), s.LiveCharts)}, at, nil)
}

// record turns an outcome into the commit to write: its message and the
// release.yaml that follows from the state.
func record(s State, d Decision, at time.Time, failure *Failure) (State, Decision) {
	s.Phase = PhaseRecording
	d.Action = ActRecord
	d.Message = WithChecks(d.Message, s.Checks)
	d.Commit = &Commit{Result: d.Result, Message: d.Message, Release: Record(s.Release, s, at, failure)}
	if d.Restores != "" {
		d.Commit.Revert = &Revert{Failing: d.Failing, From: d.Restores}
	}
	return s, d
}

// recorded follows a commit that landed (or that a newer commit made moot):
// a promotion soaks or settles, a failure ends the release.
func recorded(s State, e Event) (State, Decision) {
	if c := s.Pending.Commit; c != nil {
		s.Release = c.Release
	}
	var d Decision
	if e.Err != nil { // superseded: a newer commit changed the bundle
		d.Say = &Note{Phase: NoteCommit, Result: s.Pending.Result, Reason: ReasonSuperseded,
			Detail: "a newer commit changed the bundle; no revert written over it"}
	}
	if r := s.Pending.Result; r != ResultSoaked && e.Err == nil {
		s.Last = r
	}
	switch s.Pending.Result {
	case ResultSoaked:
		return settled(s, e.At)
	case ResultPromoted:
	default:
		s.Phase = PhaseIdle
		d.Action = ActNone
		return s, d
	}
	if s.Policy.Soak > 0 && s.PreviousWarm {
		s.Phase = PhaseSoaking
		return s, Decision{Action: ActSoak, Color: s.Live, Ref: s.liveRef(), After: s.Policy.Soak, Checks: s.Policy.checks(check.WhenSoak)}
	}
	return settled(s, e.At)
}

// soaked follows a soak that ended healthy: when bundles after this one
// wait for it (Policy.RecordSoak), release.yaml records soakedAt first;
// then the promotion settles.
func soaked(s State, at time.Time) (State, Decision) {
	rel := s.Release
	if !s.Policy.RecordSoak || rel == nil || rel.Live != s.Live || s.Live == "" {
		return settled(s, at)
	}
	live, ok := rel.Colors[s.Live]
	if !ok || live.Commit != s.LiveCommit || live.SoakedAt != nil {
		return settled(s, at)
	}
	next := *rel
	next.Colors = make(map[string]ColorRelease, len(rel.Colors))
	for c, cr := range rel.Colors {
		next.Colors[c] = cr
	}
	when := at.UTC().Truncate(time.Second)
	live.SoakedAt = &when
	next.Colors[s.Live] = live
	s.Phase = PhaseRecording
	msg := SoakedMessage(s.Bundle, s.Live, s.LiveCommit)
	return s, Decision{Action: ActRecord, Color: s.Live, Result: ResultSoaked, Message: msg,
		Commit: &Commit{Result: ResultSoaked, Message: msg, Release: &next}}
}

// settled ends a promotion: the previous color scales down at ScaleDownAt.
func settled(s State, at time.Time) (State, Decision) {
	s.Phase = PhaseIdle
	d := Decision{Action: ActNone}
	s.ScaleDownAt = time.Time{}
	if s.PreviousWarm && !s.Policy.ScaleDownNever && s.Previous != "" {
		d.ScaleDown = s.Previous
		from := at
		if s.Release != nil {
			if p := s.Release.Colors[s.Live].PromotedAt; p != nil && s.Release.Live == s.Live {
				from = *p
			}
		}
		s.ScaleDownAt = from.Add(s.Policy.ScaleDownAfter)
	}
	return s, d
}

// cancelled: a newer candidate ended a verification (the release is over;
// the newer one starts from here) or a soak (the promotion stands).
func cancelled(s State, at time.Time) (State, Decision) {
	if s.Phase == PhaseSoaking {
		s, d := settled(s, at)
		d.Say = &Note{Phase: NoteSoak, Color: s.Live, Reason: ReasonSoakCut, Detail: "a newer commit arrived; soak ended early"}
		return s, d
	}
	s.Phase = PhaseIdle
	return s, Decision{Action: ActNone, Say: &Note{Phase: NoteVerify, Color: s.Target, Reason: ReasonCancelled, Detail: "a newer commit arrived; verification cancelled"}}
}

// scaleDownDue scales the previous color down if it is still warm (not
// while suspended: ScaleDownAt stays, and is due again on resuming).
func scaleDownDue(s State) (State, Decision) {
	if s.Suspended {
		return s, Decision{Action: ActNone}
	}
	s.ScaleDownAt = time.Time{}
	if !s.idle() || s.Previous == "" || s.Previous == s.Live || !s.PreviousWarm || s.Policy.ScaleDownNever {
		return s, Decision{Action: ActNone}
	}
	s.Phase = PhaseScalingDown
	return s, Decision{Action: ActScale, Color: s.Previous}
}

// fail takes the target color out of service and records the failure:
// a revert of the bundle's inputs, or (hold, first deploy) release.yaml only.
func fail(s State, reason string) (State, Decision) {
	d := failDecision(s, s.Target, reason, "traffic stayed on "+s.Live)
	if s.Displaced != nil {
		d.Restore = s.Displaced
		s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts, s.PreviousWarm = s.Target, s.Displaced.Commit, s.Displaced.Digest, nil, true
		s.Displaced = nil
	}
	s.Phase, s.Outcome = PhaseFailing, d
	return s, d
}

// untrusted holds a candidate that lacks trusted signatures, whatever
// onFailure says: nothing was applied, so no color is taken out of service,
// and no revert is written (reverting it would be acting on it). Its policy
// is not adopted either.
func untrusted(s State, c *Candidate) (State, Decision) {
	d := Decision{Action: ActFail, Result: ResultHeld, Failing: c.Commit, Reason: c.Untrusted,
		Message: HoldMessage(s.Bundle, c.Commit, c.Untrusted)}
	s.Phase, s.Candidate, s.Outcome = PhaseFailing, c, d
	return s, d
}

// failDecision is the ActFail decision for the candidate failing in color:
// a revert to the live commit, or (hold, first deploy) release.yaml only.
// traffic says where traffic is, for the revert message.
func failDecision(s State, color, reason, traffic string) Decision {
	c := s.Candidate
	d := Decision{Action: ActFail, Color: color, Failing: c.Commit, Reason: reason}
	if s.Live == "" || s.Policy.OnFailure == OnFailureHold {
		d.Result, d.Message = ResultHeld, HoldMessage(s.Bundle, c.Commit, reason)
	} else {
		d.Result, d.Restores, d.Propose = ResultReverted, s.LiveCommit, s.Propose
		d.Message = RevertMessage(s.Bundle, c.Subject, c.Commit, s.LiveCommit, reason, traffic)
	}
	return d
}

// flippedBack follows the flip back after a failed soak.
func flippedBack(s State, e Event) (State, Decision) {
	reason := "degraded during the soak: " + s.Evidence
	if e.Err != nil {
		// Traffic could not be moved back: record the failure, keep the
		// (degraded) live color, and let a human decide.
		reason += "; flipping back to " + s.Previous + " failed: " + e.Err.Error()
		d := Decision{Action: ActFail, Result: ResultHeld, Reason: reason, Failing: s.Candidate.Commit,
			Message: HoldMessage(s.Bundle, s.Candidate.Commit, reason)}
		s.Phase, s.Outcome = PhaseFailing, d
		return s, d
	}
	failed := s.Live
	s.Live, s.LiveCommit, s.LiveDigest, s.LiveCharts = s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts
	s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts, s.PreviousWarm = "", "", "", nil, false
	s.Target = failed
	d := failDecision(s, failed, reason, "traffic went back to "+s.Live)
	s.Phase, s.Outcome = PhaseFailing, d
	return s, d
}

// takenOut commits the failure once the failed color is out of service
// (or could not be taken out: a restore that failed is no warm copy).
func takenOut(s State, e Event) (State, Decision) {
	o := s.Outcome
	say := &Note{Phase: NoteFail, Color: o.Color, Commit: o.Failing, Detail: o.Reason, Warn: true}
	if e.Err != nil {
		if o.Restore != nil {
			s.PreviousWarm = false
		}
		say.Err, say.Detail = e.Err, o.Reason+"; cannot take the failed color out"
	}
	if o.Propose {
		s, d := propose(s, o)
		d.Say = say
		return s, d
	}
	failure := &Failure{Commit: o.Failing, Reason: o.Reason, At: e.At.UTC().Truncate(time.Second)}
	s, d := record(s, o, e.At, failure)
	d.Restore, d.Say = nil, say
	return s, d
}
