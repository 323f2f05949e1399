package promote

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tandem-gitops/tandem/check"
)

// The cluster, by role. cmd/agent implements them on top of the applier for
// one bundle; a release is named by its ReleaseRef and the adapter resolves
// it to the rendered objects. An error wrapped with Transient is retried;
// any other error fails the release. A new phase adds a role, not a method
// to a wide interface.

// Observer reads what the cluster shows of the bundle.
type Observer interface {
	// Observe reads which color the stable twins select and what each color runs.
	Observe(ctx context.Context) (View, error)
}

// DeployOptions say what a Deploy is for.
type DeployOptions struct {
	// Shared: apply spec.shared first.
	Shared bool
	// Verify: a verification of the release in the color follows, so the
	// Deployer may start watching its health before it applies (re-applies
	// of a live color and restores are not verified: anything started for
	// them would only be held until it timed out).
	Verify bool
}

// Deployer puts releases into colors.
type Deployer interface {
	// Deploy applies rel's render to color (spec.shared first when
	// o.Shared is set) and says what changed (with PrunedCount() int when it
	// can).
	Deploy(ctx context.Context, color string, rel ReleaseRef, o DeployOptions) (fmt.Stringer, error)
	// Scale takes color to zero replicas (objects kept) or back up.
	Scale(ctx context.Context, color string, up bool) error
}

// Verifier judges the health of a color.
type Verifier interface {
	// Verify waits until every workload of color (running rel) is healthy
	// and returns the evidence, or an error naming what failed.
	Verify(ctx context.Context, color string, rel ReleaseRef, timeout time.Duration) (fmt.Stringer, error)
	// Watch checks that color stays healthy for d (the soak).
	Watch(ctx context.Context, color string, rel ReleaseRef, d time.Duration) error
}

// Checker runs a bundle's end-to-end checks (spec.checks).
type Checker interface {
	// Check runs checks against color (running rel) and returns their
	// results; the error is a *check.Error when one did not pass.
	Check(ctx context.Context, color string, rel ReleaseRef, checks []check.Spec) (check.Results, error)
}

// Router moves traffic.
type Router interface {
	// Route points every stable twin of the bundle (as rel renders them) at color.
	Route(ctx context.Context, color string, rel ReleaseRef) error
}

// Cluster is every role a Driver needs.
type Cluster interface {
	Observer
	Deployer
	Verifier
	Checker
	Router
}

// Git writes an outcome to the tracked branch.
type Git interface {
	// Write commits rec and pushes it, retrying rejected pushes on the new
	// tip, and returns the commit and how many attempts it took; it returns
	// ErrSuperseded when a newer commit changed the bundle and a revert must
	// not be written over it.
	Write(ctx context.Context, rec Commit) (commit string, attempts int, err error)
}

// Proposer opens and closes revert requests (pull or merge requests against
// the tracked branch) when the tracked branch takes no pushes.
type Proposer interface {
	// Propose pushes rec's revert on a branch of its own and opens a request
	// to merge it into the tracked branch, or finds the one an earlier
	// attempt opened (never two for one failure); it returns its link.
	Propose(ctx context.Context, rec Commit) (link string, err error)
	// Withdraw closes the request at link with a comment saying why; a
	// request merged or closed already is left as it is.
	Withdraw(ctx context.Context, link, why string) error
}

// Commit is one outcome for Git: release.yaml and, for a revert, the bundle
// inputs restored from Revert.From.
type Commit struct {
	Result  string
	Message string
	Release *Release
	Revert  *Revert
}

// Revert says which bundle inputs a revert commit restores.
type Revert struct{ Failing, From string }

// ErrSuperseded: a newer commit changed the bundle; the revert was not written.
var ErrSuperseded = errors.New("a newer commit changed the bundle")

// Note is one step of a release, for logs and metrics.
type Note struct {
	Phase    NotePhase
	Color    string
	Commit   string
	Result   string // for commit notes: promoted, reverted, held
	Detail   string // evidence, change summary, reason
	Duration time.Duration
	Attempts int
	Err      error
	Warn     bool // something needs attention (a failure, a retry)
	// Live and LiveCommit: after a commit landed, the color the stable
	// Services select and the commit it runs.
	Live, LiveCommit string
	// Check is one check run's result (Phase "check").
	Check *check.Result
	// Pruned (Phase "apply") is how many objects the apply pruned.
	Pruned int
	// Reason, when set, says for programs what the note reports beyond
	// its phase (Detail is for people).
	Reason NoteReason
	// State (Phase "state") is the bundle's summary state now.
	State BundleState
}

// NotePhase is the step of a release a Note reports.
type NotePhase string

// Note phases: every step the driver reports. Consumers switch on these
// constants, never on text.
const (
	NoteCandidate NotePhase = "candidate"  // a new candidate was taken (Detail: its digest)
	NoteIdle      NotePhase = "idle"       // nothing to release: the candidate renders what is live
	NoteApply     NotePhase = "apply"      // a color was applied (Detail: what changed)
	NoteVerify    NotePhase = "verify"     // a color's health is known (Detail: evidence)
	NoteCheck     NotePhase = "check"      // one check ran (Check)
	NoteFlip      NotePhase = "flip"       // the stable Services select Color
	NotePromote   NotePhase = "promote"    // the promotion is recorded
	NoteSoak      NotePhase = "soak"       // the soak ended (Err: it degraded; Reason: cut short)
	NoteFlipBack  NotePhase = "flip-back"  // traffic went back to the previous color
	NoteFail      NotePhase = "fail"       // the release failed (Detail: why)
	NoteCommit    NotePhase = "commit"     // an outcome reached Git (Result, Commit)
	NoteRecover   NotePhase = "recover"    // recovery after a restart did something
	NoteScaleDown NotePhase = "scale-down" // the previous color was scaled to zero
	NoteResync    NotePhase = "resync"     // the live color was re-applied (drift)
	NoteRetry     NotePhase = "retry"      // a transient error; the decision is retried
	NoteSuspend   NotePhase = "suspend"    // spec.suspend was set or removed (Detail says which)
	NoteState     NotePhase = "state"      // the bundle's summary state changed (State)
)

// NotePhases lists every note phase, in the order of a release.
var NotePhases = []NotePhase{NoteCandidate, NoteIdle, NoteApply, NoteVerify, NoteCheck, NoteFlip, NotePromote,
	NoteSoak, NoteFlipBack, NoteFail, NoteCommit, NoteRecover, NoteScaleDown, NoteResync, NoteRetry, NoteSuspend, NoteState}

// NoteReason is the typed meaning of a note (Note.Reason).
type NoteReason string

// Note reasons.
const (
	// ReasonCancelled: a newer commit ended a verification or its checks.
	ReasonCancelled NoteReason = "cancelled"
	// ReasonNotWarm: the warm standby no longer runs the release; it is deployed instead.
	ReasonNotWarm NoteReason = "not-warm"
	// ReasonWarmFlip: the flip is a warm flip-back to a color that already runs the release.
	ReasonWarmFlip NoteReason = "warm-flip"
	// ReasonSoakCut: a newer commit ended a soak early; the promotion stands.
	ReasonSoakCut NoteReason = "soak-cut"
	// ReasonSuperseded: a newer commit changed the bundle; no revert was written over it.
	ReasonSuperseded NoteReason = "superseded"
	// ReasonPaused and ReasonResumed (Phase "suspend"): spec.suspend was set or removed.
	ReasonPaused  NoteReason = "paused"
	ReasonResumed NoteReason = "resumed"
	// ReasonRefused: the remote refuses the agent's write (a protected branch, a hook).
	ReasonRefused NoteReason = "refused"
	// ReasonRevertRequest: a revert waits as a request against the tracked branch.
	ReasonRevertRequest NoteReason = "revert-request"
)
