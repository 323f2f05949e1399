package check

import (
	"fmt"
	"strings"
	"time"
)

// Verdicts of a check run.
const (
	Passed = "passed"
	Failed = "failed"
	// Inconclusive: the check measured nothing usable within its window
	// (no data, NaN, errors, unreachable). Never a pass.
	Inconclusive = "inconclusive"
)

// Result is one check run: what it measured, against what, and the verdict.
type Result struct {
	Name, Kind, When string
	Color            string
	Verdict          string
	// Condition is what passing means ("< 0.01", "status 200, 3 of 3").
	Condition string
	// Values are the measurements, in order ("0.004", "503", "no data").
	Values []string
	// Detail says why, for a verdict other than passed (and what ran).
	Detail   string
	Duration time.Duration
	// Stopped: another check did not pass first, and this one was cut short.
	Stopped bool
}

// Line is the result on one line, for commits and logs.
func (r Result) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (%s): %s", r.Name, r.Kind, r.Verdict)
	if r.Condition != "" {
		fmt.Fprintf(&b, "; want %s", r.Condition)
	}
	if len(r.Values) > 0 {
		fmt.Fprintf(&b, "; measured %s", strings.Join(r.Values, ", "))
	}
	if r.Detail != "" {
		fmt.Fprintf(&b, "; %s", r.Detail)
	}
	if r.Duration > 0 {
		fmt.Fprintf(&b, " (%s)", r.Duration.Round(10*time.Millisecond))
	}
	return b.String()
}

// Results are the runs of one phase's checks, in spec order.
type Results []Result

// String lists the results, one per line, under "Checks:".
func (rs Results) String() string {
	if len(rs) == 0 {
		return ""
	}
	lines := []string{"Checks:"}
	for _, r := range rs {
		lines = append(lines, "  "+r.Line())
	}
	return strings.Join(lines, "\n")
}

// Trailers are the Tandem-Check trailer values ("smoke=passed").
func (rs Results) Trailers() []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name+"="+r.Verdict)
	}
	return out
}

// Failing is the result that failed the phase (nil when all passed): the
// first that did not pass on its own, not one that was stopped.
func (rs Results) Failing() *Result {
	var stopped *Result
	for i := range rs {
		switch {
		case rs[i].Verdict == Passed:
		case !rs[i].Stopped:
			return &rs[i]
		case stopped == nil:
			stopped = &rs[i]
		}
	}
	return stopped
}

// Error is a phase's checks that did not all pass.
type Error struct{ Results Results }

func (e *Error) Error() string {
	f := e.Results.Failing()
	if f == nil {
		return "checks did not pass"
	}
	if f.Verdict == Inconclusive {
		return "check " + f.Line() + " (inconclusive: no verdict within the check's window, traffic not moved on no data)"
	}
	return "check " + f.Line()
}
