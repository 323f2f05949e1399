package main

import (
	"context"
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// startRollouts starts rollouts-controller watching only namespace ns
// (--namespaced takes the namespace from the client configuration).
// Its metrics and healthz servers take a port number and bind every
// interface; nothing but this benchmark connects to them.
func (b *bench) startRollouts(ctx context.Context, ns string) (*proc, error) {
	var ports []string
	for i := 0; i < 2; i++ {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(a)
		ports = append(ports, port)
	}
	bin, err := b.peerBin("rollouts-controller")
	if err != nil {
		return nil, err
	}
	p, err := b.start("rollouts-controller-"+ns, bin,
		[]string{"--kubeconfig", b.env.Kubeconfig, "--namespace", ns, "--leader-elect=false", "--namespaced",
			"--metricsPort", ports[0], "--healthzPort", ports[1]},
		[]string{"POD_NAMESPACE=" + ns})
	if err != nil {
		return nil, err
	}
	return p, waitHTTP(ctx, p, "http://127.0.0.1:"+ports[1]+"/healthz", 2*time.Minute)
}

// rolloutsPhase holds when every listed Rollout reports phase.
func rolloutsPhase(names []string, phase string) func(objects) bool {
	return func(objs objects) bool {
		for _, n := range names {
			o, ok := objs[n]
			if !ok {
				return false
			}
			p, _, _ := unstructured.NestedString(o.Object, "status", "phase")
			if p != phase || o.GetGeneration() != observed(o) {
				return false
			}
		}
		return true
	}
}

// observed is a Rollout's status.observedGeneration (a string in its API).
func observed(o *unstructured.Unstructured) int64 {
	v, _, _ := unstructured.NestedFieldNoCopy(o.Object, "status", "observedGeneration")
	switch g := v.(type) {
	case string:
		var n int64
		_, _ = fmt.Sscan(g, &n)
		return n
	case int64:
		return g
	case float64:
		return int64(g)
	}
	return -1
}

// rollouts measures Argo Rollouts: apply of a new tag to two blue-green
// Rollouts → both active Services switched, pods Ready → switched, and how
// long until a Rollout whose image never pulls, or crash-loops, is known to
// have failed (progressDeadlineSeconds 60 with abort; the default deadline is
// 600 s).
func (b *bench) rollouts(ctx context.Context) error {
	const ns = "rollouts"
	if err := b.k.apply(ctx, "namespace", []byte(namespace(ns))); err != nil {
		return err
	}
	ctrl, err := b.startRollouts(ctx, ns)
	if err != nil {
		return err
	}
	names := []string{"client", "server", "pull", "crash"}
	for _, n := range names {
		if err := b.k.apply(ctx, "Service "+n, []byte(rolloutService(ns, n))); err != nil {
			return err
		}
	}
	for _, a := range shopApps("v1") {
		if err := b.k.apply(ctx, "Rollout "+a[0], []byte(rollout(ns, a[0], a[1], 2, 0))); err != nil {
			return err
		}
	}
	for _, n := range names[2:] {
		if err := b.k.apply(ctx, "Rollout "+n, []byte(rollout(ns, n, "example/app:v1", 2, 60))); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	_, err = b.k.until(wctx, rolloutGVR, ns, "", rolloutsPhase(names, "Healthy"))
	cancel()
	if err != nil {
		return fmt.Errorf("rollouts never Healthy: %w\n%s", err, ctrl.logTail())
	}
	sw := latency{Who: "Argo Rollouts", How: "kubectl-style apply of both Rollouts → both active Services switched", To: "Services switched"}
	rs := latency{Who: "Argo Rollouts", How: "new pods Ready → both active Services switched", To: "Services switched"}
	for i := 0; i < b.cfg.Runs; i++ {
		apps := shopApps(fmt.Sprintf("r%d", i))
		wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
		pods := b.k.start(wctx, podsGVR, ns, "", newPodsReady(images(apps), 2))
		svcs := b.k.start(wctx, servicesGVR, ns, "", b.k.servicesSelect(wctx, ns, svcImages(apps)))
		t0 := time.Now()
		for _, a := range apps {
			if err := b.k.apply(ctx, "Rollout "+a[0], []byte(rollout(ns, a[0], a[1], 2, 0))); err != nil {
				cancel()
				return err
			}
		}
		tr, err1 := pods.wait()
		ts, err2 := svcs.wait()
		cancel()
		if err1 != nil || err2 != nil {
			return fmt.Errorf("release %d: pods %v, services %v\n%s", i, err1, err2, ctrl.logTail())
		}
		sw.add(ts.Sub(t0))
		rs.add(ts.Sub(tr))
	}
	b.res.Switch = append(b.res.Switch, sw, rs)
	return nil
}

// rolloutFailures applies a never-pulling image to Rollout pull and a
// crash-looping one to Rollout crash at once and times each until the
// Rollout is Degraded.
func (b *bench) rolloutFailures(ctx context.Context) error {
	const ns = "rollouts"
	cases := failureCases("app")
	names := []string{"pull", "crash"}
	var ws []*waiter
	var t0 []time.Time
	for i, c := range cases {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		ws = append(ws, b.k.start(wctx, rolloutGVR, ns, "", rolloutsPhase(names[i:i+1], "Degraded")))
		t0 = append(t0, time.Now())
		if err := b.k.apply(ctx, "Rollout "+names[i], []byte(rollout(ns, names[i], c.image, 2, 60))); err != nil {
			return err
		}
	}
	for i, w := range ws {
		at, err := w.wait()
		if err != nil {
			return fmt.Errorf("Rollout %s never Degraded: %w", names[i], err)
		}
		b.res.Failures = append(b.res.Failures, failure{Who: "Argo Rollouts", Case: cases[i].name, Took: at.Sub(t0[i]),
			Outcome: "Degraded at progressDeadlineSeconds 60 (default 600), aborted: Service stays on the old pods"})
	}
	return nil
}
