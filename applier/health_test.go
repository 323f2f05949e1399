package applier

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// applyGreen applies the client/server bundle in green with serverImage and
// returns the applied objects.
func applyGreen(t *testing.T, a *Applier, ns, serverImage string) ChangeSet {
	t.Helper()
	cs, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: ns,
		Objects: clientServer(ns, "green", "example/client:v1", serverImage)})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return cs
}

func healthError(t *testing.T, err error) *HealthError {
	t.Helper()
	var he *HealthError
	if !errors.As(err, &he) {
		t.Fatalf("err = %v (%T), want a *HealthError", err, err)
	}
	if IsTransient(err) {
		t.Errorf("a health failure reported as transient: %v", err)
	}
	return he
}

func TestWaitHealthyFailsFastOnBadImage(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "missing.invalid/server:v3")
	start := time.Now()
	_, err := a.WaitHealthy(testCtx(t, 2*time.Minute), cs.Objects, WaitOptions{Timeout: time.Minute})
	took := time.Since(start)
	t.Logf("bad image detected in %s: %v", took.Round(time.Millisecond), err)
	he := healthError(t, err)
	if he.TimedOut || took > 10*time.Second {
		t.Errorf("took %s (timed out %v), want a fail-fast under 10s", took, he.TimedOut)
	}
	if len(he.Failures) != 1 {
		t.Fatalf("failures %v, want only the server", he.Failures)
	}
	f := he.Failures[0]
	if f.Object != "Deployment "+ns+"/server-green" {
		t.Errorf("failure names %q", f.Object)
	}
	for _, want := range []string{"pod server-green-", "container server: ", "ImagePull", "(missing.invalid/server:v3)"} {
		if !strings.Contains(f.Reason, want) {
			t.Errorf("reason %q lacks %q", f.Reason, want)
		}
	}
}

func TestWaitHealthyFailsFastOnCrashLoop(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "example/server:v2-crash")
	start := time.Now()
	_, err := a.WaitHealthy(testCtx(t, 2*time.Minute), cs.Objects, WaitOptions{Timeout: time.Minute, CrashLoopRestarts: 3})
	took := time.Since(start)
	t.Logf("crash loop detected in %s: %v", took.Round(time.Millisecond), err)
	he := healthError(t, err)
	if he.TimedOut {
		t.Fatal("timed out instead of failing fast")
	}
	r := he.Failures[0].Reason
	if he.Failures[0].Object != "Deployment "+ns+"/server-green" || !strings.Contains(r, "CrashLoopBackOff after ") ||
		!strings.Contains(r, "(example/server:v2-crash)") {
		t.Errorf("failure %v", he.Failures[0])
	}
	if !strings.Contains(r, "after 3 restarts") && !strings.Contains(r, "after 4 restarts") {
		t.Errorf("reason %q: want the wait to end at the 3rd restart", r)
	}
}

func TestWaitHealthyTimesOutOnNeverReady(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "example/server:v2-unready")
	start := time.Now()
	rep, err := a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: 4 * time.Second})
	took := time.Since(start)
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)
	he := healthError(t, err)
	if !he.TimedOut || took < 4*time.Second {
		t.Errorf("timed out %v after %s, want a timeout after 4s", he.TimedOut, took)
	}
	if len(he.Failures) != 1 || he.Failures[0].Object != "Deployment "+ns+"/server-green" {
		t.Fatalf("failures %v, want exactly the server", he.Failures)
	}
	if !strings.Contains(he.Failures[0].Reason, "running, not ready (example/server:v2-unready)") {
		t.Errorf("reason %q does not say the container runs but is not ready", he.Failures[0].Reason)
	}
	if got := rep.Summary(); got != "client-green: 1/1 ready; server-green: 0/2 ready" {
		t.Errorf("summary %q", got)
	}
}

func TestWaitHealthyCancelIsNotAFailure(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	cs := applyGreen(t, a, ns, "example/server:v2-unready")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute})
	var he *HealthError
	if !errors.Is(err, context.DeadlineExceeded) || errors.As(err, &he) {
		t.Fatalf("err = %v, want the context's error and no *HealthError", err)
	}
}

func TestWaitHealthyJobComplete(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	job := jobObject(ns, "migrate-green", "example/migrate:v1")
	cs, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: objs(job)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	if got := rep.Summary(); got != "migrate-green: 1/1 complete" {
		t.Errorf("summary %q", got)
	}
}

func TestWaitHealthyUnreachableIsTransient(t *testing.T) {
	cfg := *env.Config
	cfg.Host = "https://127.0.0.1:1" // nothing listens there
	a, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.WaitHealthy(testCtx(t, time.Minute), clientServer("nowhere", "green", "a:1", "b:1"),
		WaitOptions{Timeout: 30 * time.Second, UnreachableGrace: 2 * time.Second})
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	var te *TransientError
	if !errors.As(err, &te) || !IsTransient(err) {
		t.Fatalf("err = %v (%T), want a *TransientError", err, err)
	}
	var he *HealthError
	if errors.As(err, &he) {
		t.Fatal("unreachable API server reported as a health failure")
	}
}

func TestWaitHealthyFailsOnUnschedulableAfterGrace(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	d := deployment(ns, "server", "green", "example/server:v1", 1)
	_ = unstructured.SetNestedStringMap(d.Object, map[string]string{"tandem.test/pool": "none"}, "spec", "template", "spec", "nodeSelector")
	cs, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: objs(d)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: 45 * time.Second, UnschedulableGrace: 2 * time.Second})
	took := time.Since(start)
	t.Logf("unschedulable detected in %s: %v", took.Round(time.Millisecond), err)
	he := healthError(t, err)
	if he.TimedOut || took < 2*time.Second {
		t.Fatalf("timed out %v after %s, want a fail-fast after the 2s grace", he.TimedOut, took)
	}
	if r := he.Failures[0].Reason; !strings.Contains(r, "pod server-green-") || !strings.Contains(r, "unschedulable for ") {
		t.Errorf("reason %q", r)
	}
}

func TestWaitHealthyStatefulSet(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	sts := deployment(ns, "db", "green", "example/db:v1", 2)
	sts.SetKind("StatefulSet")
	_ = unstructured.SetNestedField(sts.Object, "db-green", "spec", "serviceName")
	cs, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: objs(sts)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	if got := rep.Summary(); got != "db-green: 2/2 ready" {
		t.Errorf("summary %q", got)
	}
}

func TestApplyUnreachableIsTransient(t *testing.T) {
	cfg := *env.Config
	cfg.Host = "https://127.0.0.1:1"
	a, err := New(&cfg, Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: "nowhere",
		Objects: clientServer("nowhere", "green", "a:1", "b:1")})
	if err == nil || !IsTransient(err) {
		t.Fatalf("err = %v, want a transient error", err)
	}
	if err := a.Flip(testCtx(t, time.Minute), objs(twinOf("nowhere", "server", "blue", "x")), "green", FlipOptions{}); err == nil || !IsTransient(err) {
		t.Fatalf("Flip err = %v, want a transient error", err)
	}
}

func TestWaitHealthyDaemonSet(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ds := deployment(ns, "agent", "green", "example/agent:v1", 1)
	ds.SetKind("DaemonSet")
	unstructured.RemoveNestedField(ds.Object, "spec", "replicas")
	cs, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: objs(ds)})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.WaitHealthy(testCtx(t, time.Minute), cs.Objects, WaitOptions{Timeout: 45 * time.Second})
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	if got := rep.Summary(); got != "agent-green: 1/1 ready" {
		t.Errorf("summary %q", got)
	}
}

// A rollback from a release whose pods fail to pull: while the failing pods
// of the old template are still around, waiting for the restored release
// does not fail on them; it waits for the new pods.
func TestWaitHealthyIgnoresPodsOfAnOlderTemplate(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	bad := applyGreen(t, a, ns, "missing.invalid/server:v3")
	if _, err := a.WaitHealthy(testCtx(t, 2*time.Minute), bad.Objects, WaitOptions{Timeout: time.Minute}); err == nil {
		t.Fatal("the bad release verified healthy")
	}
	good := applyGreen(t, a, ns, "example/server:v1")
	rep, err := a.WaitHealthy(testCtx(t, 2*time.Minute), good.Objects, WaitOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("the restored release failed on the old release's pods: %v", err)
	}
	if !rep.Healthy() {
		t.Fatalf("report %s", rep.Summary())
	}
}
