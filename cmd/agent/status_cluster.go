package main

import (
	"context"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// clusterRow is what the cluster says of one bundle, next to what Git says
// (`tandem-agent status --cluster`).
type clusterRow struct {
	Live       string `json:"live,omitempty"`       // the color every stable Service selects
	LiveCommit string `json:"liveCommit,omitempty"` // the commit that color runs
	// Services maps each stable Service to the color it selects.
	Services map[string]string `json:"services,omitempty"`
	// Ready is per color: "3/3", or "-" when the color has no workloads.
	Ready map[string]string `json:"ready,omitempty"`
	// Disagreement says how the cluster differs from release.yaml ("": it agrees).
	Disagreement string `json:"disagreement,omitempty"`
}

// clusterStatus reads, for each bundle of rep, the live color and commit
// the stable Services select, the ready pods per color, and whether that
// agrees with release.yaml; rep.Disagree counts the bundles that do not. A
// disagreement is normal for a moment during a release (between the flip
// and its commit); one that stays needs a look.
func clusterStatus(ctx context.Context, kube kubeFlags, bundles []*render.Bundle, rep *statusReport) error {
	cfg, err := kube.restConfig()
	if err != nil {
		return err
	}
	ap, err := applier.New(cfg, applier.Options{})
	if err != nil {
		return err
	}
	byName := map[string]*render.Bundle{}
	for _, b := range bundles {
		byName[b.Name] = b
	}
	for i := range rep.Bundles {
		bs := &rep.Bundles[i]
		b := byName[bs.Name]
		if b == nil {
			continue
		}
		obs, err := ap.Observe(ctx, b.Spec.Namespace, b.Name)
		if err != nil {
			return fmt.Errorf("bundle %s: %w", b.Name, err)
		}
		row := &clusterRow{Live: obs.Live, LiveCommit: obs.LiveCommit, Services: obs.Twins, Ready: map[string]string{}}
		for _, c := range b.Spec.Colors {
			if cs, ok := obs.Colors[c]; ok {
				row.Ready[c] = fmt.Sprintf("%d/%d", cs.Ready, cs.Replicas)
			} else {
				row.Ready[c] = "-"
			}
		}
		row.Disagreement = disagreement(bs.rel, obs)
		if row.Disagreement != "" {
			rep.Disagree++
		}
		bs.Cluster = row
	}
	return nil
}

// writeCluster prints the cluster's side of rep as a table.
func writeCluster(w io.Writer, rep statusReport) error {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tGIT LIVE\tCLUSTER LIVE\tSTABLE SERVICES\tREADY\tAGREE")
	for _, b := range rep.Bundles {
		r := b.Cluster
		if r == nil {
			continue
		}
		var twins, ready []string
		for name, color := range r.Services {
			twins = append(twins, name+"→"+color)
		}
		sort.Strings(twins)
		colors := make([]string, 0, len(r.Ready))
		for c := range r.Ready {
			colors = append(colors, c)
		}
		sort.Strings(colors)
		for _, c := range colors {
			ready = append(ready, c+" "+r.Ready[c])
		}
		agree := "yes"
		if r.Disagreement != "" {
			agree = "NO: " + r.Disagreement
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", b.Name, dash(join(b.Live, contract.Short(b.LiveCommit))),
			dash(join(r.Live, contract.Short(r.LiveCommit))), dash(strings.Join(twins, " ")), strings.Join(ready, ", "), agree)
	}
	return tw.Flush()
}

// disagreement says how the cluster differs from release.yaml, or "".
func disagreement(rel *promote.Release, obs applier.Observed) string {
	switch {
	case obs.Mixed:
		return "the stable Services select different colors"
	case rel == nil || rel.Live == "":
		if obs.Live != "" {
			return "the cluster serves " + obs.Live + " but release.yaml records no release"
		}
		return ""
	case obs.Live == "":
		return "release.yaml says " + rel.Live + " is live but no stable Service selects it"
	case obs.Live != rel.Live:
		return "the cluster serves " + obs.Live + ", release.yaml says " + rel.Live
	}
	want := rel.Colors[rel.Live].Commit
	if obs.LiveCommit != "" && want != "" && obs.LiveCommit != want {
		return "the stable Services run " + contract.Short(obs.LiveCommit) + ", release.yaml says " + contract.Short(want)
	}
	if cs, ok := obs.Colors[rel.Live]; ok && !cs.Healthy {
		return rel.Live + " is not healthy"
	}
	return ""
}

func join(color, commit string) string {
	if color == "" {
		return ""
	}
	if commit == "" {
		return color
	}
	return color + " " + commit
}

// dash is "-" for an empty cell.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
