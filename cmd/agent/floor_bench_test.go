package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/yaml"
)

// floorRelease is the control plane's own floor for one release of apps,
// measured in the same run as tandem: a bare server-side apply of every
// app's Deployment and Service into ns (what `kubectl apply --server-side`
// sends), all at once, then watches until every Deployment is available
// with the new template and every Service's EndpointSlices list exactly its
// 2 replicas, all ready. It returns how long that took.
func floorRelease(tb testing.TB, ctx context.Context, cs *kubernetes.Clientset, ns string, apps []app) time.Duration {
	tb.Helper()
	type obj struct {
		kind, name string
		body       []byte
	}
	var objs []obj
	for _, a := range apps {
		for _, doc := range strings.Split(appManifest(a), "\n---\n") {
			var m map[string]any
			if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
				tb.Fatal(err)
			}
			md := m["metadata"].(map[string]any)
			md["namespace"] = ns
			body, err := json.Marshal(m)
			if err != nil {
				tb.Fatal(err)
			}
			objs = append(objs, obj{kind: m["kind"].(string), name: md["name"].(string), body: body})
		}
	}
	start := time.Now()
	errs := make(chan error, len(objs))
	for _, o := range objs {
		go func() {
			opts := metav1.PatchOptions{FieldManager: "floor", Force: new(true)}
			var err error
			if o.kind == "Deployment" {
				_, err = cs.AppsV1().Deployments(ns).Patch(ctx, o.name, types.ApplyPatchType, o.body, opts)
			} else {
				_, err = cs.CoreV1().Services(ns).Patch(ctx, o.name, types.ApplyPatchType, o.body, opts)
			}
			errs <- err
		}()
	}
	for range objs {
		if err := <-errs; err != nil {
			tb.Fatalf("floor apply: %v", err)
		}
	}
	want := map[string]string{}
	for _, a := range apps {
		want[a.name] = a.image
	}
	deployments := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.AppsV1().Deployments(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cs.AppsV1().Deployments(ns).Watch(ctx, o)
		},
	}
	untilStore(tb, ctx, deployments, &appsv1.Deployment{}, func(objs []any) bool {
		done := 0
		for _, o := range objs {
			d := o.(*appsv1.Deployment)
			img, ok := want[d.Name]
			if !ok || d.Spec.Template.Spec.Containers[0].Image != img || d.Status.ObservedGeneration < d.Generation {
				continue
			}
			r := *d.Spec.Replicas
			if d.Status.UpdatedReplicas == r && d.Status.AvailableReplicas == r && d.Status.Replicas == r {
				done++
			}
		}
		return done == len(apps)
	})
	slices := &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return cs.DiscoveryV1().EndpointSlices(ns).List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return cs.DiscoveryV1().EndpointSlices(ns).Watch(ctx, o)
		},
	}
	untilStore(tb, ctx, slices, &discoveryv1.EndpointSlice{}, func(objs []any) bool {
		ready, total := map[string]int{}, map[string]int{}
		for _, o := range objs {
			s := o.(*discoveryv1.EndpointSlice)
			svc := s.Labels[discoveryv1.LabelServiceName]
			for _, ep := range s.Endpoints {
				total[svc]++
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready[svc]++
				}
			}
		}
		for _, a := range apps {
			if ready[a.name] != 2 || total[a.name] != 2 {
				return false
			}
		}
		return true
	})
	return time.Since(start)
}

// untilStore lists and watches lw until done holds for the objects it has.
func untilStore(tb testing.TB, ctx context.Context, lw cache.ListerWatcher, example runtime.Object, done func([]any) bool) {
	tb.Helper()
	var store cache.Store
	holds := func() bool { return done(store.List()) }
	_, err := watchtools.UntilWithSync(ctx, lw, example, func(s cache.Store) (bool, error) {
		store = s
		return holds(), nil
	}, func(watch.Event) (bool, error) { return holds(), nil })
	if err != nil {
		tb.Fatalf("floor: waiting for %T: %v", example, err)
	}
}
