package main

import (
	"context"
	"errors"
	"path"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// removeGone admits the removal of the bundles whose bundle.yaml left the
// branch: not found at this tip under their name, and not broken in their
// directory (a broken bundle is failing, not removed; a moved one is found
// under its name).
func (d *drivers) removeGone(ctx context.Context, disc render.Discovery) {
	present, broken := map[string]bool{}, map[string]bool{}
	for _, b := range disc.Bundles {
		present[b.Name] = true
	}
	for _, br := range disc.Broken {
		broken[path.Clean(br.Dir)] = true
	}
	d.mu.Lock()
	var gone []*bundleRun
	for name, run := range d.bundles {
		if !present[name] && !broken[path.Clean(run.dir)] {
			gone = append(gone, run)
		}
	}
	d.mu.Unlock()
	empty := len(disc.Bundles)+len(disc.Broken) == 0
	var kept int
	var why string
	for _, run := range gone {
		v := promote.Admit(promote.Facts{Gone: true, Mine: true, EmptyTip: empty, AllowEmpty: d.cfg.AllowEmpty})
		switch v.Kind {
		case promote.Remove:
			d.remove(ctx, run)
		default:
			kept, why = kept+1, v.Detail
		}
	}
	if kept > 0 {
		d.log.Warn().Str("phase", "prune").Int("bundles", kept).Msg(why)
	}
}

// remove stops a gone bundle's driver and deletes what tandem applied for
// it (fleet.DeleteBundle). On an error the bundle stays known (driver
// stopped) and the next tip retries.
func (d *drivers) remove(ctx context.Context, run *bundleRun) {
	log := d.log.With().Str("bundle", run.name).Str("phase", "prune").Logger()
	run.stop()
	<-run.done
	cs, err := fleet.DeleteBundle(ctx, d.parts.ten, d.parts.store, run.name)
	switch {
	case errors.Is(err, fleet.ErrNeverRendered):
		log.Warn().Msg("bundle left the repository before it was ever rendered; nothing to prune")
	case err != nil:
		log.Error().Err(err).Msg("cannot prune the removed bundle; will retry on the next commit")
		return
	default:
		log.Info().Int("deleted", cs.Count(applier.Pruned)).Str("detail", cs.String()).Msg("bundle removed from Git: its objects were deleted")
		d.m.pruned.WithLabelValues(run.name).Inc()
	}
	d.mu.Lock()
	delete(d.bundles, run.name)
	d.mu.Unlock()
	d.parts.store.Forget(run.name)
	d.m.dropLive(run.name)
}
