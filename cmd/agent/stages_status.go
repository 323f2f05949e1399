package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// stageStatus prints the stage gate of every bundle with spec.after or
// spec.approval, read from the checkout dir the way the agent reads it:
// "waiting for shop-staging: ..." when HEAD changes the bundle's inputs and
// the gate is shut. author is the agent's identity (its commits never
// approve); signatures of approvals are not checked here.
func stageStatus(ctx context.Context, w io.Writer, dir string, bundles []*render.Bundle, author string) error {
	var staged []*render.Bundle
	all := map[string]*render.Bundle{}
	for _, b := range bundles {
		all[b.Name] = b
		if len(b.Spec.Stage.After) > 0 || b.Spec.Stage.Approval == render.ApprovalRequired {
			staged = append(staged, b)
		}
	}
	if len(staged) == 0 {
		return nil
	}
	local, err := gitsync.OpenLocal(dir)
	if err != nil {
		return fmt.Errorf("stage gates: %w", err)
	}
	g := &gateReader{git: local, dir: dir, commit: local.Head(), all: all, author: author,
		inputs: func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error) {
			return inputsAt(ctx, dir, local.Head(), b, false)
		},
		untrusted: func(context.Context, gitsync.Commit) string { return "" },
		ignored:   func(gitsync.Commit, string) {},
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tSTAGE GATE")
	var errs []string
	for _, b := range staged {
		line, err := g.status(ctx, b)
		if err != nil {
			line, errs = "cannot read: "+err.Error(), append(errs, err.Error())
		}
		fmt.Fprintf(tw, "%s\t%s\n", b.Name, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(errs) > 0 {
		return fmt.Errorf("stage gates: %s", strings.Join(errs, "; "))
	}
	return nil
}

// status is b's line: nothing to release, or the gate of HEAD.
func (g *gateReader) status(ctx context.Context, b *render.Bundle) (string, error) {
	live, err := liveCommit(g.dir, b)
	if err != nil {
		return "", err
	}
	in, err := g.inputs(ctx, b)
	if err != nil {
		return "", err
	}
	in = append(gitsync.Paths{strings.TrimSuffix(b.Dir, "/") + "/"}, in...)
	if live != "" {
		changed, err := g.git.ChangedPaths(ctx, live, g.commit)
		if err != nil {
			return "", err
		}
		release := path.Join(b.Dir, releaseFile)
		if !slices.ContainsFunc(changed, func(p string) bool { return p != release && in.Match(p) }) {
			return "nothing to release: " + contract.Short(live) + " is live", nil
		}
	}
	gi, err := g.read(ctx, b)
	if err != nil {
		return "", err
	}
	if gate := promote.Decide(gi); gate.Wait {
		return gate.String(), nil
	}
	return "open: the agent releases " + contract.Short(g.commit), nil
}
