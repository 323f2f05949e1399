package gitsync

import (
	"context"
	"fmt"

	git "github.com/go-git/go-git/v5"
)

// Local is a local repository (a clone or a bare repository) opened for
// reading only, as `tandem-agent status` reads the trail of a checkout.
type Local struct {
	r    *Repo
	head string
}

// OpenLocal opens the repository at dir (or the one dir is inside) for reading.
func OpenLocal(dir string) (*Local, error) {
	repo, err := git.PlainOpenWithOptions(dir, &git.PlainOpenOptions{DetectDotGit: true})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	head, err := repo.Head()
	if err != nil {
		return nil, fmt.Errorf("%s: HEAD: %w", dir, err)
	}
	return &Local{r: &Repo{repo: repo}, head: head.Hash().String()}, nil
}

// Head is the commit HEAD names.
func (l *Local) Head() string { return l.head }

// ChangedPaths is Repo.ChangedPaths on the local repository.
func (l *Local) ChangedPaths(ctx context.Context, from, to string) ([]string, error) {
	return l.r.ChangedPaths(ctx, from, to)
}

// Commits is Repo.Commits on the local repository.
func (l *Local) Commits(ctx context.Context, from, to string) ([]Commit, error) {
	return l.r.Commits(ctx, from, to)
}
