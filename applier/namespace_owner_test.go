package applier

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// namespaceOwnedBy is a fresh namespace labelled as bundle's, as if bundle
// had created it.
func namespaceOwnedBy(t *testing.T, bundle string) string {
	t.Helper()
	ns := env.Namespace(t)
	a := newApplier(t)
	n, err := a.cs.CoreV1().Namespaces().Get(context.Background(), ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n.Labels = map[string]string{contract.LabelBundle: bundle}
	if _, err := a.cs.CoreV1().Namespaces().Update(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestNamespaceOwnedLikeEveryObject: a bundle may create its Namespace;
// a Namespace nobody owns (made by kubectl, say) is refused without
// spec.adopt and taken over with it; one another bundle owns is refused
// even with spec.adopt. Refusals change nothing: the Namespace keeps its
// labels (e.g. its PodSecurity level) and resourceVersion.
func TestNamespaceOwnedLikeEveryObject(t *testing.T) {
	a := newApplier(t)
	ctx := testCtx(t, 2*time.Minute)
	home := env.Namespace(t) // inventory home
	nsObj := func(name, bundle string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Namespace",
			"metadata": map[string]any{"name": name, "labels": map[string]any{
				contract.LabelBundle: bundle, "pod-security.kubernetes.io/enforce": "privileged"}},
		}}
	}

	// Created by the bundle: its own.
	created := home + "-new"
	t.Cleanup(func() { _ = a.cs.CoreV1().Namespaces().Delete(context.Background(), created, deleteNow()) })
	if _, err := a.Apply(ctx, Set{Bundle: "one", Namespace: home, Objects: objs(nsObj(created, "one"))}); err != nil {
		t.Fatalf("Apply one (creates its Namespace): %v", err)
	}

	for _, c := range []struct {
		name, owner, bundle string
		adopt               bool
		want                string // "" = applied
	}{
		{"nobody's, without adopt", "", "two", false, "exists and no bundle owns it; set spec.adopt: true"},
		{"another bundle's", "one", "two", false, "belongs to bundle one; bundle two may not change it"},
		{"another bundle's, with adopt", "one", "two", true, "belongs to bundle one; bundle two may not change it"},
		{"nobody's, adopted", "", "two", true, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := env.Namespace(t)
			if c.owner != "" {
				ns = namespaceOwnedBy(t, c.owner)
			}
			before, err := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			_, err = a.Apply(ctx, Set{Bundle: c.bundle, Namespace: home, Adopt: c.adopt, Objects: objs(nsObj(ns, c.bundle))})
			after, gerr := a.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
			if gerr != nil {
				t.Fatal(gerr)
			}
			if c.want == "" {
				if err != nil {
					t.Fatalf("Apply: %v", err)
				}
				if after.Labels[contract.LabelBundle] != c.bundle {
					t.Errorf("adopted Namespace labels %v", after.Labels)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "Namespace "+ns) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply: err = %v, want one naming Namespace %s and containing %q", err, ns, c.want)
			}
			if after.ResourceVersion != before.ResourceVersion || after.Labels["pod-security.kubernetes.io/enforce"] != "" {
				t.Errorf("refused Namespace changed: labels %v, resourceVersion %s -> %s", after.Labels, before.ResourceVersion, after.ResourceVersion)
			}
		})
	}
}
