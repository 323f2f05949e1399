package promote

import (
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/tandem-gitops/tandem/contract"
)

// Protected branches. With State.Propose (--write-mode=status-branch) the
// agent never pushes to the tracked branch: its records go to a branch it
// owns, and a revert becomes a pull request against the tracked branch. The
// failed candidate stays pinned out (traffic on the last good release, no
// retry) until the bundle's inputs change: the request merged, or a person
// pushed a fix instead (whose candidate then closes the request).

// Propose-mode phases, actions and events.
const (
	PhaseProposing   Phase = "Proposing"   // opening the revert request
	PhaseWithdrawing Phase = "Withdrawing" // closing a stale revert request before a new candidate

	ActPropose  Action = "propose"  // open (or find) the revert request of Commit (EvProposed)
	ActWithdraw Action = "withdraw" // close Request, superseded by the candidate (EvWithdrawn)

	EvProposed  EventKind = "proposed"  // the revert request is open (Event.Request)
	EvWithdrawn EventKind = "withdrawn" // the stale revert request is closed (or was merged)
)

// TrailerRequest names the revert request in the record of a proposed revert.
const TrailerRequest = "Tandem-Revert-Request"

// ErrRefused marks a write the remote refuses whatever the tip (a protected
// branch, a pre-receive hook, a forge that rejects the request): retrying
// soon cannot help, so it is retried slowly (RefusedRetry) and reported once.
var ErrRefused = errors.New("refused by the remote")

// Refused wraps err so that errors.Is(err, ErrRefused) is true.
func Refused(err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrRefused, err)
}

// RefusedRetry repeats a refused write: every minute at first, then every
// quarter of an hour, so a fixed rule (or a granted bypass) is noticed
// without a tight loop of pushes the remote refuses.
var RefusedRetry = wait.Backoff{Duration: time.Minute, Factor: 2, Jitter: 0.1, Cap: 15 * time.Minute}

// RevertPending reports the revert request release.yaml records for its
// last failure ("": none). It is pending for as long as the bundle's inputs
// are the failed candidate's (Facts.ChangedSinceFailure false).
func RevertPending(rel *Release) string {
	if rel == nil || rel.LastFailure == nil {
		return ""
	}
	return rel.LastFailure.RevertRequest
}

// refusedNote is the one note of a refused write: what the remote said,
// and the two ways out.
func refusedNote(s State, e Event) *Note {
	what := "cannot write the outcome to Git"
	if e.Kind == EvProposed {
		what = "cannot open the revert request"
	}
	return &Note{Phase: NoteCommit, Result: s.Pending.Result, Err: e.Err, Warn: true, Reason: ReasonRefused,
		Detail: what + ": the remote refuses it (a protected branch or a hook); traffic stays where it is and the write is retried every few minutes. " +
			"Fix: run the agent with --write-mode=status-branch (records on its own branch, reverts as pull requests), or let its identity bypass the protection"}
}

// refusedRetry is the slow retry of a refused write, with its note on the
// first attempt only.
func refusedRetry(s State, e Event) (State, Decision) {
	s.Attempt++
	s.refusals++
	redo := s.Pending
	d := Decision{Action: ActRetry, After: backoffDelay(RefusedRetry, s.refusals-1), Jitter: RefusedRetry.Jitter, Redo: &redo}
	if s.refusals == 1 {
		d.Say = refusedNote(s, e)
	}
	return s, d
}

// propose follows the take-out of a failed color in propose mode: the
// revert is opened as a request against the tracked branch; its record
// follows once the request exists (proposed).
func propose(s State, o Decision) (State, Decision) {
	msg := WithChecks(o.Message, s.Checks)
	s.Phase = PhaseProposing
	return s, Decision{Action: ActPropose, Color: o.Color, Result: ResultReverted, Failing: o.Failing, Restores: o.Restores,
		Reason: o.Reason, Message: msg,
		Commit: &Commit{Result: ResultReverted, Message: msg, Revert: &Revert{Failing: o.Failing, From: o.Restores}}}
}

// proposed records a revert request that is open: release.yaml (on the
// agent's own branch) says the failure and where its revert waits.
func proposed(s State, e Event) (State, Decision) {
	o := s.Outcome
	if e.Err != nil { // superseded: a newer commit changed the bundle
		failure := &Failure{Commit: o.Failing, Reason: o.Reason, At: e.At.UTC().Truncate(time.Second)}
		o.Result, o.Restores, o.Message = ResultHeld, "", HoldMessage(s.Bundle, o.Failing, o.Reason)
		s, d := record(s, o, e.At, failure)
		d.Say = &Note{Phase: NoteCommit, Result: ResultHeld, Reason: ReasonSuperseded,
			Detail: "a newer commit changed the bundle; no revert proposed"}
		return s, d
	}
	failure := &Failure{Commit: o.Failing, Reason: o.Reason, At: e.At.UTC().Truncate(time.Second), RevertRequest: e.Request}
	o.Message = insertParagraph(o.Message, "Revert pending: "+e.Request) + TrailerRequest + ": " + e.Request + "\n"
	o.Restores = "" // the files are restored by the request, not by this record
	s, d := record(s, o, e.At, failure)
	d.Say = &Note{Phase: NoteFail, Color: o.Color, Commit: o.Failing, Reason: ReasonRevertRequest, Warn: true,
		Detail: "revert pending: " + e.Request + " (traffic stays on " + s.Live + "; the candidate is not retried)"}
	return s, d
}

// withdraw closes the revert request of an earlier failure before a new
// candidate (a person's fix, or the merge of the request itself) is
// released. It reports whether it did.
func withdraw(s State, c *Candidate) (State, Decision, bool) {
	req := RevertPending(s.Release)
	if req == "" || c.Untrusted != "" || c.Commit == s.Release.LastFailure.Commit {
		return s, Decision{}, false
	}
	rel := *s.Release
	lf := *rel.LastFailure
	lf.RevertRequest = "" // in memory: closed once, whatever comes next
	rel.LastFailure = &lf
	s.Release, s.Candidate, s.Phase = &rel, c, PhaseWithdrawing
	return s, Decision{Action: ActWithdraw, Request: req, Failing: lf.Commit,
		Reason: contract.Short(c.Commit) + " changed the bundle since the failure of " + contract.Short(lf.Commit)}, true
}

// withdrawn goes on with the candidate once the stale request is closed
// (a request that could not be closed is reported, never a reason to wait).
func withdrawn(s State, e Event) (State, Decision) {
	c := s.Candidate
	s, d := candidate(s, c)
	if e.Err != nil && d.Say == nil {
		d.Say = &Note{Phase: NoteFail, Commit: c.Commit, Err: e.Err, Warn: true, Reason: ReasonRevertRequest,
			Detail: "cannot close the stale revert request; close it by hand"}
	}
	return s, d
}
