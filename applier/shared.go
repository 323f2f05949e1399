package applier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Shared (uncolored) objects, a bundle's spec.shared, may be rendered by
// several bundles: typically the Namespace two teams' bundles both create.
// Each bundle that applies a shared object records its render of it in an
// annotation "shared.tandem.dev/<bundle>: sha256:<hex>" (sharedHash: the
// object without its bundle label and these annotations). A bundle may
// apply a shared object that exists with another bundle's label only when
// every other bundle recorded on it has the same hash; it then keeps the
// live bundle label (that of the bundle that created it), so that no field
// any bundle set changes. The label names one bundle, the annotations name
// every bundle that renders the object. Pruning an object that other
// bundles still record gives up only the pruning bundle's share (its
// annotation and its field manager's claim), never deletes it.

// sharerKey is the annotation bundle puts on the shared objects it renders.
func sharerKey(bundle string) string { return contract.AnnotationSharedPrefix + bundle }

// sharers returns the bundles recorded on u as rendering it, with the hash
// of their render.
func sharers(u *unstructured.Unstructured) map[string]string {
	out := map[string]string{}
	for k, v := range u.GetAnnotations() {
		if b, ok := strings.CutPrefix(k, contract.AnnotationSharedPrefix); ok && b != "" {
			out[b] = v
		}
	}
	return out
}

// sharedHash is the hash of u's render as a shared object: its content
// without the bundle label and the sharer annotations, which differ between
// bundles rendering the same object.
func sharedHash(u *unstructured.Unstructured) (string, error) {
	c := u.DeepCopy()
	labels := c.GetLabels()
	delete(labels, contract.LabelBundle)
	if len(labels) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "labels")
	} else {
		c.SetLabels(labels)
	}
	ann := c.GetAnnotations()
	for k := range ann {
		if strings.HasPrefix(k, contract.AnnotationSharedPrefix) {
			delete(ann, k)
		}
	}
	if len(ann) == 0 {
		unstructured.RemoveNestedField(c.Object, "metadata", "annotations")
	} else {
		c.SetAnnotations(ann)
	}
	b, err := json.Marshal(c.Object) // map keys are sorted: stable
	if err != nil {
		return "", fmt.Errorf("%s: %w", objRef(u), err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// stampShared records bundle's render of u on it (the sharer annotation).
func stampShared(u *unstructured.Unstructured, bundle string) error {
	h, err := sharedHash(u)
	if err != nil {
		return err
	}
	ann := u.GetAnnotations()
	if ann == nil {
		ann = map[string]string{}
	}
	ann[sharerKey(bundle)] = h
	u.SetAnnotations(ann)
	return nil
}

// sharedRefusal says why bundle may not apply obj, one of its shared
// objects (stamped by stampShared), over live ("" when it may):
//
//   - another bundle recorded on live renders it differently;
//   - live belongs to another bundle that has not recorded its render (an
//     object applied before renders were recorded; that bundle records it
//     on its next release), and no bundle recorded one;
//   - the rules of claimRefusal for an object no bundle owns.
//
// When bundle may join the bundles that render live, obj takes live's
// bundle label, so that applying it changes no other bundle's field.
func sharedRefusal(live, obj *unstructured.Unstructured, bundle string, adopt bool) string {
	mine := obj.GetAnnotations()[sharerKey(bundle)]
	all := sharers(live)
	var differ []string
	for b, h := range all {
		if b != bundle && h != mine {
			differ = append(differ, b)
		}
	}
	if len(differ) > 0 {
		sort.Strings(differ)
		return fmt.Sprintf("shared object rendered differently by bundle %s; bundle %s may render it only identically",
			strings.Join(differ, ", "), bundle)
	}
	owner := live.GetLabels()[contract.LabelBundle]
	if owner == "" || owner == bundle {
		return claimRefusal(live, bundle, adopt)
	}
	if len(all) == 0 {
		return fmt.Sprintf("belongs to bundle %s; bundle %s may not change it (bundle %s has not recorded its render of this shared object yet; it does on its next release, then identical renders may share it)",
			owner, bundle, owner)
	}
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[contract.LabelBundle] = owner
	obj.SetLabels(labels)
	return ""
}

// otherSharers lists the bundles other than bundle recorded on u.
func otherSharers(u *unstructured.Unstructured, bundle string) []string {
	var out []string
	for b := range sharers(u) {
		if b != bundle {
			out = append(out, b)
		}
	}
	sort.Strings(out)
	return out
}

// release gives up bundle's share of live, a shared object other bundles
// still render: an apply of bundle's field manager that sets no field, so
// the API server removes what only bundle set (its sharer annotation) and
// keeps every field another bundle set too.
func release(ctx context.Context, ri dynamic.ResourceInterface, live *unstructured.Unstructured, bundle string) error {
	meta := map[string]any{"name": live.GetName()}
	if ns := live.GetNamespace(); ns != "" {
		meta["namespace"] = ns
	}
	body, err := json.Marshal(map[string]any{"apiVersion": live.GetAPIVersion(), "kind": live.GetKind(), "metadata": meta})
	if err != nil {
		return err
	}
	_, err = ri.Patch(ctx, live.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: contract.FieldManagerFor(bundle)})
	return err
}
