package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
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
	g := &fleet.GateReader{Git: local, Dir: dir, Commit: local.Head(), All: all, Author: author,
		Inputs: func(ctx context.Context, b *render.Bundle) (gitsync.Paths, error) {
			return fleet.RenderInputs(ctx, dir, local.Head(), b, render.Options{})
		},
		Untrusted: func(context.Context, gitsync.Commit) string { return "" },
		Ignored:   func(gitsync.Commit, string) {},
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tSTAGE GATE")
	var errs []string
	for _, b := range staged {
		line, err := g.Status(ctx, b)
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
