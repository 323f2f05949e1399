package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// statusCmd is `tandem-agent status <repo dir>`: each bundle's live color,
// live commit, previous color and last failure from release.yaml, and its
// last result from the commit trail (the Tandem-* trailers).
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-agent status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	root := fs.String("root", ".", "directory inside the repository under which bundles are found")
	author := fs.String("git-author", "tandem <tandem@localhost>", "the agent's --git-author: its commits never approve a stage gate")
	kubeconfig := fs.String("kubeconfig", "", "also show what the cluster says (live color per stable Service, ready pods per color) and flag disagreement with Git; exit status 1 when they disagree")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tandem-agent status <repo dir> [--root DIR] [--kubeconfig FILE] [--git-author AUTHOR]")
		fs.PrintDefaults()
	}
	positional, err := parseInterleaved(fs, args)
	if err != nil || len(positional) != 1 {
		fs.Usage()
		return errUsage
	}
	bundles, err := render.Discover(positional[0], *root)
	if err != nil {
		return err
	}
	var rels []promote.Release
	var errs []error
	for _, b := range bundles {
		rel, err := fleet.ReadRelease(positional[0], b)
		switch {
		case err != nil:
			errs = append(errs, err)
		case rel == nil:
			rels = append(rels, promote.Release{Bundle: b.Name})
		default:
			rels = append(rels, *rel)
		}
	}
	// The trail: each bundle's newest agent commit (the last 1,000 commits).
	var trail []promote.Outcome
	commits, err := gitsync.History(ctx, positional[0], 1000)
	if err != nil {
		errs = append(errs, fmt.Errorf("commit trail: %w", err))
	}
	for _, c := range commits {
		if o, ok := promote.OutcomeOf(c.Hash, c.When, promote.ParseTrailers(c.Message)); ok {
			trail = append(trail, o)
		}
	}
	if err := promote.WriteTable(stdout, promote.StatusRows(rels, promote.LastOutcomes(trail))); err != nil {
		return err
	}
	if a, err := mail.ParseAddress(*author); err != nil {
		errs = append(errs, fmt.Errorf("--git-author %q: %w", *author, err))
	} else if err := stageStatus(ctx, stdout, positional[0], bundles, a.Name+" <"+a.Address+">"); err != nil {
		errs = append(errs, err) // stages_status.go
	}
	if *kubeconfig != "" {
		fmt.Fprintln(stdout)
		n, err := clusterStatus(ctx, stdout, *kubeconfig, bundles, rels)
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster: %w", err))
		} else if n > 0 {
			errs = append(errs, fmt.Errorf("%d bundle(s): Git and the cluster disagree", n))
		}
	}
	return errors.Join(errs...)
}
