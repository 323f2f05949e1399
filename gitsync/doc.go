// Package gitsync owns one Git repository and branch, one verb per file:
//
//   - poll.go: notice new tips cheaply (a remote-head check before any fetch);
//   - checkout.go: write a commit's tree into a directory render reads,
//     skipping (and reporting) the entries of a crafted tree;
//   - diff.go: the paths two commits differ in;
//   - log.go: the commits of a range;
//   - tree.go, write.go: the agent's promotions and reverts, edited as a set
//     of files (Paths) on the current tip in a fetch-change-commit-push
//     transaction that never force-pushes;
//   - verify.go: who signed a commit (OpenPGP, SSH), for --verify-commits;
//   - auth.go, webhook.go: credentials (reloaded, never logged) and wake-ups.
//
// It is the agent's only contact with Git. It does not render, apply or decide
// anything, and it never logs or returns a credential. Commit messages are
// returned whole: promote owns their trailers.
package gitsync
