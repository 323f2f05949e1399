package fleet

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
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
// the branch; a revert is abandoned when a newer commit changed the bundle,
// and any outcome is abandoned when the commit it is about is no longer on
// the branch (someone rewound or force-pushed it): the rewound tip is
// released instead.
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
		msg := rec.Message
		if c := about(rec); c != "" {
			if on, err := t.OnBranch(c); err == nil && !on {
				return "", gitsync.ErrAbandon // the branch was rewound past it
			}
		}
		if rv := rec.Revert; rv != nil {
			// Every input of the failing render and of the restored one:
			// the tip then renders the live release again.
			ps := InputsOf(spec, g.store.InputsAt(g.bundle, rv.Failing)).Paths()
			ps = append(ps, g.store.InputsAt(g.bundle, rv.From)...)
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
				readers[p] = g.store.Readers(p, g.bundle)
			}
			msg = promote.WithRestored(msg, restored, readers)
		}
		return msg, t.WriteFile(file, data)
	})
	switch {
	case errors.Is(err, gitsync.ErrAbandon):
		return "", 0, promote.ErrSuperseded
	case err != nil && !errors.Is(err, gitsync.ErrNothingToCommit):
		return "", 0, err
	}
	return w.Commit, w.Attempts, nil
}

// about is the commit an outcome is about: the failing commit of a revert
// or hold, the live commit of a promotion or soak record ("" when none).
func about(rec promote.Commit) string {
	switch rel := rec.Release; {
	case rec.Revert != nil:
		return rec.Revert.Failing
	case rel == nil:
		return ""
	case rec.Result == promote.ResultHeld && rel.LastFailure != nil:
		return rel.LastFailure.Commit
	case rel.Live != "":
		return rel.Colors[rel.Live].Commit
	}
	return ""
}
