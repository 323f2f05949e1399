package gitsync

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// commit resolves hash h to its commit object.
func (r *Repo) commit(h string) (*object.Commit, error) {
	c, err := r.repo.CommitObject(plumbing.NewHash(h))
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", h, err)
	}
	return c, nil
}

// Checkout writes the tree of commit into dir, replacing its contents.
// Symlinks stay symlinks; executable bits are kept.
func (r *Repo) Checkout(ctx context.Context, commit, dir string) (Snapshot, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(commit)
	if err != nil {
		return Snapshot{}, err
	}
	tree, err := c.Tree()
	if err != nil {
		return Snapshot{}, fmt.Errorf("commit %s: %w", commit, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return Snapshot{}, fmt.Errorf("checkout %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Snapshot{}, fmt.Errorf("checkout %s: %w", dir, err)
	}
	seen := map[string]bool{}
	var skipped []*SkippedPath
	err = tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.Contains(f.Name, "..") && hasDotDot(f.Name) {
			skipped = append(skipped, &SkippedPath{Path: f.Name, Reason: "escapes the tree"})
			return nil
		}
		if reason := vetTreePath(dir, f.Name, seen); reason != "" {
			skipped = append(skipped, &SkippedPath{Path: f.Name, Reason: reason})
			return nil
		}
		full := filepath.Join(dir, filepath.FromSlash(f.Name))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		switch f.Mode {
		case filemode.Symlink:
			target, err := f.Contents()
			if err != nil {
				return err
			}
			return os.Symlink(target, full)
		case filemode.Submodule:
			return nil
		}
		rd, err := f.Reader()
		if err != nil {
			return err
		}
		defer rd.Close()
		perm := os.FileMode(0o644)
		if f.Mode == filemode.Executable {
			perm = 0o755
		}
		w, err := os.OpenFile(full, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
		if err != nil {
			return err
		}
		if _, err := io.Copy(w, rd); err != nil {
			w.Close()
			return err
		}
		return w.Close()
	})
	if err != nil {
		return Snapshot{}, fmt.Errorf("checkout %s into %s: %w", commit, dir, err)
	}
	return Snapshot{Commit: c.Hash.String(), Dir: dir, Skipped: skipped}, nil
}

// SkippedPath is a tree entry Checkout refused to write: what only a
// hand-crafted tree holds (git fsck and every Git host reject it). The rest
// of the tree is checked out; a bundle that reads the path fails alone.
type SkippedPath struct {
	Path   string // slash-separated, as in the tree
	Reason string
}

func (e *SkippedPath) Error() string { return fmt.Sprintf("path %q %s", e.Path, e.Reason) }

// vetTreePath refuses what only a hand-crafted tree holds (git fsck and every
// Git host reject it): a path given twice (a symlink "a" and a file "a" would
// write through the link), a path under a symlink the checkout already wrote
// ("a" -> /elsewhere and "a/x" would write /elsewhere/x), and ".git" components.
func vetTreePath(dir, name string, seen map[string]bool) (reason string) {
	if seen[name] {
		return "appears twice in the tree"
	}
	seen[name] = true
	parts := strings.Split(name, "/")
	for i, part := range parts {
		if strings.EqualFold(part, ".git") {
			return "has a .git component"
		}
		if i == len(parts)-1 {
			break
		}
		prefix := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(prefix)))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Sprintf("goes through the symlink %q", prefix)
		}
	}
	return ""
}

func hasDotDot(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == ".." {
			return true
		}
	}
	return false
}

// CheckoutFrom is Checkout for a commit that follows prev, a checkout made
// by this Repo that nothing has written to since: prev's directory becomes
// dir and only the files that differ between the two commits are written or
// removed. A tree of 1,000 bundles takes seconds to check out whole; a new
// tip changes a few files. It checks out whole instead when prev skipped
// paths or is gone, when either tree was hand-crafted, when a changed path
// is or was a symlink or submodule, or goes through a symlink, and when
// anything fails half-way (a file that became a directory, say): the
// result is always what Checkout writes.
func (r *Repo) CheckoutFrom(ctx context.Context, prev Snapshot, commit, dir string) (Snapshot, error) {
	if prev.Dir == "" || prev.Commit == "" || len(prev.Skipped) > 0 || prev.Dir == dir {
		return r.Checkout(ctx, commit, dir)
	}
	if _, err := os.Lstat(prev.Dir); err != nil {
		return r.Checkout(ctx, commit, dir)
	}
	snap, ok := r.checkoutChanges(ctx, prev, commit, dir)
	if !ok {
		return r.Checkout(ctx, commit, dir)
	}
	return snap, nil
}

// checkoutChanges moves prev's directory to dir and writes the changes
// from prev's commit to commit; false: do a whole checkout instead.
func (r *Repo) checkoutChanges(ctx context.Context, prev Snapshot, commit, dir string) (Snapshot, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(commit)
	if err != nil {
		return Snapshot{}, false
	}
	from, err := r.flatTree(prev.Commit)
	if err != nil {
		return Snapshot{}, false
	}
	to, err := r.flatTree(c.Hash.String())
	if err != nil || from.crafted || to.crafted {
		return Snapshot{}, false
	}
	changed := diffFlat(from.files, to.files)
	for _, p := range changed {
		o, had := from.files[p]
		n, has := to.files[p]
		if (had && o.mode != filemode.Regular && o.mode != filemode.Executable) ||
			(has && n.mode != filemode.Regular && n.mode != filemode.Executable) {
			return Snapshot{}, false
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return Snapshot{}, false
	}
	if err := os.Rename(prev.Dir, dir); err != nil {
		return Snapshot{}, false
	}
	for _, p := range changed {
		if ctx.Err() != nil {
			return Snapshot{}, false
		}
		n, has := to.files[p]
		if err := r.checkoutFile(dir, p, n, has); err != nil {
			return Snapshot{}, false
		}
	}
	return Snapshot{Commit: c.Hash.String(), Dir: dir}, true
}

// checkoutFile makes path p of dir what entry e says (has) or removes it,
// with the directories it leaves empty. A parent that is a symlink refuses
// it (a whole checkout then skips the path, as it would).
func (r *Repo) checkoutFile(dir, p string, e entry, has bool) error {
	if hasDotDot(p) {
		return fmt.Errorf("path %q escapes the tree", p)
	}
	parts := strings.Split(p, "/")
	for i := 1; i < len(parts); i++ {
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(strings.Join(parts[:i], "/"))))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("path %q goes through a symlink", p)
		}
	}
	full := filepath.Join(dir, filepath.FromSlash(p))
	if err := os.Remove(full); err != nil && !os.IsNotExist(err) {
		return err
	}
	if !has {
		for d := filepath.Dir(full); d != dir && strings.HasPrefix(d, dir); d = filepath.Dir(d) {
			if os.Remove(d) != nil { // not empty
				break
			}
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	data, err := r.blob(e.hash)
	if err != nil {
		return err
	}
	perm := os.FileMode(0o644)
	if e.mode == filemode.Executable {
		perm = 0o755
	}
	return os.WriteFile(full, data, perm)
}
