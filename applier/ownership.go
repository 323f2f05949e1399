package applier

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/tandem-gitops/tandem/contract"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// Every object belongs to one bundle: the one its tandem.dev/bundle label
// names. Apply and Flip refuse, before they change anything, to write an
// object that exists and belongs to another bundle (claimRefusal), and
// Apply refuses any ConfigMap named like an inventory (reservedName). Each
// bundle applies with its own field managers (contract.FieldManagerFor), so
// the API server records the owner of every field too.

// inventoryPrefix starts the name of every inventory ConfigMap; a bundle may
// not render a ConfigMap with such a name.
const inventoryPrefix = "tandem-inventory-"

// reservedName says why no bundle may render u ("" when it may): its name is
// an inventory's.
func reservedName(u *unstructured.Unstructured) string {
	if u.GroupVersionKind().Group == "" && u.GetKind() == "ConfigMap" && strings.HasPrefix(u.GetName(), inventoryPrefix) {
		return fmt.Sprintf("the name prefix %q is reserved for tandem's inventories", inventoryPrefix)
	}
	return ""
}

// claimRefusal says why bundle may not apply over live, an object that
// exists ("" when it may): it belongs to another bundle; or no bundle owns
// it (no bundle label, no tandem field manager: kubectl, Helm, another tool
// made it) and adopt is false. Namespaces follow the same rules: a bundle
// may create its namespace, and change one another bundle or nobody owns
// only with spec.adopt (a Namespace's labels set its PodSecurity level, and
// it may be another team's).
func claimRefusal(live *unstructured.Unstructured, bundle string, adopt bool) string {
	owner := live.GetLabels()[contract.LabelBundle]
	switch {
	case owner == bundle:
		return ""
	case owner != "":
		return fmt.Sprintf("belongs to bundle %s; bundle %s may not change it", owner, bundle)
	case adopt || managedByTandem(live):
		return ""
	}
	return "exists and no bundle owns it; set spec.adopt: true in bundle.yaml to take it over"
}

// managedByTandem reports whether one of tandem's field managers applied u:
// a bundle's own ("tandem/<bundle>", "tandem/<bundle>/traffic") or the
// shared ones of earlier releases ("tandem", "tandem/traffic").
func managedByTandem(u *unstructured.Unstructured) bool {
	for _, m := range u.GetManagedFields() {
		if m.Operation == metav1.ManagedFieldsOperationApply && contract.IsFieldManager(m.Manager) {
			return true
		}
	}
	return false
}

// legacyEntry returns the index of the managedFields entry of the shared
// manager legacy (an apply of an earlier release) in u, or -1.
func legacyEntry(u *unstructured.Unstructured, legacy string) int {
	for i, m := range u.GetManagedFields() {
		if m.Manager == legacy && m.Operation == metav1.ManagedFieldsOperationApply {
			return i
		}
	}
	return -1
}

// dropLegacy removes the shared manager legacy from out, an object that the
// bundle's own manager has just applied with force: its fields are then the
// bundle manager's (shared with legacy where the values were the same), so
// removing the entry changes no field and no owner but legacy. This is the
// upgrade from the shared managers of earlier releases; it is a no-op for
// an object without the entry.
func dropLegacy(ctx context.Context, ri dynamic.ResourceInterface, out *unstructured.Unstructured, legacy, manager string) (*unstructured.Unstructured, error) {
	i := legacyEntry(out, legacy)
	if i < 0 {
		return out, nil
	}
	patch := fmt.Sprintf(`[{"op":"test","path":"/metadata/managedFields/%[1]d/manager","value":%[2]q},`+
		`{"op":"test","path":"/metadata/managedFields/%[1]d/operation","value":"Apply"},`+
		`{"op":"remove","path":"/metadata/managedFields/%[1]d"}]`, i, legacy)
	res, err := ri.Patch(ctx, out.GetName(), types.JSONPatchType, []byte(patch), metav1.PatchOptions{FieldManager: manager})
	if err != nil {
		return out, fmt.Errorf("%s: hand the fields of field manager %q over to %q: %w", objRef(out), legacy, manager, err)
	}
	return res, nil
}

// applyOwned server-side applies body as bundle without force, so that the
// API server reports every field another manager set to another value. A
// conflict with another bundle's manager (an object that became another
// bundle's after the dry run checked its label) is refused; any other (a
// kubectl edit, ScaleColor, the shared managers of earlier releases) is
// drift, taken back with force.
func applyOwned(ctx context.Context, ri dynamic.ResourceInterface, name string, body []byte, bundle string) (*unstructured.Unstructured, error) {
	manager := contract.FieldManagerFor(bundle)
	out, err := ri.Patch(ctx, name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: manager, Force: new(false)})
	if !apierrors.IsConflict(err) {
		return out, err
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) && st.Status().Details != nil {
		for _, c := range st.Status().Details.Causes {
			if other, ok := otherBundleManager(c.Message, bundle); ok {
				return nil, fmt.Errorf("field %s belongs to %s, another bundle's field manager; bundle %s may not change it", c.Field, other, bundle)
			}
		}
	}
	return ri.Patch(ctx, name, types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: manager, Force: new(true)})
}

// otherBundleManager reads the manager of a field manager conflict
// (`conflict with "tandem/one" using v1`) and reports whether it is another
// bundle's: "tandem/<b>" or "tandem/<b>/traffic" with b not bundle, and not
// one of the shared managers "tandem", "tandem/traffic" or "tandem/scale".
func otherBundleManager(msg, bundle string) (string, bool) {
	_, rest, ok := strings.Cut(msg, `"`)
	if !ok {
		return "", false
	}
	m, _, ok := strings.Cut(rest, `"`)
	if !ok || !contract.IsFieldManager(m) {
		return "", false
	}
	switch m {
	case contract.LegacyFieldManager, contract.LegacyTrafficFieldManager, ScaleFieldManager,
		contract.FieldManagerFor(bundle), contract.TrafficFieldManagerFor(bundle):
		return "", false
	}
	return m, true
}
