package main

import (
	"context"
	"fmt"
	"net/mail"
	"path"
	"strings"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// trust is --verify-commits: a candidate is released only when every commit
// that changed the bundle's inputs since the last accepted commit carries a
// trusted signature (see docs/git-auth.md, "Verifying commits").
type trust struct {
	v *gitsync.Verifier
	// agentKey: the agent signs its commits (--git-signing-key-file) and
	// they are recognised by that signature alone.
	agentKey bool
	author   string // "Name <email>" of the agent's commits

	mu sync.Mutex
	// base is, per bundle, the last commit whose inputs were accepted: the
	// commit the cluster's live color runs, then each trusted candidate.
	// A held candidate does not move it, so an unsigned change stays
	// refused until a commit undoes it.
	base map[string]string
	// counted are the refused commits already counted in the metric.
	counted map[string]map[string]bool
}

// newTrust returns nil when --verify-commits is off.
func newTrust(c *config) (*trust, error) {
	if !c.VerifyCommits {
		return nil, nil
	}
	v, err := gitsync.NewVerifier(gitsync.VerifyOptions{TrustedKeys: c.TrustedKeys, AgentKeyFile: c.SigningKeyFile})
	if err != nil {
		return nil, fmt.Errorf("--verify-commits: %w", err)
	}
	author, err := mail.ParseAddress(c.GitAuthor)
	if err != nil {
		return nil, fmt.Errorf("--git-author %q: %w", c.GitAuthor, err)
	}
	return &trust{v: v, agentKey: c.SigningKeyFile != "", author: author.Name + " <" + author.Address + ">",
		base: map[string]string{}, counted: map[string]map[string]bool{}}, nil
}

// exempt excuses the agent's own commits by author and trailers; only when
// the agent signs nothing (with a signing key, its signature is the proof).
func (t *trust) exempt() func(gitsync.Commit) bool {
	if t.agentKey {
		return nil
	}
	return func(c gitsync.Commit) bool {
		return c.Author == t.author && promote.IsAgentCommit(c.Message)
	}
}

// touches reports whether a path is one of b's inputs other than its
// release.yaml: what a signature must vouch for.
func (a *agent) touches(b *render.Bundle) func(string) bool {
	in, release := a.inputsOf(b), path.Join(b.Dir, releaseFile)
	return func(p string) bool { return p != release && in.Match(p) }
}

// signedByAgent reports whether commit carries the agent's signature; true
// for every commit when verification is off or the agent signs nothing
// (then author and trailers identify its commits, as without verification).
func (a *agent) signedByAgent(ctx context.Context, commit string) bool {
	if a.trust == nil || !a.trust.agentKey {
		return true
	}
	s, err := a.repo.VerifyCommit(ctx, commit, a.trust.v)
	return err == nil && s.Agent
}

// vetted is b's candidate at snap. With --verify-commits, a candidate whose
// range holds a commit without a trusted signature is not rendered: it
// carries the refusal, and the driver holds it. ok is false when the check
// could not run (the cluster did not answer); nothing is offered then.
func (a *agent) vetted(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, run *bundleRun) (promote.Candidate, bool) {
	t := a.trust
	if t == nil {
		return a.candidate(ctx, snap, b, run.seen, run), true
	}
	log := a.log.With().Str("bundle", b.Name).Str("commit", contract.Short(snap.Commit)).Str("phase", "trust").Logger()
	base, err := t.baseOf(ctx, a, b)
	if err != nil {
		log.Error().Err(err).Msg("cannot tell which commits to check; nothing is released until the next commit")
		return promote.Candidate{}, false
	}
	refs, err := a.repo.Unverified(ctx, base, snap.Commit, a.touches(b), t.v, t.exempt())
	var reason string
	switch {
	case err != nil:
		reason = "not deployed: cannot check commit signatures: " + err.Error()
		log.Error().Err(err).Msg("cannot check commit signatures; the candidate is held")
	case len(refs) > 0:
		reason = refusedReason(refs)
		fresh := t.count(b.Name, refs)
		a.m.untrusted.WithLabelValues(b.Name).Add(float64(fresh))
		for _, r := range refs {
			ev := log.Warn().Str("refused", contract.Short(r.Commit)).Str("reason", r.Reason)
			if r.Signer != "" {
				ev = ev.Str("signer", r.Signer)
			}
			ev.Msg("commit lacks a trusted signature; the candidate is held")
		}
	default:
		t.accept(b.Name, snap.Commit)
		return a.candidate(ctx, snap, b, run.seen, run), true
	}
	return promote.Candidate{Commit: snap.Commit, Subject: a.subject(ctx, run.seen, snap.Commit),
		Policy: policyOf(b), Untrusted: reason}, true
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

// seedTrust makes the release the cluster's live color runs the bundle's
// starting point, when the driver starts and none is known yet.
func (a *agent) seedTrust(bundle string, v promote.View) {
	if a.trust == nil {
		return
	}
	a.trust.mu.Lock()
	defer a.trust.mu.Unlock()
	if _, ok := a.trust.base[bundle]; !ok {
		a.trust.base[bundle] = ""
		if v.Live != "" {
			a.trust.base[bundle] = v.Colors[v.Live].Commit
		}
	}
}

// baseOf is the commit from which b's range is checked: the last accepted
// one, else what the cluster's live color runs (seeded when the driver
// started; "" before a first deploy: the whole history of the bundle's
// inputs is checked).
func (t *trust) baseOf(ctx context.Context, a *agent, b *render.Bundle) (string, error) {
	t.mu.Lock()
	base, ok := t.base[b.Name]
	t.mu.Unlock()
	if ok {
		return base, nil
	}
	obs, err := a.ap.Observe(ctx, b.Spec.Namespace, b.Name)
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
func (t *trust) accept(bundle, commit string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.base[bundle] = commit
	delete(t.counted, bundle)
}

// count remembers refused commits and returns how many are new.
func (t *trust) count(bundle string, refs []*gitsync.Refusal) int {
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
