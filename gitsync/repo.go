package gitsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
)

// ErrAbandon is returned by an Edit when the current tip makes its change
// moot; Write then returns it without committing.
var ErrAbandon = errors.New("gitsync: edit abandoned")

// ErrNonFastForward means the remote moved while the agent was writing and
// every retry lost the race.
var ErrNonFastForward = errors.New("gitsync: push rejected as non-fast-forward")

// ErrNothingToCommit is returned by Write when the edit changed no file.
var ErrNothingToCommit = errors.New("gitsync: edit changed nothing")

// ErrBranchNotFound: the remote has no such branch (yet).
var ErrBranchNotFound = errors.New("gitsync: branch not found")

// PushRejectedError is a push the remote refused for a reason other than a
// lost race: branch protection (GitHub's GH006, GitLab's "You are not
// allowed to push code to protected branches"), a pre-receive hook. A retry
// on a new tip cannot help: someone must change the remote's rules or the
// agent's write mode. Message is the push's error; Remote is what the
// remote said on its side channel (the hook's own lines, bounded and
// without credentials), "" when it said nothing.
type PushRejectedError struct {
	Message string
	Remote  string
	// Branch is the branch the push was to update.
	Branch string
}

func (e *PushRejectedError) Error() string {
	msg := "gitsync: push to " + e.Branch + " refused: " + e.Message
	if e.Branch == "" {
		msg = "gitsync: push rejected: " + e.Message
	}
	if e.Remote != "" {
		msg += " (remote: " + e.Remote + ")"
	}
	return msg
}

// Protected reports whether the remote's text says the branch is protected
// (GitHub, GitLab, Gitea/Forgejo, Bitbucket wordings), as opposed to some
// other pre-receive hook.
func (e *PushRejectedError) Protected() bool {
	s := strings.ToLower(e.Message + " " + e.Remote)
	for _, w := range []string{"gh006", "protected branch", "protected_branch", "branch is protected", "not allowed to push"} {
		if strings.Contains(s, w) {
			return true
		}
	}
	return false
}

// Signature names the author and committer of the agent's commits.
type Signature struct{ Name, Email string }

// Options configure Open.
type Options struct {
	URL, Branch, CacheDir string
	Auth                  Auth
	Author                Signature
	// SigningKeyFile is an armored OpenPGP private key; commits are signed when set.
	SigningKeyFile string
	// MaxAttempts caps Write's fetch-edit-push attempts (default 8).
	MaxAttempts int
	// CreateBranch: when Branch does not exist on the remote, the first
	// Write creates it with a root commit (a branch the agent owns, such as
	// its status branch) instead of failing.
	CreateBranch bool
	// NetworkTimeout bounds each ls-remote, fetch and push (default
	// DefaultNetworkTimeout), whatever the caller's context: a server that
	// accepts the connection and never answers does not hang a poll.
	NetworkTimeout time.Duration
}

// DefaultNetworkTimeout is the default Options.NetworkTimeout.
const DefaultNetworkTimeout = 2 * time.Minute

// Poll is the result of a remote-head check.
type Poll struct {
	Tip     string
	Fetched bool
}

// Snapshot is a commit checked out into Dir. Skipped lists the entries of
// a crafted tree that were not written.
type Snapshot struct {
	Commit, Dir string
	Skipped     []*SkippedPath
}

// Commit is one commit of a range with its parsed trailers.
type Commit struct {
	Hash, Subject, Body, Author string
	// Message is the whole commit message (promote parses its trailers).
	Message string
	When    time.Time // committer time
}

// Written is the outcome of a successful Write.
type Written struct {
	Commit   string
	Attempts int
	// Existed (PushNewBranch): the branch was there already; Commit is its head.
	Existed bool
}

// Edit changes files on top of the current tip and returns the commit message.
type Edit func(ctx context.Context, t *Tree) (message string, err error)

// Repo is one remote repository and branch mirrored into a local bare cache.
type Repo struct {
	opts   Options
	repo   *git.Repository
	remote *git.Remote
	auth   *authSource
	mu     sync.Mutex
	// wmu serializes Write transactions of this process: without it two
	// goroutines writing at once both edit the same tip and one push is
	// rejected by the other, costing a fetch and a backoff per collision.
	wmu sync.Mutex
	// fetches counts fetches that transferred (or tried to); tests use it.
	fetches int
	// flats keeps recently flattened trees (diffs and writes reuse them).
	flats flatCache
	// fullPush makes writes push with go-git's PushContext, which walks the
	// history to find what to send, instead of the thin push (benchmarks
	// compare the two).
	fullPush bool
	// thinPushes counts writes pushed thin and thinSent the objects the
	// last one sent; tests use them.
	thinPushes, thinSent int
}

const remoteName = "origin"

// Open validates the URL and credentials and opens (or creates) the bare cache.
func Open(ctx context.Context, o Options) (*Repo, error) {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Author.Name == "" {
		o.Author = Signature{Name: "tandem", Email: "tandem@localhost"}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if o.NetworkTimeout <= 0 {
		o.NetworkTimeout = DefaultNetworkTimeout
	}
	if err := checkURL(o.URL); err != nil {
		return nil, err
	}
	as, err := newAuthSource(o.URL, o.Auth)
	if err != nil {
		return nil, err
	}
	if o.CacheDir == "" {
		return nil, errors.New("gitsync: CacheDir is required")
	}
	r, err := openCache(o.CacheDir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		if _, err = git.PlainInit(o.CacheDir, true); err == nil {
			r, err = openCache(o.CacheDir)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", o.CacheDir, err)
	}
	_ = r.DeleteRemote(remoteName)
	rem, err := r.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{o.URL},
		Fetch: []config.RefSpec{config.RefSpec("+refs/heads/" + o.Branch + ":refs/remotes/origin/" + o.Branch)}})
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", o.CacheDir, err)
	}
	if o.SigningKeyFile != "" {
		if _, err := loadSigningKey(o.SigningKeyFile); err != nil {
			return nil, err
		}
	}
	return &Repo{opts: o, repo: r, remote: rem, auth: as}, nil
}

// Close releases the watcher on credential files.
func (r *Repo) Close() error { return r.auth.close() }

func (r *Repo) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: fmt.Sprintf("git %s %s: %s", op, Redact(r.opts.URL), r.auth.scrub(Redact(err.Error()))), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see typed causes without exposing the raw message.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }
