package fleet

import (
	"context"
	"fmt"
	"sync"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Trail answers what the branch says between two commits, for admission:
// which inputs of a bundle changed, whether only the agent wrote, the
// subject of the newest human commit.
type Trail struct {
	repo     *gitsync.Repo
	store    *Store // what each bundle's newest render read
	trust    *Trust // nil: the agent's commits are told by author and trailers
	identity string // the agent's "Name <email>"
	diffs    diffCache
}

// NewTrail reads repo; identity is the agent's "Name <email>".
func NewTrail(repo *gitsync.Repo, store *Store, trust *Trust, identity string) *Trail {
	return &Trail{repo: repo, store: store, trust: trust, identity: identity}
}

// Subject is the subject of the newest human commit in (since, tip].
func (t *Trail) Subject(ctx context.Context, since, tip string) string {
	if since == "" {
		since = tip
	}
	commits, err := t.repo.Commits(ctx, since, tip)
	if err != nil {
		return contract.Short(tip)
	}
	for _, c := range commits {
		if !promote.IsAgentCommit(c.Message) {
			return c.Subject
		}
	}
	return contract.Short(tip)
}

// OnlyAgentCommits reports whether every commit in (from, to] is the
// agent's: written by its author, carrying its trailers and, when it
// signs, its signature. A human commit with forged trailers is still a
// candidate.
func (t *Trail) OnlyAgentCommits(ctx context.Context, from, to string) bool {
	commits, err := t.repo.Commits(ctx, from, to)
	if err != nil || len(commits) == 0 {
		return false
	}
	for _, c := range commits {
		if c.Author != t.identity || !promote.IsAgentCommit(c.Message) || !t.trust.SignedByAgent(ctx, c.Hash) {
			return false
		}
	}
	return true
}

// Changed reports whether any input of b differs between two commits.
func (t *Trail) Changed(ctx context.Context, b *render.Bundle, from, to string) (bool, error) {
	paths, err := t.ChangedPaths(ctx, from, to)
	if err != nil {
		return false, err
	}
	in := t.InputsOf(b)
	for _, p := range paths {
		if in.Match(p) {
			return true, nil
		}
	}
	return false, nil
}

// InputsOf is b's inputs: its directory and what its newest render read.
func (t *Trail) InputsOf(b *render.Bundle) Inputs {
	return InputsOf(b, t.store.LatestInputs(b.Name))
}

// SkippedInput is an error naming the first tree entry the checkout skipped
// that is one of b's inputs (nil when none is).
func (t *Trail) SkippedInput(snap gitsync.Snapshot, b *render.Bundle) error {
	in := t.InputsOf(b)
	for _, sp := range snap.Skipped {
		if in.Match(sp.Path) {
			return fmt.Errorf("%s: cannot check out %w", b.File, sp)
		}
	}
	return nil
}

// diffCache remembers ChangedPaths(from, to) for the newest to. Bundles
// mostly last saw the same commit, so a pass over a new tip diffs the two
// trees once instead of once per bundle.
type diffCache struct {
	mu   sync.Mutex
	to   string
	from map[string][]string
}

// ChangedPaths are the paths that differ between two commits.
func (t *Trail) ChangedPaths(ctx context.Context, from, to string) ([]string, error) {
	t.diffs.mu.Lock()
	defer t.diffs.mu.Unlock()
	if t.diffs.to != to {
		t.diffs.to, t.diffs.from = to, map[string][]string{}
	}
	if p, ok := t.diffs.from[from]; ok {
		return p, nil
	}
	p, err := t.repo.ChangedPaths(ctx, from, to)
	if err != nil {
		return nil, err
	}
	t.diffs.from[from] = p
	return p, nil
}
