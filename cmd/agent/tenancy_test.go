package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
)

// TestSharedNamespaceIdenticalRendersOrRefused: three bundles in one
// namespace each render the Namespace in spec.shared. The second renders it
// identically: it is applied next to the first's and the bundle promotes.
// The third renders it with another label: its first release is held
// before anything is applied, the commit names the Namespace, the bundles
// that render it otherwise and the directory, and the Namespace is not
// touched. When the second bundle leaves the repository, it gives up its
// share: the Namespace stays with the first bundle's label and render.
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

	// two leaves the repository: its share of the Namespace goes, the
	// Namespace and the first bundle's share stay.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.git(s.clone, "rm", "-r", "--quiet", "bundles/"+two, "bundles/"+three)
	s.push("remove bundles " + two + " and " + three)
	err = wait.PollUntilContextTimeout(s.ctx, 250*time.Millisecond, 3*time.Minute, true, func(ctx context.Context) (bool, error) {
		ns, err = s.cs.CoreV1().Namespaces().Get(ctx, s.ns, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		_, left := ns.Annotations[contract.AnnotationSharedPrefix+two]
		return !left, nil
	})
	if err != nil {
		t.Fatalf("Namespace %s still records bundle %s's render after it left: %v (annotations %v)\nagent log:\n%s", s.ns, two, err, ns.Annotations, s.agent.LogTail())
	}
	if ns.Annotations[contract.AnnotationSharedPrefix+s.ns] != h1 || ns.Labels[contract.LabelBundle] != s.ns {
		t.Errorf("Namespace %s after %s left: labels %v, annotations %v; want %s's label and render kept", s.ns, two, ns.Labels, ns.Annotations, s.ns)
	}
	s.wantSelectors("blue", "server")
}

// TestServiceAccountImpersonation: a bundle naming a ServiceAccount in
// spec.serviceAccountName acts with its rights, not the agent's. Without
// rights in the namespace its first release is held, the commit names the
// ServiceAccount and the refusal, and nothing is applied; once a RoleBinding
// gives it rights, the next release promotes.
func TestServiceAccountImpersonation(t *testing.T) {
	s := newScenario(t, "hold", "1m", app{"server", "example/server:v1"})
	if _, err := s.cs.CoreV1().Namespaces().Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: s.ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.cs.CoreV1().Namespaces().Delete(context.Background(), s.ns, metav1.DeleteOptions{}) })
	if _, err := s.cs.CoreV1().ServiceAccounts(s.ns).Create(s.ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "deployer"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The team's bundle: no shared objects (a tenant does not write Namespaces).
	s.write("bundles/"+s.ns+"/bundle.yaml", fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %[1]s\nspec:\n  namespace: %[1]s\n  serviceAccountName: deployer\n  healthTimeout: 1m\n  scaleDownAfter: never\n  onFailure: hold\n", s.ns))
	if err := os.RemoveAll(filepath.Join(s.clone, "bundles", s.ns, "shared")); err != nil {
		t.Fatal(err)
	}
	s.push("act as the team's ServiceAccount")
	s.start()

	body := s.body(s.waitBundle(s.ns, "held", 1))
	t.Logf("held: %s", body)
	for _, want := range []string{
		"acting as ServiceAccount " + s.ns + "/deployer (spec.serviceAccountName of bundles/" + s.ns + "/bundle.yaml)",
		`User "system:serviceaccount:` + s.ns + `:deployer" cannot`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("commit message does not contain %q:\n%s", want, body)
		}
	}
	if got := s.applied(s.ns, ""); len(got) > 0 {
		t.Errorf("after the forbidden release %s holds %v, want nothing", s.ns, got)
	}

	// The platform team gives the ServiceAccount rights in its namespace.
	if _, err := s.cs.RbacV1().Roles(s.ns).Create(s.ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{"*"}, Resources: []string{"*"}, Verbs: []string{"*"}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.cs.RbacV1().RoleBindings(s.ns).Create(s.ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "deployer"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "deployer"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "deployer", Namespace: s.ns}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	s.waitBundle(s.ns, "promoted", 2)
	s.fidelity(s.ns)
	if sel := s.selectors(); sel["server"] == "" {
		t.Errorf("stable Service server selects %v after the promotion", sel)
	}
}

// TestAllowedNamespaces: with --allowed-namespaces, a bundle targeting
// another namespace, or kube-system, is held before anything is applied,
// with an error naming its bundle.yaml and spec.namespace; the allowed
// bundle promotes before and after.
func TestAllowedNamespaces(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	s.start("--root", "bundles", "--allowed-namespaces", s.ns)
	s.waitBundle(s.ns, "promoted", 1)

	outside, sys := "outside-"+s.ns, "sys-"+s.ns
	s.addTeamBundle(outside, outside, "", nil, app{"api", "example/api:v1"})
	s.addTeamBundle(sys, "kube-system", "", nil, app{"api", "example/api:v1"})
	s.push("bundles outside the allowed namespaces")
	for b, ns := range map[string]string{outside: outside, sys: "kube-system"} {
		body := s.body(s.waitBundle(b, "held", 1))
		t.Logf("held: %s", body)
		want := "bundles/" + b + `/bundle.yaml: spec.namespace: namespace "` + ns + `" is not allowed: the agent runs with --allowed-namespaces=` + s.ns
		if !strings.Contains(body, want) {
			t.Errorf("commit message does not contain %q:\n%s", want, body)
		}
		if got := s.applied(ns, contract.LabelBundle+"="+b); len(got) > 0 {
			t.Errorf("bundle %s wrote %v in %s", b, got, ns)
		}
	}
	// The allowed bundle is not held up.
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	s.waitBundle(s.ns, "promoted", 2)
	s.fidelity(s.ns)
}

// TestSystemNamespaceRefusedByDefault: without --allowed-namespaces a
// bundle may not target kube-system: it is held with an error naming its
// bundle.yaml and spec.namespace, nothing is applied there, and the other
// bundle promotes.
func TestSystemNamespaceRefusedByDefault(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	sys := "sys-" + s.ns
	s.addTeamBundle(sys, "kube-system", "", nil, app{"api", "example/api:v1"})
	s.push("a bundle in kube-system")
	s.start("--root", "bundles")
	body := s.body(s.waitBundle(sys, "held", 1))
	t.Logf("held: %s", body)
	want := "bundles/" + sys + `/bundle.yaml: spec.namespace: namespace "kube-system" is a system namespace`
	if !strings.Contains(body, want) {
		t.Errorf("commit message does not contain %q:\n%s", want, body)
	}
	if got := s.applied("kube-system", contract.LabelBundle+"="+sys); len(got) > 0 {
		t.Errorf("bundle %s wrote %v in kube-system", sys, got)
	}
	s.waitBundle(s.ns, "promoted", 1)
	s.fidelity(s.ns)
}
