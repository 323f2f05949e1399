package applier

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
)

var blueGreen = [2]string{"blue", "green"}

// deleteRecorder records the path of every DELETE request, in order, and
// calls before(n), when set, before each request, n being the DELETEs
// answered so far.
type deleteRecorder struct {
	next   http.RoundTripper
	mu     sync.Mutex
	paths  []string
	before func(n int)
}

func (d *deleteRecorder) RoundTrip(r *http.Request) (*http.Response, error) {
	d.mu.Lock()
	n, before := len(d.paths), d.before
	d.mu.Unlock()
	if before != nil {
		before(n)
	}
	resp, err := d.next.RoundTrip(r)
	if r.Method == http.MethodDelete && err == nil {
		d.mu.Lock()
		d.paths = append(d.paths, r.URL.Path)
		d.mu.Unlock()
	}
	return resp, err
}

// setBefore sets the hook called before each request.
func (d *deleteRecorder) setBefore(f func(n int)) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.before = f
}

func (d *deleteRecorder) deleted() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.paths)
}

// recordingApplier is an Applier whose DELETE requests rec records.
func recordingApplier(t *testing.T) (*Applier, *deleteRecorder) {
	t.Helper()
	rec := &deleteRecorder{}
	return applierThrough(t, func(rt http.RoundTripper) http.RoundTripper { rec.next = rt; return rec }), rec
}

// namespaceObject is the shared Namespace object of the bundle.
func namespaceObject(name string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": name, "labels": map[string]any{contract.LabelBundle: testBundle}},
	}}
}

// applyWholeBundle applies the shared objects (the Namespace ns and the
// ConfigMaps shared-settings and common), both colors (client/server plus
// a ConfigMap settings-<color>) and flips the stable twins client and
// server to blue.
func applyWholeBundle(t *testing.T, a *Applier, ns string) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	shared := objs(namespaceObject(ns), configMap(ns, "shared-settings", "", map[string]any{"x": "y"}), configMap(ns, "common", "", nil))
	if _, err := a.Apply(ctx, Set{Bundle: testBundle, Namespace: ns, Objects: shared}); err != nil {
		t.Fatalf("Apply shared: %v", err)
	}
	for _, c := range blueGreen {
		set := Set{Bundle: testBundle, Color: c, Namespace: ns,
			Objects: append(clientServer(ns, c, "example/client:v1", "example/server:v1"), configMap(ns, "settings-"+c, c, nil))}
		cs, err := a.Apply(ctx, set)
		if err != nil {
			t.Fatalf("Apply %s: %v", c, err)
		}
		if _, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
			t.Fatalf("WaitHealthy %s: %v", c, err)
		}
	}
	if err := a.Flip(ctx, twins(ns, "blue", "aaa111", "client", "server"), "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip blue: %v", err)
	}
}

// bundleLabel selects the objects labelled with the test bundle.
var bundleLabel = contract.LabelBundle + "=" + testBundle

// waitNoneLeft waits, watch-driven, until no object of gvr in ns matches sel.
func waitNoneLeft(t *testing.T, a *Applier, gvr schema.GroupVersionResource, ns, sel string) {
	t.Helper()
	ctx := testCtx(t, time.Minute)
	ri := a.dyn.Resource(gvr).Namespace(ns)
	for {
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			t.Fatalf("list %s: %v", gvr.Resource, err)
		}
		left := map[string]bool{}
		for _, u := range list.Items {
			left[u.GetName()] = true
		}
		if len(left) == 0 {
			return
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.GetResourceVersion()})
		if err != nil {
			t.Fatalf("watch %s: %v", gvr.Resource, err)
		}
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*unstructured.Unstructured)
			if !ok {
				break // an error event: list again
			}
			if ev.Type == watch.Deleted {
				delete(left, u.GetName())
			} else {
				left[u.GetName()] = true
			}
			if len(left) == 0 {
				break
			}
		}
		w.Stop()
		if len(left) == 0 {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("%s still there: %v", gvr.Resource, left)
		}
	}
}

func TestDeleteBundleRemovesEverythingTandemApplied(t *testing.T) {
	ns := namespaceOwnedBy(t, testBundle)
	a, rec := recordingApplier(t)
	applyWholeBundle(t, a, ns)
	ctx := testCtx(t, 2*time.Minute)
	// Another bundle takes settings-green over before the delete.
	if _, err := a.cs.CoreV1().ConfigMaps(ns).Patch(ctx, "settings-green", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"tandem.dev/bundle":"other"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	before := len(rec.deleted())

	cs, err := a.DeleteBundle(ctx, ns, testBundle, blueGreen, func(r ObjectRef) bool { return r.Name == "common" })
	if err != nil {
		t.Fatalf("DeleteBundle: %v", err)
	}
	t.Logf("deleted: %s; kept: %v", cs, cs.Kept)
	if len(cs.PruneFailures) > 0 {
		t.Errorf("prune failures: %v", cs.PruneFailures)
	}
	want := map[string]Action{
		"Service " + ns + "/client": Pruned, "Service " + ns + "/server": Pruned,
		"ConfigMap " + ns + "/settings-blue": Pruned, "ConfigMap " + ns + "/shared-settings": Pruned,
	}
	for _, c := range blueGreen {
		for _, o := range []string{"Deployment", "Service"} {
			for _, app := range []string{"client", "server"} {
				want[o+" "+ns+"/"+app+"-"+c] = Pruned
			}
		}
	}
	for _, inv := range []string{"twins", "blue", "green", "shared"} {
		want["ConfigMap "+ns+"/"+InventoryName(testBundle, inv)] = Pruned
	}
	if got := actions(cs); !mapsEqual(got, want) {
		t.Errorf("changes %v, want %v", got, want)
	}
	var gotKept []string
	for _, k := range cs.Kept {
		gotKept = append(gotKept, k.String())
	}
	slices.Sort(gotKept)
	wantKept := []string{
		"ConfigMap " + ns + "/common: " + string(KeptShared),
		"ConfigMap " + ns + "/settings-green: " + string(KeptForeign),
		"Namespace " + ns + ": " + string(KeptNamespace),
	}
	if !slices.Equal(gotKept, wantKept) {
		t.Errorf("kept %q, want %q", gotKept, wantKept)
	}

	for _, c := range cs.Changes {
		m, err := a.mapping(c.Object.gvk())
		if err != nil {
			t.Fatal(err)
		}
		if exists(t, a, m.Resource, ns, c.Object.Name) {
			t.Errorf("%s still exists", c.Object)
		}
	}
	if _, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err != nil {
		t.Errorf("namespace %s: %v", ns, err)
	}
	for _, name := range []string{"common", "settings-green"} {
		if !exists(t, a, gvrConfigMaps, ns, name) {
			t.Errorf("ConfigMap %s was deleted", name)
		}
	}
	// The garbage collector takes ReplicaSets and pods with the Deployments.
	waitNoneLeft(t, a, gvrPods, ns, bundleLabel)
	waitNoneLeft(t, a, schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "replicasets"}, ns, bundleLabel)

	// Order: twins, then colored objects and shared ones, inventories last.
	paths := rec.deleted()[before:]
	last := func(match func(string) bool) int {
		i := -1
		for j, p := range paths {
			if match(p) {
				i = j
			}
		}
		return i
	}
	first := func(match func(string) bool) int {
		return slices.IndexFunc(paths, match)
	}
	isTwin := func(p string) bool {
		return strings.HasSuffix(p, "/services/client") || strings.HasSuffix(p, "/services/server")
	}
	isInventory := func(p string) bool { return strings.Contains(p, "/configmaps/tandem-inventory-") }
	isColored := func(p string) bool {
		return !isInventory(p) && (strings.HasSuffix(p, "-blue") || strings.HasSuffix(p, "-green"))
	}
	if last(isTwin) > first(isColored) {
		t.Errorf("a twin deleted after a colored object: %v", paths)
	}
	if first(isInventory) < last(func(p string) bool { return !isInventory(p) }) {
		t.Errorf("an inventory deleted before an object it lists: %v", paths)
	}

	// Again: nothing is left to do.
	cs, err = a.DeleteBundle(ctx, ns, testBundle, blueGreen, nil)
	if err != nil {
		t.Fatalf("second DeleteBundle: %v", err)
	}
	if len(cs.Changes) != 0 || len(cs.Kept) != 0 || len(cs.PruneFailures) != 0 {
		t.Errorf("second DeleteBundle: %+v, want nothing done", cs)
	}
}

func TestDeleteBundleResumesAfterInterruption(t *testing.T) {
	ns := env.Namespace(t)
	a, rec := recordingApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	for _, c := range blueGreen {
		set := Set{Bundle: testBundle, Color: c, Namespace: ns,
			Objects: objs(deployment(ns, "worker", c, "example/worker:v1", 1), configMap(ns, "settings-"+c, c, nil))}
		if _, err := a.Apply(ctx, set); err != nil {
			t.Fatalf("Apply %s: %v", c, err)
		}
	}
	if _, err := a.Apply(ctx, Set{Bundle: testBundle, Namespace: ns, Objects: objs(configMap(ns, "shared-settings", "", nil))}); err != nil {
		t.Fatalf("Apply shared: %v", err)
	}

	// The agent stops after two deletions (its context is cancelled).
	cut, cancel := context.WithCancel(ctx)
	defer cancel()
	rec.setBefore(func(n int) {
		if n == 2 {
			cancel()
		}
	})
	cs, err := a.DeleteBundle(cut, ns, testBundle, blueGreen, nil)
	rec.setBefore(nil)
	t.Logf("interrupted: %s; %v", cs, err)
	if !errors.Is(err, context.Canceled) || IsTransient(err) {
		t.Fatalf("err = %v, want context.Canceled and not transient", err)
	}
	if !strings.Contains(err.Error(), " "+ns+"/") {
		t.Errorf("error %q does not name an object", err)
	}
	if cs.Count(Pruned) != 2 {
		t.Errorf("interrupted call pruned %v, want 2 objects", cs.Changes)
	}
	for _, c := range blueGreen {
		if !exists(t, a, gvrConfigMaps, ns, InventoryName(testBundle, c)) {
			t.Errorf("inventory of %s deleted by the interrupted call", c)
		}
	}

	cs, err = a.DeleteBundle(ctx, ns, testBundle, blueGreen, nil)
	if err != nil {
		t.Fatalf("resumed DeleteBundle: %v", err)
	}
	// 5 objects and 3 inventories in all (no twins: no twins inventory).
	if got := cs.Count(Pruned); got != 8-2 {
		t.Errorf("resumed call pruned %d: %v, want the remaining 6", got, cs.Changes)
	}
	for _, gvr := range []schema.GroupVersionResource{gvrConfigMaps, gvrDeployments} {
		waitNoneLeft(t, a, gvr, ns, bundleLabel)
	}
	if cs, err = a.DeleteBundle(ctx, ns, testBundle, blueGreen, nil); err != nil || cs.Changed() {
		t.Errorf("third DeleteBundle: %s, %v; want nothing and no error", cs, err)
	}
}

func TestDeleteBundleRejectsBadArguments(t *testing.T) {
	a := newApplier(t)
	ctx := testCtx(t, time.Minute)
	for _, tc := range []struct {
		ns, bundle string
		colors     [2]string
	}{
		{"", testBundle, blueGreen},
		{"shop", "", blueGreen},
		{"shop", testBundle, [2]string{"blue", "blue"}},
		{"shop", testBundle, [2]string{"blue", ""}},
		{"shop", testBundle, [2]string{"shared", "green"}},
		{"shop", testBundle, [2]string{"blue", "twins"}},
	} {
		if _, err := a.DeleteBundle(ctx, tc.ns, tc.bundle, tc.colors, nil); err == nil {
			t.Errorf("DeleteBundle(%q, %q, %q) succeeded", tc.ns, tc.bundle, tc.colors)
		}
	}
}
