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
