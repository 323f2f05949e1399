package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/mail"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// statusReport is what `tandem-agent status -o json|yaml` prints: every
// bundle of the checkout, a broken one with its error (docs/reference.md,
// "status output").
type statusReport struct {
	Bundles []bundleStatus `json:"bundles"`
	// Disagree counts the bundles whose cluster differs from Git (with
	// --kubeconfig or --context).
	Disagree int `json:"disagree"`
}

// bundleStatus is one bundle in a statusReport.
type bundleStatus struct {
	Name string `json:"name,omitempty"`
	File string `json:"file"`
	// Error: bundle.yaml or release.yaml cannot be used (the agent refuses
	// the bundle until a commit fixes it).
	Error       string           `json:"error,omitempty"`
	Suspended   bool             `json:"suspended,omitempty"`
	Live        string           `json:"live,omitempty"`
	LiveCommit  string           `json:"liveCommit,omitempty"`
	Previous    string           `json:"previous,omitempty"`
	LastResult  *promote.Outcome `json:"lastResult,omitempty"`
	LastFailure *promote.Failure `json:"lastFailure,omitempty"`
	// Gate is the stage gate of the checkout's HEAD (spec.after, spec.approval).
	Gate    string      `json:"gate,omitempty"`
	Cluster *clusterRow `json:"cluster,omitempty"`

	rel *promote.Release // release.yaml, for the table
}

// statusCmd is `tandem-agent status <repo dir>`: each bundle's live color,
// live commit, previous color and last failure from release.yaml, its last
// result from the commit trail (the Tandem-* trailers), its stage gate and,
// with a cluster, what the cluster serves. Exit status: 0 all good, 1 Git
// and the cluster disagree, 2 an error (a broken bundle included).
func statusCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-agent status", flag.ContinueOnError)
	root := fs.String("root", ".", "directory inside the repository under which bundles are found")
	author := fs.String("git-author", "tandem <tandem@localhost>", "the agent's --git-author: its commits never approve a stage gate")
	output := fs.String("o", "table", "output format: table, json or yaml")
	var kube kubeFlags
	kube.register(fs)
	cluster := fs.Bool("cluster", false, "also show what the cluster says (live color per stable Service, ready pods per color) and flag disagreement with Git (implied by --kubeconfig or --context); exit status 1 when they disagree")
	const usage = "usage: tandem-agent status <repo dir> [--root DIR] [-o table|json|yaml] [--cluster] [--kubeconfig FILE] [--context NAME] [--git-author AUTHOR]\n" +
		"exit status: 0 all good, 1 Git and the cluster disagree, 2 an error (a broken bundle included)"
	positional, err := parseCommand(fs, usage, args, stdout, stderr)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	if *output != "table" && *output != "json" && *output != "yaml" {
		return fmt.Errorf("-o %q: want table, json or yaml", *output)
	}
	dir := positional[0]
	disc, err := render.DiscoverAll(dir, *root)
	if err != nil {
		return err
	}
	rep, errs := gitStatus(ctx, dir, disc)
	if a, err := mail.ParseAddress(*author); err != nil {
		errs = append(errs, fmt.Errorf("--git-author %q: %w", *author, err))
	} else if err := stageStatus(ctx, dir, disc.Bundles, a.Name+" <"+a.Address+">", &rep); err != nil {
		errs = append(errs, err) // stages_status.go
	}
	if *cluster || kube.set() {
		if err := clusterStatus(ctx, kube, disc.Bundles, &rep); err != nil {
			errs = append(errs, fmt.Errorf("cluster: %w", err))
		}
	}
	if err := writeStatus(stdout, *output, rep, *cluster || kube.set()); err != nil {
		return err
	}
	switch {
	case len(errs) > 0:
		return errors.Join(errs...)
	case rep.Disagree > 0:
		return &exitError{code: codeChange, err: fmt.Errorf("%d bundle(s): Git and the cluster disagree", rep.Disagree)}
	}
	return nil
}

// gitStatus is what the checkout dir says of each bundle: release.yaml and
// the newest agent commit of each (the last 1,000 commits).
func gitStatus(ctx context.Context, dir string, disc render.Discovery) (statusReport, []error) {
	var rep statusReport
	var errs []error
	var trail []promote.Outcome
	commits, err := gitsync.History(ctx, dir, 1000)
	if err != nil {
		errs = append(errs, fmt.Errorf("commit trail: %w", err))
	}
	for _, c := range commits {
		if o, ok := promote.OutcomeOf(c.Hash, c.When, promote.ParseTrailers(c.Message)); ok {
			trail = append(trail, o)
		}
	}
	last := promote.LastOutcomes(trail)
	for _, b := range disc.Bundles {
		bs := bundleStatus{Name: b.Name, File: b.File, Suspended: b.Spec.Suspend}
		rel, err := fleet.ReadRelease(dir, b)
		if err != nil {
			bs.Error, errs = err.Error(), append(errs, err)
		}
		if rel != nil {
			bs.rel = rel
			row := promote.StatusRows([]promote.Release{*rel}, nil)[0]
			bs.Live, bs.Previous, bs.LastFailure = rel.Live, row.Previous, rel.LastFailure
			if rel.Live != "" {
				bs.LiveCommit = rel.Colors[rel.Live].Commit
			}
		}
		if o, ok := last[b.Name]; ok {
			bs.LastResult = &o
		}
		rep.Bundles = append(rep.Bundles, bs)
	}
	for _, br := range disc.Broken {
		rep.Bundles = append(rep.Bundles, bundleStatus{Name: br.Name, File: br.File, Error: br.Err.Error()})
		errs = append(errs, br.Err)
	}
	return rep, errs
}

// writeStatus prints rep as a table (with the cluster's table when
// withCluster), JSON or YAML.
func writeStatus(w io.Writer, format string, rep statusReport, withCluster bool) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	case "yaml":
		data, err := yaml.Marshal(rep)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	}
	var rels []promote.Release
	last := map[string]promote.Outcome{}
	var broken []bundleStatus
	for _, b := range rep.Bundles {
		if b.Name == "" || (b.Error != "" && b.rel == nil) {
			broken = append(broken, b)
			continue
		}
		rel := promote.Release{Bundle: b.Name}
		if b.rel != nil {
			rel = *b.rel
		}
		rels = append(rels, rel)
		if b.LastResult != nil {
			last[b.Name] = *b.LastResult
		}
	}
	if err := promote.WriteTable(w, promote.StatusRows(rels, last)); err != nil {
		return err
	}
	if len(broken) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "REFUSED (the agent changes nothing for these until a commit fixes them):")
		for _, b := range broken {
			fmt.Fprintf(w, "  %s\n", b.Error) // the error names the file
		}
	}
	var suspended []string
	for _, b := range rep.Bundles {
		if b.Suspended {
			suspended = append(suspended, b.Name)
		}
	}
	if len(suspended) > 0 {
		fmt.Fprintf(w, "\nSUSPENDED (spec.suspend: nothing is released until it is removed): %s\n", strings.Join(suspended, ", "))
	}
	if err := writeStages(w, rep); err != nil {
		return err
	}
	if withCluster {
		return writeCluster(w, rep)
	}
	return nil
}
