package gitsync

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sync"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// flatTree is a commit's tree flattened: every file by path, and every
// directory's tree hash by path ("" is the root).
type flatTree struct {
	files map[string]entry
	dirs  map[string]plumbing.Hash
	// crafted: some tree read for it, or for the tree it was copied from,
	// names an entry twice (what only a hand-crafted tree holds); a
	// checkout of it is never incremental.
	crafted bool
}

// flatCacheSize bounds the flattened trees kept: the tips a sync compares and
// the commits the writes of one wave of promotions read. A tree of 1,000
// bundles flattens to about 1 MB.
const flatCacheSize = 4

// flatCache keeps the most recently used flattened trees. A commit's tree
// never changes, so an entry never goes stale; it only ages out.
type flatCache struct {
	mu    sync.Mutex
	trees map[string]*flatTree
	order []string // least recently used first
}

func (c *flatCache) get(commit string) *flatTree {
	c.mu.Lock()
	defer c.mu.Unlock()
	ft := c.trees[commit]
	if ft != nil {
		c.touch(commit)
	}
	return ft
}

// newest is the most recently used tree (nil: none).
func (c *flatCache) newest() *flatTree {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.order) == 0 {
		return nil
	}
	return c.trees[c.order[len(c.order)-1]]
}

func (c *flatCache) put(commit string, ft *flatTree) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.trees == nil {
		c.trees = map[string]*flatTree{}
	}
	if _, ok := c.trees[commit]; !ok && len(c.order) >= flatCacheSize {
		delete(c.trees, c.order[0])
		c.order = c.order[1:]
	}
	c.trees[commit] = ft
	c.touch(commit)
}

// touch moves commit to the most recently used end; callers hold mu.
func (c *flatCache) touch(commit string) {
	for i, h := range c.order {
		if h == commit {
			c.order = append(c.order[:i], c.order[i+1:]...)
			break
		}
	}
	c.order = append(c.order, commit)
}

// flat maps every non-tree path of commit's tree to its entry. The map is
// shared with the cache: callers must not modify it.
func (r *Repo) flat(commit string) (map[string]entry, error) {
	ft, err := r.flatTree(commit)
	if err != nil {
		return nil, err
	}
	return ft.files, nil
}

// flatTree flattens commit's tree, or returns it from the cache.
//
// A subtree whose hash at the same path equals the one in the most recently
// used cached tree (usually the tip before) is copied from there instead of
// being read again: a new tip of a repository of 1,000 bundles that changes
// one of them reads a handful of tree objects, not thousands (whose reading
// and decoding took 200-400 ms).
func (r *Repo) flatTree(commit string) (*flatTree, error) {
	if commit == "" {
		return &flatTree{files: map[string]entry{}, dirs: map[string]plumbing.Hash{}}, nil
	}
	if ft := r.flats.get(commit); ft != nil {
		return ft, nil
	}
	c, err := r.commit(commit)
	if err != nil {
		return nil, err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit, err)
	}
	base := r.flats.newest()
	ft := &flatTree{files: map[string]entry{}, dirs: map[string]plumbing.Hash{"": t.Hash}}
	same := map[string]bool{} // directories whose subtree base already holds
	if err := r.flattenDir(t, "", 0, base, ft, same); err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit, err)
	}
	if len(same) > 0 {
		copyUnder(base, ft, same)
		ft.crafted = ft.crafted || base.crafted
	}
	r.flats.put(commit, ft)
	return ft, nil
}

// maxTreeDepth bounds how deep flattenDir descends (a crafted tree).
const maxTreeDepth = 1024

// flattenDir adds the entries of t, found at dir, to ft, and descends into
// its subtrees, except those base already flattened at the same path with
// the same hash: those are recorded in same. Entry names are vetted as
// go-git's own tree walk vets them (no "..", ".git" or control characters).
func (r *Repo) flattenDir(t *object.Tree, dir string, depth int, base, ft *flatTree, same map[string]bool) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("tree %s: deeper than %d levels", dir, maxTreeDepth)
	}
	names := make(map[string]bool, len(t.Entries))
	for _, e := range t.Entries {
		if _, err := t.FindEntry(e.Name); err != nil { // validates the name
			return fmt.Errorf("tree entry %q in %q: %w", e.Name, dir, err)
		}
		if names[e.Name] {
			ft.crafted = true
		}
		names[e.Name] = true
		name := e.Name
		if dir != "" {
			name = dir + "/" + e.Name
		}
		if e.Mode != filemode.Dir {
			ft.files[name] = entry{e.Mode, e.Hash}
			continue
		}
		ft.dirs[name] = e.Hash
		if base != nil && base.dirs[name] == e.Hash {
			same[name] = true
			continue
		}
		sub, err := object.GetTree(r.repo.Storer, e.Hash)
		if err != nil {
			return fmt.Errorf("tree %s (%s): %w", name, e.Hash, err)
		}
		if err := r.flattenDir(sub, name, depth+1, base, ft, same); err != nil {
			return err
		}
	}
	return nil
}

// copyUnder copies into ft the files and directories base holds under the
// directories of same.
func copyUnder(base, ft *flatTree, same map[string]bool) {
	under := func(p string) bool {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if same[d] {
				return true
			}
		}
		return false
	}
	for p, e := range base.files {
		if under(p) {
			ft.files[p] = e
		}
	}
	for p, h := range base.dirs {
		if p != "" && under(p) {
			ft.dirs[p] = h
		}
	}
}

// objectCacheSize bounds go-git's cache of decoded objects (its default is
// 96 MiB, which a repository of 1,000 bundles fills, and which then stays
// resident in an idle agent). Flattened trees are cached above it.
const objectCacheSize = 8 * cache.MiByte

// openCache opens the bare cache repository in dir with a bounded object
// cache.
func openCache(dir string) (*git.Repository, error) {
	if _, err := os.Stat(filepath.Join(dir, "HEAD")); err != nil {
		return nil, git.ErrRepositoryNotExists
	}
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRU(objectCacheSize))
	return git.Open(st, nil)
}
