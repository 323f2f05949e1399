package main

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// The adapters satisfy promote's interfaces.
var (
	_ promote.Cluster = (*bundleCluster)(nil)
	_ promote.Git     = (*bundleGit)(nil)
)

// bundleCluster is promote.Cluster for one bundle, on top of the applier.
// It resolves a release reference to its render in the agent's store and
// remembers what it applied to each color (the objects as the API server
// returned them), so that a verification or a flip acts on exactly that.
// Applies, waits, flips and scaling act as the bundle's ServiceAccount
// (tenancy.applierFor); observing reads as the agent.
type bundleCluster struct {
	ten    *tenancy
	store  *releaseStore
	bundle string
	checks *check.Runner // shared by every bundle; Check copies it

	mu      sync.Mutex
	applied map[string]appliedColor // by color
	plan    *plannedFlip            // made during the newest Verify
	ahead   *watchAhead             // started by the newest Deploy
}

// watchAhead is a health wait's watches, started before the apply of the
// release whose health Verify waits for next.
type watchAhead struct {
	ref   promote.ReleaseRef
	color string
	w     *applier.HealthWatch
	limit *time.Timer // stops w at watchAheadLimit
}

// stop ends the watches and their time limit (whose closure would keep
// them, and what they cached, until it fired).
func (a *watchAhead) stop() {
	a.limit.Stop()
	a.w.Stop()
}

// watchAheadLimit bounds how long watches started by a Deploy wait for
// their Verify (one that never comes: a failed apply, a newer commit).
const watchAheadLimit = 10 * time.Minute

// plannedFlip is a Flip dry-run while its release was being verified.
type plannedFlip struct {
	ref   promote.ReleaseRef
	color string
	plan  *applier.FlipPlan
}

// appliedColor is what a color was last given.
type appliedColor struct {
	ref       promote.ReleaseRef
	namespace string
	objects   []*unstructured.Unstructured
}

func newBundleCluster(ten *tenancy, store *releaseStore, bundle string, checks *check.Runner) *bundleCluster {
	return &bundleCluster{ten: ten, store: store, bundle: bundle, checks: checks, applied: map[string]appliedColor{}}
}

// acting is the Applier that acts for the newest bundle.yaml of the bundle.
func (c *bundleCluster) acting() (*applier.Applier, *render.Bundle, error) {
	b := c.store.spec(c.bundle)
	if b == nil {
		return nil, nil, fmt.Errorf("bundle %s: no bundle.yaml seen", c.bundle)
	}
	ap, err := c.ten.applierFor(b)
	return ap, b, err
}

// classify turns applier errors into promote's vocabulary: unreachable is
// transient; anything else (a *applier.HealthError, intact) fails the release.
func classify(err error) error {
	if err != nil && applier.IsTransient(err) {
		return promote.Transient(err)
	}
	return err
}

// namespace is where the bundle's colors live (the newest bundle.yaml's).
func (c *bundleCluster) namespace(color string) string {
	c.mu.Lock()
	a, ok := c.applied[color]
	c.mu.Unlock()
	if ok {
		return a.namespace
	}
	if b := c.store.spec(c.bundle); b != nil {
		return b.Spec.Namespace
	}
	return ""
}

// Observe reads which color the stable twins select and what each color runs.
func (c *bundleCluster) Observe(ctx context.Context) (promote.View, error) {
	obs, err := c.ten.own.Observe(ctx, c.namespace(""), c.bundle)
	if err != nil {
		return promote.View{}, classify(err)
	}
	v := promote.View{Live: obs.Live, Mixed: obs.Mixed, Colors: map[string]promote.ColorView{}}
	for color, cs := range obs.Colors {
		v.Colors[color] = promote.ColorView{Commit: cs.Commit, Digest: cs.Digest, Healthy: cs.Healthy,
			ScaledDown: cs.ScaledDown, Replicas: int(cs.Replicas), Ready: int(cs.Ready)}
	}
	return v, nil
}

// Deploy applies the shared objects (when o.Shared is set), then ref's
// render for color, pruning what the color no longer has. When a
// verification follows (o.Verify), its health watches start first.
func (c *bundleCluster) Deploy(ctx context.Context, color string, ref promote.ReleaseRef, o promote.DeployOptions) (fmt.Stringer, error) {
	b, res, err := c.store.get(c.bundle, ref, color)
	if err != nil {
		return nil, err
	}
	ap, err := c.ten.applierFor(b)
	if err != nil {
		return nil, err
	}
	if o.Shared && len(res.Shared) > 0 {
		if _, err := ap.Apply(ctx, applier.Set{Bundle: b.Name, Namespace: b.Spec.Namespace, Objects: res.Shared, Adopt: b.Spec.Adopt}); err != nil {
			// Name the directory the objects were rendered from.
			return nil, classify(c.ten.as(b, fmt.Errorf("bundle %s shared objects (%s): %w", b.Name, path.Join(b.Dir, b.Spec.Shared), err)))
		}
	}
	if o.Verify {
		c.startWatchAhead(ctx, ap, color, ref, res.Objects)
	} else {
		c.takeWatchAhead(promote.ReleaseRef{}, "") // stops any: no Verify is coming for them
	}
	cs, err := ap.Apply(ctx, applier.Set{Bundle: b.Name, Color: color, Namespace: b.Spec.Namespace, Objects: res.Objects, Adopt: b.Spec.Adopt})
	if err != nil {
		c.takeWatchAhead(promote.ReleaseRef{}, "")
		return cs, classify(c.ten.as(b, fmt.Errorf("bundle %s color %s (%s): %w", b.Name, color, path.Join(b.Dir, b.Spec.Path), err)))
	}
	c.mu.Lock()
	c.applied[color] = appliedColor{ref: ref, namespace: b.Spec.Namespace, objects: withoutManagedFields(cs.Objects)}
	c.mu.Unlock()
	return cs, nil
}

// withoutManagedFields copies objs without metadata.managedFields, which
// the API server returns with every apply: nested maps often larger than the
// rest of the object, and nothing that reads the kept objects (verification)
// looks at them. The copy is shallow: it shares everything else with objs.
func withoutManagedFields(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(objs))
	for i, o := range objs {
		meta, _ := o.Object["metadata"].(map[string]any)
		if _, ok := meta["managedFields"]; !ok {
			out[i] = o
			continue
		}
		m := make(map[string]any, len(meta))
		for k, v := range meta {
			if k != "managedFields" {
				m[k] = v
			}
		}
		u := &unstructured.Unstructured{Object: make(map[string]any, len(o.Object))}
		for k, v := range o.Object {
			u.Object[k] = v
		}
		u.Object["metadata"] = m
		out[i] = u
	}
	return out
}

// objects are the objects of ref in color: as applied, or as rendered (a
// color this process has not applied, after a restart).
func (c *bundleCluster) objects(ref promote.ReleaseRef, color string) ([]*unstructured.Unstructured, error) {
	c.mu.Lock()
	a, ok := c.applied[color]
	c.mu.Unlock()
	if ok && a.ref == ref {
		return a.objects, nil
	}
	_, res, err := c.store.get(c.bundle, ref, color)
	if err != nil {
		return nil, err
	}
	return res.Objects, nil
}

// verified is the evidence of a healthy color.
type verified struct {
	report applier.HealthReport
	took   time.Duration // zero: the wait failed
}

func (v verified) String() string {
	if v.took == 0 {
		return v.report.Summary()
	}
	return fmt.Sprintf("%s; verified in %s", v.report.Summary(), v.took.Round(time.Second))
}

// Verify waits until every workload of the color is healthy.
func (c *bundleCluster) Verify(ctx context.Context, color string, ref promote.ReleaseRef, timeout time.Duration) (fmt.Stringer, error) {
	objs, err := c.objects(ref, color)
	if err != nil {
		return nil, err
	}
	ap, b, err := c.acting()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	o := applier.DefaultWaitOptions()
	o.Timeout = timeout
	planned := make(chan struct{})
	go func() {
		defer close(planned)
		c.planFlip(ctx, color, ref)
	}()
	var rep applier.HealthReport
	if w := c.takeWatchAhead(ref, color); w != nil {
		rep, err = w.Wait(ctx, objs, o)
	} else {
		rep, err = ap.WaitHealthy(ctx, objs, o)
	}
	<-planned
	if err != nil {
		var he *applier.HealthError
		if !errors.As(err, &he) {
			err = c.ten.as(b, err) // a forbidden watch, not the workloads' health
		}
		return verified{report: rep}, classify(err)
	}
	return verified{report: rep, took: time.Since(start)}, nil
}

// Watch re-checks the color's health until d has passed; a workload that
// fails (crash loop, pull errors) or stays unready for long is a degradation.
func (c *bundleCluster) Watch(ctx context.Context, color string, ref promote.ReleaseRef, d time.Duration) error {
	end := time.Now().Add(d)
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	for {
		left := time.Until(end)
		if left <= 0 {
			return nil
		}
		if _, err := c.Verify(ctx, color, ref, max(left, 5*time.Second)); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Route points every stable twin of the bundle at color.
func (c *bundleCluster) Route(ctx context.Context, color string, ref promote.ReleaseRef) error {
	b, res, err := c.store.get(c.bundle, ref, color)
	if err != nil {
		return err
	}
	if len(res.Twins) == 0 {
		return nil // a bundle without Services has no traffic to move
	}
	ap, err := c.ten.applierFor(b)
	if err != nil {
		return err
	}
	if p := c.takePlan(ref, color); p != nil {
		return classify(c.ten.as(b, ap.FlipPlanned(ctx, p)))
	}
	return classify(c.ten.as(b, ap.Flip(ctx, res.Twins, color, applier.FlipOptions{Adopt: b.Spec.Adopt})))
}

// startWatchAhead starts the health watches for the release about to be
// applied to color, so that Verify finds them in sync (applier.HealthWatch).
// They outlive Deploy's ctx, up to watchAheadLimit; the next Deploy or
// Verify stops them.
func (c *bundleCluster) startWatchAhead(ctx context.Context, ap *applier.Applier, color string, ref promote.ReleaseRef, objs []*unstructured.Unstructured) {
	var ahead *watchAhead
	if w, err := ap.WatchHealth(context.WithoutCancel(ctx), objs); err == nil {
		ahead = &watchAhead{ref: ref, color: color, w: w, limit: time.AfterFunc(watchAheadLimit, w.Stop)}
	}
	c.mu.Lock()
	old := c.ahead
	c.ahead = ahead
	c.mu.Unlock()
	if old != nil {
		old.stop()
	}
}

// takeWatchAhead returns the watches started for (ref, color), if any; any
// others are stopped.
func (c *bundleCluster) takeWatchAhead(ref promote.ReleaseRef, color string) *applier.HealthWatch {
	c.mu.Lock()
	a := c.ahead
	c.ahead = nil
	c.mu.Unlock()
	if a == nil {
		return nil
	}
	if a.ref != ref || a.color != color {
		a.stop()
		return nil
	}
	a.limit.Stop() // Verify's wait stops the watches when it ends
	return a.w
}

// planFlip dry-runs the flip to color while the release is verified, so
// that Route moves traffic with one round of requests once it is healthy
// (applier.FlipPlanned). Any error leaves no plan: Route then does the
// whole Flip and reports it.
func (c *bundleCluster) planFlip(ctx context.Context, color string, ref promote.ReleaseRef) {
	c.mu.Lock()
	c.plan = nil
	c.mu.Unlock()
	b, res, err := c.store.get(c.bundle, ref, color)
	if err != nil || len(res.Twins) == 0 {
		return
	}
	ap, err := c.ten.applierFor(b)
	if err != nil {
		return
	}
	p, err := ap.PlanFlip(ctx, res.Twins, color, applier.FlipOptions{Adopt: b.Spec.Adopt})
	if err != nil {
		return
	}
	c.mu.Lock()
	c.plan = &plannedFlip{ref: ref, color: color, plan: p}
	c.mu.Unlock()
}

// takePlan returns and forgets the plan for (ref, color), if Verify made one.
func (c *bundleCluster) takePlan(ref promote.ReleaseRef, color string) *applier.FlipPlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.plan
	c.plan = nil
	if p == nil || p.ref != ref || p.color != color {
		return nil
	}
	return p.plan
}

// Scale takes a color to zero replicas (objects kept) or back.
func (c *bundleCluster) Scale(ctx context.Context, color string, up bool) error {
	ap, b, err := c.acting()
	if err != nil {
		return err
	}
	return classify(c.ten.as(b, ap.ScaleColor(ctx, c.namespace(color), c.bundle, color, up)))
}

// bundleGit is promote.Git for one bundle, on top of gitsync.
type bundleGit struct {
	repo   *gitsync.Repo
	store  *releaseStore // the bundle's directory and what each render read
	bundle string
}

// Write commits release.yaml (and a revert's restored files) on the tip of
// the branch; a revert is abandoned when a newer commit changed the bundle.
func (g *bundleGit) Write(ctx context.Context, rec promote.Commit) (string, int, error) {
	spec := g.store.spec(g.bundle)
	if spec == nil {
		return "", 0, fmt.Errorf("bundle %s: no bundle.yaml seen", g.bundle)
	}
	dir := strings.TrimSuffix(spec.Dir, "/")
	data, err := rec.Release.Marshal()
	if err != nil {
		return "", 0, fmt.Errorf("%s: %w", path.Join(dir, releaseFile), err)
	}
	file := path.Join(dir, releaseFile)
	w, err := g.repo.Write(ctx, func(ctx context.Context, t *gitsync.Tree) (string, error) {
		msg, data := rec.Message, keepSoaked(t, file, rec.Release, spec.Spec.Colors, data) // stages.go, before a revert restores files
		if rv := rec.Revert; rv != nil {
			// Every input of the failing render and of the restored one:
			// the tip then renders the live release again.
			ps := append(gitsync.Paths{dir + "/"}, g.store.inputsAt(g.bundle, rv.Failing)...)
			ps = append(ps, g.store.inputsAt(g.bundle, rv.From)...)
			// release.yaml is the agent's own file: its promotion commits do not count.
			changed, err := t.ChangedSince(rv.Failing, ps, path.Join(dir, releaseFile))
			if err != nil {
				return "", err
			}
			if changed {
				return "", gitsync.ErrAbandon // a newer human change to the bundle wins
			}
			restored, err := t.Restore(ps, rv.From)
			if err != nil {
				return "", err
			}
			restored = slices.DeleteFunc(restored, func(p string) bool { return p == path.Join(dir, releaseFile) })
			readers := map[string][]string{}
			for _, p := range restored {
				readers[p] = g.store.readers(p, g.bundle)
			}
			msg = promote.WithRestored(msg, restored, readers)
		}
		return msg, t.WriteFile(file, data)
	})
	switch {
	case errors.Is(err, gitsync.ErrAbandon):
		return "", 0, promote.ErrSuperseded
	case err != nil && !errors.Is(err, gitsync.ErrNothingToCommit):
		return "", 0, err
	}
	return w.Commit, w.Attempts, nil
}
