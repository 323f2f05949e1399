package promote

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/tandem-gitops/tandem/contract"
)

// StatusRow is one bundle's line in `tandem-agent status`.
type StatusRow struct {
	Bundle, Live, LiveCommit, Previous, LastResult, LastFailure string
}

// Outcome is one agent commit of the trail: a bundle's result at a time.
type Outcome struct {
	Bundle string    `json:"bundle"`
	Result string    `json:"result"`
	Commit string    `json:"commit"`
	When   time.Time `json:"when"`
}

// OutcomeOf reads an agent commit's trailers; ok is false for other commits.
func OutcomeOf(hash string, when time.Time, trailers map[string][]string) (o Outcome, ok bool) {
	b, r := first(trailers[TrailerBundle]), first(trailers[TrailerResult])
	if b == "" || r == "" {
		return Outcome{}, false
	}
	return Outcome{Bundle: b, Result: r, Commit: hash, When: when}, true
}

// LastOutcomes picks each bundle's newest outcome from a trail listed newest first.
func LastOutcomes(trail []Outcome) map[string]Outcome {
	out := map[string]Outcome{}
	for _, o := range trail {
		if _, seen := out[o.Bundle]; !seen {
			out[o.Bundle] = o
		}
	}
	return out
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// StatusRows summarises releases and the trail's last outcomes for `tandem-agent status`.
func StatusRows(rs []Release, last map[string]Outcome) []StatusRow {
	var out []StatusRow
	for _, r := range rs {
		row := StatusRow{Bundle: r.Bundle, Live: r.Live, LiveCommit: contract.Short(r.Colors[r.Live].Commit)}
		for c, cr := range r.Colors {
			if cr.State == StatePrevious {
				row.Previous = c
			}
		}
		if o, ok := last[r.Bundle]; ok {
			row.LastResult = fmt.Sprintf("%s %s %s", o.Result, contract.Short(o.Commit), o.When.UTC().Format(time.RFC3339))
		}
		if r.LastFailure != nil {
			row.LastFailure = contract.Short(r.LastFailure.Commit) + ": " + r.LastFailure.Reason
		}
		out = append(out, row)
	}
	return out
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []StatusRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tLIVE\tCOMMIT\tPREVIOUS\tLAST RESULT\tLAST FAILURE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", r.Bundle, dash(r.Live), dash(r.LiveCommit), dash(r.Previous), dash(r.LastResult), dash(r.LastFailure))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
