package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// kube is the benchmark's own client: it applies the peers' CRDs and test
// objects and watches for the moments it measures.
type kube struct {
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newKube(cfg *rest.Config) (*kube, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = 200, 400
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &kube{dyn: dyn, mapper: restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))}, nil
}

// Resources the benchmark watches.
var (
	podsGVR     = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	servicesGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gitRepoGVR  = schema.GroupVersionResource{Group: "source.toolkit.fluxcd.io", Version: "v1", Resource: "gitrepositories"}
	ksGVR       = schema.GroupVersionResource{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Resource: "kustomizations"}
	rolloutGVR  = schema.GroupVersionResource{Group: "argoproj.io", Version: "v1alpha1", Resource: "rollouts"}
	deployGVR   = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
)

// apply server-side applies every object of a multi-document YAML stream;
// name is the stream's origin, for errors.
func (k *kube) apply(ctx context.Context, name string, data []byte) error {
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(data), 4096)
	for {
		obj := &unstructured.Unstructured{}
		if err := dec.Decode(&obj.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return fmt.Errorf("%s: %w", name, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		if err := k.applyOne(ctx, obj); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
}

func (k *kube) applyOne(ctx context.Context, obj *unstructured.Unstructured) error {
	gvk := obj.GroupVersionKind()
	subject := fmt.Sprintf("%s %s/%s", gvk.Kind, obj.GetNamespace(), obj.GetName())
	var mapping *schema.GroupVersionResource
	// A kind whose CRD was just created is unknown until discovery catches up.
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		m, err := k.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			k.mapper.Reset()
			return false, nil
		}
		mapping = &m.Resource
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("%s: kind not served: %w", subject, err)
	}
	data, err := obj.MarshalJSON()
	if err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	var ri dynamic.ResourceInterface = k.dyn.Resource(*mapping)
	if ns := obj.GetNamespace(); ns != "" {
		ri = k.dyn.Resource(*mapping).Namespace(ns)
	}
	force := true
	if _, err := ri.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "peerbench", Force: &force}); err != nil {
		return fmt.Errorf("%s: %w", subject, err)
	}
	return nil
}

// applyDir applies every .yaml file in dir.
func (k *kube) applyDir(ctx context.Context, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("%s: no YAML files (%v); run `make peers`", dir, err)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if err := k.apply(ctx, f, data); err != nil {
			return err
		}
	}
	return nil
}

// objects is the state of a watched collection: name → object.
type objects map[string]*unstructured.Unstructured

// until watches gvr in ns (labels selects, may be empty) and returns the time
// at which cond first held over the collection: at once if it holds on the
// first list. It relists when the watch ends.
func (k *kube) until(ctx context.Context, gvr schema.GroupVersionResource, ns, labels string, cond func(objects) bool) (time.Time, error) {
	return k.untilListed(ctx, gvr, ns, labels, cond, nil)
}

// untilListed is until, closing listed (when not nil) after the first list.
func (k *kube) untilListed(ctx context.Context, gvr schema.GroupVersionResource, ns, labels string, cond func(objects) bool, listed chan struct{}) (time.Time, error) {
	ri := k.dyn.Resource(gvr).Namespace(ns)
	defer func() {
		if listed != nil {
			close(listed)
		}
	}()
	for {
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: labels})
		if err != nil {
			return time.Time{}, fmt.Errorf("list %s in %s: %w", gvr.Resource, ns, err)
		}
		state := objects{}
		for i := range list.Items {
			state[list.Items[i].GetName()] = &list.Items[i]
		}
		if cond(state) {
			return time.Now(), nil
		}
		if listed != nil {
			close(listed)
			listed = nil
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: labels, ResourceVersion: list.GetResourceVersion()})
		if err != nil {
			return time.Time{}, fmt.Errorf("watch %s in %s: %w", gvr.Resource, ns, err)
		}
		for ev := range w.ResultChan() {
			obj, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			switch ev.Type {
			case watch.Added, watch.Modified:
				state[obj.GetName()] = obj
			case watch.Deleted:
				delete(state, obj.GetName())
			default:
				continue
			}
			if cond(state) {
				w.Stop()
				return time.Now(), nil
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("waiting on %s in %s: %w", gvr.Resource, ns, ctx.Err())
		}
	}
}

// waiter runs until in the background, started before the action it times.
type waiter struct {
	done chan struct{}
	at   time.Time
	err  error
}

// start runs until in the background and returns once the collection has
// been listed (the watch is about to start), so an action after it is seen.
func (k *kube) start(ctx context.Context, gvr schema.GroupVersionResource, ns, labels string, cond func(objects) bool) *waiter {
	w := &waiter{done: make(chan struct{})}
	listed := make(chan struct{})
	go func() {
		defer close(w.done)
		w.at, w.err = k.untilListed(ctx, gvr, ns, labels, cond, listed)
	}()
	<-listed
	return w
}

// wait returns the time the condition held.
func (w *waiter) wait() (time.Time, error) {
	<-w.done
	return w.at, w.err
}

// condition returns the status of condition typ of obj ("" if absent) and its reason.
func condition(obj *unstructured.Unstructured, typ string) (status, reason string) {
	conds, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == typ {
			s, _ := m["status"].(string)
			r, _ := m["reason"].(string)
			return s, r
		}
	}
	return "", ""
}

// podReady reports whether a pod's Ready condition is True and it is not being deleted.
func podReady(pod *unstructured.Unstructured) bool {
	s, _ := condition(pod, "Ready")
	return s == "True" && pod.GetDeletionTimestamp() == nil
}

// podImage is the image of a pod's first container.
func podImage(pod *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(pod.Object, "spec", "containers")
	if len(cs) == 0 {
		return ""
	}
	m, _ := cs[0].(map[string]any)
	s, _ := m["image"].(string)
	return s
}

// newPodsReady holds when, for every image, want pods running it are Ready.
func newPodsReady(images []string, want int) func(objects) bool {
	return func(pods objects) bool {
		for _, img := range images {
			n := 0
			for _, p := range pods {
				if podImage(p) == img && podReady(p) {
					n++
				}
			}
			if n < want {
				return false
			}
		}
		return true
	}
}

// servicesSelect holds when each named Service's selector matches a Ready pod
// running the image paired with it (service → image): traffic goes to the new pods.
func (k *kube) servicesSelect(ctx context.Context, ns string, svcImage map[string]string) func(objects) bool {
	return func(svcs objects) bool {
		pods, err := k.dyn.Resource(podsGVR).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return false
		}
		for svc, img := range svcImage {
			s, ok := svcs[svc]
			if !ok {
				return false
			}
			sel, _, _ := unstructured.NestedStringMap(s.Object, "spec", "selector")
			if len(sel) == 0 || !selectsImage(pods.Items, sel, img) {
				return false
			}
		}
		return true
	}
}

// selectsImage reports whether sel matches a pod running img, and no pod running another image.
func selectsImage(pods []unstructured.Unstructured, sel map[string]string, img string) bool {
	found := false
	for i := range pods {
		p := &pods[i]
		if !matches(p.GetLabels(), sel) || p.GetDeletionTimestamp() != nil {
			continue
		}
		if podImage(p) != img {
			return false
		}
		found = true
	}
	return found
}

func matches(labels, sel map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// deploymentsAvailable holds when, for every image, a Deployment whose pod
// template runs it reports all its replicas updated and available at its
// current generation, with Progressing=NewReplicaSetAvailable and
// Available=True: what kstatus calls Current.
func deploymentsAvailable(images []string) func(objects) bool {
	return func(ds objects) bool {
		for _, img := range images {
			ok := false
			for _, d := range ds {
				cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
				if len(cs) == 0 {
					continue
				}
				if m, _ := cs[0].(map[string]any); m["image"] != img {
					continue
				}
				want, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas")
				gen, _, _ := unstructured.NestedInt64(d.Object, "status", "observedGeneration")
				upd, _, _ := unstructured.NestedInt64(d.Object, "status", "updatedReplicas")
				avail, _, _ := unstructured.NestedInt64(d.Object, "status", "availableReplicas")
				total, _, _ := unstructured.NestedInt64(d.Object, "status", "replicas")
				_, progressing := condition(d, "Progressing")
				available, _ := condition(d, "Available")
				ok = gen == d.GetGeneration() && upd == want && avail == want && total == want &&
					progressing == "NewReplicaSetAvailable" && available == "True"
			}
			if !ok {
				return false
			}
		}
		return true
	}
}
