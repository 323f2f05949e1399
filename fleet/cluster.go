package fleet

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// The adapters satisfy promote's interfaces.
var (
	_ promote.Cluster = (*Cluster)(nil)
	_ promote.Git     = (*Git)(nil)
)

// Cluster is promote.Cluster for one bundle, on top of the applier.
// It resolves a release reference to its render in the agent's store and
// remembers what it applied to each color (the objects as the API server
// returned them), so that a verification or a flip acts on exactly that.
// Applies, waits, flips and scaling act as the bundle's ServiceAccount
// (tenancy.applierFor); observing reads as the agent.
type Cluster struct {
	ten    *Tenancy
	store  *Store
	bundle string
	checks *check.Runner // shared by every bundle; Check copies it

	mu      sync.Mutex
	applied map[string]appliedColor // by color
	plan    *plannedFlip            // made during the newest Verify
	cur     *decoded                // the release in flight, decoded once
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

// NewCluster is the cluster adapter of bundle: renders come from store,
// identities from ten, and checks run with a copy of checks.
func NewCluster(ten *Tenancy, store *Store, bundle string, checks *check.Runner) *Cluster {
	return &Cluster{ten: ten, store: store, bundle: bundle, checks: checks, applied: map[string]appliedColor{}}
}

// decoded is the render of the release in flight, decoded from the store
// once: Deploy, the flip plan, Route and Check share it.
type decoded struct {
	ref    promote.ReleaseRef
	color  string
	bundle *render.Bundle
	res    *render.Result
}

// get is ref's render for color: the one decoded for the release in
// flight, else decoded now (and kept for the steps that follow).
func (c *Cluster) get(ref promote.ReleaseRef, color string) (*render.Bundle, *render.Result, error) {
	c.mu.Lock()
	d := c.cur
	c.mu.Unlock()
	if d != nil && d.ref == ref && d.color == color {
		return d.bundle, d.res, nil
	}
	b, res, err := c.store.Get(c.bundle, ref, color)
	if err != nil {
		return nil, nil, err
	}
	c.mu.Lock()
	c.cur = &decoded{ref: ref, color: color, bundle: b, res: res}
	c.mu.Unlock()
	return b, res, nil
}

// drop forgets the decoded render once traffic moved (the store keeps the
// compact copy for the next flip back or resync).
func (c *Cluster) drop() {
	c.mu.Lock()
	c.cur = nil
	c.mu.Unlock()
}

// acting is the Applier that acts for the newest bundle.yaml of the bundle.
func (c *Cluster) acting() (*applier.Applier, *render.Bundle, error) {
	b := c.store.Spec(c.bundle)
	if b == nil {
		return nil, nil, fmt.Errorf("bundle %s: no bundle.yaml seen", c.bundle)
	}
	ap, err := c.ten.ApplierFor(b)
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
func (c *Cluster) namespace(color string) string {
	c.mu.Lock()
	a, ok := c.applied[color]
	c.mu.Unlock()
	if ok {
		return a.namespace
	}
	if b := c.store.Spec(c.bundle); b != nil {
		return b.Spec.Namespace
	}
	return ""
}

// Observe reads which color the stable twins select and what each color runs.
func (c *Cluster) Observe(ctx context.Context) (promote.View, error) {
	obs, err := c.ten.Own().Observe(ctx, c.namespace(""), c.bundle)
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
func (c *Cluster) Deploy(ctx context.Context, color string, ref promote.ReleaseRef, o promote.DeployOptions) (fmt.Stringer, error) {
	b, res, err := c.get(ref, color)
	if err != nil {
		return nil, err
	}
	ap, err := c.ten.ApplierFor(b)
	if err != nil {
		return nil, err
	}
	if o.Shared && len(res.Shared) > 0 {
		if _, err := ap.Apply(ctx, applier.Set{Bundle: b.Name, Namespace: b.Spec.Namespace, Objects: res.Shared, Adopt: b.Spec.Adopt}); err != nil {
			// Name the directory the objects were rendered from.
			return nil, classify(c.ten.As(b, fmt.Errorf("bundle %s shared objects (%s): %w", b.Name, path.Join(b.Dir, b.Spec.Shared), err)))
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
		return cs, classify(c.ten.As(b, fmt.Errorf("bundle %s color %s (%s): %w", b.Name, color, path.Join(b.Dir, b.Spec.Path), err)))
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
func (c *Cluster) objects(ref promote.ReleaseRef, color string) ([]*unstructured.Unstructured, error) {
	c.mu.Lock()
	a, ok := c.applied[color]
	c.mu.Unlock()
	if ok && a.ref == ref {
		return a.objects, nil
	}
	_, res, err := c.get(ref, color)
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
func (c *Cluster) Verify(ctx context.Context, color string, ref promote.ReleaseRef, timeout time.Duration) (fmt.Stringer, error) {
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
			err = c.ten.As(b, err) // a forbidden watch, not the workloads' health
		}
		return verified{report: rep}, classify(err)
	}
	return verified{report: rep, took: time.Since(start)}, nil
}

// Watch re-checks the color's health until d has passed; a workload that
// fails (crash loop, pull errors) or stays unready for long is a degradation.
func (c *Cluster) Watch(ctx context.Context, color string, ref promote.ReleaseRef, d time.Duration) error {
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
func (c *Cluster) Route(ctx context.Context, color string, ref promote.ReleaseRef) error {
	b, res, err := c.get(ref, color)
	if err != nil {
		return err
	}
	if len(res.Twins) == 0 {
		return nil // a bundle without Services has no traffic to move
	}
	ap, err := c.ten.ApplierFor(b)
	if err != nil {
		return err
	}
	if p := c.takePlan(ref, color); p != nil {
		err = ap.FlipPlanned(ctx, p)
	} else {
		err = ap.Flip(ctx, res.Twins, color, applier.FlipOptions{Adopt: b.Spec.Adopt})
	}
	if err == nil {
		c.drop()
	}
	return classify(c.ten.As(b, err))
}

// startWatchAhead starts the health watches for the release about to be
// applied to color, so that Verify finds them in sync (applier.HealthWatch).
// They outlive Deploy's ctx, up to watchAheadLimit; the next Deploy or
// Verify stops them.
func (c *Cluster) startWatchAhead(ctx context.Context, ap *applier.Applier, color string, ref promote.ReleaseRef, objs []*unstructured.Unstructured) {
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
func (c *Cluster) takeWatchAhead(ref promote.ReleaseRef, color string) *applier.HealthWatch {
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
func (c *Cluster) planFlip(ctx context.Context, color string, ref promote.ReleaseRef) {
	c.mu.Lock()
	c.plan = nil
	c.mu.Unlock()
	b, res, err := c.get(ref, color)
	if err != nil || len(res.Twins) == 0 {
		return
	}
	ap, err := c.ten.ApplierFor(b)
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
func (c *Cluster) takePlan(ref promote.ReleaseRef, color string) *applier.FlipPlan {
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
func (c *Cluster) Scale(ctx context.Context, color string, up bool) error {
	ap, b, err := c.acting()
	if err != nil {
		return err
	}
	return classify(c.ten.As(b, ap.ScaleColor(ctx, c.namespace(color), c.bundle, color, up)))
}
