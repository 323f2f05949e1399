package applier

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/tandem-gitops/tandem/contract"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// inventoryKey is the ConfigMap data key holding the JSON list of ObjectRefs.
const inventoryKey = "objects"

// InventoryName is the name of the inventory ConfigMap of a bundle and an
// inventory color ("shared" for the shared set, "twins" for stable twins).
func InventoryName(bundle, color string) string {
	return inventoryPrefix + bundle + "-" + color
}

// readInventory returns the refs of an inventory; a missing inventory is empty.
func (a *Applier) readInventory(ctx context.Context, ns, bundle, color string) ([]ObjectRef, error) {
	refs, _, err := a.inventoryObject(ctx, ns, bundle, color)
	return refs, err
}

// inventoryObject returns the refs of an inventory and its ConfigMap (nil
// when it is missing: no refs).
func (a *Applier) inventoryObject(ctx context.Context, ns, bundle, color string) ([]ObjectRef, *unstructured.Unstructured, error) {
	cm, err := a.dyn.Resource(gvrConfigMaps).Namespace(ns).Get(ctx, InventoryName(bundle, color), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("ConfigMap %s/%s: %w", ns, InventoryName(bundle, color), err)
	}
	data, _, _ := unstructured.NestedString(cm.Object, "data", inventoryKey)
	var refs []ObjectRef
	if data != "" {
		if err := json.Unmarshal([]byte(data), &refs); err != nil {
			return nil, nil, fmt.Errorf("ConfigMap %s/%s: %w", ns, InventoryName(bundle, color), err)
		}
	}
	return refs, cm, nil
}

// inventoryData is the data writeInventory stores for refs.
func inventoryData(refs []ObjectRef) (string, error) {
	if refs == nil {
		refs = []ObjectRef{}
	}
	data, err := json.MarshalIndent(refs, "", " ")
	return string(data), err
}

// inventoryHolds reports whether cm, a live inventory, already is what
// writeInventory would write for refs: the same data and labels, applied by
// bundle's field manager, with no legacy manager left to hand over. Then the
// write would change nothing and can be spared.
func inventoryHolds(cm *unstructured.Unstructured, bundle, color string, refs []ObjectRef) bool {
	if cm == nil || legacyEntry(cm, contract.LegacyFieldManager) >= 0 {
		return false
	}
	want, err := inventoryData(refs)
	data, _, _ := unstructured.NestedString(cm.Object, "data", inventoryKey)
	l := cm.GetLabels()
	if err != nil || data != want || l[contract.LabelBundle] != bundle || l[contract.LabelInventory] != color {
		return false
	}
	return legacyEntry(cm, contract.FieldManagerFor(bundle)) >= 0 // an Apply entry of bundle's manager
}

// writeInventory server-side applies the inventory ConfigMap.
func (a *Applier) writeInventory(ctx context.Context, ns, bundle, color string, refs []ObjectRef) error {
	data, err := inventoryData(refs)
	if err != nil {
		return err
	}
	cm := map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      InventoryName(bundle, color),
			"namespace": ns,
			"labels":    map[string]any{contract.LabelBundle: bundle, contract.LabelInventory: color},
		},
		"data": map[string]any{inventoryKey: data},
	}
	body, err := json.Marshal(cm)
	if err != nil {
		return err
	}
	ri := a.dyn.Resource(gvrConfigMaps).Namespace(ns)
	manager := contract.FieldManagerFor(bundle)
	out, err := ri.Patch(ctx, InventoryName(bundle, color), types.ApplyPatchType, body,
		metav1.PatchOptions{FieldManager: manager, Force: new(true)})
	if err == nil {
		_, err = dropLegacy(ctx, ri, out, contract.LegacyFieldManager, manager)
	}
	if err != nil {
		return fmt.Errorf("ConfigMap %s/%s: %w", ns, InventoryName(bundle, color), err)
	}
	return nil
}

// syncInventory records refs as the inventory of bundle/invColor and prunes
// what the previous inventory had and refs has not. Objects are deleted only
// when they carry tandem.dev/bundle=<bundle> (and tandem.dev/color=<color>
// for a colored set). Failed deletions stay in the inventory.
func (a *Applier) syncInventory(ctx context.Context, ns, bundle, invColor, color string, refs []ObjectRef) ([]ObjectRef, []Failure, error) {
	old, live, err := a.inventoryObject(ctx, ns, bundle, invColor)
	if err != nil {
		return nil, nil, err
	}
	keep := map[string]bool{}
	for _, r := range refs {
		keep[r.key()] = true
	}
	var stale []ObjectRef
	for _, r := range old {
		if !keep[r.key()] {
			stale = append(stale, r)
		}
	}
	// Record the union first, so a crash while pruning forgets nothing.
	union := append(append([]ObjectRef{}, refs...), stale...)
	// A re-apply of the same objects finds it recorded already.
	if !inventoryHolds(live, bundle, invColor, union) {
		if err := a.writeInventory(ctx, ns, bundle, invColor, union); err != nil {
			return nil, nil, err
		}
	}
	if len(stale) == 0 {
		return nil, nil, nil
	}
	var pruned []ObjectRef
	var failures []Failure
	var failed []ObjectRef
	for i := len(stale) - 1; i >= 0; i-- {
		r := stale[i]
		out, err := a.prune(ctx, r, bundle, color, false)
		if err != nil {
			failures = append(failures, Failure{Object: r.String(), Reason: "prune: " + err.Error()})
			failed = append(failed, r)
			continue
		}
		if out == pruneDeleted {
			pruned = append(pruned, r)
		}
	}
	if err := a.writeInventory(ctx, ns, bundle, invColor, append(append([]ObjectRef{}, refs...), failed...)); err != nil {
		return pruned, failures, err
	}
	return pruned, failures, nil
}

// pruneOutcome is what prune did with one object.
type pruneOutcome int

const (
	// pruneGone: the object (or its kind) does not exist, or the entry does
	// not fit its kind's scope; nothing was deleted.
	pruneGone pruneOutcome = iota
	// pruneDeleted: prune deleted the object.
	pruneDeleted
	// pruneForeign: the live object is no longer tandem's (another bundle's
	// label or color, or no tandem field manager); it was left alone.
	pruneForeign
	// pruneShared: a shared object other bundles still render (their
	// sharer annotations); the bundle gave up its share, nothing was deleted.
	pruneShared
)

// prune deletes r if it still exists and is bundle's, and says which it
// was. An object is bundle's when it carries bundle's label (and color's,
// for a colored one) or bundle's sharer annotation, and a tandem field
// manager applied it. A shared object that other bundles still render, or
// any object when keep is set, is not deleted: bundle only gives up its
// share of it (release) when other bundles render it.
func (a *Applier) prune(ctx context.Context, r ObjectRef, bundle, color string, keep bool) (pruneOutcome, error) {
	m, err := a.mapping(r.gvk())
	if meta.IsNoMatchError(err) {
		return pruneGone, nil // the kind is gone, and with it the object
	}
	if err != nil {
		return pruneGone, err
	}
	ri := a.dyn.Resource(m.Resource).Namespace(r.Namespace)
	if root := m.Scope.Name() == meta.RESTScopeNameRoot; root != (r.Namespace == "") {
		return pruneGone, nil // the entry does not fit the kind's scope: touch nothing
	} else if root {
		ri = a.dyn.Resource(m.Resource)
	}
	live, err := ri.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return pruneGone, nil
	}
	if err != nil {
		return pruneGone, err
	}
	l := live.GetLabels()
	_, sharer := live.GetAnnotations()[sharerKey(bundle)]
	if (l[contract.LabelBundle] != bundle && !sharer) || (color != "" && l[contract.LabelColor] != color) || !managedByTandem(live) {
		return pruneForeign, nil // not tandem's (any more): never delete it
	}
	if others := otherSharers(live, bundle); len(others) > 0 || keep {
		if len(others) == 0 {
			return pruneShared, nil
		}
		if err := release(ctx, ri, live, bundle); err != nil {
			return pruneGone, fmt.Errorf("give up the share of bundle %s (bundles %s still render it): %w", bundle, strings.Join(others, ", "), err)
		}
		return pruneShared, nil
	}
	uid := live.GetUID()
	bg := metav1.DeletePropagationBackground
	err = ri.Delete(ctx, r.Name, metav1.DeleteOptions{PropagationPolicy: &bg, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return pruneGone, nil // gone, or replaced by another object since the Get
	}
	if err != nil {
		return pruneGone, err
	}
	return pruneDeleted, nil
}
