package agent_test

import (
	"context"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// TestImpersonationOnControlPlane: with tenancy.impersonation the chart
// passes --allowed-namespaces and --default-service-account, and its RBAC,
// applied to a real control plane, lets the agent impersonate exactly the
// listed ServiceAccount name in the allowed namespace: not another name,
// not another namespace. Without it the agent may impersonate nobody.
func TestImpersonationOnControlPlane(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	agentNS, allowed, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	objs := render(t, agentNS, "git.url=https://example.com/r.git", "rbac.scope=namespaced", "rbac.namespaces={"+allowed+"}",
		"tenancy.allowedNamespaces={"+allowed+"}", "tenancy.defaultServiceAccount=deployer",
		"tenancy.impersonation.enabled=true", "tenancy.impersonation.serviceAccountNames={deployer}")
	noWildcards(t, objs)
	c := find(objs, "Deployment")[0].Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["containers"].([]any)[0].(map[string]any)
	args := strings.Join(toStrings(c["args"]), " ")
	for _, want := range []string{"--allowed-namespaces=" + allowed, "--default-service-account=deployer"} {
		if !strings.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
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
	for _, ns := range []string{allowed, other} {
		for _, name := range []string{"deployer", "admin"} {
			if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	token := saToken(ctx, t, cs, agentNS, "tandem-tandem-agent")
	for _, c := range []struct {
		ns, name string
		want     bool
	}{
		{allowed, "deployer", true},
		{allowed, "admin", false},
		{other, "deployer", false},
	} {
		user := "system:serviceaccount:" + c.ns + ":" + c.name
		got, err := whoAmI(ctx, token, user)
		switch {
		case c.want && err != nil:
			t.Errorf("impersonating %s: %v", user, err)
		case c.want && got != user:
			t.Errorf("impersonating %s: the API server sees %q", user, got)
		case !c.want && !apierrors.IsForbidden(err):
			t.Errorf("impersonating %s: user %q, err = %v, want Forbidden", user, got, err)
		}
	}

	// The default: no impersonation rights at all.
	objs = render(t, other, "git.url=https://example.com/r.git", "rbac.scope=namespaced", "rbac.namespaces={"+other+"}")
	if n := len(objs); n == 0 {
		t.Fatal("nothing rendered")
	}
	for _, o := range objs {
		if strings.HasSuffix(o.GetName(), "-impersonate") {
			t.Errorf("%s %s rendered without tenancy.impersonation.enabled", o.GetKind(), o.GetName())
		}
	}
}

// saToken is a short-lived token of ServiceAccount ns/name.
func saToken(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) string {
	t.Helper()
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("token for %s/%s: %v", ns, name, err)
	}
	return tr.Status.Token
}

// whoAmI asks the API server, with token and impersonating user, who it
// sees (a SelfSubjectReview).
func whoAmI(ctx context.Context, token, user string) (string, error) {
	cfg := rest.AnonymousClientConfig(env.Config)
	cfg.BearerToken = token
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	r, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", err
	}
	return r.Status.UserInfo.Username, nil
}
