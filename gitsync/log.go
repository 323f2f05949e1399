package gitsync

import (
	"context"
	"fmt"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// Commits lists the commits reachable from to but not from from, newest first.
func (r *Repo) Commits(ctx context.Context, from, to string) ([]Commit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stop := map[plumbing.Hash]bool{}
	if from != "" {
		fc, err := r.commit(from)
		if err != nil {
			return nil, err
		}
		iter := object.NewCommitPreorderIter(fc, nil, nil)
		_ = iter.ForEach(func(c *object.Commit) error { stop[c.Hash] = true; return nil })
	}
	tc, err := r.commit(to)
	if err != nil {
		return nil, err
	}
	var out []Commit
	iter := object.NewCommitIterCTime(tc, stop, nil)
	err = iter.ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if stop[c.Hash] {
			return nil
		}
		out = append(out, commitOf(c))
		return nil
	})
	if err != nil && err != storer.ErrStop {
		return nil, fmt.Errorf("commits %s..%s: %w", from, to, err)
	}
	return out, nil
}

// commitOf is a go-git commit as gitsync reports it.
func commitOf(c *object.Commit) Commit {
	subject, body, _ := strings.Cut(strings.TrimRight(c.Message, "\n"), "\n")
	return Commit{Hash: c.Hash.String(), Subject: subject, Body: strings.TrimSpace(body), When: c.Committer.When,
		Author: c.Author.Name + " <" + c.Author.Email + ">", Message: c.Message}
}
