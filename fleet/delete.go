package fleet

import (
	"context"
	"errors"
	"strings"

	"github.com/tandem-gitops/tandem/applier"
)

// ErrNeverRendered: the bundle left the repository before it was ever
// rendered; there is nothing to delete.
var ErrNeverRendered = errors.New("bundle was never rendered")

// DeleteBundle deletes what tandem applied for the bundle named name, as
// the identity that acts for it: both colors, its stable Services, its
// inventories, and its shared objects unless another bundle still renders
// them. Namespaces stay.
func DeleteBundle(ctx context.Context, ten *Tenancy, store *Store, name string) (applier.ChangeSet, error) {
	spec := store.Spec(name)
	if spec == nil {
		return applier.ChangeSet{}, ErrNeverRendered
	}
	keep := sharedElsewhere(store, name)
	ap, err := ten.ApplierFor(spec)
	if err != nil {
		return applier.ChangeSet{}, err
	}
	cs, err := ap.DeleteBundle(ctx, spec.Spec.Namespace, name, spec.Spec.Colors, func(r applier.ObjectRef) bool { return keep[refKey(r)] })
	return cs, ten.As(spec, err)
}

// sharedElsewhere is the set of shared (uncolored) objects that bundles
// other than name render, by refKey.
func sharedElsewhere(store *Store, name string) map[string]bool {
	keep := map[string]bool{}
	for _, other := range store.Names() {
		if other == name {
			continue
		}
		for _, u := range store.Shared(other) {
			gvk := u.GroupVersionKind()
			keep[refKey(applier.ObjectRef{Group: gvk.Group, Kind: gvk.Kind, Namespace: u.GetNamespace(), Name: u.GetName()})] = true
		}
	}
	return keep
}

// refKey identifies an object across API versions.
func refKey(r applier.ObjectRef) string {
	return strings.Join([]string{r.Group, r.Kind, r.Namespace, r.Name}, "/")
}
