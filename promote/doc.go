// Package promote is the per-bundle release state machine.
//
// Its core, Step, is a pure function: the current State and an Event (a new
// candidate, or the outcome of the last effect) in, the next State and a
// Decision out, with no I/O and no clock. Recover is its counterpart for a
// restart: release.yaml plus the cluster's View in, the state to resume from
// and the first Decision out. Both are tested by tables covering every rule of
// the contract's lifecycle (section 4).
//
// Driver performs the decisions for one bundle through two small interfaces
// this package declares, Cluster and Git, which cmd/agent implements on top
// of applier and gitsync. It retries transient errors (never failing a release
// for them), cancels a verification or soak when a newer candidate arrives,
// writes every outcome to Git until it lands, and reports each step as a Note
// for logs and metrics. promote imports neither applier nor gitsync nor render.
package promote
