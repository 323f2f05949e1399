package agent_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/tandem-gitops/tandem/testenv"
)

// TestAgentWithChartServiceAccount runs the real agent binary with a token
// of the chart's own ServiceAccount (namespaced RBAC, leader election on):
// it promotes a bundle in its allowed namespace (whose spec.shared declares
// that Namespace, with a label: rbac.manageNamespaces; the platform made the
// Namespace, so the bundle takes it over with spec.adopt), and a bundle aimed at a
// namespace outside rbac.namespaces is refused with a clear error and
// nothing applied there.
func TestAgentWithChartServiceAccount(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	agentNS, allowed, other := env.Namespace(t), env.Namespace(t), env.Namespace(t)
	admin, err := dynamic.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	apply(ctx, t, admin, render(t, agentNS, "git.url=file:///unused", "rbac.scope=namespaced", "rbac.namespaces={"+allowed+"}"))
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := cs.CoreV1().ServiceAccounts(agentNS).CreateToken(ctx, "tandem-tandem-agent", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr(int64(900))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: env.Config.Host, InsecureSkipTLSVerify: true}
	kc.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tr.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "sa"}
	kc.CurrentContext = "c"
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "tandem-agent")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/agent").CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}

	remote, err := testenv.NewRemote(filepath.Join(dir, "remote.git"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for name, ns := range map[string]string{"ok": allowed, "bad": other} {
		files["bundles/"+name+"/bundle.yaml"] = fmt.Sprintf("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata:\n  name: %s\nspec:\n  namespace: %s\n  healthTimeout: 60s\n", name, ns)
		files["bundles/"+name+"/app/kustomization.yaml"] = "resources:\n- web.yaml\n"
		files["bundles/"+name+"/app/web.yaml"] = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: web, image: example/web:v1}]}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
`
	}
	files["bundles/ok/bundle.yaml"] += "  shared: shared\n  adopt: true\n"
	files["bundles/ok/shared/kustomization.yaml"] = "resources:\n- namespace.yaml\n"
	files["bundles/ok/shared/namespace.yaml"] = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + allowed + "\n  labels: {team: shop}\n"
	if _, err := remote.Seed(files, "two bundles"); err != nil {
		t.Fatal(err)
	}
	agent, err := testenv.StartAgent(bin, []string{"run", "--repo", "file://" + remote.Path, "--kubeconfig", kubeconfig,
		"--interval", "500ms", "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(dir, "work"),
		"--leader-elect", "--leader-election-namespace", agentNS, "--leader-election-id", "tandem-agent"},
		filepath.Join(dir, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = agent.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("agent log:\n%s", agent.LogTail())
		}
	}()
	commits, err := testenv.WaitAgentCommits(ctx, remote.Path, "main", 1, 2*time.Minute)
	if err != nil {
		t.Fatalf("%v\n%s", err, agent.LogTail())
	}
	if c := commits[0]; c.Trailers["Tandem-Result"] != "promoted" || c.Trailers["Tandem-Bundle"] != "ok" {
		t.Fatalf("first agent commit %q %v: want bundle ok promoted", c.Subject, c.Trailers)
	}
	twin, err := cs.CoreV1().Services(allowed).Get(ctx, "web", metav1.GetOptions{})
	if err != nil || twin.Spec.Selector["tandem.dev/color"] != "blue" {
		t.Fatalf("stable Service web in %s: %v %v", allowed, err, twin.Spec.Selector)
	}
	if n, err := cs.CoreV1().Namespaces().Get(ctx, allowed, metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	} else if n.Labels["team"] != "shop" {
		t.Fatalf("Namespace %s from spec.shared: labels %v, want team=shop", allowed, n.Labels)
	}
	// The other bundle is refused, loudly, and nothing lands in its namespace.
	deadline := time.Now().Add(30 * time.Second)
	for !agent.LogContains("forbidden") {
		if time.Now().After(deadline) {
			t.Fatalf("no forbidden error in the agent log for bundle bad:\n%s", agent.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !agent.LogContains(`"bundle":"bad"`) {
		t.Errorf("the refusal does not name bundle bad")
	}
	deps, err := cs.AppsV1().Deployments(other).List(ctx, metav1.ListOptions{})
	if err != nil || len(deps.Items) != 0 {
		t.Fatalf("Deployments in %s (outside rbac.namespaces): %v, err %v", other, len(deps.Items), err)
	}
	svcs, err := cs.CoreV1().Services(other).List(ctx, metav1.ListOptions{})
	if err != nil || len(svcs.Items) != 0 {
		t.Fatalf("Services in %s: %d, err %v", other, len(svcs.Items), err)
	}
	if _, err := os.Stat(agent.Log); err != nil {
		t.Fatal(err)
	}
}
