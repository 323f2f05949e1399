package fleet

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/render"
)

// TestTenancyNamespaces: which namespaces a bundle may use, with and
// without --allowed-namespaces, and the error naming file and field.
func TestTenancyNamespaces(t *testing.T) {
	bundle := func(ns string) *render.Bundle {
		return &render.Bundle{Name: "api", File: "bundles/api/bundle.yaml", Spec: render.Spec{Namespace: ns}}
	}
	nsObj := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "team-b"}}}
	cm := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]any{"name": "x", "namespace": "kube-public"}}}
	for _, c := range []struct {
		name    string
		allowed []string
		ns      string
		shared  []*unstructured.Unstructured
		want    string // "" = allowed
	}{
		{"any namespace by default", nil, "team-a", nil, ""},
		{"kube-system refused by default", nil, "kube-system", nil, `bundles/api/bundle.yaml: spec.namespace: namespace "kube-system" is a system namespace`},
		{"kube-node-lease refused by default", nil, "kube-node-lease", nil, "is a system namespace"},
		{"a shared object in kube-public", nil, "team-a", []*unstructured.Unstructured{cm}, `bundles/api/bundle.yaml: spec.shared: ConfigMap x: namespace "kube-public" is a system namespace`},
		{"listed", []string{"team-a"}, "team-a", nil, ""},
		{"not listed", []string{"team-a"}, "team-b", nil, `bundles/api/bundle.yaml: spec.namespace: namespace "team-b" is not allowed: the agent runs with --allowed-namespaces=team-a`},
		{"kube-system when listed", []string{"kube-system"}, "kube-system", nil, ""},
		{"a shared Namespace not listed", []string{"team-a"}, "team-a", []*unstructured.Unstructured{nsObj}, `spec.shared: Namespace team-b: namespace "team-b" is not allowed`},
	} {
		t.Run(c.name, func(t *testing.T) {
			ten := &Tenancy{allowed: c.allowed}
			err := ten.Check(bundle(c.ns), &render.Result{Shared: c.shared})
			switch {
			case c.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
				t.Errorf("err = %v, want one containing %q", err, c.want)
			}
		})
	}
}
