package agent_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

// httpRouteCRD is a minimal CustomResourceDefinition for
// gateway.networking.k8s.io HTTPRoutes (no schema beyond an object): the
// test control plane has no Gateway API, and what is tested here is the
// chart's RBAC for the resource, not the Gateway API's validation. The real
// CRDs (sigs.k8s.io/gateway-api) are large and would add a module for this.
const httpRouteCRD = `{"apiVersion":"apiextensions.k8s.io/v1","kind":"CustomResourceDefinition",
"metadata":{"name":"httproutes.gateway.networking.k8s.io","annotations":{"api-approved.kubernetes.io":"https://github.com/kubernetes-sigs/gateway-api/pull/891"}},
"spec":{"group":"gateway.networking.k8s.io","scope":"Namespaced",
"names":{"plural":"httproutes","singular":"httproute","kind":"HTTPRoute","listKind":"HTTPRouteList"},
"versions":[{"name":"v1","served":true,"storage":true,
"schema":{"openAPIV3Schema":{"type":"object","x-kubernetes-preserve-unknown-fields":true}}}]}}`

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// installHTTPRouteCRD creates the CRD and waits until HTTPRoutes are served.
func installHTTPRouteCRD(ctx context.Context, t *testing.T, admin dynamic.Interface) {
	t.Helper()
	if _, err := admin.Resource(crdGVR).Patch(ctx, "httproutes.gateway.networking.k8s.io", types.ApplyPatchType, []byte(httpRouteCRD),
		metav1.PatchOptions{FieldManager: "helm-test"}); err != nil {
		t.Fatalf("HTTPRoute CRD: %v", err)
	}
	w, err := admin.Resource(crdGVR).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=httproutes.gateway.networking.k8s.io"})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	for ev := range w.ResultChan() {
		u, ok := ev.Object.(*unstructured.Unstructured)
		if !ok {
			continue
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, c := range conds {
			if c := c.(map[string]any); c["type"] == "Established" && c["status"] == "True" {
				return
			}
		}
	}
	t.Fatalf("HTTPRoute CRD not established: %v", ctx.Err())
}

// commonKinds are objects of the kinds apps commonly ship, in namespace ns.
func commonKinds(ns string) map[schema.GroupVersionResource]string {
	m := func(apiVersion, kind, spec string) string {
		return `{"apiVersion":"` + apiVersion + `","kind":"` + kind + `","metadata":{"name":"web","namespace":"` + ns + `"}` + spec + `}`
	}
	pod := `"template":{"metadata":{"labels":{"app":"web"}},"spec":{"restartPolicy":"Never","containers":[{"name":"c","image":"example.com/app:1"}]}}`
	return map[schema.GroupVersionResource]string{
		{Group: "apps", Version: "v1", Resource: "deployments"}:  string(deployment(ns, "web")),
		{Group: "apps", Version: "v1", Resource: "statefulsets"}: m("apps/v1", "StatefulSet", `,"spec":{"serviceName":"web","selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"example.com/app:1"}]}}}`),
		{Group: "apps", Version: "v1", Resource: "daemonsets"}:   m("apps/v1", "DaemonSet", `,"spec":{"selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"c","image":"example.com/app:1"}]}}}`),
		{Group: "batch", Version: "v1", Resource: "jobs"}:        m("batch/v1", "Job", `,"spec":{`+pod+`}`),
		{Group: "batch", Version: "v1", Resource: "cronjobs"}:    m("batch/v1", "CronJob", `,"spec":{"schedule":"0 3 * * *","jobTemplate":{"spec":{`+pod+`}}}`),
		{Version: "v1", Resource: "services"}:                    string(service(ns, "web")),
		{Version: "v1", Resource: "configmaps"}:                  m("v1", "ConfigMap", `,"data":{"k":"v"}`),
		{Version: "v1", Resource: "secrets"}:                     m("v1", "Secret", `,"stringData":{"k":"v"}`),
		{Version: "v1", Resource: "serviceaccounts"}:             m("v1", "ServiceAccount", ``),
		{Group: "networking.k8s.io", Version: "v1", Resource: "ingresses"}: m("networking.k8s.io/v1", "Ingress",
			`,"spec":{"rules":[{"host":"web.example.com","http":{"paths":[{"path":"/","pathType":"Prefix","backend":{"service":{"name":"web","port":{"number":80}}}}]}}]}`),
		{Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"}: m("networking.k8s.io/v1", "NetworkPolicy",
			`,"spec":{"podSelector":{"matchLabels":{"app":"web"}},"policyTypes":["Ingress"]}`),
		{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}: m("autoscaling/v2", "HorizontalPodAutoscaler",
			`,"spec":{"scaleTargetRef":{"apiVersion":"apps/v1","kind":"Deployment","name":"web"},"minReplicas":1,"maxReplicas":3,"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":80}}}]}`),
		{Group: "policy", Version: "v1", Resource: "poddisruptionbudgets"}: m("policy/v1", "PodDisruptionBudget",
			`,"spec":{"maxUnavailable":1,"selector":{"matchLabels":{"app":"web"}}}`),
		{Group: "gateway.networking.k8s.io", Version: "v1", Resource: "httproutes"}: m("gateway.networking.k8s.io/v1", "HTTPRoute",
			`,"spec":{"parentRefs":[{"name":"gw"}],"rules":[{"backendRefs":[{"name":"web","port":80}]}]}`),
	}
}

// TestCommonKindsWithChartServiceAccount: with the chart's ServiceAccount
// token (default values, rbac.namespaces listing one namespace), an object
// of each kind apps commonly ship server-side applies (dry run, as the
// agent does first, then for real), is patched, listed and deleted in that
// namespace, and is forbidden in another.
func TestCommonKindsWithChartServiceAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agentNS, allowed, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	admin, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	installHTTPRouteCRD(ctx, t, admin)
	objs := render(t, agentNS, "git.url=https://example.com/r.git", "rbac.namespaces={"+allowed+"}")
	noWildcards(t, objs)
	apply(ctx, t, admin, objs)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	_, sad := saClient(ctx, t, cs, agentNS, "tandem-tandem-agent")
	for gvr, body := range commonKinds(allowed) {
		ri := sad.Resource(gvr).Namespace(allowed)
		for _, dry := range [][]string{{metav1.DryRunAll}, nil} {
			if _, err := ri.Patch(ctx, "web", types.ApplyPatchType, []byte(body), metav1.PatchOptions{FieldManager: "tandem", DryRun: dry}); err != nil {
				t.Errorf("apply %s (dry run %v) in %s: %v", gvr.Resource, dry != nil, allowed, err)
			}
		}
		if _, err := ri.Patch(ctx, "web", types.MergePatchType, []byte(`{"metadata":{"labels":{"tandem.dev/bundle":"shop"}}}`), metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
			t.Errorf("patch %s: %v", gvr.Resource, err)
		}
		if l, err := ri.List(ctx, metav1.ListOptions{LabelSelector: "tandem.dev/bundle=shop"}); err != nil || len(l.Items) != 1 {
			t.Errorf("list %s: %v", gvr.Resource, err)
		}
		if err := ri.Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Errorf("delete %s: %v", gvr.Resource, err)
		}
		otherBody := strings.ReplaceAll(body, `"namespace":"`+allowed+`"`, `"namespace":"`+other+`"`)
		_, err := sad.Resource(gvr).Namespace(other).Patch(ctx, "web", types.ApplyPatchType, []byte(otherBody), metav1.PatchOptions{FieldManager: "tandem"})
		if !apierrors.IsForbidden(err) {
			t.Errorf("apply %s in %s (not in rbac.namespaces): err = %v, want Forbidden", gvr.Resource, other, err)
		}
	}
}

// TestLeastPrivilegeTenancy: with tenancy configured (a tenant namespace,
// a ServiceAccount to impersonate), the chart's ServiceAccount, on a real
// control plane, can do its job in the tenant namespace (apply a
// Deployment, a Secret, patch its own Namespace, impersonate the tenant's
// deployer), and cannot list Secrets cluster-wide or in another namespace,
// impersonate another ServiceAccount (another name, or the same name
// elsewhere), create a Namespace, or patch one it does not own.
func TestLeastPrivilegeTenancy(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agentNS, tenant, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	objs := render(t, agentNS, "git.url=https://example.com/r.git",
		"tenancy.allowedNamespaces={"+tenant+"}", "tenancy.defaultServiceAccount=deployer", "tenancy.impersonation.enabled=true")
	noWildcards(t, objs)
	for _, o := range objs {
		if o.GetKind() == "ClusterRole" {
			for _, r := range mustRules(t, o) {
				for _, res := range r.Resources {
					if res == "secrets" || res == "serviceaccounts" || (res == "namespaces" && len(r.ResourceNames) == 0 && strings.Join(r.Verbs, ",") != "list") {
						t.Errorf("ClusterRole %s grants %v on %s cluster-wide", o.GetName(), r.Verbs, res)
					}
				}
			}
		}
		if o.GetKind() == "Role" && o.GetNamespace() != tenant && o.GetNamespace() != agentNS {
			t.Errorf("Role %s in %s, outside the tenant namespace", o.GetName(), o.GetNamespace())
		}
	}
	admin, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply(ctx, t, admin, objs)
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{tenant, other} {
		for _, name := range []string{"deployer", "admin"} {
			if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	sa, sad := saClient(ctx, t, cs, agentNS, "tandem-tandem-agent")

	// Its job in the tenant namespace.
	if _, err := sad.Resource(deployGVR).Namespace(tenant).Patch(ctx, "web", types.ApplyPatchType, deployment(tenant, "web"), metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
		t.Errorf("apply a Deployment in the tenant namespace: %v", err)
	}
	if _, err := sa.CoreV1().Secrets(tenant).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list Secrets in the tenant namespace: %v", err)
	}
	nsPatch := []byte(`{"metadata":{"labels":{"team":"a"}}}`)
	if _, err := sa.CoreV1().Namespaces().Patch(ctx, tenant, types.MergePatchType, nsPatch, metav1.PatchOptions{FieldManager: "tandem"}); err != nil {
		t.Errorf("patch its own Namespace %s: %v", tenant, err)
	}
	token := saToken(ctx, t, cs, agentNS, "tandem-tandem-agent")
	if got, err := whoAmI(ctx, token, "system:serviceaccount:"+tenant+":deployer"); err != nil || got != "system:serviceaccount:"+tenant+":deployer" {
		t.Errorf("impersonate the tenant's deployer: %q, %v", got, err)
	}

	// Nothing more.
	forbidden := func(what string, err error) {
		t.Helper()
		if !apierrors.IsForbidden(err) {
			t.Errorf("%s: err = %v, want Forbidden", what, err)
		}
	}
	_, err = sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden("list Secrets cluster-wide", err)
	_, err = sa.CoreV1().Secrets(other).List(ctx, metav1.ListOptions{})
	forbidden("list Secrets in "+other, err)
	_, err = sa.CoreV1().Secrets(agentNS).List(ctx, metav1.ListOptions{})
	forbidden("list Secrets in its own namespace (not a tenant namespace)", err)
	_, err = sa.CoreV1().Namespaces().Patch(ctx, other, types.MergePatchType, nsPatch, metav1.PatchOptions{FieldManager: "tandem"})
	forbidden("patch Namespace "+other, err)
	_, err = sa.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: other + "-new"}}, metav1.CreateOptions{})
	forbidden("create a Namespace", err)
	_, err = sad.Resource(deployGVR).Namespace(other).Patch(ctx, "web", types.ApplyPatchType, deployment(other, "web"), metav1.PatchOptions{FieldManager: "tandem"})
	forbidden("apply a Deployment in "+other, err)
	for _, user := range []string{
		"system:serviceaccount:" + tenant + ":admin",
		"system:serviceaccount:" + other + ":deployer",
		"system:serviceaccount:kube-system:default",
		"admin",
	} {
		_, err := whoAmI(ctx, token, user)
		forbidden("impersonate "+user, err)
	}
	for _, c := range []struct {
		ns, group, resource, verb string
	}{
		{"", "", "secrets", "list"},
		{"", "", "serviceaccounts", "create"},
		{"", "", "namespaces", "delete"},
		{other, "", "serviceaccounts", "impersonate"},
		{"", "rbac.authorization.k8s.io", "clusterrolebindings", "create"},
		{tenant, "rbac.authorization.k8s.io", "rolebindings", "create"},
	} {
		if can(ctx, t, sa, c.ns, c.group, c.resource, c.verb) {
			t.Errorf("can %s %s/%s in %q, want not", c.verb, c.group, c.resource, c.ns)
		}
	}
}

type rule struct {
	APIGroups     []string `json:"apiGroups"`
	Resources     []string `json:"resources"`
	ResourceNames []string `json:"resourceNames"`
	Verbs         []string `json:"verbs"`
}

func mustRules(t *testing.T, o *unstructured.Unstructured) []rule {
	t.Helper()
	var r struct {
		Rules []rule `json:"rules"`
	}
	data, _ := o.MarshalJSON()
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return r.Rules
}
