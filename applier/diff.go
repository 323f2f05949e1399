package applier

import (
	"context"
	"fmt"
	"sort"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandem-gitops/tandem/contract"
)

// ObjectDiff is what Apply would do to one object.
type ObjectDiff struct {
	Object ObjectRef
	// Action is Created, Configured (changed), Unchanged or Pruned.
	Action Action
	// Live is the object in the cluster (nil when Created); Merged is the
	// server's dry-run result of the apply (nil when Pruned), or the
	// object as rendered when the server cannot dry-run it yet (its
	// namespace or CRD is created by the same apply). Both are sanitised:
	// no managedFields, resourceVersion, generation, uid,
	// creationTimestamp or status.
	Live, Merged *unstructured.Unstructured
}

// Diff is the typed result of Diff: one entry per object of the set, then
// the objects its inventory has that the set no longer has.
type Diff struct {
	Objects []ObjectDiff
}

// Count returns how many objects have action act.
func (d Diff) Count(act Action) int { return countAction(d.Objects, act, ObjectDiff.action) }

// Changed reports whether applying would create, change or prune anything.
func (d Diff) Changed() bool { return changes(d.Count) }

func (o ObjectDiff) action() Action { return o.Action }

// Diff reports what Apply(s) would change, without changing anything: a
// server-side dry run of each object's apply (field manager "tandem/<bundle>",
// force, as Apply does) compared with the live object, and the objects of
// s's inventory that s no longer has and that Apply would prune. It makes
// only reads and dry-run requests. An object Apply would refuse (another
// bundle's, one no bundle owns without s.Adopt, a name reserved for
// inventories) is an error naming it.
func (a *Applier) Diff(ctx context.Context, s Set) (Diff, error) {
	if s.Bundle == "" || s.Namespace == "" {
		return Diff{}, fmt.Errorf("diff: set needs a bundle and a namespace")
	}
	var d Diff
	keep := map[string]bool{}
	for _, o := range s.Objects {
		u := o.DeepCopy()
		od, err := a.diffOne(ctx, u, s)
		if err != nil {
			return Diff{}, err
		}
		keep[od.Object.key()] = true
		d.Objects = append(d.Objects, od)
	}
	refs, err := a.readInventory(ctx, s.Namespace, s.Bundle, s.inventoryColor())
	if err != nil {
		return Diff{}, err
	}
	var pruned []ObjectDiff
	for _, r := range refs {
		if keep[r.key()] {
			continue
		}
		live, err := a.prunable(ctx, r, s.Bundle, s.Color)
		if err != nil {
			return Diff{}, fmt.Errorf("%s: %w", r, err)
		}
		if live != nil {
			pruned = append(pruned, ObjectDiff{Object: r, Action: Pruned, Live: Sanitize(live)})
		}
	}
	sort.Slice(pruned, func(i, j int) bool { return pruned[i].Object.String() < pruned[j].Object.String() })
	d.Objects = append(d.Objects, pruned...)
	return d, nil
}

// diffOne dry-runs the apply of u and compares the result with the live object.
func (a *Applier) diffOne(ctx context.Context, u *unstructured.Unstructured, s Set) (ObjectDiff, error) {
	ri, err := a.resourceFor(u, s.Namespace)
	if err != nil {
		if meta.IsNoMatchError(err) && definesKind(s.Objects, u.GroupVersionKind()) {
			// The set's own CRD defines the kind: all of it is new.
			return ObjectDiff{Object: refOf(u), Action: Created, Merged: Sanitize(u)}, nil
		}
		return ObjectDiff{}, fmt.Errorf("%s: %w", objRef(u), err)
	}
	if s.Color == "" {
		if err := stampShared(u, s.Bundle); err != nil {
			return ObjectDiff{}, err
		}
	}
	od := ObjectDiff{Object: refOf(u)}
	live, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		return ObjectDiff{}, fmt.Errorf("%s: %w", objRef(u), err)
	}
	why := reservedName(u)
	switch {
	case live == nil || why != "":
	case s.Color == "":
		why = sharedRefusal(live, u, s.Bundle, s.Adopt)
	case live.GetLabels()[contract.LabelBundle] != s.Bundle:
		why = claimRefusal(live, s.Bundle, s.Adopt)
	}
	if why != "" {
		return ObjectDiff{}, fmt.Errorf("%s: %s (the apply would be refused)", objRef(u), why)
	}
	body, err := applyBody(u)
	if err != nil {
		return ObjectDiff{}, fmt.Errorf("%s: %w", objRef(u), err)
	}
	merged, err := ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: contract.FieldManagerFor(s.Bundle), Force: new(true), DryRun: []string{metav1.DryRunAll},
	})
	if err != nil {
		if live == nil && isMissingNamespace(err, u.GetNamespace()) {
			// Its namespace comes with the same release (spec.shared).
			return ObjectDiff{Object: od.Object, Action: Created, Merged: Sanitize(u)}, nil
		}
		return ObjectDiff{}, fmt.Errorf("%s: dry run: %w", objRef(u), err)
	}
	od.Merged = Sanitize(merged)
	if live == nil {
		od.Action = Created
		return od, nil
	}
	od.Live = Sanitize(live)
	od.Action = Configured
	if equality.Semantic.DeepEqual(od.Live.Object, od.Merged.Object) {
		od.Action = Unchanged
	}
	return od, nil
}

// prunable returns the live object of r when Apply would prune it (it
// exists, carries the bundle's labels and a tandem field manager), else nil.
func (a *Applier) prunable(ctx context.Context, r ObjectRef, bundle, color string) (*unstructured.Unstructured, error) {
	m, err := a.mapping(r.gvk())
	if meta.IsNoMatchError(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ri := a.dyn.Resource(m.Resource).Namespace(r.Namespace)
	if root := m.Scope.Name() == meta.RESTScopeNameRoot; root != (r.Namespace == "") {
		return nil, nil
	} else if root {
		ri = a.dyn.Resource(m.Resource)
	}
	live, err := ri.Get(ctx, r.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	l := live.GetLabels()
	_, sharer := live.GetAnnotations()[sharerKey(bundle)]
	if (l[contract.LabelBundle] != bundle && !sharer) || (color != "" && l[contract.LabelColor] != color) || !managedByTandem(live) {
		return nil, nil
	}
	if len(otherSharers(live, bundle)) > 0 {
		return nil, nil // other bundles still render it: Apply gives up a share, deletes nothing
	}
	return live, nil
}

// Sanitize returns a copy of u without the fields that change on every
// write or are not the user's: metadata.managedFields, resourceVersion,
// generation, uid, creationTimestamp, selfLink, and status.
func Sanitize(u *unstructured.Unstructured) *unstructured.Unstructured {
	c := u.DeepCopy()
	for _, f := range []string{"managedFields", "resourceVersion", "generation", "uid", "creationTimestamp", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "status")
	return c
}
