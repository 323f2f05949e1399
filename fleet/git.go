package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Git is promote.Git for one bundle, on top of gitsync.
type Git struct {
	repo   *gitsync.Repo
	store  *Store // the bundle's directory and what each render read
	bundle string
}

// NewGit is the Git adapter of bundle: every write of its release.yaml goes
// through it.
func NewGit(repo *gitsync.Repo, store *Store, bundle string) *Git {
	return &Git{repo: repo, store: store, bundle: bundle}
}

// Write commits release.yaml (and a revert's restored files) on the tip of
// the branch; a revert is abandoned when a newer commit changed the bundle.
func (g *Git) Write(ctx context.Context, rec promote.Commit) (string, int, error) {
	spec := g.store.Spec(g.bundle)
	if spec == nil {
		return "", 0, fmt.Errorf("bundle %s: no bundle.yaml seen", g.bundle)
	}
	file := ReleasePath(spec)
	data, err := rec.Release.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", file, err)
	}
	w, err := g.repo.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		msg, err := restore(t, g.store, g.bundle, spec, rec)
		if err != nil {
			return "", err
		}
		return msg, t.WriteFile(file, data)
	})
	switch {
	case errors.Is(err, gitsync.ErrAbandon):
		return "", 0, promote.ErrSuperseded
	case err != nil && !errors.Is(err, gitsync.ErrNothingToCommit):
		return "", 0, refusal(err) // a protected branch: promote.ErrRefused
	}
	return w.Commit, w.Attempts, nil
}

// restore makes a revert's change in t: every input of the failing render
// and of the restored one as the restored commit has them, and returns the
// message naming the files restored. Without rec.Revert it changes nothing.
// A newer human change to the bundle since the failure wins: ErrAbandon.
func restore(t *gitsync.Tree, store *Store, bundle string, spec *render.Bundle, rec promote.Commit) (string, error) {
	rv := rec.Revert
	if rv == nil {
		return rec.Message, nil
	}
	file := ReleasePath(spec)
	// Every input of the failing render and of the restored one: the tip
	// then renders the live release again.
	ps := InputsOf(spec, store.InputsAt(bundle, rv.Failing)).Paths()
	ps = append(ps, store.InputsAt(bundle, rv.From)...)
	// release.yaml is the agent's own file: its promotion commits do not count.
	changed, err := t.ChangedSince(rv.Failing, ps, file)
	if err != nil {
		return "", err
	}
	if changed {
		return "", gitsync.ErrAbandon // a newer human change to the bundle wins
	}
	restored, err := t.Restore(ps, rv.From)
	if err != nil {
		return "", err
	}
	restored = slices.DeleteFunc(restored, func(p string) bool { return p == file })
	readers := map[string][]string{}
	for _, p := range restored {
		readers[p] = store.Readers(p, bundle)
	}
	return promote.WithRestored(rec.Message, restored, readers), nil
}
