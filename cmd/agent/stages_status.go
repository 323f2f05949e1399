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

// stageStatus reads the stage gate of every bundle with spec.after or
// spec.approval into rep, from the checkout dir the way the agent reads it:
// "waiting for shop-staging: ..." when HEAD changes the bundle's inputs and
// the gate is shut. author is the agent's identity (its commits never
// approve); signatures of approvals are not checked here.
func stageStatus(ctx context.Context, dir string, bundles []*render.Bundle, author string, rep *statusReport) error {
	all := map[string]*render.Bundle{}
	var staged bool
	for _, b := range bundles {
		all[b.Name] = b
		staged = staged || len(b.Spec.Stage.After) > 0 || b.Spec.Stage.Approval == render.ApprovalRequired
	}
	if !staged {
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
	var errs []string
	for i := range rep.Bundles {
		b := all[rep.Bundles[i].Name]
		if b == nil || (len(b.Spec.Stage.After) == 0 && b.Spec.Stage.Approval != render.ApprovalRequired) {
			continue
		}
		line, err := g.Status(ctx, b)
		if err != nil {
			line, errs = "cannot read: "+err.Error(), append(errs, err.Error())
		}
		rep.Bundles[i].Gate = line
	}
	if len(errs) > 0 {
		return fmt.Errorf("stage gates: %s", strings.Join(errs, "; "))
	}
	return nil
}

// writeStages prints the stage gates of rep as a table (nothing when no
// bundle has one).
func writeStages(w io.Writer, rep statusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	header := false
	for _, b := range rep.Bundles {
		if b.Gate == "" {
			continue
		}
		if !header {
			fmt.Fprintln(w)
			fmt.Fprintln(tw, "BUNDLE\tSTAGE GATE")
			header = true
		}
		fmt.Fprintf(tw, "%s\t%s\n", b.Name, b.Gate)
	}
	return tw.Flush()
}
