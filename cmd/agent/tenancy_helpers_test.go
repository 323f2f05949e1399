package main

// Helpers for the ownership and tenancy tests: more bundles in the
// scenario's repository, waiting for one bundle's outcome, and a watch on
// one stable Service's selector.

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/tandem-gitops/tandem/testenv"
)

// addTeamBundle writes bundles/<name> in the clone (after pulling): bundle.yaml
// with namespace ns and the extra spec lines, the apps in app/, and, when
// shared is not empty, spec.shared "shared" with those files (name →
// content) and a kustomization listing them.
func (s *scenario) addTeamBundle(name, ns, extraSpec string, shared map[string]string, apps ...app) {
	s.t.Helper()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	dir := "bundles/" + name
	spec := fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %s\nspec:\n  namespace: %s\n  healthTimeout: 1m\n  scaleDownAfter: never\n%s", name, ns, extraSpec)
	if len(shared) > 0 {
		spec += "  shared: shared\n"
		var files []string
		for f, content := range shared {
			files = append(files, "- "+f)
			s.write(dir+"/shared/"+f, content)
		}
		sort.Strings(files)
		s.write(dir+"/shared/kustomization.yaml", "resources:\n"+strings.Join(files, "\n")+"\n")
	}
	s.write(dir+"/bundle.yaml", spec)
	var res []string
	for _, a := range apps {
		res = append(res, "- "+a.name+".yaml")
		s.write(dir+"/app/"+a.name+".yaml", appManifest(a))
	}
	s.write(dir+"/app/kustomization.yaml", "resources:\n"+strings.Join(res, "\n")+"\n")
}

// body is the message of commit c.
func (s *scenario) body(c testenv.TrailerCommit) string {
	s.t.Helper()
	return s.git(s.remote, "log", "-1", "--format=%B", c.Hash)
}

// watchSelector watches the Service ns/name from now on and records every
// version whose selector differs from the one it has now. The returned
// func stops the watch and reports how many versions it saw and the
// changes.
func (s *scenario) watchSelector(ns, name string) func() (seen int, changes []string) {
	s.t.Helper()
	svc, err := s.cs.CoreV1().Services(ns).Get(s.ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	want := svc.Spec.Selector
	var bad []string
	opts := metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", name).String(), ResourceVersion: svc.ResourceVersion}
	stop := testenv.WatchServices(s.ctx, s.cs, ns, opts, func(t watch.EventType, got *corev1.Service) {
		if !maps.Equal(got.Spec.Selector, want) {
			bad = append(bad, fmt.Sprintf("%s: selector %v, was %v", t, got.Spec.Selector, want))
		}
	})
	return func() (int, []string) { return stop(), bad }
}

// applied lists the Deployments, Services and ConfigMaps (other than
// kube-root-ca.crt) in ns that match the label selector sel: what a bundle
// applied there.
func (s *scenario) applied(ns, sel string) []string {
	s.t.Helper()
	opts := metav1.ListOptions{LabelSelector: sel}
	var out []string
	deps, err := s.cs.AppsV1().Deployments(ns).List(s.ctx, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, d := range deps.Items {
		out = append(out, "Deployment "+d.Name)
	}
	svcs, err := s.cs.CoreV1().Services(ns).List(s.ctx, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range svcs.Items {
		out = append(out, "Service "+v.Name)
	}
	cms, err := s.cs.CoreV1().ConfigMaps(ns).List(s.ctx, opts)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, c := range cms.Items {
		if c.Name != "kube-root-ca.crt" {
			out = append(out, "ConfigMap "+c.Name)
		}
	}
	return out
}
