// Command tandem-agent is the tandem GitOps pull agent. It wires flags and
// configuration to gitsync, render, applier and promote, and runs the loop
// sync → render → apply → verify → promote for every bundle in a repository.
//
// Values flow one way: agent.go polls and checks a tip out (gitsync.Snapshot)
// and discovers its bundles; candidates.go decides which bundles' inputs
// changed, renders them into the store (store.go, keyed by bundle and
// release) and offers each driver a promote.Candidate that names the
// release; the driver's decisions reach the cluster and Git through
// adapters.go, which read the store and never call back into the loop;
// notes.go turns the driver's notes into logs and metrics; lifecycle.go
// handles bundles that are broken or left the repository; trust.go the
// signature checks.
//
// Subcommands: run, render, status, version. See --help.
package main
