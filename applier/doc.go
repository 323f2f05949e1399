// Package applier is the agent's only contact with the cluster: server-side
// apply with a dry run first, inventories and pruning, health by kstatus rules
// with fail-fast pod signals, and the all-at-once traffic flip of a bundle's
// stable Services.
//
// It knows nothing of Git, does not render, and decides nothing: it returns typed results
// (ChangeSet, HealthReport, Observed) and typed errors for the caller to act
// on. A *HealthError is a verdict on the objects; a *TransientError (and
// anything IsTransient recognises) means the API server could not be asked
// and the same call may be retried; a cancelled context is returned as is.
//
// The flow for one color of a bundle:
//
//	cs, err := a.Apply(ctx, applier.Set{Bundle: "shop", Color: "green", Namespace: "shop", Objects: objs})
//	rep, err := a.WaitHealthy(ctx, cs.Objects, applier.DefaultWaitOptions())
//	err = a.Flip(ctx, twins, "green", applier.FlipOptions{}) // all stable twins, or none
//	err = a.ScaleColor(ctx, "shop", "shop", "blue", false)
//	obs, err := a.Observe(ctx, "shop", "shop") // after a restart: who is live
//	cs, err = a.DeleteBundle(ctx, "shop", "shop", [2]string{"blue", "green"}, stillRendered) // bundle left Git (never a Namespace)
//
// Files:
//
//   - applier.go: Applier, Options and New (one HTTP client, one rate limiter);
//   - apply.go: Apply, with the whole-set dry run and the prune;
//   - memo.go: what the last apply left behind, so untouched objects cost
//     no request;
//   - inventory.go: the inventory ConfigMaps (InventoryName);
//   - ownership.go: every object belongs to one bundle; refusals of
//     another bundle's objects, unowned objects (without adopt) and
//     reserved inventory names;
//   - shared.go: shared objects several bundles render identically, with
//     one shared.tandem.dev/<bundle> annotation each;
//   - diff.go: Diff, what Apply would change, without changing anything
//     (tandem-agent diff), and Sanitize;
//   - health.go: WaitHealthy and WatchHealth (watches started before the
//     apply and handed to the wait), telling pods of the current template
//     by the release digest on it;
//   - watch.go: the list-then-watch sources health waits read;
//   - readiness.go: a Deployment judged Current from its pods when its
//     status lags them;
//   - job.go: RunJob, one run of a check's Job;
//   - traffic.go: Flip, and PlanFlip/FlipPlanned (the stable twins read and
//     dry-run during verification, applied at once after it);
//   - scale.go: ScaleColor; observe.go: Observe; delete.go: DeleteBundle;
//   - errors.go: TransientError, IsTransient, HealthError and Failure.
//
// Field managers: "tandem/<bundle>" for Apply and the inventories,
// "tandem/<bundle>/traffic" for the stable twins (contract.FieldManagerFor,
// contract.TrafficFieldManagerFor), "tandem/scale" for ScaleColor. Every
// object belongs to one bundle (ownership.go): Apply and Flip refuse, before
// changing anything, an object another bundle owns. Apply adds nothing to the objects it is
// given; the labels and annotations come from render (their names are in
// package contract).
package applier
