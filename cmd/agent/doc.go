// Command tandem-agent is the tandem GitOps pull agent. It wires flags and
// configuration to gitsync, render, applier and promote, and runs the loop
// sync → render → apply → verify → promote for every bundle in a repository.
//
// Subcommands: run, render, status, version. See --help.
package main
