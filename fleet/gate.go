package main

import (
	"context"
	"errors"
	"fmt"
	"net/mail"
	"path"
	"slices"
	"strings"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// gitTrail is what the gate reads of the repository besides the checkout:
// *gitsync.Repo for the agent, *gitsync.Local for `tandem-agent status`.
type gitTrail interface {
	ChangedPaths(ctx context.Context, from, to string) ([]string, error)
	Commits(ctx context.Context, from, to string) ([]gitsync.Commit, error)
}

// gateReader reads the stage gate of a bundle's candidate from one checkout
// of the branch: the candidate is the checkout's commit.
type gateReader struct {
	git    gitTrail
	dir    string                    // the checkout
	commit string                    // its commit: the candidate
	all    map[string]*render.Bundle // every valid bundle at commit, by name
	// author is the agent's "Name <email>": its commits never approve.
	author string
	// inputs is what b's render at commit reads.
	inputs func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error)
	// untrusted says why an approval commit does not count ("": it counts).
	untrusted func(ctx context.Context, c gitsync.Commit) string
	// ignored reports an approval that does not count, and why.
	ignored func(c gitsync.Commit, why string)
}

// read is what the gate decides on for b's candidate.
func (g *gateReader) read(ctx context.Context, b *render.Bundle) (promote.GateInput, error) {
	in := promote.GateInput{Bundle: b.Name, Commit: g.commit, ApprovalRequired: b.Spec.Stage.Approval == render.ApprovalRequired}
	mine, err := g.inputs(ctx, b)
	if err != nil {
		return in, err
	}
	mine = append(gitsync.Paths{strings.TrimSuffix(b.Dir, "/") + "/"}, mine...)
	live, err := liveCommit(g.dir, b)
	if err != nil {
		return in, err
	}
	var errs []error
	for _, name := range b.Spec.Stage.After {
		u, err := g.upstream(ctx, name, mine, live)
		errs = append(errs, err)
		in.Upstreams = append(in.Upstreams, u)
	}
	if in.ApprovalRequired {
		ok, err := g.approved(ctx, b, mine, live)
		in.Approved = ok
		errs = append(errs, err)
	}
	return in, errors.Join(errs...)
}

// liveCommit is the commit b's release.yaml in dir says is live ("": none).
func liveCommit(dir string, b *render.Bundle) (string, error) {
	rel, err := readRelease(dir, b)
	if err != nil || rel == nil || rel.Live == "" {
		return "", err
	}
	return rel.Colors[rel.Live].Commit, nil
}

// upstream is the bundle named name at the candidate, seen from a
// downstream whose inputs are mine and which runs commit live.
func (g *gateReader) upstream(ctx context.Context, name string, mine gitsync.Paths, live string) (promote.Upstream, error) {
	u := promote.Upstream{Name: name}
	ub := g.all[name]
	if ub == nil {
		u.Missing = true
		return u, nil
	}
	theirs, err := g.inputs(ctx, ub)
	if err != nil {
		return u, err
	}
	theirs = append(gitsync.Paths{strings.TrimSuffix(ub.Dir, "/") + "/"}, theirs...)
	shared := func(p string) bool {
		return mine.Match(p) && theirs.Match(p) && path.Base(p) != releaseFile && path.Base(p) != render.BundleFile
	}
	var files []string
	for _, p := range append(slices.Clone(mine), theirs...) {
		if !strings.HasSuffix(p, "/") && shared(p) && !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	if live != "" {
		// Only the shared inputs this candidate changes need the upstream.
		changed, err := g.git.ChangedPaths(ctx, live, g.commit)
		if err != nil {
			return u, err
		}
		files = slices.DeleteFunc(files, func(p string) bool { return !slices.Contains(changed, p) })
	}
	u.Shared = len(files) > 0
	rel, err := readRelease(g.dir, ub)
	if err != nil {
		return u, err
	}
	if rel == nil || rel.Live == "" {
		u.Unreleased = files
		return u, nil
	}
	u.Live, u.Soaked = rel.Colors[rel.Live].Commit, promote.Soaked(rel, ub.Spec.Soak)
	changed, err := g.git.ChangedPaths(ctx, u.Live, g.commit)
	if err != nil {
		return u, err
	}
	for _, p := range changed {
		if shared(p) {
			u.Unreleased = append(u.Unreleased, p)
		}
	}
	return u, nil
}

// approved reports whether a person approved b's candidate: a commit after
// the live release carries "Tandem-Approve: <bundle> <commit>" naming a
// commit after it whose inputs of b equal the candidate's. The agent's
// author never approves; untrusted may refuse more.
func (g *gateReader) approved(ctx context.Context, b *render.Bundle, mine gitsync.Paths, live string) (bool, error) {
	commits, err := g.git.Commits(ctx, live, g.commit)
	if err != nil {
		return false, err
	}
	for _, c := range commits {
		for _, ap := range promote.Approvals(c.Message) {
			if ap.Bundle != b.Name {
				continue
			}
			if c.Author == g.author {
				g.ignored(c, "written by the agent's own author")
				continue
			}
			if why := g.untrusted(ctx, c); why != "" {
				g.ignored(c, why)
				continue
			}
			ok, err := g.approves(ctx, b, ap, commits, mine)
			if err != nil || ok {
				return ok, err
			}
		}
	}
	return false, nil
}

// approves reports whether ap names one of commits whose inputs of b are
// those of the candidate.
func (g *gateReader) approves(ctx context.Context, b *render.Bundle, ap promote.Approval, commits []gitsync.Commit, mine gitsync.Paths) (bool, error) {
	release := path.Join(b.Dir, releaseFile)
	for _, c := range commits {
		if !ap.Names(b.Name, c.Hash) {
			continue
		}
		changed, err := g.git.ChangedPaths(ctx, c.Hash, g.commit)
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(changed, func(p string) bool { return p != release && mine.Match(p) }), nil
	}
	return false, nil
}

// inputsAt renders b in the checkout dir for one color and returns what it
// read (also when the render fails: the files it read until then).
func inputsAt(ctx context.Context, dir, commit string, b *render.Bundle, allowRemote bool) (gitsync.Paths, error) {
	rs, err := render.RenderColors(ctx, b, render.Options{RepoRoot: dir, Commit: commit, AllowRemoteBases: allowRemote}, b.Spec.Colors[0])
	var re *render.Error
	switch {
	case err == nil:
		return rs[0].Inputs, nil
	case errors.As(err, &re):
		return re.Inputs, nil
	}
	return nil, fmt.Errorf("bundle %s: %w", b.Name, err)
}

// gateReader is the agent's reader of stage gates at snap: renders it
// made are reused, upstreams are rendered once per tip.
func (a *agent) gateReader(snap gitsync.Snapshot) *gateReader {
	s := a.stages
	s.mu.Lock()
	all := s.disc
	s.mu.Unlock()
	return &gateReader{git: a.repo, dir: snap.Dir, commit: snap.Commit, all: all, author: a.author(),
		inputs: func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error) {
			if in := a.releases.inputsAt(b.Name, snap.Commit); len(in) > 0 {
				return in, nil
			}
			s.mu.Lock()
			in, ok := s.inputs[b.Name]
			ok = ok && s.tip == snap.Commit
			s.mu.Unlock()
			if ok {
				return in, nil
			}
			in, err := inputsAt(ctx, snap.Dir, snap.Commit, b, a.cfg.AllowRemoteBases)
			if err == nil {
				s.mu.Lock()
				if s.tip == snap.Commit {
					s.inputs[b.Name] = in
				}
				s.mu.Unlock()
			}
			return in, err
		},
		untrusted: a.untrustedApproval,
		ignored: func(c gitsync.Commit, why string) {
			a.log.Warn().Str("phase", "gate").Str("approval", contract.Short(c.Hash)).Str("reason", why).Msg("approval ignored: " + why)
		},
	}
}

// author is the agent's commit identity as gitsync.Commit.Author spells it.
func (a *agent) author() string {
	addr, err := mail.ParseAddress(a.cfg.GitAuthor)
	if err != nil {
		return a.cfg.GitAuthor // validated at start: not reached
	}
	return addr.Name + " <" + addr.Address + ">"
}

// untrustedApproval says why an approval commit does not count under
// --verify-commits ("" when it counts, or verification is off).
func (a *agent) untrustedApproval(ctx context.Context, c gitsync.Commit) string {
	if a.trust == nil {
		return ""
	}
	s, err := a.repo.VerifyCommit(ctx, c.Hash, a.trust.v)
	switch {
	case err != nil:
		return "no trusted signature: " + err.Error()
	case s.Agent:
		return "signed by the agent's own key"
	}
	return ""
}
