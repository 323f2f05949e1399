// Package promote is the per-bundle release state machine. Its core, Step, is
// a pure function from the current state and an observation to the next state
// and a decision; it does no I/O. The effects it asks for (apply, verify,
// flip, commit) are performed by the caller through the small interfaces this
// package declares, which gitsync and applier satisfy.
package promote
