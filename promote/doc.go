// Package promote is the per-bundle release state machine.
//
// Its core, Step, is a pure function that makes every decision: the current
// State and an Event in (a new candidate, a restart, a resync or due
// scale-down, or the outcome of the last effect: what the cluster showed, a
// color applied or verified, traffic moved, a commit written), the next
// State and a Decision out, with no I/O; the only clock is the event's time.
// Warm or cold, what to take out of service after a failure, when the
// previous color scales down, what release.yaml and the commit message say,
// and when and how long to retry (one policy per effect, from wait.Backoff)
// are all Step's. Recover, the part of Step that follows a restart, turns
// release.yaml and the cluster's View into the state to resume from. Both are
// tested by tables covering every rule of the contract's lifecycle.
//
// Admit is the other decision: whether a new tip of the branch is offered to
// a bundle's driver (offer, skip, hold, wait, refuse, remove), from facts
// the agent gathers; it asks for costly facts (signatures, stage gates) only
// when its verdict depends on them, and never acts. Decide is the stage gate
// it waits on. Both are table-tested.
//
// Driver performs the decisions for one bundle through small role
// interfaces this package declares (Observer, Deployer, Verifier, Checker,
// Router, and Git), which package fleet implements on top of applier and
// gitsync. Every write of release.yaml (promotion, revert, hold, and the
// record of a finished soak) is an ActRecord decision carried out by the
// one Git role. A release is named by a ReleaseRef (commit and digest); the
// adapters resolve it to rendered objects. The driver feeds each effect's outcome back to
// Step, cancels a verification or soak when a newer candidate arrives,
// gives its concurrency slot away while it only watches (a verification or
// a soak), and reports each step as a Note (a typed NotePhase and
// NoteReason) for logs and metrics. It decides nothing itself.
//
// Files: step.go (Step, State, Event, Decision), recover.go (Recover),
// admit.go (Admit, Facts, Verdict, Baseline), retry.go (the retry
// policies), driver.go (Driver), roles.go (the role interfaces and Note),
// release.go (release.yaml: ParseRelease, Record), message.go (commit
// messages and the Tandem-* trailers), gate.go (the stage gate of
// spec.after and spec.approval: Decide, Soaked, Tandem-Approve trailers,
// the soaked record), status.go (the table of `tandem-agent status`) and
// protect.go (a protected tracked branch: a revert proposed as a request
// through the Proposer role, a stale request withdrawn before a fix, and a
// refused write retried slowly and reported once).
//
// promote imports neither applier nor gitsync nor render, and does no I/O
// of its own: every effect goes through a role.
package promote
