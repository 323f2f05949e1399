package fleet

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// GitTrail is what the gate reads of the repository besides the checkout:
// *gitsync.Repo for the agent, *gitsync.Local for `tandem-agent status`.
type GitTrail interface {
	ChangedPaths(ctx context.Context, from, to string) ([]string, error)
	Commits(ctx context.Context, from, to string) ([]gitsync.Commit, error)
}

// GateReader reads the stage gate of a bundle's candidate from one checkout
// of the branch: the candidate is the checkout's commit.
type GateReader struct {
	Git    GitTrail
	Dir    string                    // the checkout
	Commit string                    // its commit: the candidate
	All    map[string]*render.Bundle // every valid bundle at commit, by name
	// Author is the agent's "Name <email>": its commits never approve.
	Author string
	// Inputs is what b's render at commit reads.
	Inputs func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error)
	// Untrusted says why an approval commit does not count ("": it counts).
	Untrusted func(ctx context.Context, c gitsync.Commit) string
	// Ignored reports an approval that does not count, and why.
	Ignored func(c gitsync.Commit, why string)
}

// Read is what the gate decides on for b's candidate.
func (g *GateReader) Read(ctx context.Context, b *render.Bundle) (promote.GateInput, error) {
	in := promote.GateInput{Bundle: b.Name, Commit: g.Commit, ApprovalRequired: b.Spec.Stage.Approval == render.ApprovalRequired}
	mine, err := g.Inputs(ctx, b)
	if err != nil {
		return in, err
	}
	mine = append(gitsync.Paths{strings.TrimSuffix(b.Dir, "/") + "/"}, mine...)
	live, err := LiveCommit(g.Dir, b)
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

// upstream is the bundle named name at the candidate, seen from a
// downstream whose inputs are mine and which runs commit live.
func (g *GateReader) upstream(ctx context.Context, name string, mine gitsync.Paths, live string) (promote.Upstream, error) {
	u := promote.Upstream{Name: name}
	ub := g.All[name]
	if ub == nil {
		u.Missing = true
		return u, nil
	}
	theirs, err := g.Inputs(ctx, ub)
	if err != nil {
		return u, err
	}
	theirs = append(gitsync.Paths{strings.TrimSuffix(ub.Dir, "/") + "/"}, theirs...)
	shared := func(p string) bool {
		return mine.Match(p) && theirs.Match(p) && path.Base(p) != ReleaseFile && path.Base(p) != render.BundleFile
	}
	var files []string
	for _, p := range append(slices.Clone(mine), theirs...) {
		if !strings.HasSuffix(p, "/") && shared(p) && !slices.Contains(files, p) {
			files = append(files, p)
		}
	}
	if live != "" {
		// Only the shared inputs this candidate changes need the upstream.
		changed, err := g.Git.ChangedPaths(ctx, live, g.Commit)
		if err != nil {
			return u, err
		}
		files = slices.DeleteFunc(files, func(p string) bool { return !slices.Contains(changed, p) })
	}
	u.Shared = len(files) > 0
	rel, err := ReadRelease(g.Dir, ub)
	if err != nil {
		return u, err
	}
	if rel == nil || rel.Live == "" {
		u.Unreleased = files
		return u, nil
	}
	u.Live, u.Soaked = rel.Colors[rel.Live].Commit, promote.Soaked(rel, ub.Spec.Soak)
	changed, err := g.Git.ChangedPaths(ctx, u.Live, g.Commit)
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
func (g *GateReader) approved(ctx context.Context, b *render.Bundle, mine gitsync.Paths, live string) (bool, error) {
	commits, err := g.Git.Commits(ctx, live, g.Commit)
	if err != nil {
		return false, err
	}
	for _, c := range commits {
		for _, ap := range promote.Approvals(c.Message) {
			if ap.Bundle != b.Name {
				continue
			}
			if c.Author == g.Author {
				g.Ignored(c, "written by the agent's own author")
				continue
			}
			if why := g.Untrusted(ctx, c); why != "" {
				g.Ignored(c, why)
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
func (g *GateReader) approves(ctx context.Context, b *render.Bundle, ap promote.Approval, commits []gitsync.Commit, mine gitsync.Paths) (bool, error) {
	release := ReleasePath(b)
	for _, c := range commits {
		if !ap.Names(b.Name, c.Hash) {
			continue
		}
		changed, err := g.Git.ChangedPaths(ctx, c.Hash, g.Commit)
		if err != nil {
			return false, err
		}
		return !slices.ContainsFunc(changed, func(p string) bool { return p != release && mine.Match(p) }), nil
	}
	return false, nil
}

// RenderInputs renders b in the checkout dir for one color, bounded by o,
// and returns what it read (also when the render fails: the files it read
// until then).
func RenderInputs(ctx context.Context, dir, commit string, b *render.Bundle, o render.Options) (gitsync.Paths, error) {
	o.RepoRoot, o.Commit = dir, commit
	rs, err := render.RenderColors(ctx, b, o, b.Spec.Colors[0])
	var re *render.Error
	switch {
	case err == nil:
		return rs[0].Inputs, nil
	case errors.As(err, &re):
		return re.Inputs, nil
	}
	return nil, fmt.Errorf("bundle %s: %w", b.Name, err)
}

// Status is b's line for `tandem-agent status`: nothing to release, or the gate of HEAD.
func (g *GateReader) Status(ctx context.Context, b *render.Bundle) (string, error) {
	live, err := LiveCommit(g.Dir, b)
	if err != nil {
		return "", err
	}
	in, err := g.Inputs(ctx, b)
	if err != nil {
		return "", err
	}
	inputs := InputsOf(b, in)
	if live != "" {
		changed, err := g.Git.ChangedPaths(ctx, live, g.Commit)
		if err != nil {
			return "", err
		}
		if !slices.ContainsFunc(changed, inputs.Match) {
			return "nothing to release: " + contract.Short(live) + " is live", nil
		}
	}
	gi, err := g.Read(ctx, b)
	if err != nil {
		return "", err
	}
	if gate := promote.Decide(gi); gate.Wait {
		return gate.String(), nil
	}
	return "open: the agent releases " + contract.Short(g.Commit), nil
}
