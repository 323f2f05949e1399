package gitsync

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Branches other than the tracked one: a protected tracked branch takes the
// agent's changes as pull requests, each from a branch of its own.

// BranchHead asks the remote for branch's head; ok is false when the remote
// has no such branch.
func (r *Repo) BranchHead(ctx context.Context, branch string) (head string, ok bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.lsRef(ctx, branch)
	if errors.Is(err, ErrBranchNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return h.String(), true, nil
}

// lsRef asks the remote for the head of branch. The caller holds mu.
func (r *Repo) lsRef(ctx context.Context, branch string) (plumbing.Hash, error) {
	auth, err := r.auth.method()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	var refs []*plumbing.Reference
	err = r.network(ctx, "ls-remote", func(ctx context.Context) error {
		var err error
		if refs, err = r.remote.ListContext(ctx, &git.ListOptions{Auth: auth}); err != nil {
			return classifyAuth(r.wrap("ls-remote", err), err)
		}
		return nil
	})
	if err != nil {
		return plumbing.ZeroHash, err
	}
	want := plumbing.NewBranchReferenceName(branch)
	for _, ref := range refs {
		if ref.Name() == want {
			return ref.Hash(), nil
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("git ls-remote %s: branch %q: %w", Redact(r.opts.URL), branch, ErrBranchNotFound)
}

// PushNewBranch commits edit on parent (a commit this cache holds, such as
// the tracked branch's tip) and pushes it as the new branch. It never moves
// an existing branch: when branch exists already (an earlier attempt pushed
// it before a crash), nothing is written and its head is returned with
// Existed set, so a retry never makes a second branch for one change.
func (r *Repo) PushNewBranch(ctx context.Context, branch, parent string, edit Edit) (Written, error) {
	if branch == r.opts.Branch {
		return Written{}, fmt.Errorf("gitsync: PushNewBranch: %q is the tracked branch", branch)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	h, err := r.lsRef(ctx, branch)
	switch {
	case err == nil:
		return Written{Commit: h.String(), Attempts: 1, Existed: true}, nil
	case !errors.Is(err, ErrBranchNotFound):
		return Written{}, err
	}
	ph := plumbing.NewHash(parent)
	if !r.has(ph) {
		if err := r.fetch(ctx); err != nil {
			return Written{}, err
		}
		if !r.has(ph) {
			return Written{}, fmt.Errorf("gitsync: PushNewBranch: parent %s is not in the cache", parent)
		}
	}
	ch, _, err := r.commitOn(ctx, branch, ph, plumbing.ZeroHash, edit)
	if err != nil {
		return Written{}, err
	}
	return Written{Commit: ch.String(), Attempts: 1}, nil
}
