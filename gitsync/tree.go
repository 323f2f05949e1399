package gitsync

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// Tree is the working state of a Write: the tip plus the edit's changes.
type Tree struct {
	r     *Repo
	tip   string
	files map[string]entry
	data  map[string][]byte // pending contents by path (nil entry = written blob pending)
}

// Tip is the commit the edit is applied on.
func (t *Tree) Tip() string { return t.tip }

// ReadFile returns the content of p (slash-separated) in the working state.
func (t *Tree) ReadFile(p string) ([]byte, error) {
	p = path.Clean(p)
	if d, ok := t.data[p]; ok {
		return d, nil
	}
	e, ok := t.files[p]
	if !ok {
		return nil, fmt.Errorf("%s: %w", p, os.ErrNotExist)
	}
	return t.r.blob(e.hash)
}

// WriteFile sets p's content (regular file).
func (t *Tree) WriteFile(p string, data []byte) error {
	p = path.Clean(p)
	if p == "." || hasDotDot(p) || path.IsAbs(p) {
		return fmt.Errorf("write %q: invalid path", p)
	}
	t.data[p] = append([]byte(nil), data...)
	t.files[p] = entry{mode: filemode.Regular}
	return nil
}

// Paths name files of a tree: a path names one file; a path ending in "/"
// names every file under that directory ("" or "./": the whole tree).
type Paths []string

// Match reports whether file p is named by ps.
func (ps Paths) Match(p string) bool {
	for _, q := range ps {
		if strings.HasSuffix(q, "/") || q == "" {
			if under(p, path.Clean(strings.TrimSuffix(q, "/")+"/.")) {
				return true
			}
		} else if p == q {
			return true
		}
	}
	return false
}

// Restore makes every file named by ps equal to fromCommit's (removing
// those fromCommit lacks) and returns the files that changed, sorted.
func (t *Tree) Restore(ps Paths, fromCommit string) ([]string, error) {
	old, err := t.r.flat(fromCommit)
	if err != nil {
		return nil, err
	}
	cur, err := t.resolved()
	if err != nil {
		return nil, err
	}
	var restored []string
	for _, p := range diffFlat(old, cur) {
		if !ps.Match(p) {
			continue
		}
		restored = append(restored, p)
		delete(t.data, p)
		if e, ok := old[p]; ok {
			t.files[p] = e
		} else {
			delete(t.files, p)
		}
	}
	return restored, nil
}

// OnBranch reports whether commit (a full hash) is the tip being edited or
// one of its ancestors: false after someone rewound or force-pushed the
// branch past it. Anything but a full hash is an error.
func (t *Tree) OnBranch(commit string) (bool, error) {
	if !plumbing.IsHash(commit) {
		return false, fmt.Errorf("commit %q: not a full commit hash", commit)
	}
	return t.r.descends(plumbing.NewHash(t.tip), plumbing.NewHash(commit)), nil
}

// ChangedSince reports whether any file named by ps, other than the paths
// in except, differs between commit and the working state.
func (t *Tree) ChangedSince(commit string, ps Paths, except ...string) (bool, error) {
	old, err := t.r.flat(commit)
	if err != nil {
		return false, err
	}
	cur, err := t.resolved()
	if err != nil {
		return false, err
	}
	for _, p := range diffFlat(old, cur) {
		if ps.Match(p) && !slices.Contains(except, p) {
			return true, nil
		}
	}
	return false, nil
}

func under(p, dir string) bool {
	return dir == "." || p == dir || strings.HasPrefix(p, dir+"/")
}

func (r *Repo) blob(h plumbing.Hash) ([]byte, error) {
	b, err := r.repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
	rd, err := b.Reader()
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	return io.ReadAll(rd)
}

// resolved stores pending blobs and returns the full path->entry map.
func (t *Tree) resolved() (map[string]entry, error) {
	for p, d := range t.data {
		obj := t.r.repo.Storer.NewEncodedObject()
		obj.SetType(plumbing.BlobObject)
		w, err := obj.Writer()
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(d); err != nil {
			return nil, err
		}
		w.Close()
		h, err := t.r.repo.Storer.SetEncodedObject(obj)
		if err != nil {
			return nil, err
		}
		t.files[p] = entry{mode: filemode.Regular, hash: h}
		delete(t.data, p)
	}
	return t.files, nil
}

// buildTree writes the tree objects for files and returns the root hash and
// the hashes of the trees it wrote (every directory holding a changed path).
// Only the directories holding a changed path (changed lists the paths that
// differ from base) are written again; every other directory is base's tree
// as it is, so a commit costs its depth, not the size of the repository.
//
// It returns the new tree flattened as well (files and every directory's
// hash), so that the next write on this commit need not walk it again.
func (r *Repo) buildTree(files map[string]entry, base *flatTree, changed []string) (plumbing.Hash, *flatTree, []plumbing.Hash, error) {
	dirty := map[string]bool{"": true}
	for _, p := range changed {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			dirty[d] = true
		}
	}
	type node struct {
		files map[string]entry
		dirs  map[string]*node
	}
	newNode := func() *node { return &node{files: map[string]entry{}, dirs: map[string]*node{}} }
	root := newNode()
	for p, e := range files {
		parts := strings.Split(p, "/")
		n := root
		for _, d := range parts[:len(parts)-1] {
			c, ok := n.dirs[d]
			if !ok {
				c = newNode()
				n.dirs[d] = c
			}
			n = c
		}
		n.files[parts[len(parts)-1]] = e
	}
	dirs := maps.Clone(base.dirs)
	for d := range dirty {
		delete(dirs, d) // written again below, or gone
	}
	var wrote []plumbing.Hash
	var write func(n *node, dir string) (plumbing.Hash, error)
	write = func(n *node, dir string) (plumbing.Hash, error) {
		if h, ok := base.dirs[dir]; ok && !dirty[dir] {
			return h, nil
		}
		t := &object.Tree{}
		for name, e := range n.files {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: e.mode, Hash: e.hash})
		}
		for name, c := range n.dirs {
			h, err := write(c, path.Join(dir, name))
			if err != nil {
				return plumbing.ZeroHash, err
			}
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: filemode.Dir, Hash: h})
		}
		sort.Slice(t.Entries, func(i, j int) bool { return sortKey(t.Entries[i]) < sortKey(t.Entries[j]) })
		obj := r.repo.Storer.NewEncodedObject()
		if err := t.Encode(obj); err != nil {
			return plumbing.ZeroHash, err
		}
		h, err := r.repo.Storer.SetEncodedObject(obj)
		dirs[dir] = h
		wrote = append(wrote, h)
		return h, err
	}
	h, err := write(root, "")
	if err != nil {
		return plumbing.ZeroHash, nil, nil, err
	}
	return h, &flatTree{files: files, dirs: dirs}, wrote, nil
}

func sortKey(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}
