package applier

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
)

// Set is what Apply applies: the objects of one bundle and one color.
type Set struct {
	Bundle string
	// Color is the color of the objects; "" means the bundle's shared
	// (uncolored) objects.
	Color string
	// Namespace holds the inventory and is the default namespace of
	// namespaced objects that have none.
	Namespace string
	Objects   []*unstructured.Unstructured
	// Adopt lets Apply take over objects that exist but that no bundle
	// owns (no tandem.dev/bundle label, no tandem field manager: made with
	// kubectl, Helm or another tool). Without it such an object is refused
	// before anything is applied.
	Adopt bool
}

// sharedInventory is the inventory color of a bundle's shared objects.
const sharedInventory = "shared"

// inventoryColor is the color part of the inventory name.
func (s Set) inventoryColor() string {
	if s.Color == "" {
		return sharedInventory
	}
	return s.Color
}

// Action is what Apply did to one object.
type Action string

// The actions of a ChangeSet.
const (
	Created    Action = "created"
	Configured Action = "configured"
	Unchanged  Action = "unchanged"
	Pruned     Action = "pruned"
)

// ObjectRef identifies one object in the cluster.
type ObjectRef struct {
	Group     string `json:"group"`
	Version   string `json:"version"`
	Kind      string `json:"kind"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name"`
}

// String names the object: "Deployment shop/server-green".
func (r ObjectRef) String() string { return refString(r.Kind, r.Namespace, r.Name) }

func (r ObjectRef) gvk() schema.GroupVersionKind {
	return schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
}

// key identifies the object independent of its API version.
func (r ObjectRef) key() string {
	return r.Group + "/" + r.Kind + "/" + r.Namespace + "/" + r.Name
}

func refOf(u *unstructured.Unstructured) ObjectRef {
	gvk := u.GroupVersionKind()
	return ObjectRef{Group: gvk.Group, Version: gvk.Version, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()}
}

// Change is one entry of a ChangeSet.
type Change struct {
	Object ObjectRef
	Action Action
}

// ChangeSet is the typed result of Apply and DeleteBundle.
type ChangeSet struct {
	// Changes lists every applied object in apply order, then the pruned
	// ones (DeleteBundle: every deleted object, in deletion order).
	Changes []Change
	// Objects are the objects as the server returned them after the apply
	// (with generation and resourceVersion); pass them to WaitHealthy.
	Objects []*unstructured.Unstructured
	// PruneFailures are objects that could not be deleted; they stay in the
	// inventory and are tried again on the next Apply (or DeleteBundle).
	PruneFailures []Failure
	// Kept lists the objects DeleteBundle left in place on purpose, and why.
	Kept []KeptObject
}

// Count returns how many changes have action act.
func (c ChangeSet) Count(act Action) int { return countAction(c.Changes, act, Change.action) }

// Changed reports whether anything was created, configured or pruned.
func (c ChangeSet) Changed() bool { return changes(c.Count) }

// PrunedCount is how many objects the apply pruned.
func (c ChangeSet) PrunedCount() int { return c.Count(Pruned) }

func (c Change) action() Action { return c.Action }

// countAction counts the entries of xs whose action is act.
func countAction[T any](xs []T, act Action, of func(T) Action) int {
	n := 0
	for _, x := range xs {
		if of(x) == act {
			n++
		}
	}
	return n
}

// changes reports whether count finds anything created, configured or pruned.
func changes(count func(Action) int) bool {
	return count(Created)+count(Configured)+count(Pruned) > 0
}

// String summarises the set: "3 created, 1 configured, 5 unchanged, 0 pruned".
func (c ChangeSet) String() string {
	return fmt.Sprintf("%d created, %d configured, %d unchanged, %d pruned",
		c.Count(Created), c.Count(Configured), c.Count(Unchanged), c.Count(Pruned))
}

// item is one object on its way through Apply.
type item struct {
	obj    *unstructured.Unstructured
	ri     dynamic.ResourceInterface
	body   []byte
	dryRV  string                     // resourceVersion of the dry-run result; "" when the object does not exist yet
	live   *unstructured.Unstructured // as listed before the dry run; nil if not found
	noop   bool                       // the dry run showed the apply changes nothing
	result *unstructured.Unstructured
	action Action
	later  bool // dry run deferred until the set's Namespaces/CRDs exist
	// touched: result was written again after the apply (scaled up, or
	// handed over from the legacy field manager), so it is not what
	// applying body alone leaves behind; the memo skips it.
	touched bool
}

// Apply applies s with server-side apply (field manager "tandem/<bundle>",
// contract.FieldManagerFor; without force first, so that a conflict with
// another bundle's manager is refused, then with force for any other
// conflict, so that drifted fields are taken back):
//
//  1. a server-side dry run of every object; if any is invalid, or belongs
//     to another bundle (its tandem.dev/bundle label), or exists with no
//     owner and s.Adopt is false, or is a ConfigMap named like an inventory
//     (tandem-inventory-...), nothing is applied and the error names every
//     such object and why. Objects whose Namespace or CRD is part of s
//     itself are dry-run once those exist. Spared: an object that nobody
//     wrote since this Applier applied the same body to it (same UID and
//     resourceVersion, memo.go) is unchanged without a dry run or an apply;
//     one whose dry-run result equals the live object is not applied;
//  2. Namespaces and CRDs first, waiting until the CRDs are Established;
//  3. the remaining objects, concurrently (Options.Concurrency);
//  4. the inventory ConfigMap tandem-inventory-<bundle>-<color> in
//     s.Namespace (written before step 3 with the old and new objects, and
//     after it with the new ones), then pruning of objects of the previous
//     inventory that s no longer has and that carry
//     tandem.dev/bundle=<bundle> (and tandem.dev/color=<color>) and a
//     tandem field manager.
//
// A shared set (s.Color "") records the bundle's render of each object in
// the annotation shared.tandem.dev/<bundle> (shared.go): several bundles may
// apply one shared object when their renders are identical; a different
// render is refused at step 1, and pruning an object that other bundles
// still render only gives up the bundle's share of it.
//
// An object or inventory that an earlier release applied with the shared
// field manager "tandem" is handed over to the bundle's own manager: the
// apply takes its fields (same values, nothing changes) and the old
// manager's entry is removed.
//
// The ChangeSet is valid when err is nil. A Deployment or StatefulSet that
// ScaleColor scaled to zero is scaled back up by Apply.
func (a *Applier) Apply(ctx context.Context, s Set) (ChangeSet, error) {
	if s.Bundle == "" || s.Namespace == "" {
		return ChangeSet{}, errors.New("apply: set needs a bundle and a namespace")
	}
	items, err := a.prepare(ctx, s)
	if err != nil {
		return ChangeSet{}, err
	}
	var first, rest []*item
	namespaces := map[string]bool{}
	for _, it := range items {
		if !isStageZero(it.obj) {
			rest = append(rest, it)
			continue
		}
		first = append(first, it)
		if it.obj.GetKind() == "Namespace" && it.obj.GroupVersionKind().Group == "" {
			namespaces[it.obj.GetName()] = true
		}
	}
	// 1. dry run of everything that can be dry-run now, except objects
	// that nobody wrote since the last apply of the same body (memo.go).
	if err := a.listLive(ctx, s.Bundle, items); err != nil {
		return ChangeSet{}, err
	}
	if err := a.skipUnchanged(s, items); err != nil {
		return ChangeSet{}, err
	}
	if err := a.dryRun(ctx, s, items, namespaces); err != nil {
		return ChangeSet{}, err
	}
	// 2. Namespaces and CRDs, then the dry run of what had to wait for them.
	if err := a.applyAll(ctx, s.Bundle, first); err != nil {
		return ChangeSet{}, err
	}
	if err := a.waitEstablished(ctx, first); err != nil {
		return ChangeSet{}, err
	}
	if err := a.dryRunDeferred(ctx, s, rest); err != nil {
		return ChangeSet{}, err
	}
	// Record what is about to be applied before applying it, so objects of
	// an apply that fails half-way are still pruned later.
	if err := a.recordPending(ctx, s, items); err != nil {
		return ChangeSet{}, err
	}
	// 3. everything else.
	if err := a.applyAll(ctx, s.Bundle, rest); err != nil {
		return ChangeSet{}, err
	}
	if err := a.restoreScaled(ctx, rest); err != nil {
		return ChangeSet{}, err
	}
	// 4. inventory and prune.
	applied := append(first, rest...)
	cs, err := a.finish(ctx, s, applied)
	if err != nil {
		return cs, err
	}
	a.memo.record(memoKey(s), applied)
	return cs, nil
}

// skipUnchanged marks the listed items whose live object is exactly what
// the last Apply of the same body left behind (appliedMemo) as no-ops: they
// need neither a dry run nor an apply. A shared object another bundle's
// render now disagrees with is left to the dry run, which refuses it.
func (a *Applier) skipUnchanged(s Set, items []*item) error {
	key := memoKey(s)
	for _, it := range items {
		if it.later || it.live == nil {
			continue
		}
		body, err := applyBody(it.obj)
		if err != nil {
			return fmt.Errorf("%s: %w", objRef(it.obj), err)
		}
		it.body = body
		if !a.memo.unchanged(key, it.live, body) {
			continue
		}
		if s.Color == "" && sharedRefusal(it.live, it.obj, s.Bundle, s.Adopt) != "" {
			continue
		}
		it.noop, it.result, it.dryRV = true, it.live, it.live.GetResourceVersion()
	}
	return nil
}

// prepare copies s's objects into items with their API resource; an object
// whose kind the set itself defines (a CRD) is resolved later. Every
// invalid object is named in one error.
func (a *Applier) prepare(ctx context.Context, s Set) ([]*item, error) {
	items := make([]*item, 0, len(s.Objects))
	seen := map[string]bool{}
	var bad []string
	for _, o := range s.Objects {
		u := o.DeepCopy()
		if u.GetKind() == "" || u.GetName() == "" {
			bad = append(bad, fmt.Sprintf("object %q of kind %q: kind and name are required", u.GetName(), u.GetKind()))
			continue
		}
		if why := reservedName(u); why != "" {
			bad = append(bad, fmt.Sprintf("%s: %s", objRef(u), why))
			continue
		}
		it := &item{obj: u}
		ri, err := a.resourceFor(u, s.Namespace)
		if err != nil && (IsTransient(err) || ctx.Err() != nil) {
			return nil, fmt.Errorf("%s: %w", objRef(u), err)
		}
		if err != nil {
			if !(meta.IsNoMatchError(err) && definesKind(s.Objects, u.GroupVersionKind())) {
				bad = append(bad, fmt.Sprintf("%s: %v", objRef(u), err))
				continue
			}
			if u.GetNamespace() == "" {
				u.SetNamespace(s.Namespace) // CRD scope unknown yet; fixed after the CRD exists
			}
			it.later = true
		}
		it.ri = ri
		if s.Color == "" {
			if err := stampShared(u, s.Bundle); err != nil {
				bad = append(bad, err.Error())
				continue
			}
		}
		k := refOf(u).key()
		if seen[k] {
			bad = append(bad, fmt.Sprintf("%s: listed twice", objRef(u)))
			continue
		}
		seen[k] = true
		items = append(items, it)
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("apply %s: %s", s.inventoryColor(), strings.Join(bad, "; "))
	}
	return items, nil
}

// dryRunDeferred resolves and dry-runs the objects whose CRD the set
// itself defined, now that it is Established.
func (a *Applier) dryRunDeferred(ctx context.Context, s Set, rest []*item) error {
	var deferred []*item
	for _, it := range rest {
		if it.later {
			deferred = append(deferred, it)
		}
	}
	if len(deferred) == 0 {
		return nil
	}
	a.mapper.Reset()
	var bad []string
	for _, it := range deferred {
		ri, err := a.resourceFor(it.obj, s.Namespace)
		if err != nil && (IsTransient(err) || ctx.Err() != nil) {
			return fmt.Errorf("%s: %w", objRef(it.obj), err)
		}
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", objRef(it.obj), err))
			continue
		}
		it.ri, it.later = ri, false
	}
	if len(bad) > 0 {
		return fmt.Errorf("apply %s: %s", s.inventoryColor(), strings.Join(bad, "; "))
	}
	return a.dryRun(ctx, s, deferred, nil)
}

// recordPending adds the objects about to be applied to the inventory.
func (a *Applier) recordPending(ctx context.Context, s Set, items []*item) error {
	pending := make([]ObjectRef, 0, len(items))
	for _, it := range items {
		pending = append(pending, refOf(it.obj))
	}
	old, live, err := a.inventoryObject(ctx, s.Namespace, s.Bundle, s.inventoryColor())
	if err != nil {
		return err
	}
	union := unionRefs(old, pending)
	if inventoryHolds(live, s.Bundle, s.inventoryColor(), union) {
		return nil // it lists them all already
	}
	return a.writeInventory(ctx, s.Namespace, s.Bundle, s.inventoryColor(), union)
}

// finish reports what was applied, writes the inventory and prunes what
// the set no longer has.
func (a *Applier) finish(ctx context.Context, s Set, applied []*item) (ChangeSet, error) {
	cs := ChangeSet{}
	refs := make([]ObjectRef, 0, len(applied))
	for _, it := range applied {
		cs.Changes = append(cs.Changes, Change{Object: refOf(it.result), Action: it.action})
		cs.Objects = append(cs.Objects, it.result)
		refs = append(refs, refOf(it.result))
	}
	pruned, failures, err := a.syncInventory(ctx, s.Namespace, s.Bundle, s.inventoryColor(), s.Color, refs)
	if err != nil {
		return cs, err
	}
	for _, r := range pruned {
		cs.Changes = append(cs.Changes, Change{Object: r, Action: Pruned})
	}
	cs.PruneFailures = failures
	return cs, nil
}

func isStageZero(u *unstructured.Unstructured) bool {
	gvk := u.GroupVersionKind()
	return (gvk.Group == "" && gvk.Kind == "Namespace") ||
		(gvk.Group == "apiextensions.k8s.io" && gvk.Kind == "CustomResourceDefinition")
}

// definesKind reports whether objs holds a CRD that defines gvk's kind.
func definesKind(objs []*unstructured.Unstructured, gvk schema.GroupVersionKind) bool {
	for _, o := range objs {
		if !isStageZero(o) || o.GetKind() != "CustomResourceDefinition" {
			continue
		}
		g, _, _ := unstructured.NestedString(o.Object, "spec", "group")
		k, _, _ := unstructured.NestedString(o.Object, "spec", "names", "kind")
		if g == gvk.Group && k == gvk.Kind {
			return true
		}
	}
	return false
}

// applyBody is the SSA patch of u: the object without server-owned fields.
func applyBody(u *unstructured.Unstructured) ([]byte, error) {
	c := u.DeepCopy()
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "managedFields", "generation", "selfLink"} {
		unstructured.RemoveNestedField(c.Object, "metadata", f)
	}
	unstructured.RemoveNestedField(c.Object, "status")
	return json.Marshal(c.Object)
}

// dryRun dry-runs items of s (skipping deferred ones) with the same SSA
// patch as the real apply. An object whose namespace does not exist yet but
// is in namespaces is deferred. An object that exists and that s may not
// claim (claimRefusal) is refused. Every invalid or refused object is named
// in the error.
func (a *Applier) dryRun(ctx context.Context, s Set, items []*item, namespaces map[string]bool) error {
	var mu sync.Mutex
	var bad []string
	refuse := func(it *item, why string) {
		mu.Lock()
		defer mu.Unlock()
		bad = append(bad, fmt.Sprintf("%s: %s", objRef(it.obj), why))
	}
	manager := contract.FieldManagerFor(s.Bundle)
	err := a.each(ctx, items, func(ctx context.Context, it *item) error {
		if it.later || it.noop {
			return nil
		}
		if it.body == nil {
			body, err := applyBody(it.obj)
			if err != nil {
				return fmt.Errorf("%s: %w", objRef(it.obj), err)
			}
			it.body = body
		}
		rv, out, err := a.dryRunOne(ctx, it, manager)
		if err != nil {
			if IsTransient(err) || ctx.Err() != nil {
				return fmt.Errorf("%s: dry run: %w", objRef(it.obj), err)
			}
			if isMissingNamespace(err, it.obj.GetNamespace()) && namespaces[it.obj.GetNamespace()] {
				it.later = true
				return nil
			}
			why := err.Error()
			if it.live == nil {
				// Refused is the clearer verdict (another bundle's
				// Deployment fails as immutable, say).
				refusal, err := a.claim(ctx, it, s)
				if err != nil {
					return err
				}
				why = cmp.Or(refusal, why)
			}
			refuse(it, why)
			return nil
		}
		it.dryRV = rv
		if it.dryRV != "" && it.live == nil {
			// It exists but was not listed with s's bundle label: whose is it?
			why, err := a.claim(ctx, it, s)
			if err != nil {
				return err
			}
			if why != "" {
				refuse(it, why)
			}
			return nil
		}
		if it.live != nil && s.Color == "" {
			if why := sharedRefusal(it.live, it.obj, s.Bundle, s.Adopt); why != "" {
				refuse(it, why)
				return nil
			}
		}
		if it.live != nil && sameObject(out, it.live) && legacyEntry(it.live, contract.LegacyFieldManager) < 0 {
			it.noop, it.result = true, out
		}
		return nil
	})
	if err != nil {
		return err
	}
	if len(bad) > 0 {
		sort.Strings(bad)
		return fmt.Errorf("dry run failed, nothing applied: %s", strings.Join(bad, "; "))
	}
	return nil
}

// dryRunOne dry-runs the apply of it and returns the resourceVersion of
// the result ("" when the object does not exist yet) and, for an object
// listed live, the result itself, to compare with the live one. An object
// not listed live is dry-run through the metadata client: the server
// validates and admits it all the same, but sends back only its metadata,
// as protobuf, which is cheaper to encode and decode.
func (a *Applier) dryRunOne(ctx context.Context, it *item, manager string) (string, *unstructured.Unstructured, error) {
	opts := metav1.PatchOptions{FieldManager: manager, Force: new(true), DryRun: []string{metav1.DryRunAll}}
	if it.live != nil {
		out, err := it.ri.Patch(ctx, it.obj.GetName(), types.ApplyPatchType, it.body, opts)
		if err != nil {
			return "", nil, err
		}
		return out.GetResourceVersion(), out, nil
	}
	m, err := a.mapping(it.obj.GroupVersionKind())
	if err != nil {
		return "", nil, err
	}
	var ri metadata.ResourceInterface = a.meta.Resource(m.Resource)
	if m.Scope.Name() != meta.RESTScopeNameRoot {
		ri = a.meta.Resource(m.Resource).Namespace(it.obj.GetNamespace())
	}
	out, err := ri.Patch(ctx, it.obj.GetName(), types.ApplyPatchType, it.body, opts)
	if err != nil {
		return "", nil, err
	}
	return out.GetResourceVersion(), nil, nil
}

func isMissingNamespace(err error, ns string) bool {
	var st apierrors.APIStatus
	if !apierrors.IsNotFound(err) || !errors.As(err, &st) {
		return false
	}
	d := st.Status().Details
	return d != nil && d.Kind == "namespaces" && d.Name == ns
}

// claim reads the live object of it, which exists but did not carry s's
// bundle label when listed, and says why s may not claim it ("" when it
// may; claimRefusal, or sharedRefusal for a shared set).
func (a *Applier) claim(ctx context.Context, it *item, s Set) (string, error) {
	live, err := it.ri.Get(ctx, it.obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "", nil // it does not exist (any more): the apply creates it
	}
	if err != nil {
		return "", fmt.Errorf("%s: %w", objRef(it.obj), err)
	}
	if s.Color == "" {
		why := sharedRefusal(live, it.obj, s.Bundle, s.Adopt)
		it.body = nil // the owner label may have changed: applyAll encodes it again
		return why, nil
	}
	return claimRefusal(live, s.Bundle, s.Adopt), nil
}

// applyAll server-side applies items with bundle's field manager and
// decides each one's action.
func (a *Applier) applyAll(ctx context.Context, bundle string, items []*item) error {
	manager := contract.FieldManagerFor(bundle)
	return a.each(ctx, items, func(ctx context.Context, it *item) error {
		if it.noop {
			it.action = Unchanged
			return nil
		}
		if it.body == nil {
			b, err := applyBody(it.obj)
			if err != nil {
				return fmt.Errorf("%s: %w", objRef(it.obj), err)
			}
			it.body = b
		}
		out, err := applyOwned(ctx, it.ri, it.obj.GetName(), it.body, bundle)
		if err != nil {
			return fmt.Errorf("%s: apply: %w", objRef(it.obj), err)
		}
		handed, err := dropLegacy(ctx, it.ri, out, contract.LegacyFieldManager, manager)
		if err != nil {
			return err
		}
		it.result, it.touched = handed, handed != out
		switch {
		case it.dryRV == "":
			it.action = Created
		case out.GetResourceVersion() == it.dryRV:
			it.action = Unchanged
		default:
			it.action = Configured
		}
		return nil
	})
}

// each runs fn for every item with at most Options.Concurrency at once and
// returns the first error (the others are cancelled).
func (a *Applier) each(ctx context.Context, items []*item, fn func(context.Context, *item) error) error {
	if len(items) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	work := make(chan *item)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	n := min(a.opts.Concurrency, len(items))
	for range n {
		wg.Go(func() {
			for it := range work {
				if ctx.Err() != nil {
					continue
				}
				if err := fn(ctx, it); err != nil {
					once.Do(func() { first = err; cancel(err) })
				}
			}
		})
	}
	for _, it := range items {
		if ctx.Err() != nil {
			break
		}
		work <- it
	}
	close(work)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// waitEstablished waits until every CRD among items is Established, then
// forgets the cached discovery so the new kinds resolve.
func (a *Applier) waitEstablished(ctx context.Context, items []*item) error {
	crds := false
	for _, it := range items {
		if it.obj.GetKind() != "CustomResourceDefinition" {
			continue
		}
		crds = true
		name := it.obj.GetName()
		err := a.waitObject(ctx, a.dyn.Resource(gvrCRDs), name, func(u *unstructured.Unstructured) bool {
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				m, _ := c.(map[string]any)
				if m["type"] == "Established" && m["status"] == "True" {
					return true
				}
			}
			return false
		})
		if err != nil {
			return fmt.Errorf("CustomResourceDefinition %s: waiting until established: %w", name, err)
		}
	}
	if crds {
		a.mapper.Reset()
	}
	return nil
}

// waitObject watches one object by name until cond holds.
func (a *Applier) waitObject(ctx context.Context, ri dynamic.ResourceInterface, name string, cond func(*unstructured.Unstructured) bool) error {
	sel := "metadata.name=" + name
	for {
		list, err := ri.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return err
		}
		for i := range list.Items {
			if cond(&list.Items[i]) {
				return nil
			}
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.GetResourceVersion()})
		if err != nil {
			return err
		}
		done, err := func() (bool, error) {
			defer w.Stop()
			for {
				select {
				case <-ctx.Done():
					return false, ctxErr(ctx)
				case ev, ok := <-w.ResultChan():
					if !ok || ev.Type == watch.Error {
						return false, nil // re-list
					}
					if u, ok := ev.Object.(*unstructured.Unstructured); ok && ev.Type != watch.Deleted && cond(u) {
						return true, nil
					}
				}
			}
		}()
		if done || err != nil {
			return err
		}
	}
}

// restoreScaled scales back up Deployments and StatefulSets that ScaleColor
// scaled to zero (they carry tandem.dev/replicas).
func (a *Applier) restoreScaled(ctx context.Context, items []*item) error {
	for _, it := range items {
		r := it.result
		if r == nil || !isScalable(r) {
			continue
		}
		n, ok := scaledFrom(r)
		if !ok {
			continue
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(it.obj.Object, "spec", "replicas"); found {
			n = -1 // the applied object sets replicas itself
		}
		out, err := a.scaleTo(ctx, it.ri, r.GetName(), n)
		if err != nil {
			return fmt.Errorf("%s: scale up: %w", objRef(r), err)
		}
		it.result, it.touched = out, true
		if it.action == Unchanged {
			it.action = Configured
		}
	}
	return nil
}

// listLive fills each item's live object with one List per resource and
// namespace (objects labelled with the bundle), so that a dry run which
// returns the live object unchanged can spare the real apply.
func (a *Applier) listLive(ctx context.Context, bundle string, items []*item) error {
	type group struct {
		ri    dynamic.ResourceInterface
		items map[string]*item
	}
	groups := map[string]*group{}
	for _, it := range items {
		if it.later || it.ri == nil {
			continue
		}
		m, err := a.mapping(it.obj.GroupVersionKind())
		if err != nil {
			return fmt.Errorf("%s: %w", objRef(it.obj), err)
		}
		k := m.Resource.String() + "|" + it.obj.GetNamespace()
		g := groups[k]
		if g == nil {
			g = &group{ri: it.ri, items: map[string]*item{}}
			groups[k] = g
		}
		g.items[it.obj.GetName()] = it
	}
	for _, g := range groups {
		list, err := g.ri.List(ctx, metav1.ListOptions{LabelSelector: contract.LabelBundle + "=" + bundle})
		if err != nil {
			return fmt.Errorf("list live objects: %w", err)
		}
		for i := range list.Items {
			if it, ok := g.items[list.Items[i].GetName()]; ok {
				it.live = &list.Items[i]
			}
		}
	}
	return nil
}

// sameObject reports whether a dry-run result equals the listed live object
// (same resourceVersion, so nothing changed in between, and same content,
// so the apply would be a no-op).
func sameObject(dry, live *unstructured.Unstructured) bool {
	if dry.GetResourceVersion() != live.GetResourceVersion() {
		return false
	}
	a, b := dry.DeepCopy().Object, live.DeepCopy().Object
	for _, m := range []map[string]any{a, b} {
		delete(m, "apiVersion")
		delete(m, "kind")
	}
	return equality.Semantic.DeepEqual(a, b)
}
