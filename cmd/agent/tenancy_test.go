package main

import (
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestSharedNamespaceIdenticalRendersOrRefused: three bundles in one
// namespace each render the Namespace in spec.shared. The second renders it
// identically: it is applied next to the first's and the bundle promotes.
// The third renders it with another label: its first release is held
// before anything is applied, the commit names the Namespace, the bundles
// that render it otherwise and the directory, and the Namespace is not
// touched.
func TestSharedNamespaceIdenticalRendersOrRefused(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	s.start("--root", "bundles")
	s.waitBundle(s.ns, "promoted", 1)
	nsYAML := "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + s.ns + "\n"

	two := "two-" + s.ns
	s.addTeamBundle(two, s.ns, "", map[string]string{"namespace.yaml": nsYAML}, app{"worker", "example/worker:v1"})
	s.push("add bundle " + two)
	s.waitBundle(two, "promoted", 1)
	ns, err := s.cs.CoreV1().Namespaces().Get(s.ctx, s.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ns.Labels[contract.LabelBundle] != s.ns {
		t.Errorf("Namespace %s: bundle label %q, want %q (the bundle that created it)", s.ns, ns.Labels[contract.LabelBundle], s.ns)
	}
	h1, h2 := ns.Annotations[contract.AnnotationSharedPrefix+s.ns], ns.Annotations[contract.AnnotationSharedPrefix+two]
	if h1 == "" || h1 != h2 {
		t.Errorf("Namespace %s: renders recorded %q and %q, want equal", s.ns, h1, h2)
	}
	s.wantSelectors("blue", "server")

	three := "three-" + s.ns
	other := strings.Replace(nsYAML, "metadata:\n", "metadata:\n  labels: {team: three}\n", 1)
	s.addTeamBundle(three, s.ns, "", map[string]string{"namespace.yaml": other}, app{"cron", "example/cron:v1"})
	s.push("add bundle " + three)
	body := s.body(s.waitBundle(three, "held", 1))
	t.Logf("held: %s", body)
	for _, want := range []string{
		"Namespace " + s.ns + ": shared object rendered differently by bundle " + s.ns + ", " + two + "; bundle " + three + " may render it only identically",
		"bundles/" + three + "/shared",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("commit message does not contain %q:\n%s", want, body)
		}
	}
	after, err := s.cs.CoreV1().Namespaces().Get(s.ctx, s.ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if after.ResourceVersion != ns.ResourceVersion || after.Labels["team"] != "" {
		t.Errorf("Namespace %s changed by the refused bundle: labels %v (resourceVersion %s -> %s)", s.ns, after.Labels, ns.ResourceVersion, after.ResourceVersion)
	}
	deps, err := s.cs.AppsV1().Deployments(s.ns).List(s.ctx, metav1.ListOptions{LabelSelector: contract.LabelBundle + "=" + three})
	if err != nil {
		t.Fatal(err)
	}
	if len(deps.Items) > 0 {
		t.Errorf("bundle %s applied %d Deployments although it was refused", three, len(deps.Items))
	}
	s.wantSelectors("blue", "server")
}
