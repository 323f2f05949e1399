package applier

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// sharedOf is bundle's shared set in ns: the Namespace ns (labelled
// team: <team>) and the ConfigMap common (data v).
func sharedOf(bundle, ns, team, v string) Set {
	n := namespaceObject(ns)
	n.SetLabels(map[string]string{contract.LabelBundle: bundle, "team": team})
	cm := configMap(ns, "common", "", map[string]any{"v": v})
	return Set{Bundle: bundle, Namespace: ns, Objects: ofBundle(bundle, n, cm)}
}

// TestSharedObjectIdenticalRendersShareIt: bundles one and two render the
// same shared Namespace and ConfigMap. two's identical render is applied
// next to one's (the bundle label stays one's, each bundle's render is
// recorded); three's different render is refused before anything changes,
// naming the object and the bundles that render it otherwise, and so is
// a change of one's render while two renders it. Removing one
// keeps the objects (two still renders them) and gives up only one's share;
// removing two then deletes the ConfigMap (never the Namespace).
func TestSharedObjectIdenticalRendersShareIt(t *testing.T) {
	ns := namespaceOwnedBy(t, "one")
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	common := configMap(ns, "common", "", nil)
	nsObj := namespaceObject(ns)

	if _, err := a.Apply(ctx, sharedOf("one", ns, "shop", "1")); err != nil {
		t.Fatalf("Apply one: %v", err)
	}
	if _, err := a.Apply(ctx, sharedOf("two", ns, "shop", "1")); err != nil {
		t.Fatalf("Apply two (identical render): %v", err)
	}
	for _, u := range []*unstructured.Unstructured{nsObj, common} {
		got := live(t, a, u)
		if l := got.GetLabels()[contract.LabelBundle]; l != "one" {
			t.Errorf("%s: bundle label %q, want one (the bundle that created it)", objRef(u), l)
		}
		if s := sharers(got); len(s) != 2 || s["one"] == "" || s["one"] != s["two"] {
			t.Errorf("%s: sharer annotations %v, want one and two with the same hash", objRef(u), s)
		}
	}

	// three renders the ConfigMap differently, and the Namespace too.
	before := map[string]string{}
	for _, u := range []*unstructured.Unstructured{nsObj, common} {
		before[objRef(u)] = live(t, a, u).GetResourceVersion()
	}
	_, err := a.Apply(ctx, sharedOf("three", ns, "other-team", "2"))
	if err == nil {
		t.Fatal("bundle three applied a different render of shared objects")
	}
	t.Logf("apply three: %v", err)
	for _, o := range []string{"ConfigMap " + ns + "/common", "Namespace " + ns} {
		want := o + ": shared object rendered differently by bundle one, two; bundle three may render it only identically"
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
	for _, u := range []*unstructured.Unstructured{nsObj, common} {
		if rv := live(t, a, u).GetResourceVersion(); rv != before[objRef(u)] {
			t.Errorf("%s changed by the refused apply (resourceVersion %s -> %s)", objRef(u), before[objRef(u)], rv)
		}
	}
	if exists(t, a, gvrConfigMaps, ns, InventoryName("three", sharedInventory)) {
		t.Error("bundle three's inventory was written although its apply was refused")
	}

	// tandem-agent diff says the same; for two, nothing would change.
	_, err = a.Diff(ctx, sharedOf("three", ns, "other-team", "2"))
	if want := "shared object rendered differently by bundle one, two; bundle three may render it only identically (the apply would be refused)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Diff of three: err = %v, want one containing %q", err, want)
	}
	d, err := a.Diff(ctx, sharedOf("two", ns, "shop", "1"))
	if err != nil || d.Changed() {
		t.Errorf("Diff of two: %+v, %v; want nothing changed", d, err)
	}

	// The owner's re-apply changes nothing.
	cs, err := a.Apply(ctx, sharedOf("one", ns, "shop", "1"))
	if err != nil {
		t.Fatalf("re-Apply one: %v", err)
	}
	if cs.Changed() {
		t.Errorf("re-apply of one: %s, want nothing changed", cs)
	}

	// Nor may the first bundle change its render alone while two renders it.
	_, err = a.Apply(ctx, sharedOf("one", ns, "shop", "changed"))
	if want := "ConfigMap " + ns + "/common: shared object rendered differently by bundle two; bundle one may render it only identically"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Apply of one's changed render: err = %v, want one containing %q", err, want)
	}

	// one leaves: the objects stay, only its share goes.
	cs, err = a.DeleteBundle(ctx, ns, "one", blueGreen, nil)
	if err != nil {
		t.Fatalf("DeleteBundle one: %v", err)
	}
	var kept []string
	for _, k := range cs.Kept {
		kept = append(kept, k.String())
	}
	if want := "ConfigMap " + ns + "/common: " + string(KeptShared); !slices.Contains(kept, want) {
		t.Errorf("kept %q, want %q among them", kept, want)
	}
	got := live(t, a, common)
	if s := sharers(got); len(s) != 1 || s["two"] == "" {
		t.Errorf("after one left, sharer annotations %v, want two's only", s)
	}
	if d, _, _ := unstructured.NestedString(got.Object, "data", "v"); d != "1" {
		t.Errorf("after one left, common's data v = %q, want 1", d)
	}
	// two goes on; then two leaves too and the ConfigMap goes.
	if _, err := a.Apply(ctx, sharedOf("two", ns, "shop", "1")); err != nil {
		t.Fatalf("re-Apply two after one left: %v", err)
	}
	cs, err = a.DeleteBundle(ctx, ns, "two", blueGreen, nil)
	if err != nil {
		t.Fatalf("DeleteBundle two: %v", err)
	}
	if exists(t, a, gvrConfigMaps, ns, "common") {
		t.Errorf("common still exists after the last bundle rendering it left: %s, kept %v", cs, cs.Kept)
	}
}

// TestSharedObjectDroppedByOneBundleStays: a bundle whose render no longer
// has a shared object that another bundle renders does not prune it.
func TestSharedObjectDroppedByOneBundleStays(t *testing.T) {
	ns := namespaceOwnedBy(t, "one")
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	for _, b := range []string{"one", "two"} {
		if _, err := a.Apply(ctx, sharedOf(b, ns, "shop", "1")); err != nil {
			t.Fatalf("Apply %s: %v", b, err)
		}
	}
	s := sharedOf("one", ns, "shop", "1")
	s.Objects = s.Objects[:1] // the Namespace only
	cs, err := a.Apply(ctx, s)
	if err != nil {
		t.Fatalf("Apply one without common: %v", err)
	}
	if cs.Count(Pruned) != 0 {
		t.Errorf("one's apply pruned %s", cs)
	}
	got := live(t, a, configMap(ns, "common", "", nil))
	if sh := sharers(got); len(sh) != 1 || sh["two"] == "" {
		t.Errorf("sharer annotations %v, want two's only", sh)
	}
}

// TestSharedObjectOfAnEarlierRelease: a shared object another bundle
// applied before renders were recorded (no sharer annotation) is refused,
// saying why and when that changes.
func TestSharedObjectOfAnEarlierRelease(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	old := configMap(ns, "common", "", map[string]any{"v": "1"})
	relabel(old.Object, "one")
	body, err := applyBody(old)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.dyn.Resource(gvrConfigMaps).Namespace(ns).Patch(ctx, "common", types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: contract.FieldManagerFor("one")}); err != nil {
		t.Fatal(err)
	}
	_, err = a.Apply(ctx, sharedOf("two", ns, "shop", "1"))
	if want := "ConfigMap " + ns + "/common: belongs to bundle one; bundle two may not change it (bundle one has not recorded its render"; err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Apply two: err = %v, want one containing %q", err, want)
	}
}
