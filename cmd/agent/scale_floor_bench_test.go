package main

// The control plane's own floor for BenchmarkFleet (issue 19): the objects a
// fleet's first deploy creates, applied bare with one client and waited on
// with one watch, so that "all live" has a same-run reference.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"

	"github.com/tandem-gitops/tandem/applier"
)

// fleetSizes are the bundle counts BenchmarkFleet runs: 1, 10, 100 and 1000
// unless TANDEM_BENCH_FLEET_SIZES (comma-separated counts) says otherwise.
func fleetSizes(b *testing.B) []int {
	v := os.Getenv("TANDEM_BENCH_FLEET_SIZES")
	if v == "" {
		return []int{1, 10, 100, 1000}
	}
	var sizes []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			b.Fatalf("TANDEM_BENCH_FLEET_SIZES=%q: want comma-separated bundle counts such as 100,300", v)
		}
		sizes = append(sizes, n)
	}
	return sizes
}

// floorLabel marks the floor's Deployments, so one watch sees them all.
const floorLabel = "tandem-bench-floor"

// floorObjects are what an agent's first deploy of fleet bundle ns creates
// that the controllers act on: the namespace, client and server as
// Deployments and Services of the first color, and the two stable Services.
func floorObjects(b testing.TB, ns, run string) (namespace *unstructured.Unstructured, objs []*unstructured.Unstructured) {
	b.Helper()
	namespace = &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": ns}}}
	for _, name := range []string{"client", "server"} {
		for i, doc := range strings.Split(fleetApp(name, "example/"+name+":v1"), "\n---\n") {
			u := &unstructured.Unstructured{}
			if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
				b.Fatalf("floor object %s/%s: %v", ns, name, err)
			}
			u.SetNamespace(ns)
			if i == 1 { // the Service: a stable twin beside the colored one
				twin := u.DeepCopy()
				_ = unstructured.SetNestedField(twin.Object, "blue", "spec", "selector", "tandem.dev/color")
				objs = append(objs, twin)
			}
			u.SetName(name + "-blue")
			setColor(b, u)
			if i == 0 {
				u.SetLabels(map[string]string{floorLabel: run})
			}
			objs = append(objs, u)
		}
	}
	return namespace, objs
}

// setColor puts the color label on u's selector and pod template, as the
// agent's render does.
func setColor(b testing.TB, u *unstructured.Unstructured) {
	b.Helper()
	paths := [][]string{{"spec", "selector"}}
	if u.GetKind() == "Deployment" {
		paths = [][]string{{"spec", "selector", "matchLabels"}, {"spec", "template", "metadata", "labels"}}
	}
	for _, p := range paths {
		if err := unstructured.SetNestedField(u.Object, "blue", append(p, "tandem.dev/color")...); err != nil {
			b.Fatalf("floor object %s: %v", u.GetName(), err)
		}
	}
}

// bareFloor applies what n fleet bundles create, in namespaces of their own,
// with one client (the agent's QPS, burst and apply concurrency): every
// namespace, then every Deployment and Service, each a bare server-side
// apply. Then one watch waits until every Deployment is Available. It
// returns the time from the first request to the last Deployment available.
func bareFloor(b testing.TB, ctx context.Context, n int, prefix string) time.Duration {
	b.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.QPS, cfg.Burst = applier.DefaultQPS, applier.DefaultBurst
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	var nss, objs []*unstructured.Unstructured
	for i := 0; i < n; i++ {
		ns, o := floorObjects(b, fmt.Sprintf("%s-%d", prefix, i), prefix)
		nss, objs = append(nss, ns), append(objs, o...)
	}
	start := time.Now()
	applyAll(b, ctx, dyn, nss)
	applyAll(b, ctx, dyn, objs)
	waitAvailable(b, ctx, cs, prefix, n*2)
	return time.Since(start)
}

// applyAll server-side applies objs with applier.DefaultConcurrency requests in flight.
func applyAll(b testing.TB, ctx context.Context, dyn dynamic.Interface, objs []*unstructured.Unstructured) {
	b.Helper()
	work := make(chan *unstructured.Unstructured)
	errs := make(chan error, len(objs))
	var wg sync.WaitGroup
	for w := 0; w < applier.DefaultConcurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range work {
				errs <- applyOne(ctx, dyn, u)
			}
		}()
	}
	for _, u := range objs {
		work <- u
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			b.Fatal(err)
		}
	}
}

func applyOne(ctx context.Context, dyn dynamic.Interface, u *unstructured.Unstructured) error {
	body, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	gvr := map[string]schema.GroupVersionResource{
		"Namespace":  {Version: "v1", Resource: "namespaces"},
		"Service":    {Version: "v1", Resource: "services"},
		"Deployment": {Group: "apps", Version: "v1", Resource: "deployments"},
	}[u.GetKind()]
	var ri dynamic.ResourceInterface = dyn.Resource(gvr)
	if ns := u.GetNamespace(); ns != "" {
		ri = dyn.Resource(gvr).Namespace(ns)
	}
	_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: "tandem-bench-floor", Force: new(true)})
	if err != nil {
		return fmt.Errorf("floor: apply %s %s/%s: %w", u.GetKind(), u.GetNamespace(), u.GetName(), err)
	}
	return nil
}

// waitAvailable watches the floor's Deployments in every namespace until
// want of them are Available.
func waitAvailable(b testing.TB, ctx context.Context, cs kubernetes.Interface, run string, want int) {
	b.Helper()
	sel := floorLabel + "=" + run
	lw := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.LabelSelector = sel
			return cs.AppsV1().Deployments("").List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.LabelSelector = sel
			return cs.AppsV1().Deployments("").Watch(ctx, o)
		},
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Minute+time.Duration(want)*time.Second)
	defer cancel()
	available, n := map[string]bool{}, 0
	_, err := watchtools.UntilWithSync(wctx, lw, &appsv1.Deployment{}, nil, func(ev watch.Event) (bool, error) {
		d, ok := ev.Object.(*appsv1.Deployment)
		if !ok {
			return false, nil
		}
		key := d.Namespace + "/" + d.Name
		now := false
		for _, c := range d.Status.Conditions {
			if c.Type == appsv1.DeploymentAvailable && c.Status == "True" && d.Status.ObservedGeneration >= d.Generation {
				now = true
			}
		}
		if now != available[key] {
			available[key] = now
			if now {
				n++
			} else {
				n--
			}
		}
		return n >= want, nil
	})
	if err != nil {
		b.Fatalf("floor: wait until %d Deployments are available: %v", want, err)
	}
}
