// Package check runs a bundle's end-to-end checks (spec.checks of
// bundle.yaml): a Job of the bundle, HTTP requests from the agent, or a
// PromQL query, each judged passed, failed or inconclusive. A check that
// measured nothing is never a pass.
//
// Files: spec.go (Parse: spec.checks as written, Raw, validated into Spec,
// with the defaults and limits, and the ${TANDEM_*} variables), run.go
// (Runner.Run: a phase's checks run concurrently against a Target), http.go
// (http checks), prometheus.go (prometheus checks against PromSource, the
// --prometheus-url with its bearer token re-read at every query) and
// result.go (Result, the evidence and the Tandem-Check trailer values).
//
// It creates no Job itself (a JobRunner, the applier, does), knows nothing
// of Git or colors beyond the Target it is given, and decides nothing about
// the release: the verdicts go to promote.
package check
