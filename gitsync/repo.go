package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// ErrAbandon is returned by an Edit when the current tip makes its change
// moot; Write then returns it without committing.
var ErrAbandon = errors.New("gitsync: edit abandoned")

// ErrNonFastForward means the remote moved while the agent was writing and
// every retry lost the race.
var ErrNonFastForward = errors.New("gitsync: push rejected as non-fast-forward")

// ErrNothingToCommit is returned by Write when the edit changed no file.
var ErrNothingToCommit = errors.New("gitsync: edit changed nothing")

// PushRejectedError is a push the remote declined for a reason other than a
// lost race (a hook, branch protection). Message is the remote's text.
type PushRejectedError struct{ Message string }

func (e *PushRejectedError) Error() string { return "gitsync: push rejected: " + e.Message }

// Signature names the author and committer of the agent's commits.
type Signature struct{ Name, Email string }

// Options configure Open.
type Options struct {
	URL, Branch, CacheDir string
	Auth                  Auth
	Author                Signature
	// SigningKeyFile is an armored OpenPGP private key; commits are signed when set.
	SigningKeyFile string
	// MaxAttempts caps Write's fetch-edit-push attempts (default 8).
	MaxAttempts int
}

// Poll is the result of a remote-head check.
type Poll struct {
	Tip     string
	Fetched bool
}

// Snapshot is a commit checked out into Dir.
type Snapshot struct{ Commit, Dir string }

// Commit is one commit of a range with its parsed trailers.
type Commit struct {
	Hash, Subject, Body, Author string
	// Message is the whole commit message (promote parses its trailers).
	Message string
	When    time.Time // committer time
}

// Written is the outcome of a successful Write.
type Written struct {
	Commit   string
	Attempts int
}

// Edit changes files on top of the current tip and returns the commit message.
type Edit func(ctx context.Context, t *Tree) (message string, err error)

// Repo is one remote repository and branch mirrored into a local bare cache.
type Repo struct {
	opts   Options
	repo   *git.Repository
	remote *git.Remote
	auth   *authSource
	mu     sync.Mutex
	// wmu serializes Write transactions of this process: without it two
	// goroutines writing at once both edit the same tip and one push is
	// rejected by the other, costing a fetch and a backoff per collision.
	wmu sync.Mutex
	// fetches counts fetches that transferred (or tried to); tests use it.
	fetches int
}

const remoteName = "origin"

// Open validates the URL and credentials and opens (or creates) the bare cache.
func Open(ctx context.Context, o Options) (*Repo, error) {
	if o.Branch == "" {
		o.Branch = "main"
	}
	if o.Author.Name == "" {
		o.Author = Signature{Name: "tandem", Email: "tandem@localhost"}
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 8
	}
	if err := checkURL(o.URL); err != nil {
		return nil, err
	}
	as, err := newAuthSource(o.URL, o.Auth)
	if err != nil {
		return nil, err
	}
	if o.CacheDir == "" {
		return nil, errors.New("gitsync: CacheDir is required")
	}
	r, err := git.PlainOpen(o.CacheDir)
	if errors.Is(err, git.ErrRepositoryNotExists) {
		r, err = git.PlainInit(o.CacheDir, true)
	}
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", o.CacheDir, err)
	}
	_ = r.DeleteRemote(remoteName)
	rem, err := r.CreateRemote(&config.RemoteConfig{Name: remoteName, URLs: []string{o.URL},
		Fetch: []config.RefSpec{config.RefSpec("+refs/heads/" + o.Branch + ":refs/remotes/origin/" + o.Branch)}})
	if err != nil {
		return nil, fmt.Errorf("git cache %s: %w", o.CacheDir, err)
	}
	if o.SigningKeyFile != "" {
		if _, err := loadSigningKey(o.SigningKeyFile); err != nil {
			return nil, err
		}
	}
	return &Repo{opts: o, repo: r, remote: rem, auth: as}, nil
}

// Close releases the watcher on credential files.
func (r *Repo) Close() error { return r.auth.close() }

func (r *Repo) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return &redactedError{msg: fmt.Sprintf("git %s %s: %s", op, Redact(r.opts.URL), r.auth.scrub(Redact(err.Error()))), err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }

// Is lets errors.Is see typed causes without exposing the raw message.
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// lsTip asks the remote for the branch head.
func (r *Repo) lsTip(ctx context.Context) (plumbing.Hash, error) {
	auth, err := r.auth.method()
	if err != nil {
		return plumbing.ZeroHash, err
	}
	refs, err := r.remote.ListContext(ctx, &git.ListOptions{Auth: auth})
	if err != nil {
		return plumbing.ZeroHash, classifyAuth(r.wrap("ls-remote", err), err)
	}
	want := plumbing.NewBranchReferenceName(r.opts.Branch)
	for _, ref := range refs {
		if ref.Name() == want {
			return ref.Hash(), nil
		}
	}
	return plumbing.ZeroHash, fmt.Errorf("git ls-remote %s: branch %q not found", Redact(r.opts.URL), r.opts.Branch)
}

func (r *Repo) fetch(ctx context.Context) error {
	auth, err := r.auth.method()
	if err != nil {
		return err
	}
	r.fetches++
	err = r.remote.FetchContext(ctx, &git.FetchOptions{Auth: auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return classifyAuth(r.wrap("fetch", err), err)
	}
	return nil
}

// MaxPacks is how many pack files the cache may hold before Poll repacks
// them into one.
const MaxPacks = 32

// compact repacks the cache into one pack when it holds more than MaxPacks.
// The caller holds mu and wmu.
func (r *Repo) compact() error {
	pos, ok := r.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return nil
	}
	packs, err := pos.ObjectPacks()
	if err != nil || len(packs) <= MaxPacks {
		return err
	}
	if err := r.repo.RepackObjects(&git.RepackConfig{}); err != nil {
		return err
	}
	// The open storage still lists the removed packs: reopen it.
	repo, err := git.PlainOpen(r.opts.CacheDir)
	if err != nil {
		return err
	}
	rem, err := repo.Remote(remoteName)
	if err != nil {
		return err
	}
	r.repo, r.remote = repo, rem
	return nil
}

// packs counts the cache's pack files (for tests).
func (r *Repo) packs() int {
	pos, ok := r.repo.Storer.(storer.PackedObjectStorer)
	if !ok {
		return 0
	}
	hs, _ := pos.ObjectPacks()
	return len(hs)
}

func (r *Repo) has(h plumbing.Hash) bool {
	_, err := r.repo.CommitObject(h)
	return err == nil
}

// Poll checks the remote head and fetches only when the tip is not yet in the cache.
func (r *Repo) Poll(ctx context.Context) (Poll, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	tip, err := r.lsTip(ctx)
	if err != nil {
		return Poll{}, err
	}
	if r.has(tip) {
		return Poll{Tip: tip.String()}, nil
	}
	if err := r.fetch(ctx); err != nil {
		return Poll{}, err
	}
	if !r.has(tip) {
		return Poll{}, fmt.Errorf("git fetch %s: tip %s missing after fetch", Redact(r.opts.URL), tip)
	}
	// Each fetch adds a pack file; every lookup walks them all. Compact
	// now and then, when no Write transaction can be reading the store.
	if r.wmu.TryLock() {
		_ = r.compact() // best effort: the packs stay readable if it fails
		r.wmu.Unlock()
	}
	return Poll{Tip: tip.String(), Fetched: true}, nil
}

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
	err = tree.Files().ForEach(func(f *object.File) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if strings.Contains(f.Name, "..") && hasDotDot(f.Name) {
			return fmt.Errorf("path %q escapes the tree", f.Name)
		}
		if err := vetTreePath(dir, f.Name, seen); err != nil {
			return err
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
	return Snapshot{Commit: c.Hash.String(), Dir: dir}, nil
}

// vetTreePath refuses what only a hand-crafted tree holds (git fsck and every
// Git host reject it): a path given twice (a symlink "a" and a file "a" would
// write through the link), a path under a symlink the checkout already wrote
// ("a" -> /elsewhere and "a/x" would write /elsewhere/x), and ".git" components.
func vetTreePath(dir, name string, seen map[string]bool) error {
	if seen[name] {
		return fmt.Errorf("path %q appears twice in the tree", name)
	}
	seen[name] = true
	parts := strings.Split(name, "/")
	for i, part := range parts {
		if strings.EqualFold(part, ".git") {
			return fmt.Errorf("path %q has a .git component", name)
		}
		if i == len(parts)-1 {
			break
		}
		prefix := strings.Join(parts[:i+1], "/")
		fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(prefix)))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("path %q goes through the symlink %q", name, prefix)
		}
	}
	return nil
}

func hasDotDot(p string) bool {
	for _, s := range strings.Split(p, "/") {
		if s == ".." {
			return true
		}
	}
	return false
}

// ChangedPaths lists the paths (slash-separated, sorted) that differ between
// the trees of from and to. An empty from lists every file of to.
func (r *Repo) ChangedPaths(ctx context.Context, from, to string) ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
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

// flat maps every non-tree path of commit's tree to its entry.
func (r *Repo) flat(commit string) (map[string]entry, error) {
	m := map[string]entry{}
	if commit == "" {
		return m, nil
	}
	c, err := r.commit(commit)
	if err != nil {
		return nil, err
	}
	t, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", commit, err)
	}
	w := object.NewTreeWalker(t, true, nil)
	defer w.Close()
	for {
		name, e, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("commit %s: %w", commit, err)
		}
		if e.Mode == filemode.Dir {
			continue
		}
		m[name] = entry{e.Mode, e.Hash}
	}
	return m, nil
}

// Commits lists the commits reachable from to but not from from, newest first.
func (r *Repo) Commits(ctx context.Context, from, to string) ([]Commit, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	stop := map[plumbing.Hash]bool{}
	if from != "" {
		fc, err := r.commit(from)
		if err != nil {
			return nil, err
		}
		iter := object.NewCommitPreorderIter(fc, nil, nil)
		_ = iter.ForEach(func(c *object.Commit) error { stop[c.Hash] = true; return nil })
	}
	tc, err := r.commit(to)
	if err != nil {
		return nil, err
	}
	var out []Commit
	iter := object.NewCommitIterCTime(tc, stop, nil)
	err = iter.ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if stop[c.Hash] {
			return nil
		}
		out = append(out, commitOf(c))
		return nil
	})
	if err != nil && err != storer.ErrStop {
		return nil, fmt.Errorf("commits %s..%s: %w", from, to, err)
	}
	return out, nil
}

// commitOf is a go-git commit as gitsync reports it.
func commitOf(c *object.Commit) Commit {
	subject, body, _ := strings.Cut(strings.TrimRight(c.Message, "\n"), "\n")
	return Commit{Hash: c.Hash.String(), Subject: subject, Body: strings.TrimSpace(body), When: c.Committer.When,
		Author: c.Author.Name + " <" + c.Author.Email + ">", Message: c.Message}
}

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

// RestoreDir makes dir's files equal to those of fromCommit's tree.
func (t *Tree) RestoreDir(dir, fromCommit string) error {
	old, err := t.r.flat(fromCommit)
	if err != nil {
		return err
	}
	dir = path.Clean(dir)
	for p := range t.files {
		if under(p, dir) {
			delete(t.files, p)
			delete(t.data, p)
		}
	}
	for p, e := range old {
		if under(p, dir) {
			t.files[p] = e
		}
	}
	return nil
}

// ChangedSince reports whether any file under dir, other than the paths in
// except, differs between commit and the working state.
func (t *Tree) ChangedSince(commit, dir string, except ...string) (bool, error) {
	old, err := t.r.flat(commit)
	if err != nil {
		return false, err
	}
	cur, err := t.resolved()
	if err != nil {
		return false, err
	}
	dir = path.Clean(dir)
	for _, p := range diffFlat(old, cur) {
		if under(p, dir) && !slices.Contains(except, p) {
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

// buildTree writes the tree objects for files and returns the root hash.
func (r *Repo) buildTree(files map[string]entry) (plumbing.Hash, error) {
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
	var write func(n *node) (plumbing.Hash, error)
	write = func(n *node) (plumbing.Hash, error) {
		t := &object.Tree{}
		for name, e := range n.files {
			t.Entries = append(t.Entries, object.TreeEntry{Name: name, Mode: e.mode, Hash: e.hash})
		}
		for name, c := range n.dirs {
			h, err := write(c)
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
		return r.repo.Storer.SetEncodedObject(obj)
	}
	return write(root)
}

func sortKey(e object.TreeEntry) string {
	if e.Mode == filemode.Dir {
		return e.Name + "/"
	}
	return e.Name
}

// Write runs a fetch-edit-commit-push transaction. A push rejected because the
// remote moved fetches again and re-runs edit on the new tip, with capped,
// jittered backoff. It never force-pushes.
func (r *Repo) Write(ctx context.Context, edit Edit) (Written, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	delay := 100 * time.Millisecond
	var lastErr error
	for attempt := 1; attempt <= r.opts.MaxAttempts; attempt++ {
		if attempt > 1 {
			d := delay/2 + rand.N(delay/2+1)
			select {
			case <-ctx.Done():
				return Written{}, ctx.Err()
			case <-time.After(d):
			}
			delay = min(delay*2, 5*time.Second)
		}
		h, err := r.writeOnce(ctx, edit)
		if err == nil {
			return Written{Commit: h, Attempts: attempt}, nil
		}
		if !errors.Is(err, ErrNonFastForward) {
			return Written{}, err
		}
		lastErr = err
	}
	return Written{}, lastErr
}

func (r *Repo) writeOnce(ctx context.Context, edit Edit) (string, error) {
	tipHash, err := r.lsTip(ctx)
	if err != nil {
		return "", err
	}
	if !r.has(tipHash) {
		if err := r.fetch(ctx); err != nil {
			return "", err
		}
	}
	tip := tipHash.String()
	files, err := r.flat(tip)
	if err != nil {
		return "", err
	}
	t := &Tree{r: r, tip: tip, files: files, data: map[string][]byte{}}
	r.mu.Unlock()
	msg, err := edit(ctx, t)
	r.mu.Lock()
	if err != nil {
		return "", err
	}
	cur, err := t.resolved()
	if err != nil {
		return "", fmt.Errorf("git write: %w", err)
	}
	base, _ := r.flat(tip)
	if len(diffFlat(base, cur)) == 0 {
		return "", ErrNothingToCommit
	}
	treeHash, err := r.buildTree(cur)
	if err != nil {
		return "", fmt.Errorf("git write: tree: %w", err)
	}
	now := time.Now()
	sig := object.Signature{Name: r.opts.Author.Name, Email: r.opts.Author.Email, When: now}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash, ParentHashes: []plumbing.Hash{tipHash}}
	if r.opts.SigningKeyFile != "" {
		key, err := loadSigningKey(r.opts.SigningKeyFile)
		if err != nil {
			return "", err
		}
		unsigned := r.repo.Storer.NewEncodedObject()
		if err := c.EncodeWithoutSignature(unsigned); err != nil {
			return "", err
		}
		rd, _ := unsigned.Reader()
		var sb bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&sb, key, rd, nil); err != nil {
			return "", fmt.Errorf("signing key %s: %w", r.opts.SigningKeyFile, err)
		}
		c.PGPSignature = sb.String()
	}
	obj := r.repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return "", err
	}
	ch, err := r.repo.Storer.SetEncodedObject(obj)
	if err != nil {
		return "", err
	}
	local := plumbing.ReferenceName("refs/heads/tandem-write")
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(local, ch)); err != nil {
		return "", err
	}
	auth, err := r.auth.method()
	if err != nil {
		return "", err
	}
	spec := config.RefSpec(local.String() + ":refs/heads/" + r.opts.Branch)
	err = r.remote.PushContext(ctx, &git.PushOptions{RemoteName: remoteName, RefSpecs: []config.RefSpec{spec}, Auth: auth, Force: false})
	if err != nil {
		return "", classifyPush(r.wrap("push", err), err)
	}
	return ch.String(), nil
}

var nonFFWordings = []string{"fetch first", "non-fast-forward", "cannot lock ref", "incorrect old value provided",
	"already exists", "stale info", "failed to update ref", "not a fast-forward", "non fast-forward"}

func classifyPush(wrapped, raw error) error {
	if errors.Is(raw, git.ErrNonFastForwardUpdate) {
		return fmt.Errorf("%w: %v", ErrNonFastForward, wrapped)
	}
	msg := strings.ToLower(raw.Error())
	for _, w := range nonFFWordings {
		if strings.Contains(msg, w) {
			return fmt.Errorf("%w: %v", ErrNonFastForward, wrapped)
		}
	}
	if e := classifyAuth(wrapped, raw); e != wrapped {
		return e
	}
	return &PushRejectedError{Message: wrapped.Error()}
}

func loadSigningKey(file string) (*openpgp.Entity, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	defer f.Close()
	list, err := openpgp.ReadArmoredKeyRing(f)
	if err != nil {
		return nil, fmt.Errorf("signing key %s: %w", file, err)
	}
	if len(list) == 0 || list[0].PrivateKey == nil {
		return nil, fmt.Errorf("signing key %s: no private key", file)
	}
	return list[0], nil
}
