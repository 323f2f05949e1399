package render

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/check"
)

// parseChecks reads spec.checks (after spec.soak: soak checks run within it).
func parseChecks(r *rawBundle, s *Spec, bad func(string, string, ...any) error) error {
	cs, err := check.Parse(r.Spec.Checks, s.Soak)
	var fe *check.FieldError
	if errors.As(err, &fe) {
		return bad(fe.Field, "%s", fe.Msg)
	}
	s.Checks = cs
	return err
}

// splitCheckJobs takes the Jobs annotated tandem.dev/check out of objs (they
// are created afresh for each check run, never applied with the color) and
// returns them by check name. Every job check needs its Job, and every
// annotated Job a job check of that name.
func splitCheckJobs(objs []*unstructured.Unstructured, specs []check.Spec) (rest []*unstructured.Unstructured, jobs map[string]*unstructured.Unstructured, err error) {
	jobs = map[string]*unstructured.Unstructured{}
	wants := map[string]bool{}
	for _, s := range specs {
		if s.Job != nil {
			wants[s.Name] = true
		}
	}
	for _, u := range objs {
		name, ok := u.GetAnnotations()[check.AnnotationCheck]
		if !ok {
			rest = append(rest, u)
			continue
		}
		ref := fmt.Sprintf("%s %s", u.GetKind(), strings.TrimSuffix(u.GetName(), "-"+sentinel))
		switch {
		case u.GetKind() != "Job" || u.GroupVersionKind().Group != "batch":
			return nil, nil, fmt.Errorf("%s: annotation %s is for Jobs only", ref, check.AnnotationCheck)
		case !wants[name]:
			return nil, nil, fmt.Errorf("%s: annotation %s names %q, which is not a job check of spec.checks", ref, check.AnnotationCheck, name)
		case jobs[name] != nil:
			return nil, nil, fmt.Errorf("%s: a second Job for check %q", ref, name)
		}
		jobs[name] = u
	}
	var missing []string
	for name := range wants {
		if jobs[name] == nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, nil, fmt.Errorf("spec.checks: job check %s has no Job with annotation %s: %s in spec.path", strings.Join(missing, ", "), check.AnnotationCheck, missing[0])
	}
	return rest, jobs, nil
}
