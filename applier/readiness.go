package applier

import (
	"fmt"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// readyByPods judges a Deployment from its pods when its status lags them.
//
// kstatus calls a Deployment Current once its status says every replica runs
// the new template and is available, and no replica of an older one is left.
// That status is written by the Deployment controller after the ReplicaSet
// controller has counted the pods, two hops after the pods themselves became
// Ready (a few hundred milliseconds on a busy control plane, most of the time
// between "pods Ready" and "Services switched"). The watch already holds the
// pods, so the same rule is applied to them directly: a Deployment whose
// spec.replicas pods of the release's template (told by tandem's digest on
// the pod template) are Ready, with no pod of an older template left
// running, is Current.
//
// Only the InProgress verdict is upgraded, never a Failed one, and only where
// the pods say all the status would: a template tandem rendered (it carries
// the digest), not paused, no minReadySeconds (availability is then a matter
// of time the pods do not show), and the generation the wait asked for.
func readyByPods(w workload, wh WorkloadHealth, live *unstructured.Unstructured, pods []*corev1.Pod, older int) WorkloadHealth {
	if wh.Kind != "Deployment" || wh.Status != string(status.InProgressStatus) || live == nil || older > 0 {
		return wh
	}
	obj := live.Object
	if d, _, _ := unstructured.NestedString(obj, "spec", "template", "metadata", "annotations", contract.AnnotationDigest); d == "" {
		return wh
	}
	if paused, _, _ := unstructured.NestedBool(obj, "spec", "paused"); paused {
		return wh
	}
	if nestedInt(obj, 0, "spec", "minReadySeconds") > 0 {
		return wh
	}
	if live.GetGeneration() < w.wantGen || wh.Desired <= 0 {
		return wh
	}
	ready := int64(0)
	for _, p := range pods {
		if podReady(p) {
			ready++
		}
	}
	if ready < wh.Desired {
		return wh
	}
	wh.Status = string(status.CurrentStatus)
	wh.Ready = ready
	wh.Message = fmt.Sprintf("%d/%d pods of the new template Ready, none of an older one left (the Deployment's status follows)", ready, wh.Desired)
	return wh
}
