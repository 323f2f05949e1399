package gitsync

import (
	"context"
	"errors"
	"fmt"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// History returns up to limit commits reachable from HEAD of the local
// repository (a clone or a bare repository) at dir, newest first. It reads
// the trail for `tandem-agent status`; it never writes.
func History(ctx context.Context, dir string, limit int) ([]Commit, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("%s: HEAD: %w", dir, err)
	}
	iter, err := repo.Log(&git.LogOptions{From: head.Hash(), Order: git.LogOrderCommitterTime})
	if err != nil {
		return nil, fmt.Errorf("%s: log: %w", dir, err)
	}
	var out []Commit
	err = iter.ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if len(out) == limit {
			return storer.ErrStop
		}
		out = append(out, commitOf(c))
		return nil
	})
	if err != nil && !errors.Is(err, storer.ErrStop) {
		return nil, fmt.Errorf("%s: log: %w", dir, err)
	}
	return out, nil
}
