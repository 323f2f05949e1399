package gitsync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// errNoThinPush means the thin push is not possible with this remote (its
// transport has no receive-pack session, or it does not report status);
// push then falls back to go-git's Remote.PushContext.
var errNoThinPush = errors.New("gitsync: thin push not possible")

// newObjects lists the objects a commit needs that are not reachable from
// its parent: the commit, the trees the write rebuilt, and the blobs of the
// changed files. Every other object of the commit's tree is an entry the
// parent's tree already has. Some of them may exist in the parent's history
// or the local store already (a restored file, a tree equal to an old one):
// sending them again is harmless, the remote keeps one copy.
func newObjects(commit plumbing.Hash, trees []plumbing.Hash, files map[string]entry, changed []string) []plumbing.Hash {
	seen := map[plumbing.Hash]bool{commit: true}
	out := []plumbing.Hash{commit}
	add := func(h plumbing.Hash) {
		if !seen[h] {
			seen[h] = true
			out = append(out, h)
		}
	}
	for _, h := range trees {
		add(h)
	}
	for _, p := range changed {
		// A deleted file needs nothing; a submodule's commit is not ours.
		if e, ok := files[p]; ok && e.mode != filemode.Submodule {
			add(e.hash)
		}
	}
	return out
}

// push moves the remote branch from tip to commit, never forcing. It sends
// only objs (see newObjects) unless r.fullPush is set or the remote cannot
// take a thin push; then go-git's PushContext walks the history to find what
// to send.
func (r *Repo) push(ctx context.Context, local plumbing.ReferenceName, branch string, tip, commit plumbing.Hash, objs []plumbing.Hash) error {
	return r.network(ctx, "push", func(ctx context.Context) error { return r.pushOnce(ctx, local, branch, tip, commit, objs) })
}

func (r *Repo) pushOnce(ctx context.Context, local plumbing.ReferenceName, branch string, tip, commit plumbing.Hash, objs []plumbing.Hash) error {
	auth, err := r.auth.method()
	if err != nil {
		return err
	}
	if !r.fullPush {
		said := &remoteText{}
		err = r.thinPush(ctx, auth, branch, tip, commit, objs, said)
		if !errors.Is(err, errNoThinPush) {
			if err != nil {
				return classifyPush(r.wrap("push", err), err, branch, r.auth.scrub(Redact(said.String())))
			}
			r.thinPushes++
			r.thinSent = len(objs)
			return nil
		}
	}
	spec := config.RefSpec(local.String() + ":refs/heads/" + branch)
	said := &remoteText{}
	err = r.remote.PushContext(ctx, &git.PushOptions{RemoteName: remoteName, RefSpecs: []config.RefSpec{spec}, Auth: auth, Force: false, Progress: said})
	if err != nil {
		return classifyPush(r.wrap("push", err), err, branch, r.auth.scrub(Redact(said.String())))
	}
	return nil
}

// thinPush is one receive-pack session: it checks that the remote branch is
// still at tip, sends a pack of objs and the update tip->commit, and reads
// the remote's report. A remote branch not at tip is ErrNonFastForwardUpdate.
// A zero tip creates the branch, which must not exist yet. The remote's
// side-channel messages (a hook's refusal) are written to said.
func (r *Repo) thinPush(ctx context.Context, auth transport.AuthMethod, branchName string, tip, commit plumbing.Hash, objs []plumbing.Hash, said io.Writer) (err error) {
	ep, err := transport.NewEndpoint(r.opts.URL)
	if err != nil {
		return errNoThinPush
	}
	c, err := client.NewClient(ep)
	if err != nil {
		return errNoThinPush
	}
	s, err := c.NewReceivePackSession(ep, auth)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil && cerr != nil {
			err = cerr
		}
	}()
	ar, err := s.AdvertisedReferencesContext(ctx)
	if err != nil {
		return err
	}
	if !ar.Capabilities.Supports(capability.ReportStatus) {
		return errNoThinPush
	}
	branch := plumbing.NewBranchReferenceName(branchName)
	if at, ok := ar.References[branch.String()]; ok != !tip.IsZero() || at != tip {
		return fmt.Errorf("%w: remote %s is at %s, this write is on %s", git.ErrNonFastForwardUpdate, branch, at, tip)
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	if ar.Capabilities.Supports(capability.Sideband64k) {
		req.Capabilities.Set(capability.Sideband64k)
		req.Progress = said
	}
	req.Commands = []*packp.Command{{Name: branch, Old: tip, New: commit}}
	pack, err := r.encodePack(objs, !ar.Capabilities.Supports(capability.OFSDelta))
	if err != nil {
		return err
	}
	req.Packfile = io.NopCloser(pack)
	rs, err := s.ReceivePack(ctx, req)
	if err != nil {
		return err
	}
	return checkReport(rs, branch)
}

// encodePack packs objs from the local store, deltified within the pack.
func (r *Repo) encodePack(objs []plumbing.Hash, refDeltas bool) (*bytes.Buffer, error) {
	cfg, err := r.repo.Storer.Config()
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := packfile.NewEncoder(&buf, r.repo.Storer, refDeltas).Encode(objs, cfg.Pack.Window); err != nil {
		return nil, fmt.Errorf("pack of %d objects: %w", len(objs), err)
	}
	return &buf, nil
}

// checkReport requires the remote to have unpacked the pack and updated
// branch.
func checkReport(rs *packp.ReportStatus, branch plumbing.ReferenceName) error {
	if rs == nil {
		return fmt.Errorf("remote sent no report for %s", branch)
	}
	if err := rs.Error(); err != nil {
		return err
	}
	for _, cs := range rs.CommandStatuses {
		if cs.ReferenceName == branch {
			return nil
		}
	}
	return fmt.Errorf("remote's report does not name %s", branch)
}

// maxRemoteText bounds what is kept of the remote's side-channel messages.
const maxRemoteText = 1024

// remoteText keeps the start of what a remote says during a push (a hook's
// refusal: "GH006: Protected branch update failed ..."), as one line
// without control characters.
type remoteText struct{ b []byte }

func (t *remoteText) Write(p []byte) (int, error) {
	for _, c := range p {
		if len(t.b) >= maxRemoteText {
			break
		}
		switch {
		case c == '\n' || c == '\r' || c == '\t':
			if n := len(t.b); n > 0 && t.b[n-1] != ' ' {
				t.b = append(t.b, ' ')
			}
		case c >= 0x20 && c != 0x7f:
			t.b = append(t.b, c)
		}
	}
	return len(p), nil
}

func (t *remoteText) String() string { return strings.TrimSpace(string(t.b)) }
