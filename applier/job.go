package applier

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// LabelCheck marks the Jobs tandem creates for a check run with the check's
// name (see RunJob).
const LabelCheck = "tandem.dev/check"

// RunJob runs a check Job: it deletes the earlier runs of the same check in
// the same color (the last run is kept for its logs until the next), creates
// a fresh copy of job named after it (generateName), and waits up to
// timeout for it to complete. A Job that sets no spec.backoffLimit gets 0:
// one failed pod fails the check. It returns the Job's name and, when it
// failed (a failed pod, an image that never pulls, not complete in time),
// why. err is for no verdict: the API server did not answer (a
// *TransientError), or ctx ended.
func (a *Applier) RunJob(ctx context.Context, bundle, check string, job *unstructured.Unstructured, timeout time.Duration) (name, failed string, err error) {
	u := job.DeepCopy()
	ns, color := u.GetNamespace(), u.GetLabels()[contract.LabelColor]
	if ns == "" {
		return "", "", fmt.Errorf("check %s: Job %s: namespace is required", check, u.GetName())
	}
	labels := u.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[LabelCheck] = check
	u.SetLabels(labels)
	u.SetGenerateName(u.GetName() + "-")
	u.SetName("")
	u.SetResourceVersion("")
	if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "backoffLimit"); !found {
		if err := unstructured.SetNestedField(u.Object, int64(0), "spec", "backoffLimit"); err != nil {
			return "", "", fmt.Errorf("check %s: %w", check, err)
		}
	}
	ri := a.dyn.Resource(gvrJobs).Namespace(ns)
	if err := a.deleteCheckJobs(ctx, ns, bundle, color, check); err != nil {
		return "", "", err
	}
	created, err := ri.Create(ctx, u, metav1.CreateOptions{FieldManager: contract.FieldManagerFor(bundle)})
	if err != nil {
		if IsTransient(err) {
			return "", "", &TransientError{Op: "create check Job", Err: err}
		}
		return "", "", fmt.Errorf("check %s: create Job %s/%s*: %w", check, ns, u.GetGenerateName(), err)
	}
	name = created.GetName()
	o := DefaultWaitOptions()
	o.Timeout = timeout
	_, err = a.WaitHealthy(ctx, []*unstructured.Unstructured{created}, o)
	var he *HealthError
	if errors.As(err, &he) {
		return name, a.jobFailure(ctx, ns, name, he), nil
	}
	return name, "", err
}

// jobFailure says why a check Job failed: the container of its pod that
// exited non-zero, when there is one, else what the health wait saw.
func (a *Applier) jobFailure(ctx context.Context, ns, job string, he *HealthError) string {
	var reasons []string
	for _, f := range he.Failures {
		reasons = append(reasons, f.Reason)
	}
	why := strings.Join(reasons, "; ")
	if he.TimedOut {
		why = "did not complete in time: " + why
	}
	pods, err := a.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "batch.kubernetes.io/job-name=" + job})
	if err != nil {
		return why
	}
	for _, p := range pods.Items {
		for _, cs := range p.Status.ContainerStatuses {
			if t := cs.State.Terminated; t != nil && t.ExitCode != 0 {
				return fmt.Sprintf("pod %s container %s exited with code %d (%s, %s); %s", p.Name, cs.Name, t.ExitCode, t.Reason, imageOf(&p, cs), why)
			}
		}
	}
	return why
}

// deleteCheckJobs deletes the Jobs (and their pods) of earlier runs of check
// in color; color "" deletes every color's.
func (a *Applier) deleteCheckJobs(ctx context.Context, ns, bundle, color, check string) error {
	sel := fmt.Sprintf("%s=%s,%s", contract.LabelBundle, bundle, LabelCheck)
	if check != "" {
		sel += "=" + check
	}
	if color != "" {
		sel += fmt.Sprintf(",%s=%s", contract.LabelColor, color)
	}
	ri := a.dyn.Resource(gvrJobs).Namespace(ns)
	bg := metav1.DeletePropagationBackground
	err := ri.DeleteCollection(ctx, metav1.DeleteOptions{PropagationPolicy: &bg}, metav1.ListOptions{LabelSelector: sel})
	if err != nil && IsTransient(err) {
		return &TransientError{Op: "delete earlier check Jobs", Err: err}
	}
	if err != nil {
		return fmt.Errorf("check %s: delete earlier Jobs (%s): %w", check, sel, err)
	}
	return nil
}
