package testenv

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

var env *Env

func TestMain(m *testing.M) { os.Exit(RunTests(m, func(e *Env) { env = e })) }

func client(t *testing.T) *kubernetes.Clientset {
	t.Helper()
	cs, err := env.Client()
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func deployment(ns, name, image string, replicas int32) *appsv1.Deployment {
	labels := map[string]string{"app": name, "group": "g"}
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "main", Image: image}}},
			},
		},
	}
}

func create(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if _, err := client(t).AppsV1().Deployments(d.Namespace).Create(context.Background(), d, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create Deployment %s/%s: %v", d.Namespace, d.Name, err)
	}
}

// waitFor polls cond every 200ms for up to timeout; on timeout it fails with what.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 200*time.Millisecond, timeout, true, cond)
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func pods(t *testing.T, ns, app string) []corev1.Pod {
	t.Helper()
	list, err := client(t).CoreV1().Pods(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return list.Items
}

func TestNodeIsReady(t *testing.T) {
	n, err := client(t).CoreV1().Nodes().Get(context.Background(), NodeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return
		}
	}
	t.Fatalf("node %s is not Ready: %+v", NodeName, n.Status.Conditions)
}

func TestDeploymentBecomesAvailable(t *testing.T) {
	ns := env.Namespace(t)
	create(t, deployment(ns, "web", "example/web:v1", 3))
	waitFor(t, 60*time.Second, "Deployment web to have 3 available replicas", func(ctx context.Context) (bool, error) {
		d, err := client(t).AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return d.Status.AvailableReplicas == 3 && d.Status.ObservedGeneration == d.Generation, nil
	})
}

func TestMissingImageIsImagePullBackOff(t *testing.T) {
	ns := env.Namespace(t)
	create(t, deployment(ns, "ghost", "missing.invalid/ghost:v1", 2))
	waitFor(t, 60*time.Second, "pods of ghost in ImagePullBackOff", func(ctx context.Context) (bool, error) {
		ps := pods(t, ns, "ghost")
		if len(ps) != 2 {
			return false, nil
		}
		for _, p := range ps {
			if len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Waiting == nil ||
				p.Status.ContainerStatuses[0].State.Waiting.Reason != "ImagePullBackOff" {
				return false, nil
			}
		}
		return true, nil
	})
	d, err := client(t).AppsV1().Deployments(ns).Get(context.Background(), "ghost", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Status.AvailableReplicas != 0 {
		t.Fatalf("Deployment ghost has %d available replicas, want 0", d.Status.AvailableReplicas)
	}
}

func TestCrashImageCrashLoopsWithRisingRestarts(t *testing.T) {
	ns := env.Namespace(t)
	create(t, deployment(ns, "boom", "example/boom:v1-crash", 1))
	restarts := func() int32 {
		ps := pods(t, ns, "boom")
		if len(ps) != 1 || len(ps[0].Status.ContainerStatuses) != 1 {
			return -1
		}
		cs := ps[0].Status.ContainerStatuses[0]
		if cs.State.Waiting == nil || cs.State.Waiting.Reason != "CrashLoopBackOff" {
			return -1
		}
		return cs.RestartCount
	}
	var first int32
	waitFor(t, 60*time.Second, "pod of boom in CrashLoopBackOff", func(context.Context) (bool, error) {
		first = restarts()
		return first >= 1, nil
	})
	waitFor(t, 30*time.Second, "the restart count of boom to rise", func(context.Context) (bool, error) {
		return restarts() > first, nil
	})
}

// A -slow image runs but becomes Ready only about 2s after its pod starts.
func TestSlowImageBecomesReadyLater(t *testing.T) {
	ns := env.Namespace(t)
	create(t, deployment(ns, "slow", "example/app:v1-slow", 1))
	var created time.Time
	waitFor(t, 60*time.Second, "a pod of slow", func(context.Context) (bool, error) {
		ps := pods(t, ns, "slow")
		if len(ps) == 1 {
			created = ps[0].CreationTimestamp.Time
		}
		return len(ps) == 1, nil
	})
	var readyAt time.Time
	waitFor(t, 60*time.Second, "the pod of slow to be Ready", func(context.Context) (bool, error) {
		for _, c := range pods(t, ns, "slow")[0].Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				readyAt = c.LastTransitionTime.Time
				return true, nil
			}
		}
		return false, nil
	})
	// Timestamps have second precision: at least 1s apart means delayed.
	if readyAt.Sub(created) < time.Second {
		t.Errorf("pod of slow Ready %s after creation, want about 2s", readyAt.Sub(created))
	}
}

func TestEndpointSlicesListOnlyReadyPods(t *testing.T) {
	ns := env.Namespace(t)
	create(t, deployment(ns, "good", "example/app:v1", 2))
	create(t, deployment(ns, "lazy", "example/app:v1-unready", 2))
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "front"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"group": "g"},
			Ports:    []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(8080)}},
		},
	}
	if _, err := client(t).CoreV1().Services(ns).Create(context.Background(), svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var ready, notReady map[string]bool
	waitFor(t, 60*time.Second, "EndpointSlices of front to list 2 ready and 2 unready endpoints", func(ctx context.Context) (bool, error) {
		slices, err := client(t).DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=front"})
		if err != nil {
			return false, err
		}
		ready, notReady = map[string]bool{}, map[string]bool{}
		for _, s := range slices.Items {
			for _, ep := range s.Endpoints {
				if ep.TargetRef == nil {
					continue
				}
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready[ep.TargetRef.Name] = true
				} else {
					notReady[ep.TargetRef.Name] = true
				}
			}
		}
		return len(ready) == 2 && len(notReady) == 2, nil
	})
	for name := range ready {
		if !strings.HasPrefix(name, "good-") {
			t.Errorf("ready endpoint %s is not a pod of the ready Deployment good", name)
		}
	}
	for name := range notReady {
		if !strings.HasPrefix(name, "lazy-") {
			t.Errorf("not-ready endpoint %s is not a pod of the never-ready Deployment lazy", name)
		}
	}
}

func TestAPIServerOutageAndReturn(t *testing.T) {
	if err := env.StopComponent(APIServer); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err := client(t).CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
	cancel()
	if err == nil {
		t.Fatal("the API server answered while stopped")
	}
	if err := env.StartComponent(context.Background(), APIServer); err != nil {
		t.Fatal(err)
	}
	if _, err := client(t).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("the API server did not come back: %v", err)
	}
}

// TestStopLeavesNothingRunning starts a second control plane and proves Stop
// ends every process it started and removes its directory.
func TestStopLeavesNothingRunning(t *testing.T) {
	start := time.Now()
	e, err := Start(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second control plane ready in %s", time.Since(start).Round(10*time.Millisecond))
	pids := e.PIDs()
	if len(pids) != 5 {
		t.Fatalf("want 5 processes, got %v", pids)
	}
	dir := e.Dir
	if err := e.Stop(); err != nil {
		t.Fatal(err)
	}
	for c, pid := range pids {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("%s (pid %d) still running after Stop", c, pid)
		}
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s still exists after Stop (err=%v)", dir, err)
	}
}

func TestMissingBinariesSayHowToFix(t *testing.T) {
	_, err := Start(context.Background(), Options{BinDir: filepath.Join(t.TempDir(), "nothing")})
	if err == nil {
		t.Fatal("Start succeeded without binaries")
	}
	for _, want := range []string{"make testenv", "kube-apiserver", "etcd", "kwok"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
