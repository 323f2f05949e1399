package gitsync

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// network runs one network operation under Options.NetworkTimeout; a
// timeout it imposed (not the caller's) is reported as such.
func (r *Repo) network(ctx context.Context, op string, f func(context.Context) error) error {
	nctx, cancel := context.WithTimeout(ctx, r.opts.NetworkTimeout)
	defer cancel()
	err := f(nctx)
	if err != nil && ctx.Err() == nil && errors.Is(nctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("git %s %s: no answer within %v (NetworkTimeout): %w", op, Redact(r.opts.URL), r.opts.NetworkTimeout, context.DeadlineExceeded)
	}
	return err
}

// lsTip asks the remote for the branch head.
func (r *Repo) lsTip(ctx context.Context) (plumbing.Hash, error) {
	return r.lsRef(ctx, r.opts.Branch)
}

func (r *Repo) fetch(ctx context.Context) error {
	auth, err := r.auth.method()
	if err != nil {
		return err
	}
	r.fetches++
	return r.network(ctx, "fetch", func(ctx context.Context) error {
		err := r.remote.FetchContext(ctx, &git.FetchOptions{Auth: auth, Tags: git.NoTags})
		if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
			return classifyAuth(r.wrap("fetch", err), err)
		}
		return nil
	})
}

// MaxPacks is how many pack files the cache may hold before Poll repacks
// them into one.
const MaxPacks = 32

// compact repacks the cache into one pack when it holds more than MaxPacks.
// The caller holds mu and wmu.
func (r *Repo) compact() error {
	pos, ok := r.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= MaxPacks {
		return err
	}
	if err := r.repo.RepackObjects(&git.RepackConfig{}); err != nil {
		return err
	}
	// The open storage still lists the removed packs: reopen it.
	repo, err := openCache(r.opts.CacheDir)
	if err != nil {
		return err
	}
	rem, err := repo.Remote(remoteName)
	if err != nil {
		return err
	}
	r.repo, r.remote = repo, rem
	return nil
}

// packs counts the cache's pack files (for tests).
func (r *Repo) packs() int {
	pos, ok := r.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return 0
	}
	hs, _ := pos.ObjectPacks()
	return len(hs)
}

func (r *Repo) has(h plumbing.Hash) bool {
	_, err := r.repo.CommitObject(h)
	return err == nil
}

// Poll checks the remote head and fetches only when the tip is not yet in the cache.
func (r *Repo) Poll(ctx context.Context) (Poll, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tip, err := r.lsTip(ctx)
	if err != nil {
		return Poll{}, err
	}
	if r.has(tip) {
		return Poll{Tip: tip.String()}, nil
	}
	if err := r.fetch(ctx); err != nil {
		return Poll{}, err
	}
	if !r.has(tip) {
		return Poll{}, fmt.Errorf("git fetch %s: tip %s missing after fetch", Redact(r.opts.URL), tip)
	}
	// Each fetch adds a pack file; every lookup walks them all. Compact
	// now and then, when no Write transaction can be reading the store.
	if r.wmu.TryLock() {
		_ = r.compact() // best effort: the packs stay readable if it fails
		r.wmu.Unlock()
	}
	return Poll{Tip: tip.String(), Fetched: true}, nil
}
