package check

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// JobRunner creates a check's Job afresh and waits for it (the applier, in
// the agent).
type JobRunner interface {
	// RunJob creates job (a fresh copy, named after it) and waits up to
	// timeout for it to complete. failed says why it failed ("" when it
	// completed); name is the Job it created. err means no verdict could be
	// reached (the API server did not answer).
	RunJob(ctx context.Context, check string, job *unstructured.Unstructured, timeout time.Duration) (name, failed string, err error)
}

// Runner runs checks. Its zero value runs http checks with a default client;
// prometheus checks need Prometheus, job checks Jobs.
type Runner struct {
	HTTP       *http.Client
	Prometheus *PromSource
	Jobs       JobRunner
	// AllowLocalTargets lets http checks reach loopback, link-local and
	// cloud metadata addresses (see LocalTarget). Off, every address a
	// target's name resolves to is checked as it is dialled, and HTTP
	// ignores proxies; HTTP's transport must then be an *http.Transport.
	AllowLocalTargets bool
}

// httpClient is the client of one http check run: HTTP, or unless
// AllowLocalTargets a guarded copy with its own transport (the caller
// closes its idle connections when the check ends).
func (r *Runner) httpClient() (*http.Client, error) {
	if r.AllowLocalTargets {
		if r.HTTP == nil {
			return http.DefaultClient, nil
		}
		return r.HTTP, nil
	}
	return guardedClient(r.HTTP)
}

// Target is what a phase's checks run against: the variables of the
// templates and the check Jobs rendered for the color.
type Target struct {
	Vars
	// Jobs are the rendered check Jobs of the color, by check name.
	Jobs map[string]*unstructured.Unstructured
}

// Run runs specs concurrently against t and returns their results in spec
// order. The first check that does not pass stops the others (their results
// say so). err is *Error when a check did not pass, the runner's error
// when a job check could not reach a verdict (retry later), or ctx's error.
func (r *Runner) Run(ctx context.Context, specs []Spec, t Target) (Results, error) {
	if len(specs) == 0 {
		return nil, nil
	}
	rctx, stop := context.WithCancel(ctx)
	defer stop()
	results := make(Results, len(specs))
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	var once sync.Once
	for i, s := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := r.runOne(rctx, i, s, t)
			if rctx.Err() != nil && ctx.Err() == nil && res.Verdict != Passed && err == nil && !res.stopper {
				res.Verdict, res.Detail, res.Stopped = Inconclusive, "stopped: another check did not pass", true
			}
			results[i], errs[i] = res.Result, err
			if err != nil || res.Verdict != Passed {
				once.Do(stop)
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return results, err
	}
	for _, err := range errs {
		if err != nil {
			return results, err
		}
	}
	if results.Failing() != nil {
		return results, &Error{Results: results}
	}
	return results, nil
}

// run is a result with how it ended.
type run struct {
	Result
	stopper bool // it reached its own verdict
}

func (r *Runner) runOne(ctx context.Context, i int, s Spec, t Target) (run, error) {
	start := time.Now()
	res := run{Result: Result{Name: s.Name, Kind: s.Kind(), When: s.When, Color: t.Color}}
	wctx, cancel := context.WithTimeout(ctx, s.Timeout)
	defer cancel()
	var err error
	switch {
	case s.Job != nil:
		err = r.job(wctx, s, t, &res.Result)
	case s.HTTP != nil:
		res.Condition = fmt.Sprintf("status %v%s, %d of %d", s.HTTP.Status, bodyCond(s.HTTP), s.HTTP.Successes, s.HTTP.Count)
		p, client, err := r.httpProbe(s.HTTP, t.Vars)
		if client != nil && !r.AllowLocalTargets {
			defer client.CloseIdleConnections()
		}
		if err != nil {
			res.Verdict, res.Detail = Failed, fmt.Sprintf("spec.checks[%d].http.url: %v", i, err)
			break
		}
		if r.measure(wctx, s.HTTP.Count-s.HTTP.Successes, s.HTTP.Successes, s.HTTP.Interval, p, &res.Result) {
			res.Detail = fmt.Sprintf("spec.checks[%d].http.url: %s", i, res.Detail)
		}
	default:
		p := s.Prometheus
		res.Condition = fmt.Sprintf("%s in %d of %d measurements", p.Condition, p.Count-p.FailureLimit, p.Count)
		if r.Prometheus == nil {
			res.Verdict, res.Detail = Inconclusive, "the agent has no --prometheus-url"
			break
		}
		r.measure(wctx, p.FailureLimit, p.Count-p.FailureLimit, p.Interval, r.Prometheus.probe(t.Vars.Expand(p.Query), p.Condition, p.Interval), &res.Result)
	}
	res.Duration = time.Since(start)
	res.stopper = res.Verdict != "" && ctx.Err() == nil
	if res.Verdict == "" {
		res.Verdict = Inconclusive
		if res.Detail == "" {
			res.Detail = "the check never ran"
		}
	}
	return res, err
}

func bodyCond(h *HTTP) string {
	if h.Body == nil {
		return ""
	}
	return fmt.Sprintf(" and body ~ /%s/", h.Body)
}

// job runs the check's Job in the color.
func (r *Runner) job(ctx context.Context, s Spec, t Target, res *Result) error {
	res.Condition = "Job completes"
	job := t.Jobs[s.Name]
	if job == nil {
		res.Verdict, res.Detail = Failed, fmt.Sprintf("no Job of the bundle has annotation %s: %s", AnnotationCheck, s.Name)
		return nil
	}
	if r.Jobs == nil {
		res.Verdict, res.Detail = Inconclusive, "no cluster to run the Job in"
		return nil
	}
	name, failed, err := r.Jobs.RunJob(ctx, s.Name, job, s.Timeout)
	switch {
	case err != nil && ctx.Err() != nil:
		res.Detail = fmt.Sprintf("Job %s: no verdict within the window (%s)", name, s.Timeout)
		return nil
	case err != nil:
		return fmt.Errorf("check %s: %w", s.Name, err)
	case failed != "":
		res.Verdict, res.Detail = Failed, fmt.Sprintf("Job %s: %s", name, failed)
	default:
		res.Verdict, res.Values = Passed, []string{"Job " + name + " completed"}
	}
	return nil
}

// probe takes one measurement.
type probe func(ctx context.Context) measurement

// measurement is one probe's value as text (or what made it
// inconclusive) and its verdict: passed, failed or inconclusive.
type measurement struct {
	value, verdict string
	// retryAfter, when longer than the interval, is how long the server
	// asked to wait before the next one (429 with Retry-After).
	retryAfter time.Duration
	// final ends the check failed at once, with value as the reason (a
	// target the guard refuses: trying again cannot help).
	final bool
}

// maxValues bounds the measurements a result lists.
const maxValues = 20

// measure takes measurements interval apart until passes reach needPass
// (passed), failures exceed maxFail (failed) or ctx ends (inconclusive).
// Inconclusive measurements count for neither and are retried. final says
// a measurement ended the check (see measurement.final).
func (r *Runner) measure(ctx context.Context, maxFail, needPass int, interval time.Duration, p probe, res *Result) (final bool) {
	passes, fails, inconclusive := 0, 0, 0
	tick := time.NewTicker(interval)
	defer tick.Stop()
loop:
	for {
		m := p(ctx)
		v, verdict := m.value, m.verdict
		if ctx.Err() != nil {
			break // the window ended mid-measurement: it does not count
		}
		if m.final {
			res.Verdict, res.Detail = Failed, v
			return true
		}
		switch verdict {
		case Passed:
			passes++
		case Failed:
			fails++
		default:
			inconclusive++
			v += " (inconclusive)"
		}
		if len(res.Values) < maxValues {
			res.Values = append(res.Values, v)
		}
		switch {
		case fails > maxFail:
			res.Verdict = Failed
			return
		case passes >= needPass:
			res.Verdict = Passed
			return
		}
		if m.retryAfter > interval {
			// The server asked for a pause: honour it within the window.
			wait := time.NewTimer(m.retryAfter)
			select {
			case <-ctx.Done():
				wait.Stop()
				break loop
			case <-wait.C:
			}
			tick.Reset(interval)
			continue
		}
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
		}
	}
	if len(res.Values) == maxValues {
		res.Values = append(res.Values, "…")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.Verdict = Inconclusive
		res.Detail = fmt.Sprintf("the window ended with %d passing and %d failing measurements of the %d passing needed (%d inconclusive)", passes, fails, needPass, inconclusive)
	}
	return false
}
