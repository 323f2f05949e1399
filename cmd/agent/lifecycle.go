package main

import (
	"context"
	"path"
	"strings"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// refuse handles a bundle whose bundle.yaml cannot be used at this tip: it
// is that bundle's failure, never a reason to hold up another. A bundle the
// agent already runs gets the error as a failed candidate (its driver
// reverts or holds by the last valid policy); a new one is only reported.
func (a *agent) refuse(ctx context.Context, snap gitsync.Snapshot, br render.Broken) {
	log := a.log.With().Str("file", br.File).Str("commit", contract.Short(snap.Commit)).Logger()
	log.Error().Err(br.Err).Str("phase", "discover").Msg("bundle refused at this commit; the other bundles go on")
	a.m.refused.WithLabelValues(br.File).Inc()
	run := a.runIn(br.Dir)
	if run == nil || run.seen == snap.Commit {
		return
	}
	spec := a.releases.spec(run.name)
	if spec == nil {
		return
	}
	if run.seen != "" {
		if changed, err := a.bundleChanged(ctx, spec, run.seen, snap.Commit); err != nil || !changed {
			return
		}
	}
	c := promote.Candidate{Commit: snap.Commit, Subject: a.subject(ctx, run.seen, snap.Commit), Policy: policyOf(spec), RenderErr: br.Err}
	run.seen = snap.Commit
	run.driver.Offer(c)
	a.offered++
}

// runIn is the driver of the bundle in dir, if any.
func (a *agent) runIn(dir string) *bundleRun {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, run := range a.bundles {
		if path.Clean(run.dir) == path.Clean(dir) {
			return run
		}
	}
	return nil
}

// removeGone prunes the bundles whose bundle.yaml left the branch: not
// found at this tip under their name, and not broken in their directory (a
// broken bundle is failing, not removed; a moved one is found under its
// name). A tip with no bundle at all prunes nothing unless --allow-empty.
func (a *agent) removeGone(ctx context.Context, disc render.Discovery) {
	present, broken := map[string]bool{}, map[string]bool{}
	for _, b := range disc.Bundles {
		present[b.Name] = true
	}
	for _, br := range disc.Broken {
		broken[path.Clean(br.Dir)] = true
	}
	a.mu.Lock()
	var gone []*bundleRun
	for name, run := range a.bundles {
		if !present[name] && !broken[path.Clean(run.dir)] {
			gone = append(gone, run)
		}
	}
	a.mu.Unlock()
	if len(gone) == 0 {
		return
	}
	if len(disc.Bundles)+len(disc.Broken) == 0 && !a.cfg.AllowEmpty {
		a.log.Warn().Str("phase", "prune").Int("bundles", len(gone)).
			Msg("this commit has no bundles at all; pruning nothing (start the agent with --allow-empty to allow it)")
		return
	}
	for _, run := range gone {
		a.remove(ctx, run)
	}
}

// remove stops a gone bundle's driver and deletes what tandem applied for
// it: both colors, its stable Services, its inventories, and its shared
// objects unless another bundle still renders them. Namespaces stay. On an
// error the bundle stays known (driver stopped) and the next tip retries.
func (a *agent) remove(ctx context.Context, run *bundleRun) {
	log := a.log.With().Str("bundle", run.name).Str("phase", "prune").Logger()
	run.stop()
	<-run.done
	spec := a.releases.spec(run.name)
	if spec == nil {
		log.Warn().Msg("bundle left the repository before it was ever rendered; nothing to prune")
		a.forget(run.name)
		return
	}
	keep := a.sharedElsewhere(run.name)
	ap, err := a.ten.applierFor(spec)
	if err != nil {
		log.Error().Err(err).Msg("cannot prune the removed bundle; will retry on the next commit")
		return
	}
	cs, err := ap.DeleteBundle(ctx, spec.Spec.Namespace, run.name, spec.Spec.Colors, func(r applier.ObjectRef) bool { return keep[refKey(r)] })
	if err = a.ten.as(spec, err); err != nil {
		log.Error().Err(err).Msg("cannot prune the removed bundle; will retry on the next commit")
		return
	}
	log.Info().Int("deleted", cs.Count(applier.Pruned)).Str("detail", cs.String()).Msg("bundle removed from Git: its objects were deleted")
	a.m.pruned.WithLabelValues(run.name).Inc()
	a.forget(run.name)
}

// forget drops a removed bundle from the agent's state.
func (a *agent) forget(name string) {
	a.mu.Lock()
	delete(a.bundles, name)
	a.mu.Unlock()
	a.releases.forget(name)
	a.m.dropLive(name)
}

// sharedElsewhere is the set of shared (uncolored) objects that bundles
// other than name render, by refKey.
func (a *agent) sharedElsewhere(name string) map[string]bool {
	keep := map[string]bool{}
	for _, other := range a.releases.names() {
		if other == name {
			continue
		}
		for _, u := range a.releases.shared(other) {
			gvk := u.GroupVersionKind()
			keep[refKey(applier.ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()})] = true
		}
	}
	return keep
}

// refKey identifies an object across API versions.
func refKey(r applier.ObjectRef) string {
	return strings.Join([]string{r.Group, r.Kind, r.Namespace, r.Name}, "/")
}
