package fleet

import (
	"context"
	"errors"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/promote"
)

// jobRunner runs a bundle's check Jobs with the applier.
type jobRunner struct {
	ap     *applier.Applier
	bundle string
}

func (j jobRunner) RunJob(ctx context.Context, name string, job *unstructured.Unstructured, timeout time.Duration) (string, string, error) {
	return j.ap.RunJob(ctx, j.bundle, name, job, timeout)
}

// Check runs checks against color, which runs ref: its check Jobs are the
// ones rendered for ref in that color.
func (c *Cluster) Check(ctx context.Context, color string, ref promote.ReleaseRef, checks []check.Spec) (check.Results, error) {
	b, res, err := c.get(ref, color)
	if err != nil {
		return nil, err
	}
	ap, _, err := c.acting() // check Jobs run with the bundle's rights too
	if err != nil {
		return nil, err
	}
	r := *c.checks // a copy per run: its job runner is this bundle's
	r.Jobs = jobRunner{ap: ap, bundle: c.bundle}
	t := check.Target{Vars: check.Vars{Color: color, Bundle: c.bundle, Namespace: b.Spec.Namespace}, Jobs: res.CheckJobs}
	rs, err := r.Run(ctx, checks, t)
	var ce *check.Error
	if err != nil && !errors.As(err, &ce) {
		return rs, classify(err)
	}
	return rs, err
}
