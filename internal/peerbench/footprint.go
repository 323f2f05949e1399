package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// footprint measures each tool idle with n apps (a Deployment of one replica
// and its Service each), for every size: tandem with n one-app bundles,
// Flux with n Kustomizations on one GitRepository, Argo Rollouts with n
// Rollouts. Each size gets fresh processes; all three are sampled over the
// same window after a 5 s warm-up.
func (b *bench) footprint(ctx context.Context) error {
	for _, n := range b.cfg.Sizes {
		logf("idle footprint with %d apps", n)
		if err := b.footprintSize(ctx, n); err != nil {
			return fmt.Errorf("%d apps: %w", n, err)
		}
	}
	return nil
}

func (b *bench) footprintSize(ctx context.Context, n int) error {
	b.stopAll() // the processes of earlier steps
	tools := map[string][]*proc{}
	live := map[string]time.Duration{}

	// tandem
	start := time.Now()
	remote, err := testenv.NewRemote(filepath.Join(b.work, fmt.Sprintf("fp%d.git", n)))
	if err != nil {
		return err
	}
	files := map[string]string{}
	for i := 0; i < n; i++ {
		for p, s := range tandemBundle("bundles", fmt.Sprintf("fp%d-%d", n, i), [][2]string{{"app", "example/app:v1"}}, 1) {
			files[p] = s
		}
	}
	if _, err := remote.Seed(files, fmt.Sprintf("%d bundles", n)); err != nil {
		return err
	}
	agent, _, err := b.startAgent(ctx, fmt.Sprintf("tandem-fp%d", n), "--repo", "file://"+remote.Path)
	if err != nil {
		return err
	}
	if _, err := testenv.WaitAgentCommits(ctx, remote.Path, "main", n, 20*time.Minute); err != nil {
		return fmt.Errorf("%w\n%s", err, agent.logTail())
	}
	tools["tandem"] = []*proc{agent}
	live["tandem"] = time.Since(start)

	// Flux
	start = time.Now()
	fns := fmt.Sprintf("fluxfp%d", n)
	flux, err := b.startFlux(ctx, fns)
	if err != nil {
		return err
	}
	files = map[string]string{}
	var ks []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("app%d", i)
		ks = append(ks, name)
		for p, s := range fluxApp("apps/"+name, [][2]string{{name, "example/app:v1"}}, 1) {
			files[p] = s
		}
	}
	if _, err := b.fluxSetup(ctx, fns, files, ks, func(string) string { return fns + "-apps" }); err != nil {
		return fmt.Errorf("%w\n%s", err, flux[1].logTail())
	}
	tools["Flux"] = flux
	live["Flux"] = time.Since(start)

	// Argo Rollouts
	start = time.Now()
	rns := fmt.Sprintf("rofp%d", n)
	if err := b.k.apply(ctx, "namespace", []byte(namespace(rns))); err != nil {
		return err
	}
	ro, err := b.startRollouts(ctx, rns)
	if err != nil {
		return err
	}
	var names []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("app%d", i)
		names = append(names, name)
		if err := b.k.apply(ctx, "Rollout "+name, []byte(rolloutService(rns, name)+"---\n"+rollout(rns, name, "example/app:v1", 1, 0))); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 20*time.Minute)
	_, err = b.k.until(wctx, rolloutGVR, rns, "", rolloutsPhase(names, "Healthy"))
	cancel()
	if err != nil {
		return fmt.Errorf("Rollouts never Healthy: %w\n%s", err, ro.logTail())
	}
	tools["Argo Rollouts"] = []*proc{ro}
	live["Argo Rollouts"] = time.Since(start)

	return b.sampleIdle(ctx, n, tools, live)
}

// sampleIdle waits 5 s, then reads every process's RSS and CPU time at the
// start and end of the window.
func (b *bench) sampleIdle(ctx context.Context, n int, tools map[string][]*proc, live map[string]time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(5 * time.Second):
	}
	before := map[string]usage{}
	for who, ps := range tools {
		u, err := sum(ps)
		if err != nil {
			return err
		}
		before[who] = u
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(b.cfg.IdleWindow):
	}
	window := time.Since(t0)
	for _, who := range []string{"tandem", "Flux", "Argo Rollouts"} {
		u, err := sum(tools[who])
		if err != nil {
			return err
		}
		b.res.Idle = append(b.res.Idle, idle{Who: who, Apps: n, Window: window, LiveIn: live[who],
			RSSMiB:   float64(u.RSSKiB) / 1024,
			CPUMilli: float64(u.CPU-before[who].CPU) / float64(window) * 1000})
	}
	return nil
}

// sum adds up the usage of a tool's processes.
func sum(ps []*proc) (usage, error) {
	var total usage
	for _, p := range ps {
		if p.exited() {
			return total, fmt.Errorf("%s exited:\n%s", p.name, p.logTail())
		}
		u, err := p.sample()
		if err != nil {
			return total, err
		}
		total.RSSKiB += u.RSSKiB
		total.CPU += u.CPU
	}
	return total, nil
}
