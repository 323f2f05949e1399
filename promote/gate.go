package promote

import (
	"fmt"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/contract"
)

// Stages: a bundle with spec.after releases a change to an input it shares
// with an upstream bundle only once that upstream promoted it and finished
// its soak; with spec.approval: required, only once a person approved it in
// Git. Everything the gate reads comes from the branch, so agents in
// different clusters agree without talking to each other (docs/stages.md).

// TrailerApprove is the trailer of an approval commit: "<bundle> <commit>".
const TrailerApprove = "Tandem-Approve"

// ResultSoaked is the Tandem-Result of the commit that records, in
// release.yaml, that the live release finished its soak.
const ResultSoaked = "soaked"

// Upstream is one bundle of spec.after as the branch shows it at the candidate.
type Upstream struct {
	Name string
	// Missing: no such bundle at the candidate (its bundle.yaml is broken).
	Missing bool
	// Shared: the candidate changes an input the upstream also reads,
	// compared with the release the downstream runs (any shared input
	// before its first release). A change only to the downstream's own
	// files, or to files the upstream does not read, needs no upstream.
	Shared bool
	// Live is the upstream's live commit from its release.yaml ("" before its first release).
	Live string
	// Unreleased are the shared inputs whose content differs between Live
	// and the candidate: a change the upstream has not promoted.
	Unreleased []string
	// Soaked: the live release finished its soak (see Soaked).
	Soaked bool
}

// GateInput is what the gate decides on, for one candidate of one bundle.
type GateInput struct {
	Bundle, Commit string
	Upstreams      []Upstream
	// ApprovalRequired is spec.approval: required; Approved says whether
	// an approval by a person names a commit with the candidate's inputs.
	ApprovalRequired, Approved bool
}

// Gate is the gate's verdict: open, or waiting on an upstream or an approval.
type Gate struct {
	Wait bool
	// On is the upstream bundle waited for, or "approval".
	On string
	// Why says what is missing, for logs and `tandem-agent status`.
	Why string
}

// GateApproval is Gate.On when a candidate waits for a person's approval.
const GateApproval = "approval"

// Open is the gate that lets a candidate through.
var Open = Gate{}

// String is "waiting for <on>: <why>", or "open".
func (g Gate) String() string {
	if !g.Wait {
		return "open"
	}
	return "waiting for " + g.On + ": " + g.Why
}

// Decide is the gate: upstreams first, in spec.after's order, then the
// approval. An upstream whose inputs the candidate does not change never
// holds it (even while that upstream is soaking another change).
func Decide(in GateInput) Gate {
	for _, u := range in.Upstreams {
		switch {
		case u.Missing:
			return Gate{Wait: true, On: u.Name, Why: "no valid bundle " + u.Name + " at " + contract.Short(in.Commit)}
		case !u.Shared:
			continue
		case u.Live == "" && len(u.Unreleased) > 0:
			return Gate{Wait: true, On: u.Name, Why: u.Name + " has released nothing yet"}
		case len(u.Unreleased) > 0:
			return Gate{Wait: true, On: u.Name, Why: fmt.Sprintf("%s runs %s, without this change to %s",
				u.Name, contract.Short(u.Live), list(u.Unreleased))}
		case !u.Soaked:
			return Gate{Wait: true, On: u.Name, Why: fmt.Sprintf("%s is soaking %s", u.Name, contract.Short(u.Live))}
		}
	}
	if in.ApprovalRequired && !in.Approved {
		return Gate{Wait: true, On: GateApproval, Why: fmt.Sprintf("spec.approval is required: push a commit with the trailer %q",
			TrailerApprove+": "+in.Bundle+" "+contract.Short(in.Commit))}
	}
	return Open
}

// Soaked reports whether rel's live release finished its soak: its
// release.yaml records soakedAt, or there was none to do (spec.soak is 0,
// or it was the first release, which has no previous color to go back to
// and is not soaked).
func Soaked(rel *Release, soak time.Duration) bool {
	if rel == nil || rel.Live == "" {
		return false
	}
	if soak == 0 || rel.Colors[rel.Live].SoakedAt != nil {
		return true
	}
	for c, cr := range rel.Colors {
		if c != rel.Live && cr.State == StatePrevious {
			return false
		}
	}
	return true
}

// Approval is one Tandem-Approve trailer: a bundle and a commit (full or
// abbreviated to at least 7 hex digits).
type Approval struct{ Bundle, Commit string }

// Approvals reads the Tandem-Approve trailers of a commit message. Malformed
// ones are skipped.
func Approvals(msg string) []Approval {
	var out []Approval
	for _, v := range ParseTrailers(msg)[TrailerApprove] {
		f := strings.Fields(v)
		if len(f) != 2 || len(f[1]) < 7 || strings.Trim(strings.ToLower(f[1]), "0123456789abcdef") != "" {
			continue
		}
		out = append(out, Approval{Bundle: f[0], Commit: strings.ToLower(f[1])})
	}
	return out
}

// Names reports whether the approval names commit (full hash) of bundle.
func (a Approval) Names(bundle, commit string) bool {
	return a.Bundle == bundle && strings.HasPrefix(commit, a.Commit)
}

// SoakedMessage is the commit message recording that bundle's live release
// (commit, on color) finished its soak, for the bundles after it.
func SoakedMessage(bundle, color, commit string) string {
	return fmt.Sprintf("tandem: %s soaked on %s (%s)\n\nthe soak ended healthy; bundles after %s may release it\n\n%s: %s\n%s: %s\n%s: %s\n%s: %s\n",
		bundle, color, contract.Short(commit), bundle,
		TrailerBundle, bundle, TrailerResult, ResultSoaked, TrailerColor, color, TrailerSource, commit)
}

// list names up to three paths and how many more.
func list(ps []string) string {
	if len(ps) <= 3 {
		return strings.Join(ps, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(ps[:3], ", "), len(ps)-3)
}
