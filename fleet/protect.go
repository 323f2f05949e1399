package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/promote"
)

// A protected tracked branch (--write-mode=status-branch): the agent never
// pushes to it. Its records (release.yaml and the commits' trailers) go to
// a branch it owns, and a revert is proposed as a pull or merge request
// against the tracked branch, from a branch of its own.

// StatusBranch is the branch the agent records on when it may not push to
// branch.
func StatusBranch(branch string) string { return "tandem/status/" + branch }

// RevertBranch is the branch of the revert request of bundle's failing
// commit: one per failure, so a retry (or a restarted agent) finds the
// request it opened and never opens a second.
func RevertBranch(bundle, failing string) string {
	return "tandem/revert/" + bundle + "/" + contract.Short(failing)
}

// Protected is what the adapters of a protected tracked branch share.
type Protected struct {
	Tracked *gitsync.Repo // the tracked branch: revert branches start at its tip
	Status  *gitsync.Repo // the agent's own branch: every record
	Branch  string        // the tracked branch's name
	// Pulls opens and closes revert requests (nil: none can be opened).
	Pulls *notify.Pulls
	// AutoMerge: merge a revert request as soon as it is open (the forge's
	// rules, such as required reviews, may refuse it: it then waits).
	AutoMerge bool
}

// StatusGit is promote.Git and promote.Proposer for one bundle when the
// tracked branch is protected: the only writer of its release.yaml, on the
// status branch.
type StatusGit struct {
	p      *Protected
	store  *Store
	bundle string
}

// NewStatusGit is the Git adapter of bundle on a protected tracked branch.
func NewStatusGit(p *Protected, store *Store, bundle string) *StatusGit {
	return &StatusGit{p: p, store: store, bundle: bundle}
}

// Write commits release.yaml on the status branch. Step never asks it to
// restore files (a revert is proposed instead); it refuses to.
func (g *StatusGit) Write(ctx context.Context, rec promote.Commit) (string, int, error) {
	spec := g.store.Spec(g.bundle)
	if spec == nil {
		return "", 0, fmt.Errorf("bundle %s: no bundle.yaml seen", g.bundle)
	}
	if rec.Revert != nil {
		return "", 0, fmt.Errorf("bundle %s: a revert on a protected branch is proposed, not committed", g.bundle)
	}
	file := ReleasePath(spec)
	data, err := rec.Release.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", file, err)
	}
	w, err := g.p.Status.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		return rec.Message, t.WriteFile(file, data)
	})
	if err != nil && !errors.Is(err, gitsync.ErrNothingToCommit) {
		return "", 0, refusal(err)
	}
	return w.Commit, w.Attempts, nil
}

// Propose pushes the revert on its own branch from the tracked branch's tip
// and opens the request to merge it, or finds the one opened before.
func (g *StatusGit) Propose(ctx context.Context, rec promote.Commit) (string, error) {
	spec := g.store.Spec(g.bundle)
	if spec == nil || rec.Revert == nil {
		return "", fmt.Errorf("bundle %s: nothing to propose", g.bundle)
	}
	if g.p.Pulls == nil {
		return "", promote.Refused(errors.New("no forge to open the revert request on (--forge)"))
	}
	branch := RevertBranch(g.bundle, rec.Revert.Failing)
	pr, ok, err := g.p.Pulls.Find(ctx, branch, g.p.Branch)
	if err != nil {
		return "", forgeErr(err)
	}
	if ok {
		return pr.URL, nil // opened before a crash or a failed record
	}
	tip, found, err := g.p.Tracked.BranchHead(ctx, g.p.Branch)
	switch {
	case err != nil:
		return "", promote.Transient(err)
	case !found:
		return "", fmt.Errorf("branch %s: not found", g.p.Branch)
	}
	file := ReleasePath(spec)
	w, err := g.p.Tracked.PushNewBranch(ctx, branch, tip, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		msg, err := restore(t, g.store, g.bundle, spec, rec)
		if err != nil {
			return "", err
		}
		// release.yaml on the tracked branch is not the agent's to change here.
		_, err = t.Restore(gitsync.Paths{file}, t.Tip())
		return msg, err
	})
	switch {
	case errors.Is(err, gitsync.ErrAbandon):
		return "", promote.ErrSuperseded
	case err != nil:
		return "", refusal(err)
	}
	title, body, _ := strings.Cut(commitMessage(g.p.Tracked, w.Commit, rec.Message), "\n")
	body = strings.TrimSpace(body) + "\n\nOpened by tandem: traffic stays on the last good release until this is merged or a fix is pushed to " +
		g.p.Branch + " (then this request is closed). The commit carries the Tandem-* trailers of a revert."
	pr, err = g.p.Pulls.Open(ctx, branch, g.p.Branch, title, body)
	if err != nil {
		return "", forgeErr(err)
	}
	if g.p.AutoMerge {
		_ = g.p.Pulls.Merge(ctx, pr.Number) // refused (reviews, checks): it waits for a person
	}
	return pr.URL, nil
}

// Withdraw comments on the request at link and closes it, unless it is
// merged or closed already.
func (g *StatusGit) Withdraw(ctx context.Context, link, why string) error {
	if g.p.Pulls == nil {
		return nil
	}
	n, err := notify.NumberOf(link)
	if err != nil {
		return err
	}
	pr, err := g.p.Pulls.Get(ctx, n)
	if err != nil || pr.State != notify.PullOpen {
		return err
	}
	if err := g.p.Pulls.Comment(ctx, n, "Closed by tandem: "+why+". The fix is released as a new candidate instead."); err != nil {
		return err
	}
	return g.p.Pulls.Close(ctx, n)
}

// commitMessage is the message of the commit the revert branch holds (the
// one this agent wrote, or an earlier attempt's), falling back to msg.
func commitMessage(repo *gitsync.Repo, commit, msg string) string {
	if cs, err := repo.Commits(context.Background(), "", commit); err == nil && len(cs) > 0 && cs[0].Hash == commit {
		return cs[0].Message
	}
	return msg
}

// refusal marks a push the remote refused (protection, a hook) as
// promote.ErrRefused; anything else passes as it is.
func refusal(err error) error {
	var pr *gitsync.PushRejectedError
	if errors.As(err, &pr) {
		return promote.Refused(err)
	}
	return err
}

// forgeErr sorts a forge's answer: one a retry may fix is transient, a
// refusal (a token without the scope, a rule) needs a person.
func forgeErr(err error) error {
	if notify.Retryable(err) {
		return promote.Transient(err)
	}
	return promote.Refused(err)
}

// OverlayReleases copies every release.yaml of the status branch's
// checkout statusDir over the tracked branch's checkout dir, so that
// whatever reads release.yaml there (startup recovery, stage gates,
// admission) reads the agent's records. A bundle the status branch has no
// record of keeps the tracked branch's release.yaml (an agent that used to
// record there). It returns the files copied.
func OverlayReleases(statusDir, dir string) ([]string, error) {
	var copied []string
	err := filepath.WalkDir(statusDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".git" {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != ReleaseFile || !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(statusDir, p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil || info.Size() > MaxReleaseBytes {
			return fmt.Errorf("%s: not a release.yaml the agent wrote", filepath.ToSlash(rel))
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		to := filepath.Join(dir, rel)
		if fi, err := os.Lstat(filepath.Dir(to)); err != nil || !fi.IsDir() {
			return nil // the bundle is not on the tracked branch (any more)
		}
		if fi, err := os.Lstat(to); err == nil && !fi.Mode().IsRegular() {
			return nil // VetRelease reports it
		}
		if err := os.WriteFile(to, data, 0o644); err != nil {
			return err
		}
		copied = append(copied, path.Clean(filepath.ToSlash(rel)))
		return nil
	})
	return copied, err
}
