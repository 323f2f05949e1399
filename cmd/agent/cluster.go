package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/render"
)

// cluster performs the cluster effects of one agent: it applies rendered
// colors, waits for their health and moves traffic, through the applier. It
// remembers the last render of each bundle's colors so that a verification
// or a flip back acts on exactly what was applied; after a restart it
// re-renders a color from the commit the cluster says that color runs.
type cluster struct {
	ap *applier.Applier
	// renderAt renders bundle at commit for color (used after a restart).
	renderAt func(ctx context.Context, b *render.Bundle, commit, color string) (*render.Result, error)

	mu      sync.Mutex
	applied map[string]map[string]colorRun // bundle → color → what was applied
}

// colorRun is one applied color of a bundle.
type colorRun struct {
	res     *render.Result
	objects []*unstructured.Unstructured // as the server returned them
}

func newCluster(ap *applier.Applier, renderAt func(context.Context, *render.Bundle, string, string) (*render.Result, error)) *cluster {
	return &cluster{ap: ap, renderAt: renderAt, applied: map[string]map[string]colorRun{}}
}

// deploy applies the shared objects (when shared is set), then res's color
// (pruning what the color no longer has).
func (c *cluster) deploy(ctx context.Context, b *render.Bundle, res *render.Result, shared bool) (applier.ChangeSet, error) {
	if shared && len(res.Shared) > 0 {
		if _, err := c.ap.Apply(ctx, applier.Set{Bundle: b.Name, Namespace: b.Spec.Namespace, Objects: res.Shared}); err != nil {
			return applier.ChangeSet{}, fmt.Errorf("bundle %s shared: %w", b.Name, err)
		}
	}
	cs, err := c.ap.Apply(ctx, applier.Set{Bundle: b.Name, Color: res.Color, Namespace: b.Spec.Namespace, Objects: res.Objects})
	if err != nil {
		return cs, fmt.Errorf("bundle %s color %s: %w", b.Name, res.Color, err)
	}
	c.remember(b.Name, res.Color, colorRun{res: res, objects: cs.Objects})
	return cs, nil
}

func (c *cluster) remember(bundle, color string, run colorRun) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.applied[bundle] == nil {
		c.applied[bundle] = map[string]colorRun{}
	}
	c.applied[bundle][color] = run
}

// run returns what runs in a color: the remembered render, or one made
// from the commit the cluster's annotations name.
func (c *cluster) run(ctx context.Context, b *render.Bundle, color string) (colorRun, error) {
	c.mu.Lock()
	run, ok := c.applied[b.Name][color]
	c.mu.Unlock()
	if ok {
		return run, nil
	}
	obs, err := c.ap.Observe(ctx, b.Spec.Namespace, b.Name)
	if err != nil {
		return colorRun{}, err
	}
	st, ok := obs.Colors[color]
	if !ok || st.Commit == "" {
		return colorRun{}, fmt.Errorf("bundle %s: color %s runs nothing tandem applied", b.Name, color)
	}
	res, err := c.renderAt(ctx, b, st.Commit, color)
	if err != nil {
		return colorRun{}, fmt.Errorf("bundle %s: re-render color %s at %s: %w", b.Name, color, short(st.Commit), err)
	}
	run = colorRun{res: res, objects: res.Objects}
	c.remember(b.Name, color, run)
	return run, nil
}

// verify waits until every workload of the color is healthy.
func (c *cluster) verify(ctx context.Context, b *render.Bundle, color string, timeout time.Duration) (applier.HealthReport, error) {
	run, err := c.run(ctx, b, color)
	if err != nil {
		return applier.HealthReport{}, err
	}
	o := applier.DefaultWaitOptions()
	o.Timeout = timeout
	return c.ap.WaitHealthy(ctx, run.objects, o)
}

// route points every stable twin of the bundle at color.
func (c *cluster) route(ctx context.Context, b *render.Bundle, color string) error {
	run, err := c.run(ctx, b, color)
	if err != nil {
		return err
	}
	if len(run.res.Twins) == 0 {
		return nil // a bundle without Services has no traffic to move
	}
	return c.ap.Flip(ctx, run.res.Twins, color)
}

// scale takes a color to zero replicas (objects kept) or back.
func (c *cluster) scale(ctx context.Context, b *render.Bundle, color string, up bool) error {
	return c.ap.ScaleColor(ctx, b.Spec.Namespace, b.Name, color, up)
}

// observe reads which color the twins select and what each color runs.
func (c *cluster) observe(ctx context.Context, b *render.Bundle) (applier.Observed, error) {
	return c.ap.Observe(ctx, b.Spec.Namespace, b.Name)
}
