package applier

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ofBundle sets every tandem.dev/bundle label in us (metadata, selectors,
// pod templates) to bundle, and returns us.
func ofBundle(bundle string, us ...*unstructured.Unstructured) []*unstructured.Unstructured {
	for _, u := range us {
		relabel(u.Object, bundle)
	}
	return us
}

func relabel(v any, bundle string) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if k == contract.LabelBundle {
				x[k] = bundle
				continue
			}
			relabel(e, bundle)
		}
	case []any:
		for _, e := range x {
			relabel(e, bundle)
		}
	}
}

// live reads u's object from the cluster as the API server holds it.
func live(t *testing.T, a *Applier, u *unstructured.Unstructured) *unstructured.Unstructured {
	t.Helper()
	ri, err := a.resourceFor(u.DeepCopy(), u.GetNamespace())
	if err != nil {
		t.Fatal(err)
	}
	got, err := ri.Get(t.Context(), u.GetName(), metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", objRef(u), err)
	}
	return got
}

// managers lists the field managers of u's apply entries.
func managers(u *unstructured.Unstructured) []string {
	var out []string
	for _, m := range u.GetManagedFields() {
		if m.Operation == metav1.ManagedFieldsOperationApply {
			out = append(out, m.Manager)
		}
	}
	return out
}

// ownedBy is bundle's color blue in ns: a ConfigMap, a Deployment
// and its colored Service.
func ownedBy(bundle, ns, data, image string) []*unstructured.Unstructured {
	return ofBundle(bundle,
		configMap(ns, "settings-blue", "blue", map[string]any{"owner": data}),
		deployment(ns, "api", "blue", image, 1),
		service(ns, "api", "blue"))
}

// TestOwnershipRefusesAnotherBundlesObjects: bundles one and two render the
// same names in one namespace. one is live; two's apply and two's flip are
// refused before anything changes, naming each object and both bundles,
// and every object of one (colored, stable twin, inventories) keeps its
// resourceVersion: content, labels, managers and selector untouched.
func TestOwnershipRefusesAnotherBundlesObjects(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	one := Set{Bundle: "one", Color: "blue", Namespace: ns, Objects: ownedBy("one", ns, "one", "example/api:v1")}
	cs, err := a.Apply(ctx, one)
	if err != nil {
		t.Fatalf("Apply one: %v", err)
	}
	if _, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatalf("WaitHealthy one: %v", err)
	}
	oneTwin := ofBundle("one", twinOf(ns, "api", "blue", "c1"))
	if err := a.Flip(ctx, oneTwin, "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip one: %v", err)
	}
	watched := append(ownedBy("one", ns, "one", "example/api:v1"), oneTwin[0],
		configMap(ns, InventoryName("one", "blue"), "", nil), configMap(ns, InventoryName("one", twinsInventory), "", nil))
	before := map[string]*unstructured.Unstructured{}
	for _, u := range watched {
		before[objRef(u)] = live(t, a, u)
	}

	// two renders the same ConfigMap, Deployment and Service.
	_, err = a.Apply(ctx, Set{Bundle: "two", Color: "blue", Namespace: ns, Objects: ownedBy("two", ns, "two", "example/api:v2")})
	if err == nil {
		t.Fatal("bundle two applied over bundle one's objects")
	}
	t.Logf("apply two: %v", err)
	for _, o := range []string{"ConfigMap " + ns + "/settings-blue", "Deployment " + ns + "/api-blue", "Service " + ns + "/api-blue"} {
		if want := o + ": belongs to bundle one; bundle two may not change it"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	if !strings.Contains(err.Error(), "nothing applied") {
		t.Errorf("error %q does not say nothing was applied", err)
	}
	if exists(t, a, gvrConfigMaps, ns, InventoryName("two", "blue")) {
		t.Error("bundle two's inventory was written although its apply was refused")
	}

	// tandem-agent diff says the same, without changing anything.
	_, err = a.Diff(ctx, Set{Bundle: "two", Color: "blue", Namespace: ns, Objects: ownedBy("two", ns, "two", "example/api:v2")})
	if want := ": belongs to bundle one; bundle two may not change it (the apply would be refused)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Diff of two: err = %v, want one containing %q", err, want)
	}

	// two's stable Service api, already one's.
	err = a.Flip(ctx, ofBundle("two", twinOf(ns, "api", "blue", "c2")), "blue", FlipOptions{})
	if err == nil {
		t.Fatal("bundle two flipped bundle one's stable Service")
	}
	t.Logf("flip two: %v", err)
	if want := "Service " + ns + "/api: belongs to bundle one; bundle two may not change it"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if exists(t, a, gvrConfigMaps, ns, InventoryName("two", twinsInventory)) {
		t.Error("bundle two's twins inventory was written although its flip was refused")
	}

	// A ConfigMap named like an inventory, one's or two's own.
	for _, name := range []string{InventoryName("one", "blue"), InventoryName("two", "blue")} {
		_, err = a.Apply(ctx, Set{Bundle: "two", Color: "blue", Namespace: ns, Objects: ofBundle("two", configMap(ns, name, "blue", nil))})
		if want := "ConfigMap " + ns + "/" + name + `: the name prefix "tandem-inventory-" is reserved`; err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("apply of %s: err = %v, want one containing %q", name, err, want)
		}
	}

	for _, u := range watched {
		b, now := before[objRef(u)], live(t, a, u)
		if b.GetResourceVersion() != now.GetResourceVersion() {
			t.Errorf("%s changed (resourceVersion %s -> %s): labels %v, managers %v",
				objRef(u), b.GetResourceVersion(), now.GetResourceVersion(), now.GetLabels(), managers(now))
		}
		if got := now.GetLabels()[contract.LabelBundle]; got != "one" {
			t.Errorf("%s: bundle label %q, want one", objRef(u), got)
		}
	}
	sel, _, _ := unstructured.NestedStringMap(live(t, a, oneTwin[0]).Object, "spec", "selector")
	if sel[contract.LabelBundle] != "one" || sel[contract.LabelColor] != "blue" {
		t.Errorf("one's stable Service selects %v", sel)
	}

	// The owner goes on as before: its re-apply changes nothing.
	cs, err = a.Apply(ctx, one)
	if err != nil {
		t.Fatalf("re-Apply one: %v", err)
	}
	if cs.Changed() {
		t.Errorf("re-apply of one: %s, want nothing changed", cs)
	}
}

// TestOwnershipUpgradeFromSharedManagers: objects, an inventory and a stable
// twin applied by an earlier release with the shared managers "tandem" and
// "tandem/traffic" are the bundle's: the next Apply and Flip succeed, leave
// their content and the Deployment's generation as they were, and hand
// every field to the bundle's own managers (no entry of the old ones left);
// an object only the old manager applied is still pruned; the apply after
// that changes nothing.
func TestOwnershipUpgradeFromSharedManagers(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	objs := ownedBy(testBundle, ns, "v1", "example/api:v1")
	old := configMap(ns, "old-blue", "blue", map[string]any{"gone": "soon"})
	var refs []ObjectRef
	var applied []*unstructured.Unstructured
	legacyApply := func(u *unstructured.Unstructured, manager string) *unstructured.Unstructured {
		t.Helper()
		c := u.DeepCopy()
		ri, err := a.resourceFor(c, ns)
		if err != nil {
			t.Fatal(err)
		}
		body, err := applyBody(c)
		if err != nil {
			t.Fatal(err)
		}
		out, err := ri.Patch(ctx, c.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: manager, Force: new(true)})
		if err != nil {
			t.Fatalf("legacy apply of %s: %v", objRef(c), err)
		}
		return out
	}
	for _, u := range append(objs, old) {
		applied = append(applied, legacyApply(u, contract.LegacyFieldManager))
		refs = append(refs, refOf(applied[len(applied)-1]))
	}
	data, err := json.Marshal(refs)
	if err != nil {
		t.Fatal(err)
	}
	inv := configMap(ns, InventoryName(testBundle, "blue"), "", map[string]any{inventoryKey: string(data)})
	inv.SetLabels(map[string]string{contract.LabelBundle: testBundle, contract.LabelInventory: "blue"})
	legacyApply(inv, contract.LegacyFieldManager)
	if _, err := a.WaitHealthy(ctx, applied, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	tw, err := prepareTwin(twinOf(ns, "api", "blue", "c1"), "blue")
	if err != nil {
		t.Fatal(err)
	}
	legacyApply(tw.obj, contract.LegacyTrafficFieldManager)

	before := map[string]*unstructured.Unstructured{}
	for _, u := range append(append([]*unstructured.Unstructured{}, objs...), tw.obj) {
		before[objRef(u)] = live(t, a, u)
	}

	cs, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: objs})
	if err != nil {
		t.Fatalf("Apply after the upgrade: %v", err)
	}
	if got := actions(cs)["ConfigMap "+ns+"/old-blue"]; got != Pruned {
		t.Errorf("old-blue, applied by the shared manager and dropped: %q, want pruned", got)
	}
	if err := a.Flip(ctx, []*unstructured.Unstructured{twinOf(ns, "api", "blue", "c1")}, "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip after the upgrade: %v", err)
	}

	check := func(u *unstructured.Unstructured, want, legacy string) {
		t.Helper()
		now := live(t, a, u)
		ms := managers(now)
		has := false
		for _, m := range ms {
			has = has || m == want
			if m == legacy {
				t.Errorf("%s: the shared manager %q still owns fields (managers %v)", objRef(u), legacy, ms)
			}
		}
		if !has {
			t.Errorf("%s: managers %v, want %q", objRef(u), ms, want)
		}
		for _, m := range now.GetManagedFields() {
			t.Logf("%s: field manager %s (%s)", objRef(u), m.Manager, m.Operation)
		}
		b, ok := before[objRef(u)]
		if !ok {
			return
		}
		if bs, as := Sanitize(b), Sanitize(now); !equality.Semantic.DeepEqual(bs.Object, as.Object) {
			t.Errorf("%s: content changed by the upgrade:\nbefore %v\nafter  %v", objRef(u), bs.Object, as.Object)
		}
		if b.GetGeneration() != now.GetGeneration() {
			t.Errorf("%s: generation %d -> %d", objRef(u), b.GetGeneration(), now.GetGeneration())
		}
	}
	for _, u := range objs {
		check(u, contract.FieldManagerFor(testBundle), contract.LegacyFieldManager)
	}
	check(inv, contract.FieldManagerFor(testBundle), contract.LegacyFieldManager)
	check(tw.obj, contract.TrafficFieldManagerFor(testBundle), contract.LegacyTrafficFieldManager)

	cs, err = a.Apply(ctx, Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: objs})
	if err != nil {
		t.Fatalf("re-Apply: %v", err)
	}
	if cs.Changed() {
		t.Errorf("re-apply after the upgrade: %s, want nothing changed", cs)
	}
	obs, err := a.Observe(ctx, ns, testBundle)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Live != "blue" || len(obs.Twins) != 1 {
		t.Errorf("Observe after the upgrade: live %q, twins %v; want blue and api", obs.Live, obs.Twins)
	}
}

// TestOwnershipAdoptionIsOptIn: an object made with kubectl (no bundle
// label, no tandem manager) is refused, and nothing of the set applied,
// until the set allows adoption; then it is the bundle's.
func TestOwnershipAdoptionIsOptIn(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, time.Minute)
	if _, err := a.cs.CoreV1().ConfigMaps(ns).Create(ctx, userConfigMap(ns, "legacy-blue"), createOpts()); err != nil {
		t.Fatal(err)
	}
	set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: objs(
		configMap(ns, "legacy-blue", "blue", map[string]any{"owner": "tandem"}),
		configMap(ns, "fresh-blue", "blue", nil))}
	_, err := a.Apply(ctx, set)
	want := "ConfigMap " + ns + "/legacy-blue: exists and no bundle owns it; set spec.adopt: true in bundle.yaml to take it over"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want one containing %q", err, want)
	}
	if exists(t, a, gvrConfigMaps, ns, "fresh-blue") {
		t.Error("fresh-blue applied although the set was refused")
	}
	cm, err := a.cs.CoreV1().ConfigMaps(ns).Get(ctx, "legacy-blue", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["owner"] != "someone else" || cm.Labels[contract.LabelBundle] != "" {
		t.Errorf("legacy-blue changed by a refused apply: %v %v", cm.Labels, cm.Data)
	}

	set.Adopt = true
	if _, err := a.Apply(ctx, set); err != nil {
		t.Fatalf("Apply with adoption: %v", err)
	}
	u := live(t, a, set.Objects[0])
	d, _, _ := unstructured.NestedStringMap(u.Object, "data")
	if u.GetLabels()[contract.LabelBundle] != testBundle || d["owner"] != "tandem" || !managedByTandem(u) {
		t.Errorf("adopted legacy-blue: labels %v, data %v, managers %v", u.GetLabels(), d, managers(u))
	}
}

// TestOwnershipTwinAdoptionIsOptIn: the Service an app had before it moved
// under tandem (made with kubectl) is refused as a stable twin, unchanged,
// until the flip allows adoption; then it selects the healthy color.
func TestOwnershipTwinAdoptionIsOptIn(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	user := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Port: 8080, TargetPort: intstr.FromInt32(8080)}}},
	}
	if _, err := a.cs.CoreV1().Services(ns).Create(ctx, user, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cs, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: objs(deployment(ns, "web", "blue", "example/web:v1", 1))})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if _, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatalf("WaitHealthy: %v", err)
	}
	tw := objs(twinOf(ns, "web", "blue", "c1"))
	before := live(t, a, tw[0])
	err = a.Flip(ctx, tw, "blue", FlipOptions{})
	want := "Service " + ns + "/web: exists and no bundle owns it; set spec.adopt: true in bundle.yaml to take it over"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Flip without adoption: err = %v, want one containing %q", err, want)
	}
	if now := live(t, a, tw[0]); now.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("the user's Service changed by a refused flip: labels %v, managers %v", now.GetLabels(), managers(now))
	}

	if err := a.Flip(ctx, tw, "blue", FlipOptions{Adopt: true}); err != nil {
		t.Fatalf("Flip with adoption: %v", err)
	}
	now := live(t, a, tw[0])
	sel, _, _ := unstructured.NestedStringMap(now.Object, "spec", "selector")
	if now.GetLabels()[contract.LabelBundle] != testBundle || sel[contract.LabelColor] != "blue" || now.GetUID() != before.GetUID() {
		t.Errorf("adopted Service web: labels %v, selector %v, uid %s -> %s", now.GetLabels(), sel, before.GetUID(), now.GetUID())
	}
}

// TestOwnershipBackedByTheAPIServer: an object that becomes another
// bundle's after the dry run checked its label (applyAll called without the
// dry run here) is still refused: the API server reports the conflict with
// the other bundle's field manager, and nothing changes. Drift (a kubectl
// edit) is still taken back.
func TestOwnershipBackedByTheAPIServer(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, time.Minute)
	cm := func(bundle, v string) []*unstructured.Unstructured {
		return ofBundle(bundle, configMap(ns, "settings-blue", "blue", map[string]any{"k": v}))
	}
	if _, err := a.Apply(ctx, Set{Bundle: "one", Color: "blue", Namespace: ns, Objects: cm("one", "1")}); err != nil {
		t.Fatalf("Apply one: %v", err)
	}
	before := live(t, a, cm("one", "1")[0])
	items, err := a.prepare(ctx, Set{Bundle: "two", Color: "blue", Namespace: ns, Objects: cm("two", "2")})
	if err != nil {
		t.Fatal(err)
	}
	err = a.applyAll(ctx, "two", items)
	want := "ConfigMap " + ns + "/settings-blue: apply: field "
	if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), `belongs to tandem/one, another bundle's field manager; bundle two may not change it`) {
		t.Fatalf("applyAll of two: err = %v, want a refusal naming tandem/one", err)
	}
	t.Logf("refused: %v", err)
	if now := live(t, a, before); now.GetResourceVersion() != before.GetResourceVersion() {
		t.Errorf("settings-blue changed: %v %v", now.GetLabels(), now.Object["data"])
	}

	if _, err := a.cs.CoreV1().ConfigMaps(ns).Patch(ctx, "settings-blue", types.MergePatchType, []byte(`{"data":{"k":"edited"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, Set{Bundle: "one", Color: "blue", Namespace: ns, Objects: cm("one", "1")}); err != nil {
		t.Fatalf("re-Apply one after a kubectl edit: %v", err)
	}
	if d, _, _ := unstructured.NestedString(live(t, a, before).Object, "data", "k"); d != "1" {
		t.Errorf("drift not taken back: k = %q", d)
	}
}
