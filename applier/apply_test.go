package applier

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

func actions(cs ChangeSet) map[string]Action {
	m := map[string]Action{}
	for _, c := range cs.Changes {
		m[c.Object.String()] = c.Action
	}
	return m
}

func TestApplyHealthyBundle(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	set := Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: clientServer(ns, "green", "example/client:v1", "example/server:v1")}

	cs, err := a.Apply(ctx, set)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if got := cs.Count(Created); got != 4 {
		t.Fatalf("created %d, want 4: %v", got, cs.Changes)
	}
	start := time.Now()
	rep, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	t.Logf("healthy in %s: %s", time.Since(start).Round(time.Millisecond), rep.Summary())
	if got, want := rep.Summary(), "client-green: 1/1 ready; server-green: 2/2 ready"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}

	// Re-applying the same set changes nothing.
	cs, err = a.Apply(ctx, set)
	if err != nil {
		t.Fatalf("re-Apply: %v", err)
	}
	if cs.Count(Unchanged) != 4 || cs.Changed() {
		t.Errorf("re-apply: %s, want 4 unchanged: %v", cs, cs.Changes)
	}

	// A new image configures exactly the server Deployment.
	set.Objects = clientServer(ns, "green", "example/client:v1", "example/server:v2")
	cs, err = a.Apply(ctx, set)
	if err != nil {
		t.Fatalf("Apply v2: %v", err)
	}
	want := map[string]Action{
		"Deployment " + ns + "/client-green": Unchanged, "Service " + ns + "/client-green": Unchanged,
		"Deployment " + ns + "/server-green": Configured, "Service " + ns + "/server-green": Unchanged,
	}
	if got := actions(cs); !mapsEqual(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	rep, err = a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("WaitHealthy v2: %v", err)
	}
	if !rep.Healthy() {
		t.Errorf("report not healthy: %+v", rep)
	}

	inv, err := a.readInventory(ctx, ns, testBundle, "green")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 4 {
		t.Errorf("inventory %v, want 4 entries", inv)
	}
}

func mapsEqual[K, V comparable](a, b map[K]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestDryRunFailureAppliesNothing(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, time.Minute)
	objs := clientServer(ns, "green", "example/client:v1", "example/server:v1")
	// The server Deployment's selector does not match its template: invalid.
	bad := objs[2]
	_ = unstructured.SetNestedStringMap(bad.Object, map[string]string{"app": "other"}, "spec", "selector", "matchLabels")
	// And a Service with a port out of range.
	badSvc := service(ns, "broken", "green")
	_ = unstructured.SetNestedSlice(badSvc.Object, []any{map[string]any{"port": int64(99999)}}, "spec", "ports")
	objs = append(objs, badSvc, configMap(ns, "settings-green", "green", map[string]any{"k": "v"}))

	_, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: objs})
	if err == nil {
		t.Fatal("Apply succeeded with invalid objects")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"Deployment " + ns + "/server-green: ", "Service " + ns + "/broken-green: ", "nothing applied"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "client-green") {
		t.Errorf("error names a valid object: %v", err)
	}
	for _, o := range objs {
		gvr, _ := a.mapping(o.GroupVersionKind())
		if exists(t, a, gvr.Resource, ns, o.GetName()) {
			t.Errorf("%s was created although the dry run failed", objRef(o))
		}
	}
	if exists(t, a, gvrConfigMaps, ns, InventoryName(testBundle, "green")) {
		t.Error("inventory written although the dry run failed")
	}
}

func TestPruneRemovesOnlyDroppedObjects(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, time.Minute)
	keep := configMap(ns, "keep-blue", "blue", map[string]any{"a": "1"})
	drop := configMap(ns, "drop-blue", "blue", map[string]any{"b": "2"})
	foreign := configMap(ns, "foreign-blue", "blue", map[string]any{"c": "3"})
	dep := deployment(ns, "worker", "blue", "example/worker:v1", 1)
	set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: []*unstructured.Unstructured{keep, drop, foreign, dep}}
	if _, err := a.Apply(ctx, set); err != nil {
		t.Fatalf("Apply: %v", err)
	}
	// Someone replaces foreign-blue with an object of their own.
	cms := a.cs.CoreV1().ConfigMaps(ns)
	if err := cms.Delete(ctx, "foreign-blue", deleteNow()); err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, userConfigMap(ns, "foreign-blue"), createOpts()); err != nil {
		t.Fatal(err)
	}

	set.Objects = []*unstructured.Unstructured{keep}
	cs, err := a.Apply(ctx, set)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	want := map[string]Action{
		"ConfigMap " + ns + "/keep-blue":    Unchanged,
		"ConfigMap " + ns + "/drop-blue":    Pruned,
		"Deployment " + ns + "/worker-blue": Pruned,
	}
	if got := actions(cs); !mapsEqual(got, want) {
		t.Errorf("actions %v, want %v", got, want)
	}
	if len(cs.PruneFailures) > 0 {
		t.Errorf("prune failures: %v", cs.PruneFailures)
	}
	if exists(t, a, gvrConfigMaps, ns, "drop-blue") || exists(t, a, gvrDeployments, ns, "worker-blue") {
		t.Error("dropped objects still exist")
	}
	if !exists(t, a, gvrConfigMaps, ns, "keep-blue") {
		t.Error("kept object was deleted")
	}
	if !exists(t, a, gvrConfigMaps, ns, "foreign-blue") {
		t.Error("an object tandem did not create was pruned")
	}
	inv, err := a.readInventory(ctx, ns, testBundle, "blue")
	if err != nil {
		t.Fatal(err)
	}
	if len(inv) != 1 || inv[0].Name != "keep-blue" {
		t.Errorf("inventory %v, want only keep-blue", inv)
	}
	// The other color's inventory and objects are untouched by this one.
	other := Set{Bundle: testBundle, Color: "green", Namespace: ns, Objects: []*unstructured.Unstructured{configMap(ns, "keep-green", "green", nil)}}
	if _, err := a.Apply(ctx, other); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "blue", Namespace: ns}); err != nil {
		t.Fatal(err)
	}
	if !exists(t, a, gvrConfigMaps, ns, "keep-green") || exists(t, a, gvrConfigMaps, ns, "keep-blue") {
		t.Error("emptying blue should prune keep-blue and leave keep-green")
	}
}

func TestApplySharedWithNamespaceAndCRD(t *testing.T) {
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	ns := env.Namespace(t) // inventory home
	newNS := ns + "-extra"
	nsObj := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Namespace",
		"metadata": map[string]any{"name": newNS, "labels": map[string]any{contract.LabelBundle: testBundle}},
	}}
	group := strings.ReplaceAll(ns, "-", "") + ".tandem.test"
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "widgets." + group, "labels": map[string]any{contract.LabelBundle: testBundle}},
		"spec": map[string]any{
			"group": group, "scope": "Namespaced",
			"names": map[string]any{"plural": "widgets", "singular": "widget", "kind": "Widget", "listKind": "WidgetList"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	widget := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": group + "/v1", "kind": "Widget",
		"metadata": map[string]any{"name": "w1", "namespace": newNS, "labels": map[string]any{contract.LabelBundle: testBundle}},
		"spec":     map[string]any{"size": int64(3)},
	}}
	cm := configMap(newNS, "shared-settings", "", map[string]any{"x": "y"})
	t.Cleanup(func() {
		_ = a.cs.CoreV1().Namespaces().Delete(context.Background(), newNS, deleteNow())
		_ = a.dyn.Resource(gvrCRDs).Delete(context.Background(), "widgets."+group, deleteNow())
	})
	// Objects in any order: the widget first, its CRD and namespace last.
	cs, err := a.Apply(ctx, Set{Bundle: testBundle, Namespace: ns, Objects: []*unstructured.Unstructured{widget, cm, crd, nsObj}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if cs.Count(Created) != 4 {
		t.Fatalf("changes %v, want 4 created", cs.Changes)
	}
	order := make([]string, len(cs.Changes))
	for i, c := range cs.Changes {
		order[i] = c.Object.Kind
	}
	if i, j := slices.Index(order, "CustomResourceDefinition"), slices.Index(order, "Widget"); i > j {
		t.Errorf("apply order %v: CRD after its object", order)
	}
	if !exists(t, a, gvrConfigMaps, ns, InventoryName(testBundle, "shared")) {
		t.Error("no shared inventory")
	}
	// Dropping the widget prunes it, through the learned mapping.
	cs, err = a.Apply(ctx, Set{Bundle: testBundle, Namespace: ns, Objects: []*unstructured.Unstructured{cm, crd, nsObj}})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if cs.Count(Pruned) != 1 || cs.Count(Unchanged) != 3 {
		t.Errorf("changes %v, want widget pruned and 3 unchanged", cs.Changes)
	}
}

func TestApplyRejectsUnknownKind(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "nope.tandem.test/v1", "kind": "Gadget",
		"metadata": map[string]any{"name": "g", "namespace": ns},
	}}
	_, err := a.Apply(testCtx(t, time.Minute), Set{Bundle: testBundle, Color: "blue", Namespace: ns,
		Objects: []*unstructured.Unstructured{u, configMap(ns, "c-blue", "blue", nil)}})
	if err == nil || !strings.Contains(err.Error(), "Gadget "+ns+"/g: ") {
		t.Fatalf("err = %v, want one naming Gadget %s/g", err, ns)
	}
	if exists(t, a, gvrConfigMaps, ns, "c-blue") {
		t.Error("c-blue applied although the set had an unknown kind")
	}
	var te *TransientError
	if errors.As(err, &te) {
		t.Error("unknown kind reported as transient")
	}
}

// countingTransport counts PATCH requests that are not dry runs.
type countingTransport struct {
	next    http.RoundTripper
	patches atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodPatch && !strings.Contains(r.URL.RawQuery, "dryRun") && !strings.Contains(r.URL.Path, "/configmaps/tandem-inventory-") {
		c.patches.Add(1)
	}
	return c.next.RoundTrip(r)
}

func TestReapplySparesNoOpsAndRevertsDrift(t *testing.T) {
	ns := env.Namespace(t)
	ct := &countingTransport{}
	a := applierThrough(t, func(rt http.RoundTripper) http.RoundTripper { ct.next = rt; return ct })
	ctx := testCtx(t, time.Minute)
	set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: clientServer(ns, "blue", "example/client:v1", "example/server:v1")}
	if _, err := a.Apply(ctx, set); err != nil {
		t.Fatal(err)
	}
	if got := ct.patches.Load(); got != 4 {
		t.Errorf("first apply sent %d applies, want 4", got)
	}
	// Wait until the controllers have settled, so the re-apply meets still objects.
	cs, err := a.Apply(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	ct.patches.Store(0)
	cs, err = a.Apply(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if cs.Changed() || ct.patches.Load() != 0 {
		t.Errorf("no-change re-apply: %s with %d applies sent, want all unchanged and none sent", cs, ct.patches.Load())
	}

	// Someone edits the server by hand: the next apply puts it back.
	patch := []byte(`{"spec":{"replicas":5},"metadata":{"labels":{"edited":"yes"}}}`)
	if _, err := a.cs.AppsV1().Deployments(ns).Patch(ctx, "server-blue", types.MergePatchType, patch,
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	cs, err = a.Apply(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if got := actions(cs)["Deployment "+ns+"/server-blue"]; got != Configured {
		t.Errorf("drifted server-blue: %s, want configured", got)
	}
	d, err := a.cs.AppsV1().Deployments(ns).Get(ctx, "server-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 2 {
		t.Errorf("replicas %d after re-apply, want 2", *d.Spec.Replicas)
	}
}
