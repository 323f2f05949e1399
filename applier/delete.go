package applier

import (
	"context"
	"errors"
	"fmt"
)

// KeepReason says why DeleteBundle left an object in place.
type KeepReason string

// The reasons DeleteBundle keeps an object.
const (
	// KeptForeign: the live object no longer carries the bundle's label (or
	// its color's label), or no tandem field manager applied it: another
	// bundle or tool owns it now.
	KeptForeign KeepReason = "owned by another bundle or tool"
	// KeptNamespace: Namespaces are never deleted.
	KeptNamespace KeepReason = "namespaces are never deleted"
	// KeptShared: a remaining bundle still renders it (keepShared said so,
	// or its sharer annotation is on the object); the removed bundle gave
	// up its share of it.
	KeptShared KeepReason = "still rendered by a remaining bundle"
	// KeptClusterScoped: a cluster-scoped object listed outside the shared
	// inventory (render never puts one there).
	KeptClusterScoped KeepReason = "cluster-scoped object outside the shared inventory"
)

// KeptObject is one object DeleteBundle left in place, and why.
type KeptObject struct {
	Object ObjectRef
	Reason KeepReason
}

// String formats the entry as "<Object>: <Reason>".
func (k KeptObject) String() string { return k.Object.String() + ": " + string(k.Reason) }

// inventoryPass is one inventory DeleteBundle empties: its name part and the
// color label its objects must carry ("" for twins and shared objects).
type inventoryPass struct {
	inv, color string
}

// DeleteBundle removes what tandem applied for bundle in namespace: the
// objects listed in its inventories (both colors, its stable twins and its
// shared objects), then the inventories themselves. It is the prune of a
// bundle that left Git.
//
// The order is: stable twins, the objects of colors[0], then colors[1],
// the shared objects, and the inventory ConfigMaps last, so that a call cut
// short (a crash, a cancelled ctx, an unreachable API server) leaves the
// inventories in place and the next call finishes the job; calling it on a
// bundle already deleted does nothing. Within an inventory objects go in
// reverse apply order (a CRD after its objects). Deletion propagates in the
// background: the garbage collector removes ReplicaSets and pods.
//
// An object is deleted only while it still carries
// tandem.dev/bundle=<bundle> (and, for a colored one, its color) and a
// tandem field manager applied it; otherwise it is left alone and listed in
// ChangeSet.Kept. A Namespace is never deleted, nor a cluster-scoped object
// outside the shared inventory. A shared object is deleted only when
// keepShared(ref) is false (the caller says whether a remaining bundle still
// renders it; a nil keepShared keeps none) and no other bundle's sharer
// annotation is on it; otherwise the bundle only gives up its share (its
// annotation and its field manager's claim) and the object stays.
//
// Every deleted object, inventories included, is in ChangeSet.Changes with
// Action Pruned. An object the API server refuses to delete is listed in
// ChangeSet.PruneFailures and stays in its inventory, which is kept for the
// next call; the bundle is gone when err is nil and PruneFailures is empty.
// An unreachable API server or a cancelled ctx stops the call with an error
// naming the object (IsTransient is true for the former).
func (a *Applier) DeleteBundle(ctx context.Context, namespace, bundle string, colors [2]string, keepShared func(ObjectRef) bool) (ChangeSet, error) {
	if namespace == "" || bundle == "" {
		return ChangeSet{}, errors.New("delete bundle: namespace and bundle are required")
	}
	for _, c := range colors {
		if c == "" || c == twinsInventory || c == sharedInventory || colors[0] == colors[1] {
			return ChangeSet{}, fmt.Errorf("delete bundle %s: colors %q: want two distinct colors other than %q and %q", bundle, colors, twinsInventory, sharedInventory)
		}
	}
	if keepShared == nil {
		keepShared = func(ObjectRef) bool { return false }
	}
	a.memo.forgetBundle(namespace, bundle)
	passes := []inventoryPass{{twinsInventory, ""}, {colors[0], colors[0]}, {colors[1], colors[1]}, {sharedInventory, ""}}
	var cs ChangeSet
	failed := map[string][]ObjectRef{}
	for _, p := range passes {
		refs, err := a.readInventory(ctx, namespace, bundle, p.inv)
		if err != nil {
			return cs, fmt.Errorf("delete bundle %s: %w", bundle, err)
		}
		for i := len(refs) - 1; i >= 0; i-- {
			r := refs[i]
			reason := keepReason(r, p.inv, keepShared)
			if reason != "" && reason != KeptShared && reason != KeptNamespace {
				cs.Kept = append(cs.Kept, KeptObject{Object: r, Reason: reason})
				continue
			}
			// A shared object or Namespace is kept, but the bundle gives up
			// its share of it when other bundles render it.
			ok, err := a.deleteOne(ctx, &cs, r, bundle, p.color, reason)
			if err != nil {
				return cs, fmt.Errorf("delete bundle %s: %w", bundle, err)
			}
			if !ok {
				failed[p.inv] = append(failed[p.inv], r)
			}
		}
	}
	// The check Jobs are in no inventory (each check run makes its own):
	// delete them with the objects, before the inventories.
	if err := a.deleteCheckJobs(ctx, namespace, bundle, "", ""); err != nil {
		return cs, fmt.Errorf("delete bundle %s: %w", bundle, err)
	}
	for _, p := range passes {
		if refs := failed[p.inv]; len(refs) > 0 {
			// Keep only what could not be deleted, for the next call.
			if err := a.writeInventory(ctx, namespace, bundle, p.inv, refs); err != nil {
				return cs, fmt.Errorf("delete bundle %s: %w", bundle, err)
			}
			continue
		}
		inv := ObjectRef{Version: "v1", Kind: "ConfigMap", Namespace: namespace, Name: InventoryName(bundle, p.inv)}
		if _, err := a.deleteOne(ctx, &cs, inv, bundle, "", ""); err != nil {
			return cs, fmt.Errorf("delete bundle %s: %w", bundle, err)
		}
	}
	return cs, nil
}

// keepReason says why DeleteBundle must not delete r, listed in inventory
// inv ("" when it may).
func keepReason(r ObjectRef, inv string, keepShared func(ObjectRef) bool) KeepReason {
	switch {
	case r.Group == "" && r.Kind == "Namespace":
		return KeptNamespace
	case inv != sharedInventory && r.Namespace == "":
		return KeptClusterScoped
	case inv == sharedInventory && keepShared(r):
		return KeptShared
	}
	return ""
}

// deleteOne prunes r and records the outcome in cs; with a keep reason it
// does not delete r but gives up bundle's share of it (when other bundles
// render it) and records r as kept for that reason. It returns false when
// the API server refused the deletion (recorded in cs.PruneFailures), and
// an error naming r when the call cannot go on: the API server is
// unreachable or ctx is done.
func (a *Applier) deleteOne(ctx context.Context, cs *ChangeSet, r ObjectRef, bundle, color string, keep KeepReason) (bool, error) {
	out, err := a.prune(ctx, r, bundle, color, keep != "")
	if keep != "" && err == nil {
		cs.Kept = append(cs.Kept, KeptObject{Object: r, Reason: keep})
		return true, nil
	}
	switch {
	case err != nil && (IsTransient(err) || ctx.Err() != nil):
		return false, fmt.Errorf("%s: delete: %w", r, err)
	case err != nil:
		cs.PruneFailures = append(cs.PruneFailures, Failure{Object: r.String(), Reason: "delete: " + err.Error()})
		return false, nil
	case out == pruneDeleted:
		cs.Changes = append(cs.Changes, Change{Object: r, Action: Pruned})
	case out == pruneForeign:
		cs.Kept = append(cs.Kept, KeptObject{Object: r, Reason: KeptForeign})
	case out == pruneShared:
		cs.Kept = append(cs.Kept, KeptObject{Object: r, Reason: KeptShared})
	}
	return true, nil
}
