// Package gitsync owns one Git repository and branch: it notices new tips of
// the tracked branch cheaply (a remote-head check before any fetch), checks
// commits out into a working directory that render reads, lists the paths a
// range of commits changed, and writes the agent's promotions and reverts back
// in a fetch-change-commit-push transaction that never force-pushes.
//
// It is the agent's only contact with Git. It does not render, apply or decide
// anything, and it never logs or returns a credential.
package gitsync
