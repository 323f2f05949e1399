// Package agent_test checks the tandem-agent Helm chart: lint, rendering,
// schema validation, and the rendered RBAC applied to a real control plane.
package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/tandem-gitops/tandem/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) { os.Exit(testenv.RunTests(m, func(e *testenv.Env) { env = e })) }

func helmBin(t *testing.T) string {
	t.Helper()
	h := os.Getenv("TANDEM_HELM")
	if h == "" {
		t.Fatal("TANDEM_HELM is not set: run these tests through `make test`, which builds helm and exports its path")
	}
	return h
}

func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), err
	}
	return out.String(), nil
}

func render(t *testing.T, ns string, sets ...string) []*unstructured.Unstructured {
	t.Helper()
	args := []string{"template", "tandem", ".", "--namespace", ns}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	out, err := helm(t, args...)
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", sets, err, out)
	}
	var objs []*unstructured.Unstructured
	for _, doc := range strings.Split(out, "\n---") {
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("rendered YAML: %v\n%s", err, doc)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
	return objs
}

func find(objs []*unstructured.Unstructured, kind string) []*unstructured.Unstructured {
	var r []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind {
			r = append(r, o)
		}
	}
	return r
}

func TestLint(t *testing.T) {
	if out, err := helm(t, "lint", ".", "--strict", "--set", "git.url=https://example.com/r.git"); err != nil {
		t.Fatalf("helm lint: %v\n%s", err, out)
	}
}

func TestSchemaRejectsWrongValues(t *testing.T) {
	for _, c := range []struct{ name, set string }{
		{"replicaCount string", "replicaCount=two"},
		{"scope unknown", "rbac.scope=galaxy"},
		{"logFormat unknown", "logFormat=xml"},
		{"concurrency string", "concurrency=many"},
		{"interval not a duration", "git.interval=often"},
		{"typo in git.token", "git.tokne.secretName=tok"},
		{"typo at the top", "replicaCoutn=2"},
		{"typo in rbac", "rbac.namespace=shop"},
		{"namespace not a DNS label", "rbac.namespaces={Shop_1}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set-string", c.set); err == nil {
				t.Fatalf("helm template accepted %s:\n%s", c.set, out)
			}
		})
	}
	t.Run("missing git.url", func(t *testing.T) {
		if out, err := helm(t, "template", "x", "."); err == nil {
			t.Fatalf("helm template accepted a missing git.url:\n%s", out)
		}
	})
	t.Run("rbac.namespaces outside tenancy.allowedNamespaces", func(t *testing.T) {
		out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set", "rbac.namespaces={a,b}", "--set", "tenancy.allowedNamespaces={a}")
		if err == nil || !strings.Contains(out, "tenancy.allowedNamespaces") {
			t.Fatalf("helm template granted rights outside tenancy.allowedNamespaces (err %v):\n%s", err, out)
		}
	})
	t.Run("impersonation of any name", func(t *testing.T) {
		out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set", "tenancy.impersonation.enabled=true")
		if err == nil || !strings.Contains(out, "serviceAccountNames") {
			t.Fatalf("helm template granted impersonation of any ServiceAccount name (err %v):\n%s", err, out)
		}
	})
	t.Run("more replicas without leader election", func(t *testing.T) {
		out, err := helm(t, "template", "x", ".", "--set", "git.url=https://e/r.git", "--set", "replicaCount=2", "--set", "leaderElection.enabled=false")
		if err == nil || !strings.Contains(out, "leaderElection.enabled") {
			t.Fatalf("helm template accepted 2 replicas without leader election (err %v):\n%s", err, out)
		}
	})
}

func TestRenderDefaults(t *testing.T) {
	objs := render(t, "tandem-system", "git.url=https://example.com/r.git")
	deps := find(objs, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want 1 Deployment, got %d", len(deps))
	}
	d := deps[0]
	if r, _, _ := unstructured.NestedFieldNoCopy(d.Object, "spec", "replicas"); fmt.Sprint(r) != "1" {
		t.Errorf("replicas = %v, want 1", r)
	}
	cs, _, _ := unstructured.NestedSlice(d.Object, "spec", "template", "spec", "containers")
	c := cs[0].(map[string]any)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"run", "--repo=https://example.com/r.git", "--leader-elect", "--workdir=/var/lib/tandem", "--metrics-addr=:8080", "--log-format=json", "--concurrency=4", "--resync-interval=10m"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "--git-ssh-key-file") || strings.Contains(args, "--webhook-secret-file") {
		t.Errorf("args %q pass secret files without secrets configured", args)
	}
	sc := c["securityContext"].(map[string]any)
	if sc["runAsNonRoot"] != true || sc["readOnlyRootFilesystem"] != true || sc["allowPrivilegeEscalation"] != false || fmt.Sprint(sc["runAsUser"]) != "65532" {
		t.Errorf("securityContext = %v", sc)
	}
	if drop, _, _ := unstructured.NestedStringSlice(sc, "capabilities", "drop"); len(drop) != 1 || drop[0] != "ALL" {
		t.Errorf("capabilities.drop = %v", drop)
	}
	if p, _, _ := unstructured.NestedString(sc, "seccompProfile", "type"); p != "RuntimeDefault" {
		t.Errorf("seccompProfile = %q", p)
	}
	if p, _, _ := unstructured.NestedString(c, "livenessProbe", "httpGet", "path"); p != "/healthz" {
		t.Errorf("liveness path %q", p)
	}
	if p, _, _ := unstructured.NestedString(c, "readinessProbe", "httpGet", "path"); p != "/readyz" {
		t.Errorf("readiness path %q", p)
	}
	// 90% of the 768Mi limit less the one 256 MiB render worker, in bytes.
	if v := envValue(c, "GOMEMLIMIT"); v != fmt.Sprint((768-256)*1024*1024*9/10) {
		t.Errorf("GOMEMLIMIT = %q, want 90%% of 768Mi less 256Mi: %v", v, c["env"])
	}
	if img := c["image"]; img != "ghcr.io/tandem-gitops/tandem-agent:"+appVersion(t) {
		t.Errorf("image %v does not follow the chart's appVersion %s", img, appVersion(t))
	}
	if _, ok, _ := unstructured.NestedString(c, "resources", "limits", "memory"); !ok {
		t.Errorf("no memory limit")
	}
	// Least privilege by default: a Role in the release namespace, and a
	// ClusterRole only for that one Namespace object (and listing names).
	if len(find(objs, "Service")) != 1 || len(find(objs, "ServiceAccount")) != 1 {
		t.Errorf("default render lacks the Service or ServiceAccount")
	}
	crs := find(objs, "ClusterRole")
	if len(crs) != 1 || crs[0].GetName() != "tandem-tandem-agent-tandem-system-namespaces" {
		t.Errorf("default ClusterRoles: %v, want only the namespaces one", names(crs))
	}
	roles := map[string]bool{}
	for _, r := range find(objs, "Role") {
		roles[r.GetNamespace()+"/"+r.GetName()] = true
	}
	if !roles["tandem-system/tandem-tandem-agent"] || len(roles) != 2 {
		t.Errorf("default Roles %v, want the agent's and its leader Role in tandem-system", roles)
	}
	if len(find(objs, "ServiceMonitor")) != 0 {
		t.Errorf("ServiceMonitor rendered by default")
	}
	noWildcards(t, objs)
}

func TestRenderAllOptions(t *testing.T) {
	objs := render(t, "tandem-system", "git.url=git@github.com:a/b.git",
		"git.ssh.secretName=ssh", "git.token.secretName=tok", "git.password.secretName=pw", "git.username=bot",
		"git.signingKey.secretName=sign", "webhook.secretName=hook", "metrics.serviceMonitor.enabled=true",
		"replicaCount=2", "logFormat=console", "concurrency=8", "extraArgs={--pprof}",
		"notifications.urls={https://chat.example.com/hooks/a,https://ops.example.com/tandem}", "notifications.format=slack",
		"notifications.secret.secretName=hmac", "notifications.urlsSecret.secretName=slack", "commitStatus.provider=gitlab", "commitStatus.url=https://gitlab.example.com",
		"commitStatus.repo=group/shop", "commitStatus.token.secretName=gl", "commitStatus.targetURL=https://ci.example.com",
		"events.enabled=false")
	d := find(objs, "Deployment")[0]
	c := d.Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{
		"--git-ssh-key-file=/etc/tandem/ssh/identity", "--git-known-hosts-file=/etc/tandem/ssh/known_hosts",
		"--git-token-file=/etc/tandem/token/token", "--git-password-file=/etc/tandem/password/password", "--git-username=bot",
		"--git-signing-key-file=/etc/tandem/signing/signing.asc", "--webhook-secret-file=/etc/tandem/webhook/secret",
		"--log-format=console", "--concurrency=8", "--pprof",
		"--notify-url=https://chat.example.com/hooks/a", "--notify-url=https://ops.example.com/tandem", "--notify-format=slack",
		"--notify-secret-file=/etc/tandem/notify/secret", "--notify-url-file=/etc/tandem/notify-urls/urls", "--commit-status=gitlab", "--commit-status-url=https://gitlab.example.com",
		"--commit-status-repo=group/shop", "--commit-status-token-file=/etc/tandem/commit-status/token",
		"--commit-status-target-url=https://ci.example.com", "--events=false",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
	mounts := map[string]bool{}
	for _, m := range c["volumeMounts"].([]any) {
		m := m.(map[string]any)
		mounts[m["mountPath"].(string)] = m["readOnly"] == true
	}
	for _, p := range []string{"/etc/tandem/ssh", "/etc/tandem/token", "/etc/tandem/password", "/etc/tandem/signing", "/etc/tandem/webhook",
		"/etc/tandem/notify", "/etc/tandem/notify-urls", "/etc/tandem/commit-status"} {
		if ro, ok := mounts[p]; !ok || !ro {
			t.Errorf("%s not mounted read-only: %v", p, mounts)
		}
	}
	if _, ok := mounts["/var/lib/tandem"]; !ok {
		t.Errorf("workdir not mounted")
	}
	if len(find(objs, "ServiceMonitor")) != 1 {
		t.Errorf("ServiceMonitor not rendered")
	}
	// Without events the role grants none.
	for _, r := range find(objs, "ClusterRole") {
		rules, _, _ := unstructured.NestedSlice(r.Object, "rules")
		for _, rule := range rules {
			if res := toStrings(rule.(map[string]any)["resources"]); len(res) == 1 && res[0] == "events" {
				t.Errorf("ClusterRole %s grants events with events.enabled=false", r.GetName())
			}
		}
	}
}

// A commit-status provider needs its repository and token Secret.
func TestCommitStatusNeedsRepoAndToken(t *testing.T) {
	for _, sets := range [][]string{
		{"commitStatus.provider=github", "commitStatus.token.secretName=gh"},
		{"commitStatus.provider=github", "commitStatus.repo=a/b"},
		{"commitStatus.provider=bitbucket", "commitStatus.repo=a/b", "commitStatus.token.secretName=gh"},
	} {
		args := []string{"template", "tandem", ".", "--set", "git.url=https://example.com/r.git"}
		for _, s := range sets {
			args = append(args, "--set", s)
		}
		if out, err := helm(t, args...); err == nil {
			t.Errorf("helm template %v succeeded:\n%s", sets, out)
		}
	}
}

func names(objs []*unstructured.Unstructured) []string {
	var r []string
	for _, o := range objs {
		r = append(r, o.GetKind()+" "+o.GetNamespace()+"/"+o.GetName())
	}
	return r
}

func envValue(c map[string]any, name string) string {
	env, _ := c["env"].([]any)
	for _, e := range env {
		if e := e.(map[string]any); e["name"] == name {
			v, _ := e["value"].(string)
			return v
		}
	}
	return ""
}

func appVersion(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		AppVersion string `json:"appVersion"`
	}
	if err := yaml.Unmarshal(data, &c); err != nil || c.AppVersion == "" {
		t.Fatalf("Chart.yaml appVersion: %q, %v", c.AppVersion, err)
	}
	return c.AppVersion
}

func toStrings(v any) []string {
	var r []string
	for _, x := range v.([]any) {
		r = append(r, x.(string))
	}
	return r
}

func noWildcards(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() != "Role" && o.GetKind() != "ClusterRole" {
			continue
		}
		rules, _, _ := unstructured.NestedSlice(o.Object, "rules")
		for _, r := range rules {
			r := r.(map[string]any)
			for _, k := range []string{"verbs", "resources", "apiGroups"} {
				for _, s := range toStrings(r[k]) {
					if s == "*" {
						t.Errorf("%s %s grants %s *", o.GetKind(), o.GetName(), k)
					}
				}
			}
		}
	}
}

var gvrs = map[string]schema.GroupVersionResource{
	"ServiceAccount":     {Version: "v1", Resource: "serviceaccounts"},
	"Service":            {Version: "v1", Resource: "services"},
	"Deployment":         {Group: "apps", Version: "v1", Resource: "deployments"},
	"Role":               {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
	"RoleBinding":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
	"ClusterRole":        {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
	"ClusterRoleBinding": {Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
}

func apply(ctx context.Context, t *testing.T, dc dynamic.Interface, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		gvr, ok := gvrs[o.GetKind()]
		if !ok {
			t.Fatalf("no resource for kind %s", o.GetKind())
		}
		data, err := o.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(gvr)
		if o.GetNamespace() != "" {
			ri = dc.Resource(gvr).Namespace(o.GetNamespace())
		}
		if _, err := ri.Patch(ctx, o.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: "helm-test"}); err != nil {
			t.Fatalf("apply %s %s/%s: %v", o.GetKind(), o.GetNamespace(), o.GetName(), err)
		}
	}
}

func saClient(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) (*kubernetes.Clientset, dynamic.Interface) {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = tr.Status.Token
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, d
}

func ptr[T any](v T) *T { return &v }

func can(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, group, resource, verb string) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: group, Resource: resource, Verb: verb}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("access review %s %s/%s in %q: %v", verb, group, resource, ns, err)
	}
	return r.Status.Allowed
}

func deployment(ns, name string) []byte {
	return []byte(`{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"name":"` + name + `","namespace":"` + ns + `"},
"spec":{"replicas":1,"selector":{"matchLabels":{"app":"` + name + `"}},"template":{"metadata":{"labels":{"app":"` + name + `"}},
"spec":{"containers":[{"name":"c","image":"example.com/app:1"}]}}}}`)
}

func service(ns, name string) []byte {
	return []byte(`{"apiVersion":"v1","kind":"Service","metadata":{"name":"` + name + `","namespace":"` + ns + `"},
"spec":{"selector":{"app":"` + name + `"},"ports":[{"port":80}]}}`)
}

var deployGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
var svcGVR = schema.GroupVersionResource{Version: "v1", Resource: "services"}

func TestNamespacedRBACOnControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agentNS, allowed, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	objs := render(t, agentNS, "git.url=https://example.com/r.git", "rbac.scope=namespaced", "rbac.namespaces={"+allowed+"}")
	noWildcards(t, objs)
	admin, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply(ctx, t, admin, objs)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.AppsV1().Deployments(agentNS).Get(ctx, "tandem-tandem-agent", metav1.GetOptions{}); err != nil {
		t.Fatalf("chart Deployment not stored: %v", err)
	}
	sa, sad := saClient(ctx, t, cs, agentNS, "tandem-tandem-agent")

	// Allowed namespace: server-side apply a Deployment, a Service, then patch the Service.
	if _, err := sad.Resource(deployGVR).Namespace(allowed).Patch(ctx, "web", types.ApplyPatchType, deployment(allowed, "web"), metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
		t.Fatalf("SA cannot apply a Deployment in %s: %v", allowed, err)
	}
	if _, err := sad.Resource(svcGVR).Namespace(allowed).Patch(ctx, "web", types.ApplyPatchType, service(allowed, "web"), metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
		t.Fatalf("SA cannot apply a Service in %s: %v", allowed, err)
	}
	if _, err := sa.CoreV1().Services(allowed).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"selector":{"app":"web","tandem.dev/color":"blue"}}}`), metav1.PatchOptions{FieldManager: "tandem/traffic"}); err != nil {
		t.Fatalf("SA cannot patch a Service in %s: %v", allowed, err)
	}
	if _, err := sa.AppsV1().Deployments(allowed).GetScale(ctx, "web", metav1.GetOptions{}); err != nil {
		t.Fatalf("SA cannot read the scale subresource: %v", err)
	}
	// Other namespace: forbidden.
	_, err = sad.Resource(deployGVR).Namespace(other).Patch(ctx, "web", types.ApplyPatchType, deployment(other, "web"), metav1.PatchOptions{FieldManager: "tandem"})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("apply in %s outside rbac.namespaces: err = %v, want Forbidden", other, err)
	}
	if _, err := sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Fatalf("cluster-wide secrets list: err = %v, want Forbidden", err)
	}
	for _, c := range []struct {
		ns, group, resource, verb string
		want                      bool
	}{
		{allowed, "", "secrets", "get", true},
		{allowed, "batch", "jobs", "delete", true},
		{allowed, "batch", "jobs", "deletecollection", true}, // check runs clear their earlier Jobs
		{allowed, "discovery.k8s.io", "endpointslices", "watch", true},
		{allowed, "", "pods", "delete", false},
		{allowed, "rbac.authorization.k8s.io", "roles", "create", false},
		{other, "", "secrets", "get", false},
		{other, "apps", "deployments", "patch", false},
		{"", "", "namespaces", "create", false},
		{agentNS, "coordination.k8s.io", "leases", "create", true},
		{other, "coordination.k8s.io", "leases", "create", false},
		{allowed, "", "events", "create", true},
		{allowed, "", "events", "patch", true},
		{allowed, "", "events", "delete", false},
		{allowed, "events.k8s.io", "events", "create", false},
		{other, "", "events", "create", false},
	} {
		if got := can(ctx, t, sa, c.ns, c.group, c.resource, c.verb); got != c.want {
			t.Errorf("can %s %s/%s in %q = %v, want %v", c.verb, c.group, c.resource, c.ns, got, c.want)
		}
	}
}

// TestClusterRBACOnControlPlane: rbac.scope cluster lets the agent apply
// workloads in any namespace, but Secrets and ServiceAccounts only in
// rbac.namespaces, and Namespaces never created.
func TestClusterRBACOnControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agentNS, target := env.Namespace(t), env.Namespace(t)
	objs := render(t, agentNS, "git.url=https://example.com/r.git", "fullnameOverride=tandem-"+agentNS, "rbac.scope=cluster")
	admin, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply(ctx, t, admin, objs)
	t.Cleanup(func() {
		for _, k := range []string{"ClusterRole", "ClusterRoleBinding"} {
			for _, n := range []string{"tandem-" + agentNS + "-" + agentNS, "tandem-" + agentNS + "-" + agentNS + "-namespaces"} {
				_ = admin.Resource(gvrs[k]).Delete(context.Background(), n, metav1.DeleteOptions{})
			}
		}
	})
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	sa, sad := saClient(ctx, t, cs, agentNS, "tandem-"+agentNS)
	if _, err := sad.Resource(deployGVR).Namespace(target).Patch(ctx, "web", types.ApplyPatchType, deployment(target, "web"), metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
		t.Fatalf("SA cannot apply a Deployment in %s: %v", target, err)
	}
	for _, c := range []struct {
		ns, group, resource, verb string
		want                      bool
	}{
		{"", "", "namespaces", "create", false},
		{"", "", "namespaces", "delete", false},
		{target, "", "services", "patch", true},
		{target, "networking.k8s.io", "ingresses", "create", true},
		{target, "", "pods", "delete", false},
		{"", "", "secrets", "list", false},
		{target, "", "secrets", "get", false},
		{target, "", "serviceaccounts", "create", false},
		{agentNS, "", "secrets", "create", true}, // rbac.namespaces defaults to the release namespace
		{"", "rbac.authorization.k8s.io", "clusterroles", "create", false},
		{target, "", "nodes", "get", false},
	} {
		if got := can(ctx, t, sa, c.ns, c.group, c.resource, c.verb); got != c.want {
			t.Errorf("can %s %s/%s in %q = %v, want %v", c.verb, c.group, c.resource, c.ns, got, c.want)
		}
	}
}
