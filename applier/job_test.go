package applier

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// A check Job is created afresh for each run (the previous run of the same
// check and color is deleted first) and its verdict is the Job's outcome:
// complete passes, a failed pod or an image that never pulls fails.
func TestRunJob(t *testing.T) {
	a := newApplier(t)
	ns := env.Namespace(t)
	ctx := testCtx(t, 3*time.Minute)

	name1, failed, err := a.RunJob(ctx, testBundle, "smoke", jobObject(ns, "smoke-green", "example/smoke:v1"), time.Minute)
	if err != nil || failed != "" {
		t.Fatalf("a Job that completes: failed %q, err %v", failed, err)
	}
	if !strings.HasPrefix(name1, "smoke-green-") {
		t.Errorf("run named %q, want smoke-green-<suffix>", name1)
	}

	name2, failed, err := a.RunJob(ctx, testBundle, "smoke", jobObject(ns, "smoke-green", "example/smoke:v2-fail"), time.Minute)
	if err != nil {
		t.Fatalf("RunJob: %v", err)
	}
	if failed == "" || name2 == name1 {
		t.Fatalf("a Job whose pod fails passed (run %s, failed %q)", name2, failed)
	}
	if !strings.Contains(failed, "exited with code 1") || !strings.Contains(failed, "example/smoke:v2-fail") {
		t.Errorf("the failure does not name the exit code and image: %q", failed)
	}
	t.Logf("failed run: %s", failed)
	jobs, err := a.dyn.Resource(gvrJobs).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelCheck + "=smoke"})
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, j := range jobs.Items {
		if j.GetDeletionTimestamp() == nil {
			left = append(left, j.GetName())
		}
	}
	if len(left) != 1 || left[0] != name2 {
		t.Errorf("Jobs of check smoke after two runs: %v, want only the last run %s (kept for its logs)", left, name2)
	}
	if bl, _, _ := unstructuredInt(jobs.Items, name2, "spec", "backoffLimit"); bl != 0 {
		t.Errorf("backoffLimit %d, want 0 when the Job sets none", bl)
	}

	_, failed, err = a.RunJob(ctx, testBundle, "smoke", jobObject(ns, "smoke-green", "missing.invalid/smoke:v1"), time.Minute)
	if err != nil || !strings.Contains(failed, "ErrImagePull") && !strings.Contains(failed, "ImagePullBackOff") {
		t.Fatalf("a Job whose image never pulls: failed %q, err %v; want a failure naming the pull error", failed, err)
	}

	// Removing the bundle removes its check Jobs (they are in no inventory).
	if _, err := a.DeleteBundle(ctx, ns, testBundle, [2]string{"blue", "green"}, nil); err != nil {
		t.Fatal(err)
	}
	jobs, err = a.dyn.Resource(gvrJobs).Namespace(ns).List(ctx, metav1.ListOptions{LabelSelector: LabelCheck})
	if err != nil {
		t.Fatal(err)
	}
	for _, j := range jobs.Items {
		if j.GetDeletionTimestamp() == nil {
			t.Errorf("check Job %s outlived its bundle", j.GetName())
		}
	}
}
