package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// ScaleColor scales every Deployment and StatefulSet of bundle's color in
// namespace to zero (up false), remembering the replicas in the annotation
// tandem.dev/replicas, or back to the remembered replicas (up true).
func (a *Applier) ScaleColor(ctx context.Context, namespace, bundle, color string, up bool) error {
	if namespace == "" || bundle == "" || color == "" {
		return errors.New("scale: namespace, bundle and color are required")
	}
	sel := contract.LabelBundle + "=" + bundle + "," + contract.LabelColor + "=" + color
	for _, gvr := range []schema.GroupVersionResource{gvrDeployments, gvrStatefulSets} {
		ri := a.dyn.Resource(gvr).Namespace(namespace)
		list, err := ri.List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err != nil {
			return fmt.Errorf("scale %s/%s: list %s: %w", bundle, color, gvr.Resource, err)
		}
		for i := range list.Items {
			u := &list.Items[i]
			n, scaled := scaledFrom(u)
			if up {
				if !scaled {
					continue
				}
				if _, err := a.scaleTo(ctx, ri, u.GetName(), n); err != nil {
					return fmt.Errorf("%s: scale up: %w", objRef(u), err)
				}
				continue
			}
			if scaled {
				continue
			}
			n = int(nestedInt(u.Object, 1, "spec", "replicas"))
			patch, err := json.Marshal(map[string]any{
				"metadata": map[string]any{"annotations": map[string]any{contract.AnnotationReplicas: strconv.Itoa(n)}},
				"spec":     map[string]any{"replicas": 0},
			})
			if err != nil {
				return err
			}
			if _, err := ri.Patch(ctx, u.GetName(), types.MergePatchType, patch, metav1.PatchOptions{FieldManager: ScaleFieldManager}); err != nil {
				return fmt.Errorf("%s: scale down: %w", objRef(u), err)
			}
		}
	}
	return nil
}

// scaledFrom reads the replicas ScaleColor remembered on u; ok is false
// when u was not scaled down by tandem. An unreadable count restores 1.
func scaledFrom(u *unstructured.Unstructured) (n int, ok bool) {
	prev, ok := u.GetAnnotations()[contract.AnnotationReplicas]
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(prev)
	if err != nil || n < 0 {
		n = 1
	}
	return n, true
}

func isScalable(u *unstructured.Unstructured) bool {
	g := u.GroupVersionKind().Group
	return g == "apps" && (u.GetKind() == "Deployment" || u.GetKind() == "StatefulSet")
}

// scaleTo sets spec.replicas to n (n < 0: leave replicas) and removes the
// tandem.dev/replicas annotation, in one merge patch.
func (a *Applier) scaleTo(ctx context.Context, ri dynamic.ResourceInterface, name string, n int) (*unstructured.Unstructured, error) {
	patch := map[string]any{"metadata": map[string]any{"annotations": map[string]any{contract.AnnotationReplicas: nil}}}
	if n >= 0 {
		patch["spec"] = map[string]any{"replicas": n}
	}
	b, err := json.Marshal(patch)
	if err != nil {
		return nil, err
	}
	return ri.Patch(ctx, name, types.MergePatchType, b, metav1.PatchOptions{FieldManager: ScaleFieldManager})
}
