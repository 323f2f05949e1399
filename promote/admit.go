package promote

// Admission: may a new tip of the branch be offered to a bundle's driver
// now? Admit is the one place that decides it. The agent's loop gathers the
// facts (cheap ones first; Admit asks for the costly ones only when the
// verdict depends on them) and performs the verdict. A verdict never acts.

// VerdictKind is what the loop does with a bundle at a tip.
type VerdictKind string

// Verdict kinds.
const (
	// Offer the tip to the bundle's driver as its candidate (newest wins).
	// With Verdict.Failed, the candidate carries the error and fails
	// without a render; with Verdict.Untrusted, the driver holds it.
	Offer VerdictKind = "offer"
	// Skip: not a candidate for this bundle; the bundle has seen the tip.
	Skip VerdictKind = "skip"
	// Hold: the tip is offered as a held candidate: never rendered or
	// applied, its refusal recorded (an untrusted signature).
	Hold VerdictKind = "hold"
	// Wait: not now; the bundle has not seen the tip, so the next pass asks
	// again (a stage gate, a fact that could not be read).
	Wait VerdictKind = "wait"
	// Refuse: the bundle cannot be used at this tip; report it, change
	// nothing, and ask again at the next tip.
	Refuse VerdictKind = "refuse"
	// Remove: the bundle left the branch; delete what tandem applied for it.
	Remove VerdictKind = "remove"
	// Ask: the verdict needs a fact the loop has not gathered yet
	// (Verdict.Need); gather it and call Admit again.
	Ask VerdictKind = "ask"
)

// AdmitReason is the typed reason of a verdict.
type AdmitReason string

// Admission reasons: every reason a verdict can give.
const (
	ReasonNew             AdmitReason = "new"              // offer: the bundle's inputs changed (or it is new)
	ReasonBroken          AdmitReason = "broken"           // offer (as a failure) or refuse: bundle.yaml, release.yaml or an input cannot be used
	ReasonNotMine         AdmitReason = "not-mine"         // skip: another agent releases it (--bundles)
	ReasonSuspended       AdmitReason = "suspended"        // wait: spec.suspend is set
	ReasonUnchanged       AdmitReason = "unchanged"        // skip: no input other than release.yaml changed
	ReasonAgentCommits    AdmitReason = "agent-commits"    // skip: only the agent's own commits since
	ReasonFailedUnchanged AdmitReason = "failed-unchanged" // skip: nothing changed since the recorded failure
	ReasonUntrusted       AdmitReason = "untrusted"        // hold: a commit lacks a trusted signature
	ReasonUnknown         AdmitReason = "unknown"          // wait: a fact could not be read (Git, the cluster)
	ReasonGate            AdmitReason = "gate"             // wait: an upstream bundle or an approval
	ReasonGone            AdmitReason = "gone"             // remove: bundle.yaml left the branch
	ReasonEmptyTip        AdmitReason = "empty-tip"        // skip: a tip without any bundle prunes nothing without --allow-empty
	ReasonRevertPending   AdmitReason = "revert-pending"   // skip: the failure's revert waits as a request (Detail: its link)
)

// Need names a costly fact Admit asks for.
type Need string

// Facts Admit may ask for.
const (
	NeedChanged             Need = "changed"               // Facts.Changed: inputs differ from Seen
	NeedAgentCommits        Need = "agent-commits"         // Facts.OnlyAgentCommits
	NeedChangedSinceFailure Need = "changed-since-failure" // Facts.ChangedSinceFailure
	NeedTrust               Need = "trust"                 // Facts.Trust
	NeedGate                Need = "gate"                  // Facts.Gate
)

// Broken says which file of a bundle cannot be used.
type Broken string

// What is broken.
const (
	// BrokenBundle: bundle.yaml, or an input the checkout skipped. A
	// running bundle fails the candidate (its last valid policy reverts or
	// holds).
	BrokenBundle Broken = "bundle"
	// BrokenRelease: release.yaml (the agent's own file): never a
	// candidate; a fix may touch release.yaml alone.
	BrokenRelease Broken = "release"
)

// Facts are what the loop knows of a bundle at a tip. Pointer fields are
// costly facts: nil until gathered.
type Facts struct {
	// Mine: this agent releases the bundle (--bundles selects it).
	Mine bool
	// Gone: the bundle's bundle.yaml left the branch; EmptyTip: the tip
	// has no bundle at all; AllowEmpty: --allow-empty.
	Gone, EmptyTip, AllowEmpty bool
	// Broken, when set, says what cannot be used; Err says why.
	Broken Broken
	Err    error
	// Running: the bundle has a driver. Seen is the commit it was last
	// given or runs ("" before its first candidate); Tip the tip at hand.
	Running   bool
	Seen, Tip string
	// Suspended: spec.suspend in bundle.yaml at the tip.
	Suspended bool
	// FirstSight: the driver started in this pass; LastFailure is the
	// failing commit release.yaml records ("": none).
	FirstSight  bool
	LastFailure string
	// RevertPending is the link of the request that reverts LastFailure
	// (--write-mode=status-branch; "": none).
	RevertPending string
	// Changed: an input other than release.yaml differs between Seen and
	// Tip. OnlyAgentCommits: every commit since Seen is the agent's own.
	// ChangedSinceFailure: an input differs between LastFailure and Tip.
	Changed, OnlyAgentCommits, ChangedSinceFailure *bool
	// VerifyCommits: --verify-commits is on; Trust is its finding.
	VerifyCommits bool
	Trust         *TrustFact
	// Staged: the bundle has spec.after or spec.approval; Gate is the
	// stage gate's verdict.
	Staged bool
	Gate   *Gate
	// FactErr: a costly fact could not be read (Git or the cluster did not
	// answer); the loop sets it instead of the fact it was asked for.
	FactErr error
}

// TrustFact is what signature verification found for a candidate.
type TrustFact struct {
	// Untrusted says which commits lack a trusted signature ("": all trusted).
	Untrusted string
}

// Verdict is Admit's answer.
type Verdict struct {
	Kind   VerdictKind
	Reason AdmitReason
	// Detail is for people: the error, what the gate waits for, who refused.
	Detail string
	// Failed (Offer): the candidate fails with Err instead of rendering.
	Failed error
	// Need (Ask): the fact to gather next.
	Need Need
}

// Admit decides what to do with a bundle at a tip. It is pure: facts in, a
// verdict out, in this order: removal, selection, broken files, a fact that
// could not be read, suspension, changed inputs, the agent's own commits, a
// recorded failure, signatures, then the stage gate.
func Admit(f Facts) Verdict {
	switch {
	case f.Gone && f.EmptyTip && !f.AllowEmpty:
		return Verdict{Kind: Skip, Reason: ReasonEmptyTip,
			Detail: "this commit has no bundles at all; pruning nothing (start the agent with --allow-empty to allow it)"}
	case f.Gone:
		return Verdict{Kind: Remove, Reason: ReasonGone, Detail: "bundle.yaml left the branch"}
	case !f.Mine:
		return Verdict{Kind: Skip, Reason: ReasonNotMine}
	case f.Broken != "":
		return broken(f)
	case f.FactErr != nil:
		return Verdict{Kind: Wait, Reason: ReasonUnknown, Detail: f.FactErr.Error()}
	case f.Suspended:
		// Not seen: once resumed, what changed meanwhile is the candidate.
		return Verdict{Kind: Wait, Reason: ReasonSuspended, Detail: "spec.suspend is set: no candidate is released until it is removed"}
	}
	if f.Seen != "" {
		if f.Seen == f.Tip {
			return Verdict{Kind: Skip, Reason: ReasonUnchanged}
		}
		if f.Changed == nil {
			return Verdict{Kind: Ask, Need: NeedChanged}
		}
		if !*f.Changed {
			return Verdict{Kind: Skip, Reason: ReasonUnchanged}
		}
		if f.OnlyAgentCommits == nil {
			return Verdict{Kind: Ask, Need: NeedAgentCommits}
		}
		if *f.OnlyAgentCommits {
			// A revert restores what is live: never a candidate.
			return Verdict{Kind: Skip, Reason: ReasonAgentCommits}
		}
	}
	if f.FirstSight && f.LastFailure != "" {
		if f.ChangedSinceFailure == nil {
			return Verdict{Kind: Ask, Need: NeedChangedSinceFailure}
		}
		if !*f.ChangedSinceFailure && f.RevertPending != "" {
			// Pinned out until the request is merged or a fix is pushed.
			return Verdict{Kind: Skip, Reason: ReasonRevertPending, Detail: "revert pending: " + f.RevertPending}
		}
		if !*f.ChangedSinceFailure {
			return Verdict{Kind: Skip, Reason: ReasonFailedUnchanged, Detail: "nothing changed since the recorded failure"}
		}
	}
	if f.VerifyCommits {
		if f.Trust == nil {
			return Verdict{Kind: Ask, Need: NeedTrust}
		}
		if f.Trust.Untrusted != "" {
			// Held without a render, whatever its gate says: it is never applied.
			return Verdict{Kind: Hold, Reason: ReasonUntrusted, Detail: f.Trust.Untrusted}
		}
	}
	if f.Staged {
		if f.Gate == nil {
			return Verdict{Kind: Ask, Need: NeedGate}
		}
		if f.Gate.Wait {
			return Verdict{Kind: Wait, Reason: ReasonGate, Detail: f.Gate.String()}
		}
	}
	return Verdict{Kind: Offer, Reason: ReasonNew}
}

// broken: a broken release.yaml is only reported; a broken bundle.yaml (or
// input) fails a running bundle's candidate once, when its inputs changed.
func broken(f Facts) Verdict {
	refuse := Verdict{Kind: Refuse, Reason: ReasonBroken}
	if f.Err != nil {
		refuse.Detail = f.Err.Error()
	}
	if f.Broken == BrokenRelease || !f.Running || f.Seen == f.Tip {
		return refuse
	}
	if f.Seen != "" {
		if f.FactErr != nil {
			return refuse
		}
		if f.Changed == nil {
			return Verdict{Kind: Ask, Need: NeedChanged}
		}
		if !*f.Changed {
			return refuse
		}
	}
	return Verdict{Kind: Offer, Reason: ReasonBroken, Detail: refuse.Detail, Failed: f.Err}
}

// Baseline is the commit a (re)started bundle's next tip is compared with:
// the live commit of release.yaml, or the commit the cluster's stable
// Services already select when the flip happened before a restart (Recover
// commits that promotion, so it is no candidate). "" before a first deploy.
func Baseline(rel *Release, v View) string {
	if c, ok := flipHappened(rel, v); ok {
		return c
	}
	if rel != nil && rel.Live != "" {
		return rel.Colors[rel.Live].Commit
	}
	return ""
}

// RecordedFailure is the failing commit release.yaml records beside a live
// release ("" when there is none): a restarted agent does not retry it
// unless the bundle's inputs changed since (Facts.LastFailure).
func RecordedFailure(rel *Release) string {
	if rel == nil || rel.Live == "" || rel.LastFailure == nil {
		return ""
	}
	return rel.LastFailure.Commit
}

// flipHappened reports whether the stable Services select a healthy color
// that release.yaml does not record as live, and the commit it runs: a flip
// that happened before a restart and was not committed.
func flipHappened(rel *Release, v View) (string, bool) {
	cv := v.Colors[v.Live]
	if v.Mixed || v.Live == "" || !cv.Healthy || cv.Commit == "" {
		return "", false
	}
	if rel != nil && rel.Live == v.Live {
		return "", false
	}
	return cv.Commit, true
}
