package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"k8s.io/apimachinery/pkg/util/wait"
)

// Write runs a fetch-edit-commit-push transaction. A push rejected because the
// remote moved fetches again and re-runs edit on the new tip, with capped,
// jittered backoff. It never force-pushes.
func (r *Repo) Write(ctx context.Context, edit Edit) (Written, error) {
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.mu.Lock()
	defer r.mu.Unlock()
	var (
		w       Written
		lastErr error
	)
	// First, on the tip this cache last fetched or pushed, without asking
	// the remote: a push onto a tip that moved is refused (never forced), and
	// then the attempts below ask the remote and fetch as before.
	if tip, ok := r.knownTip(); ok {
		h, err := r.writeOn(ctx, tip, edit)
		switch {
		case err == nil:
			return Written{Commit: h, Attempts: 1}, nil
		case errors.Is(err, ErrNothingToCommit):
			// Nothing to change on the tip this cache knows, which may be
			// stale (a branch rewound under it): ask the remote below.
		case !errors.Is(err, ErrNonFastForward):
			return Written{}, err
		}
		lastErr = err
		w.Attempts = 1
	}
	// Attempts after the first wait 50-100ms, then twice as long each time
	// (3.2-6.4s before the 8th). No Cap: reaching it would end the steps.
	b := wait.Backoff{Duration: 50 * time.Millisecond, Factor: 2, Jitter: 1, Steps: r.opts.MaxAttempts}
	err := wait.ExponentialBackoffWithContext(ctx, b, func(ctx context.Context) (bool, error) {
		w.Attempts++
		h, err := r.writeOnce(ctx, edit)
		switch {
		case err == nil:
			w.Commit = h
			return true, nil
		case errors.Is(err, ErrNonFastForward):
			lastErr = err // the remote moved: fetch and edit again
			return false, nil
		}
		return false, err
	})
	switch {
	case err == nil:
		return w, nil
	case wait.Interrupted(err) && ctx.Err() == nil:
		return Written{}, lastErr // every attempt lost the race
	case wait.Interrupted(err):
		return Written{}, ctx.Err()
	}
	return Written{}, err
}

func (r *Repo) writeOnce(ctx context.Context, edit Edit) (string, error) {
	tipHash, err := r.lsTip(ctx)
	if errors.Is(err, ErrBranchNotFound) && r.opts.CreateBranch {
		return r.writeOn(ctx, plumbing.ZeroHash, edit) // the branch's first commit
	}
	if err != nil {
		return "", err
	}
	if !r.has(tipHash) {
		if err := r.fetch(ctx); err != nil {
			return "", err
		}
	}
	return r.writeOn(ctx, tipHash, edit)
}

// trackingRef is where this cache keeps the remote branch's tip, as fetched
// or as last pushed.
func (r *Repo) trackingRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName(remoteName, r.opts.Branch)
}

// knownTip is the remote branch's tip as this cache last saw it.
func (r *Repo) knownTip() (plumbing.Hash, bool) {
	ref, err := r.repo.Storer.Reference(r.trackingRef())
	if err != nil || ref.Hash().IsZero() || !r.has(ref.Hash()) {
		return plumbing.ZeroHash, false
	}
	return ref.Hash(), true
}

// writeOn edits the tree of tipHash, commits on it and pushes it to the
// branch (a zero tipHash: a root commit that creates the branch).
func (r *Repo) writeOn(ctx context.Context, tipHash plumbing.Hash, edit Edit) (string, error) {
	ch, written, err := r.commitOn(ctx, r.opts.Branch, tipHash, tipHash, edit)
	if err != nil {
		return "", err
	}
	// The remote's branch is now this commit: the next write starts here,
	// from its flattened tree.
	_ = r.repo.Storer.SetReference(plumbing.NewHashReference(r.trackingRef(), ch))
	r.flats.put(ch.String(), written)
	return ch.String(), nil
}

// commitOn edits the tree of tipHash, commits on it (a root commit when
// tipHash is zero) and pushes the commit to branch, which must be at old
// (absent when old is zero). The caller holds mu.
func (r *Repo) commitOn(ctx context.Context, branch string, tipHash, old plumbing.Hash, edit Edit) (plumbing.Hash, *flatTree, error) {
	tip := ""
	var parents []plumbing.Hash
	if !tipHash.IsZero() {
		tip, parents = tipHash.String(), []plumbing.Hash{tipHash}
	}
	base, err := r.flatTree(tip)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	t := &Tree{r: r, tip: tip, files: maps.Clone(base.files), data: map[string][]byte{}}
	r.mu.Unlock()
	msg, err := edit(ctx, t)
	r.mu.Lock()
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	cur, err := t.resolved()
	if err != nil {
		return plumbing.ZeroHash, nil, fmt.Errorf("git write: %w", err)
	}
	changed := diffFlat(base.files, cur)
	if len(changed) == 0 {
		return plumbing.ZeroHash, nil, ErrNothingToCommit
	}
	treeHash, written, trees, err := r.buildTree(cur, base, changed)
	if err != nil {
		return plumbing.ZeroHash, nil, fmt.Errorf("git write: tree: %w", err)
	}
	now := time.Now()
	sig := object.Signature{Name: r.opts.Author.Name, Email: r.opts.Author.Email, When: now}
	c := &object.Commit{Author: sig, Committer: sig, Message: msg, TreeHash: treeHash, ParentHashes: parents}
	ch, err := r.storeCommit(c)
	if err != nil {
		return plumbing.ZeroHash, nil, err
	}
	local := plumbing.ReferenceName("refs/heads/tandem-write")
	if err := r.repo.Storer.SetReference(plumbing.NewHashReference(local, ch)); err != nil {
		return plumbing.ZeroHash, nil, err
	}
	if err := r.push(ctx, local, branch, old, ch, newObjects(ch, trees, cur, changed)); err != nil {
		return plumbing.ZeroHash, nil, err
	}
	return ch, written, nil
}

// storeCommit signs c when a signing key is set and stores it.
func (r *Repo) storeCommit(c *object.Commit) (plumbing.Hash, error) {
	if r.opts.SigningKeyFile != "" {
		key, err := loadSigningKey(r.opts.SigningKeyFile)
		if err != nil {
			return plumbing.ZeroHash, err
		}
		unsigned := r.repo.Storer.NewEncodedObject()
		if err := c.EncodeWithoutSignature(unsigned); err != nil {
			return plumbing.ZeroHash, err
		}
		rd, _ := unsigned.Reader()
		var sb bytes.Buffer
		if err := openpgp.ArmoredDetachSign(&sb, key, rd, nil); err != nil {
			return plumbing.ZeroHash, fmt.Errorf("signing key %s: %w", r.opts.SigningKeyFile, err)
		}
		c.PGPSignature = sb.String()
	}
	obj := r.repo.Storer.NewEncodedObject()
	if err := c.Encode(obj); err != nil {
		return plumbing.ZeroHash, err
	}
	return r.repo.Storer.SetEncodedObject(obj)
}

var nonFFWordings = []string{"fetch first", "non-fast-forward", "cannot lock ref", "incorrect old value provided",
	"already exists", "stale info", "failed to update ref", "not a fast-forward", "non fast-forward"}

// classifyPush sorts a failed push to branch: a lost race
// (ErrNonFastForward), refused credentials (ErrAuth), or a refusal
// (*PushRejectedError, with what the remote said on its side channel).
func classifyPush(wrapped, raw error, branch, remote string) error {
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
	return &PushRejectedError{Message: wrapped.Error(), Remote: remote, Branch: branch}
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
