package promote

import (
	"fmt"
	"strings"

	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/internal/redact"
)

// Text from outside the agent (check details quoting Prometheus or a
// target, health reasons quoting the cluster, commit subjects) goes into
// commit messages through redact: once pushed it is in Git history for
// good, so credentials are removed, control characters dropped and
// blank lines collapsed (it cannot pose as a trailer paragraph).

// maxSubject bounds a quoted commit subject.
const maxSubject = 200

// Trailer keys the agent writes (contract section 5).
const (
	TrailerBundle   = "Tandem-Bundle"
	TrailerResult   = "Tandem-Result"
	TrailerColor    = "Tandem-Color"
	TrailerSource   = "Tandem-Source"
	TrailerReverts  = "Tandem-Reverts"
	TrailerRestores = "Tandem-Restores"
	// TrailerCheck is one per check run: "smoke=passed".
	TrailerCheck = "Tandem-Check"
	// TrailerChart is one per Helm chart a promoted release runs:
	// "name@version", then the repository and digest of a remote chart.
	TrailerChart = "Tandem-Chart"
)

// WithCharts adds a Tandem-Chart trailer for each chart to msg, whose last
// paragraph is its trailers.
func WithCharts(msg string, charts []string) string {
	var b strings.Builder
	b.WriteString(msg)
	for _, c := range charts {
		fmt.Fprintf(&b, "%s: %s\n", TrailerChart, redact.Subject(c, maxSubject))
	}
	return b.String()
}

// PromoteMessage is the commit message recording a promotion (also used for a first deploy
// and for a flip back to a warm color after a human revert).
func PromoteMessage(bundle, color, commit, evidence string) string {
	if evidence == "" {
		evidence = color + " verified healthy"
	}
	evidence = redact.Commit(evidence)
	return fmt.Sprintf("tandem: promote %s to %s (%s)\n\n%s\n\n%s: %s\n%s: promoted\n%s: %s\n%s: %s\n",
		bundle, color, contract.Short(commit), evidence,
		TrailerBundle, bundle, TrailerResult, TrailerColor, color, TrailerSource, commit)
}

// RevertMessage is the commit message of a revert: failing names the failing commit,
// restores the last promoted commit whose bundle files are restored, and traffic says
// where traffic is ("traffic stayed on blue").
func RevertMessage(bundle, failingSubject, failing, restores, reason, traffic string) string {
	if failingSubject == "" {
		failingSubject = contract.Short(failing)
	}
	failingSubject, reason, traffic = redact.Subject(failingSubject, maxSubject), redact.Commit(reason), redact.Commit(traffic)
	return fmt.Sprintf("Revert %q in bundle %s\n\n%s; %s.\n\n%s: %s\n%s: reverted\n%s: %s\n%s: %s\n",
		failingSubject, bundle, reason, traffic,
		TrailerBundle, bundle, TrailerResult, TrailerReverts, failing, TrailerRestores, restores)
}

// HoldMessage is the commit message recording a failure in release.yaml only.
func HoldMessage(bundle, failing, reason string) string {
	reason = redact.Commit(reason)
	return fmt.Sprintf("tandem: hold %s at failure of %s\n\n%s\n\n%s: %s\n%s: held\n%s: %s\n",
		bundle, contract.Short(failing), reason, TrailerBundle, bundle, TrailerResult, TrailerSource, failing)
}

// ParseTrailers returns the git trailers (Key: value lines) of the last paragraph of msg.
func ParseTrailers(msg string) map[string][]string {
	out := map[string][]string{}
	paras := strings.Split(strings.TrimSpace(strings.ReplaceAll(msg, "\r\n", "\n")), "\n\n")
	if len(paras) < 2 {
		return out
	}
	for _, line := range strings.Split(paras[len(paras)-1], "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || k == "" || strings.ContainsAny(k, " \t") {
			return map[string][]string{}
		}
		out[k] = append(out[k], strings.TrimSpace(v))
	}
	return out
}

// IsAgentCommit reports whether msg is a commit the agent wrote (it has a Tandem-Result trailer).
func IsAgentCommit(msg string) bool {
	return len(ParseTrailers(msg)[TrailerResult]) > 0
}

// WithRestored adds to a revert message the files the revert restored and,
// for each, the other bundles that read it, as a paragraph before the
// trailers.
func WithRestored(msg string, files []string, readers map[string][]string) string {
	if len(files) == 0 {
		return msg
	}
	var b strings.Builder
	b.WriteString("Restored:")
	for _, f := range files {
		b.WriteString("\n  " + f)
		if r := readers[f]; len(r) > 0 {
			b.WriteString(" (also read by " + strings.Join(r, ", ") + ")")
		}
	}
	return insertParagraph(msg, b.String())
}

// WithChecks adds the check results to an outcome message: the evidence of
// each (measured values, condition, verdict) as a paragraph before the
// trailers, and a Tandem-Check trailer each.
func WithChecks(msg string, rs check.Results) string {
	if len(rs) == 0 {
		return msg
	}
	msg = insertParagraph(msg, redact.Commit(rs.String()))
	for _, t := range rs.Trailers() {
		msg += TrailerCheck + ": " + t + "\n"
	}
	return msg
}

// insertParagraph puts para before msg's last paragraph (its trailers).
func insertParagraph(msg, para string) string {
	i := strings.LastIndex(strings.TrimRight(msg, "\n"), "\n\n")
	if i < 0 {
		return msg + "\n" + para + "\n"
	}
	return msg[:i] + "\n\n" + para + msg[i:]
}
