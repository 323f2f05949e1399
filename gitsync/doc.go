// Package gitsync owns one Git repository and branch, one verb per file:
//
//   - repo.go: Open (a local cache of the remote), Options and the errors
//     callers branch on (ErrNonFastForward, ErrNothingToCommit, ErrAbandon,
//     ErrBranchNotFound, *PushRejectedError);
//   - poll.go: notice new tips cheaply (a remote-head check before any fetch);
//   - checkout.go: write a commit's tree into a directory render reads,
//     whole or from the last tip's checkout (CheckoutFrom), skipping (and
//     reporting) the entries of a crafted tree;
//   - flat.go: commits' trees flattened to paths, cached, and a new tip's
//     flattened from the tree before it;
//   - diff.go: the paths two commits differ in;
//   - log.go: the commits of a range; history.go: the newest commits of a
//     local checkout (tandem-agent status); local.go: a local repository
//     opened for reading;
//   - tree.go, write.go: the agent's promotions and reverts, edited as a set
//     of files (Paths) on the current tip in a fetch-change-commit-push
//     transaction that never force-pushes;
//   - push.go: a push that sends only the objects a write created, with
//     go-git's push as the fallback; a push the remote refuses (a
//     protected branch, a pre-receive hook) is a *PushRejectedError
//     carrying the remote's own words;
//   - branch.go: branches beside the tracked one: the head of a branch,
//     and a new branch pushed once (a pull request's), never moved;
//     Options.CreateBranch lets Write start a branch the agent owns (its
//     status branch) with a root commit;
//   - verify.go: who signed a commit (OpenPGP, SSH), for --verify-commits;
//   - auth.go, webhook.go: credentials (reloaded, never logged), the
//     accepted URLs, the webhook and the file watch of a local remote.
//
// It is the agent's only contact with Git. It does not render, apply or decide
// anything, and it never logs or returns a credential. Commit messages are
// returned whole: promote owns their trailers.
package gitsync
