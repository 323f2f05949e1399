package applier

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// These tests stop the package's API server; they run last (file order) and
// never in parallel.

func restartAPIServer(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()
	if err := env.StartComponent(ctx, testenv.APIServer); err != nil {
		t.Fatalf("restart kube-apiserver: %v", err)
	}
	t.Logf("kube-apiserver restarted in %s", time.Since(start).Round(time.Millisecond))
}

func TestWaitHealthyAPIServerStoppedIsTransient(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "example/server:v2-unready")

	type result struct {
		err  error
		took time.Duration
	}
	done := make(chan result, 1)
	go func() {
		start := time.Now()
		_, err := a.WaitHealthy(context.Background(), cs.Objects, WaitOptions{Timeout: 2 * time.Minute, UnreachableGrace: 3 * time.Second})
		done <- result{err, time.Since(start)}
	}()
	time.Sleep(time.Second)
	if err := env.StopComponent(testenv.APIServer); err != nil {
		t.Fatalf("stop kube-apiserver: %v", err)
	}
	stopped := time.Now()
	var r result
	select {
	case r = <-done:
	case <-time.After(time.Minute):
		t.Fatal("WaitHealthy did not return after the API server stopped")
	}
	t.Logf("API server stopped: WaitHealthy returned %s later: %v", time.Since(stopped).Round(time.Millisecond), r.err)
	restartAPIServer(t)
	var he *HealthError
	if errors.As(r.err, &he) || !IsTransient(r.err) {
		t.Fatalf("err = %v (%T), want a transient error and no *HealthError", r.err, r.err)
	}
}

func TestWaitHealthySurvivesShortOutage(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "example/server:v1")
	if _, err := a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	stopStart := time.Now()
	if err := env.StopComponent(testenv.APIServer); err != nil {
		t.Fatalf("stop kube-apiserver: %v", err)
	}
	t.Logf("kube-apiserver stopped in %s", time.Since(stopStart).Round(time.Millisecond))
	done := make(chan error, 1)
	go func() {
		_, err := a.WaitHealthy(context.Background(), cs.Objects, WaitOptions{Timeout: 2 * time.Minute, UnreachableGrace: time.Minute})
		done <- err
	}()
	time.Sleep(time.Second)
	restartAPIServer(t)
	back := time.Now()
	select {
	case err := <-done:
		t.Logf("WaitHealthy returned %s after the restart: %v", time.Since(back).Round(time.Millisecond), err)
		if err != nil {
			t.Fatalf("WaitHealthy after the API server came back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("WaitHealthy did not finish after the API server came back")
	}
}

func TestDeleteBundleAPIServerStoppedIsTransient(t *testing.T) {
	ns := env.Namespace(t)
	a, rec := recordingApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	for _, c := range blueGreen {
		if _, err := a.Apply(ctx, Set{Bundle: testBundle, Color: c, Namespace: ns,
			Objects: objs(configMap(ns, "a-"+c, c, nil), configMap(ns, "b-"+c, c, nil))}); err != nil {
			t.Fatalf("Apply %s: %v", c, err)
		}
	}
	// The API server goes away right after the first deletion.
	var stopErr error
	var stopped sync.Once
	rec.setBefore(func(n int) {
		if n == 1 {
			stopped.Do(func() { stopErr = env.StopComponent(testenv.APIServer) })
		}
	})
	_, err := a.DeleteBundle(ctx, ns, testBundle, blueGreen, nil)
	rec.setBefore(nil)
	restartAPIServer(t)
	if stopErr != nil {
		t.Fatalf("stop kube-apiserver: %v", stopErr)
	}
	t.Logf("API server stopped: %v", err)
	if !IsTransient(err) || !strings.Contains(err.Error(), "ConfigMap "+ns+"/") {
		t.Fatalf("err = %v, want a transient error naming a ConfigMap", err)
	}
	cs, err := a.DeleteBundle(ctx, ns, testBundle, blueGreen, nil)
	if err != nil {
		t.Fatalf("DeleteBundle after the restart: %v", err)
	}
	// 4 ConfigMaps and 2 inventories, one ConfigMap deleted before the stop.
	if got := cs.Count(Pruned); got != 5 {
		t.Errorf("pruned %d after the restart: %v, want 5", got, cs.Changes)
	}
	waitNoneLeft(t, a, gvrConfigMaps, ns, bundleLabel)
}
