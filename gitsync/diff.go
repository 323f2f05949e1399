package gitsync

import (
	"context"
	"sort"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
)

// ChangedPaths lists the paths (slash-separated, sorted) that differ between
// the trees of from and to. An empty from lists every file of to.
func (r *Repo) ChangedPaths(ctx context.Context, from, to string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed(from, to)
}

// changed is ChangedPaths for a caller that holds mu.
func (r *Repo) changed(from, to string) ([]string, error) {
	a, err := r.flat(from)
	if err != nil {
		return nil, err
	}
	b, err := r.flat(to)
	if err != nil {
		return nil, err
	}
	return diffFlat(a, b), nil
}

func diffFlat(a, b map[string]entry) []string {
	var out []string
	for p, e := range b {
		if o, ok := a[p]; !ok || o != e {
			out = append(out, p)
		}
	}
	for p := range a {
		if _, ok := b[p]; !ok {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

type entry struct {
	mode filemode.FileMode
	hash plumbing.Hash
}
