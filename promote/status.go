package promote

import (
	"fmt"
	"io"
	"text/tabwriter"
)

// StatusRow is one bundle's line in `tandem-agent status`.
type StatusRow struct {
	Bundle, Live, LiveCommit, Previous, LastFailure string
}

// StatusRows summarises releases for `tandem-agent status`.
func StatusRows(rs []Release) []StatusRow {
	var out []StatusRow
	for _, r := range rs {
		row := StatusRow{Bundle: r.Bundle, Live: r.Live, LiveCommit: short(r.Colors[r.Live].Commit)}
		for c, cr := range r.Colors {
			if cr.State == "previous" {
				row.Previous = c
			}
		}
		if r.LastFailure != nil {
			row.LastFailure = short(r.LastFailure.Commit) + ": " + r.LastFailure.Reason
		}
		out = append(out, row)
	}
	return out
}

// WriteTable prints rows as an aligned table.
func WriteTable(w io.Writer, rows []StatusRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUNDLE\tLIVE\tCOMMIT\tPREVIOUS\tLAST FAILURE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Bundle, r.Live, r.LiveCommit, r.Previous, r.LastFailure)
	}
	return tw.Flush()
}
