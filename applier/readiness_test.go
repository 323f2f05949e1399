package applier

import (
	"fmt"
	"testing"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// deploymentLaggingItsPods is a Deployment of 2 replicas whose status has
// not caught up with a new template yet (what kstatus sees right after the
// pods became Ready).
func deploymentLaggingItsPods(mutate func(spec map[string]any)) *unstructured.Unstructured {
	spec := map[string]any{
		"replicas": int64(2),
		"selector": map[string]any{"matchLabels": map[string]any{"app": "server", contract.LabelColor: "green"}},
		"template": map[string]any{
			"metadata": map[string]any{
				"labels":      map[string]any{"app": "server", contract.LabelColor: "green"},
				"annotations": map[string]any{contract.AnnotationDigest: "sha256:new"},
			},
			"spec": map[string]any{"containers": []any{map[string]any{"name": "server", "image": "example/server:v2"}}},
		},
	}
	if mutate != nil {
		mutate(spec)
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1", "kind": "Deployment",
		"metadata": map[string]any{"name": "server-green", "namespace": "shop", "generation": int64(3)},
		"spec":     spec,
		"status": map[string]any{
			"observedGeneration": int64(3), "replicas": int64(2), "updatedReplicas": int64(2),
			"readyReplicas": int64(0), "availableReplicas": int64(0),
		},
	}}
}

func pod(name string, ready bool) *corev1.Pod {
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "shop"},
		Status:     corev1.PodStatus{Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
	}
}

// A Deployment whose pods of the new template are all Ready is Current
// before its status says so, but only when nothing the status would add is
// missing: an older pod still running, a pod not Ready, a paused rollout,
// minReadySeconds, an unseen generation, a template tandem did not render,
// or a verdict of Failed.
func TestReadyByPods(t *testing.T) {
	w := workload{kind: "Deployment", ns: "shop", name: "server-green", wantGen: 3}
	ready2 := []*corev1.Pod{pod("server-green-a", true), pod("server-green-b", true)}
	cases := []struct {
		name    string
		w       workload
		live    *unstructured.Unstructured
		pods    []*corev1.Pod
		older   int
		current bool
	}{
		{"all new pods ready", w, deploymentLaggingItsPods(nil), ready2, 0, true},
		{"one new pod not ready", w, deploymentLaggingItsPods(nil), []*corev1.Pod{pod("a", true), pod("b", false)}, 0, false},
		{"fewer pods than replicas", w, deploymentLaggingItsPods(nil), ready2[:1], 0, false},
		{"an older pod still running", w, deploymentLaggingItsPods(nil), ready2, 1, false},
		{"paused", w, deploymentLaggingItsPods(func(s map[string]any) { s["paused"] = true }), ready2, 0, false},
		{"minReadySeconds", w, deploymentLaggingItsPods(func(s map[string]any) { s["minReadySeconds"] = int64(10) }), ready2, 0, false},
		{"no digest on the template", w, deploymentLaggingItsPods(func(s map[string]any) {
			delete(s["template"].(map[string]any)["metadata"].(map[string]any), "annotations")
		}), ready2, 0, false},
		{"generation not yet seen", workload{kind: "Deployment", ns: "shop", name: "server-green", wantGen: 4}, deploymentLaggingItsPods(nil), ready2, 0, false},
		{"zero replicas: left to the status", w, deploymentLaggingItsPods(func(s map[string]any) { s["replicas"] = int64(0) }), nil, 0, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wh := readyByPods(c.w, workloadHealth(c.w, c.live), c.live, c.pods, c.older)
			if got := wh.Healthy(); got != c.current {
				t.Fatalf("healthy = %v (%s: %s), want %v", got, wh.Status, wh.Message, c.current)
			}
			if c.current && wh.Ready < wh.Desired {
				t.Errorf("Current with %d/%d ready", wh.Ready, wh.Desired)
			}
		})
	}
}

// A Deployment kstatus calls Failed stays Failed whatever its pods say.
func TestReadyByPodsKeepsFailed(t *testing.T) {
	w := workload{kind: "Deployment", ns: "shop", name: "server-green", wantGen: 3}
	live := deploymentLaggingItsPods(nil)
	live.Object["status"].(map[string]any)["conditions"] = []any{map[string]any{
		"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
	}}
	wh := readyByPods(w, workloadHealth(w, live), live, []*corev1.Pod{pod("a", true), pod("b", true)}, 0)
	if wh.Status != string(status.FailedStatus) {
		t.Fatalf("status %s (%s), want Failed", wh.Status, wh.Message)
	}
	if got := fmt.Sprint(wh.Healthy()); got != "false" {
		t.Fatalf("healthy %s", got)
	}
}
