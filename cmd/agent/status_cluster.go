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

// clusterRow is one bundle's line of `tandem-agent status --kubeconfig`:
// what Git says next to what the cluster says.
type clusterRow struct {
	bundle, gitLive, gitCommit string
	live, liveCommit, twins    string
	ready                      string // per color: "blue 0/0, green 3/3"
	disagreement               string // "" when Git and the cluster agree
}

// clusterStatus prints, for each bundle, the live color and commit the
// stable Services select, the ready pods per color, and whether that
// agrees with release.yaml. It reports how many bundles disagree. A
// disagreement is normal for a moment during a release (between the flip
// and its commit); one that stays needs a look.
func clusterStatus(ctx context.Context, w io.Writer, kubeconfig string, bundles []*render.Bundle, releases []promote.Release) (int, error) {
	rels := map[string]*promote.Release{}
	for i := range releases {
		rels[releases[i].Bundle] = &releases[i]
	}
	cfg, err := restConfig(kubeconfig)
	if err != nil {
		return 0, err
	}
	ap, err := applier.New(cfg, applier.Options{})
	if err != nil {
		return 0, err
	}
	var rows []clusterRow
	disagree := 0
	for _, b := range bundles {
		obs, err := ap.Observe(ctx, b.Spec.Namespace, b.Name)
		if err != nil {
			return disagree, fmt.Errorf("bundle %s: %w", b.Name, err)
		}
		row := clusterRow{bundle: b.Name, live: obs.Live, liveCommit: contract.Short(obs.LiveCommit)}
		rel := rels[b.Name]
		if rel != nil {
			row.gitLive, row.gitCommit = rel.Live, contract.Short(rel.Colors[rel.Live].Commit)
		}
		var twins []string
		for name, color := range obs.Twins {
			twins = append(twins, name+"→"+color)
		}
		sort.Strings(twins)
		row.twins = strings.Join(twins, " ")
		var ready []string
		for _, c := range b.Spec.Colors {
			cs, ok := obs.Colors[c]
			if !ok {
				ready = append(ready, c+" -")
				continue
			}
			ready = append(ready, fmt.Sprintf("%s %d/%d", c, cs.Ready, cs.Replicas))
		}
		row.ready = strings.Join(ready, ", ")
		row.disagreement = disagreement(rel, obs)
		if row.disagreement != "" {
			disagree++
		}
		rows = append(rows, row)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tGIT LIVE\tCLUSTER LIVE\tSTABLE SERVICES\tREADY\tAGREE")
	for _, r := range rows {
		agree := "yes"
		if r.disagreement != "" {
			agree = "NO: " + r.disagreement
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.bundle, dash(join(r.gitLive, r.gitCommit)), dash(join(r.live, r.liveCommit)),
			dash(r.twins), r.ready, agree)
	}
	return disagree, tw.Flush()
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
