package fleet

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// TrustOptions configure signature verification (--verify-commits).
type TrustOptions struct {
	// TrustedKeys and AgentKeyFile are gitsync.VerifyOptions'.
	TrustedKeys  []string
	AgentKeyFile string
	// Author is the agent's commit identity, "Name <email>".
	Author string
}

// Trust is --verify-commits: a candidate is released only when every commit
// that changed the bundle's inputs since the last accepted commit carries a
// trusted signature (see docs/git-auth.md, "Verifying commits"). A nil
// *Trust is verification off.
type Trust struct {
	v    *gitsync.Verifier
	repo *gitsync.Repo
	own  *applier.Applier // observes the cluster for a bundle's starting point
	// agentKey: the agent signs its commits and they are recognised by
	// that signature alone.
	agentKey bool
	author   string

	mu sync.Mutex
	// base is, per bundle, the last commit whose inputs were accepted: the
	// commit the cluster's live color runs, then each trusted candidate.
	// A held candidate does not move it, so an unsigned change stays
	// refused until a commit undoes it.
	base map[string]string
	// counted are the refused commits already reported.
	counted map[string]map[string]bool
}

// NewTrust returns the verification of o on repo.
func NewTrust(o TrustOptions, repo *gitsync.Repo, own *applier.Applier) (*Trust, error) {
	v, err := gitsync.NewVerifier(gitsync.VerifyOptions{TrustedKeys: o.TrustedKeys, AgentKeyFile: o.AgentKeyFile})
	if err != nil {
		return nil, fmt.Errorf("--verify-commits: %w", err)
	}
	return &Trust{v: v, repo: repo, own: own, agentKey: o.AgentKeyFile != "", author: o.Author,
		base: map[string]string{}, counted: map[string]map[string]bool{}}, nil
}

// AgentSigns reports whether the agent's commits carry its signature (else
// they are told by author and trailers, which anyone who can push can copy).
func (t *Trust) AgentSigns() bool { return t != nil && t.agentKey }

// exempt excuses the agent's own commits by author and trailers; only when
// the agent signs nothing (with a signing key, its signature is the proof).
func (t *Trust) exempt() func(gitsync.Commit) bool {
	if t.agentKey {
		return nil
	}
	return func(c gitsync.Commit) bool {
		return c.Author == t.author && promote.IsAgentCommit(c.Message)
	}
}

// SignedByAgent reports whether commit carries the agent's signature; true
// for every commit when verification is off or the agent signs nothing
// (then author and trailers identify its commits, as without verification).
func (t *Trust) SignedByAgent(ctx context.Context, commit string) bool {
	if t == nil || !t.agentKey {
		return true
	}
	s, err := t.repo.VerifyCommit(ctx, commit, t.v)
	return err == nil && s.Agent
}

// Finding is what Check found for a candidate.
type Finding struct {
	// Untrusted is the hold's reason ("": every commit is trusted).
	Untrusted string
	// Refused are the commits without a trusted signature; Fresh counts
	// those not reported before.
	Refused []*gitsync.Refusal
	Fresh   int
	// Err: the signatures could not be checked (the candidate is held).
	Err error
}

// Check verifies the commits between b's last accepted commit and tip that
// touch its inputs. The error is for a starting point that could not be
// read (the cluster did not answer): nothing is decided then.
func (t *Trust) Check(ctx context.Context, b *render.Bundle, in Inputs, tip string) (Finding, error) {
	base, err := t.baseOf(ctx, b)
	if err != nil {
		return Finding{}, err
	}
	refs, err := t.repo.Unverified(ctx, base, tip, in.Match, t.v, t.exempt())
	switch {
	case err != nil:
		return Finding{Err: err, Untrusted: "not deployed: cannot check commit signatures: " + err.Error()}, nil
	case len(refs) > 0:
		return Finding{Untrusted: refusedReason(refs), Refused: refs, Fresh: t.count(b.Name, refs)}, nil
	}
	t.accept(b.Name, tip)
	return Finding{}, nil
}

// refusedReason is the hold's reason for release.yaml and the hold commit.
func refusedReason(refs []*gitsync.Refusal) string {
	const show = 5
	var parts []string
	for i, r := range refs {
		if i == show {
			parts = append(parts, fmt.Sprintf("and %d more", len(refs)-show))
			break
		}
		parts = append(parts, r.Error())
	}
	noun := "commit lacks"
	if len(refs) > 1 {
		noun = "commits lack"
	}
	return fmt.Sprintf("not deployed: %d %s a trusted signature: %s", len(refs), noun, strings.Join(parts, "; "))
}

// Seed makes the release the cluster's live color runs the bundle's
// starting point, when its driver starts and none is known yet.
func (t *Trust) Seed(bundle string, v promote.View) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.base[bundle]; !ok {
		t.base[bundle] = ""
		if v.Live != "" {
			t.base[bundle] = v.Colors[v.Live].Commit
		}
	}
}

// baseOf is the commit from which b's range is checked: the last accepted
// one, else what the cluster's live color runs ("" before a first deploy:
// the whole history of the bundle's inputs is checked).
func (t *Trust) baseOf(ctx context.Context, b *render.Bundle) (string, error) {
	t.mu.Lock()
	base, ok := t.base[b.Name]
	t.mu.Unlock()
	if ok {
		return base, nil
	}
	obs, err := t.own.Observe(ctx, b.Spec.Namespace, b.Name)
	if err != nil {
		return "", fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err)
	}
	if obs.Live != "" {
		base = obs.Colors[obs.Live].Commit
	}
	t.mu.Lock()
	t.base[b.Name] = base
	t.mu.Unlock()
	return base, nil
}

// accept moves b's base to commit, whose range was trusted.
func (t *Trust) accept(bundle, commit string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base[bundle] = commit
	delete(t.counted, bundle)
}

// count remembers refused commits and returns how many are new.
func (t *Trust) count(bundle string, refs []*gitsync.Refusal) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.counted[bundle] == nil {
		t.counted[bundle] = map[string]bool{}
	}
	n := 0
	for _, r := range refs {
		if !t.counted[bundle][r.Commit] {
			t.counted[bundle][r.Commit] = true
			n++
		}
	}
	return n
}

// UntrustedApproval says why an approval commit does not count under
// --verify-commits ("" when it counts, or verification is off).
func (t *Trust) UntrustedApproval(ctx context.Context, c gitsync.Commit) string {
	if t == nil {
		return ""
	}
	s, err := t.repo.VerifyCommit(ctx, c.Hash, t.v)
	switch {
	case err != nil:
		return "no trusted signature: " + err.Error()
	case s.Agent:
		return "signed by the agent's own key"
	}
	return ""
}
