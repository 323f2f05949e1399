package render

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

const smokeJob = `apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  annotations: {tandem.dev/check: %s}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: smoke
        image: %s
        args: ["http://d-${TANDEM_COLOR}/"]
`

func checkRepo(t *testing.T, checkName, image string) string {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"b/bundle.yaml":            fmt.Sprintf(testBundle, "b") + "  checks:\n  - name: smoke\n    job: {}\n",
		"b/app/kustomization.yaml": "resources: [d.yaml, smoke.yaml]\n",
		"b/app/d.yaml":             deploy("example/d:v1"),
		"b/app/smoke.yaml":         fmt.Sprintf(smokeJob, checkName, image),
	})
	return root
}

// A check's Job is rendered and colored like everything else, but kept
// apart from the objects a color is given: it is created afresh per run.
func TestCheckJobsAreRenderedApart(t *testing.T) {
	root := checkRepo(t, "smoke", "example/smoke:v1")
	res := renderRepo(t, root, "green", "c1")
	for _, u := range res.Objects {
		if u.GetKind() == "Job" {
			t.Errorf("the check Job %s is among the objects applied to the color", u.GetName())
		}
	}
	job := res.CheckJobs["smoke"]
	if job == nil || job.GetName() != "smoke-green" || job.GetNamespace() != "ns" {
		t.Fatalf("check Jobs: %v", res.CheckJobs)
	}
	if args := fmt.Sprint(job.Object["spec"]); !strings.Contains(args, "http://d-green/") {
		t.Errorf("the Job does not call its own color: %s", args)
	}
	if job.GetLabels()["tandem.dev/color"] != "green" {
		t.Errorf("the Job's labels: %v", job.GetLabels())
	}
	// The smoke test is part of the release: changing it changes the digest.
	other := renderRepo(t, checkRepo(t, "smoke", "example/smoke:v2"), "green", "c1")
	if other.Digest == res.Digest {
		t.Error("a changed check Job renders the same digest")
	}
}

func TestCheckJobMismatchesAreErrors(t *testing.T) {
	for _, tc := range []struct{ name, checkName, want string }{
		{"annotation names no check", "other", `names "other", which is not a job check`},
	} {
		root := checkRepo(t, tc.checkName, "example/smoke:v1")
		bs, err := Discover(root, ".")
		must(t, err)
		_, err = Render(context.Background(), bs[0], Options{RepoRoot: root, Color: "blue", Commit: "c"})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "b/bundle.yaml") {
			t.Errorf("%s: got %v, want an error naming the file and %q", tc.name, err, tc.want)
		}
	}
}
