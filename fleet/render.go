package fleet

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Renderer renders bundles into the Store: a candidate at the tip, and on a
// driver's start the releases release.yaml and the cluster say each color
// runs. Renders are checked against the tenancy before anything can be
// applied.
type Renderer struct {
	Store   *Store
	Tenancy *Tenancy
	// Repo checks out recorded releases whose inputs differ from the tip's.
	Repo *gitsync.Repo
	// Scratch is a directory for those checkouts.
	Scratch string
	// Options bound every render (AllowRemoteBases, limits, worker pool);
	// RepoRoot, Commit and Color are set per render.
	Options render.Options
	// LimitNames, when set, names each render limit as users set it (the
	// agent's flags) in the errors of renders over a limit.
	LimitNames map[render.Limit]string
}

// Run is one render of a bundle at a commit: the release it names in the
// Store, or why it failed.
type Run struct {
	Ref promote.ReleaseRef
	Err error
	// Charts are the Helm charts the render used (promote.Candidate.Charts).
	Charts []string
}

// Render renders b at snap for both colors (kustomize runs once) and keeps
// the result in the Store, with the files the render read (also when it
// failed) and b as the bundle's newest bundle.yaml.
func (r *Renderer) Render(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle) Run {
	r.Store.SetSpec(b) // the newest bundle.yaml, even when its render fails
	out, err := r.RenderIn(ctx, snap.Dir, snap.Commit, b)
	var re *render.Error
	switch {
	case err == nil:
		r.Store.SetInputs(b.Name, snap.Commit, out.Colors[b.Spec.Colors[0]].Inputs)
	case errors.As(err, &re):
		r.Store.SetInputs(b.Name, snap.Commit, re.Inputs)
	}
	if err != nil {
		return Run{Err: err}
	}
	first := out.Colors[b.Spec.Colors[0]]
	ref := promote.ReleaseRef{Commit: snap.Commit, Digest: first.Digest}
	r.Store.Put(ref, out)
	return Run{Ref: ref, Charts: chartNames(first.Charts)}
}

// chartNames are the charts of a render as the trail records them:
// "name@version", then the repository and digest of a remote chart.
func chartNames(cs []render.ChartSource) []string {
	var out []string
	for _, c := range cs {
		n := c.Name + "@" + c.Version
		if c.Repo != "" {
			n += " " + c.Repo
		}
		if c.Digest != "" {
			n += " " + c.Digest
		}
		out = append(out, n)
	}
	return out
}

// RenderIn renders b in the checkout dir for both colors, stamped with commit.
func (r *Renderer) RenderIn(ctx context.Context, dir, commit string, b *render.Bundle) (*Rendered, error) {
	o := r.Options
	o.RepoRoot, o.Commit = dir, commit
	results, err := render.RenderColors(ctx, b, o, b.Spec.Colors[0], b.Spec.Colors[1])
	var le *render.LimitError
	if errors.As(err, &le) && r.LimitNames[le.Limit] != "" {
		le.Limit = render.Limit(r.LimitNames[le.Limit])
	}
	if err == nil {
		err = r.Tenancy.Check(b, results[0])
	}
	if err != nil {
		return nil, err
	}
	out := &Rendered{Bundle: b, Colors: map[string]*render.Result{}}
	for _, res := range results {
		out.Colors[res.Color] = res
	}
	return out, nil
}

// Recorded stores the releases release.yaml and the cluster say the colors
// run, for a driver's recovery (resync, flip back, soak). A release whose
// inputs equal the tip's is rendered from the tip's checkout; others are
// checked out at their commit. What cannot be rendered is returned, one
// error per release: acting on it later fails with a clear error.
func (r *Renderer) Recorded(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, tip Run, rel *promote.Release, v promote.View) []error {
	var refs []promote.ReleaseRef
	if rel != nil {
		for _, cr := range rel.Colors {
			refs = append(refs, promote.ReleaseRef{Commit: cr.Commit, Digest: cr.Digest})
		}
	}
	for _, cv := range v.Colors {
		refs = append(refs, promote.ReleaseRef{Commit: cv.Commit, Digest: cv.Digest})
	}
	var errs []error
	for _, ref := range refs {
		if ref.Commit == "" || ref.Digest == "" || r.Store.Has(b.Name, ref) {
			continue
		}
		if err := r.release(ctx, snap, b, tip, ref); err != nil {
			errs = append(errs, fmt.Errorf("bundle %s release %s: %w", b.Name, contract.Short(ref.Commit), err))
		}
	}
	return errs
}

// release renders ref: from the tip's checkout when the tip renders the
// same digest, else from a checkout of ref's commit.
func (r *Renderer) release(ctx context.Context, snap gitsync.Snapshot, b *render.Bundle, tip Run, ref promote.ReleaseRef) error {
	dir := snap.Dir
	if tip.Err != nil || tip.Ref.Digest != ref.Digest {
		// Per bundle: drivers start concurrently, and two bundles
		// recovering the same commit must not share a checkout.
		dir = filepath.Join(r.Scratch, b.Name+"@"+ref.Commit)
		if _, err := r.Repo.Checkout(ctx, ref.Commit, dir); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	}
	out, err := r.RenderIn(ctx, dir, ref.Commit, b)
	if err != nil {
		return err
	}
	if got := out.Colors[b.Spec.Colors[0]].Digest; got != ref.Digest {
		return fmt.Errorf("bundle %s: %s renders %s now, not the recorded %s", b.Name, contract.Short(ref.Commit), got, ref.Digest)
	}
	r.Store.Put(ref, out)
	return nil
}
