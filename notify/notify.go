package notify

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// Kinds of destination, as reported in Result.Kind.
const (
	KindWebhook      = "webhook"
	KindCommitStatus = "commit-status"
)

// Outcomes of a delivery, as reported in Result.Outcome.
const (
	// Delivered: the destination accepted the message (2xx).
	Delivered = "delivered"
	// Failed: the destination refused the message (a 4xx other than 408 and
	// 429), or every attempt failed.
	Failed = "failed"
	// Dropped: the destination's queue was full, or the agent stopped
	// before the message was delivered.
	Dropped = "dropped"
)

// Defaults for Options.
const (
	DefaultQueueSize      = 64
	DefaultAttempts       = 5
	DefaultAttemptTimeout = 10 * time.Second
)

// DefaultBackoff is the wait between attempts: 1s, 2s, 4s, ... up to 30s,
// with 20% jitter.
func DefaultBackoff() wait.Backoff {
	return wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.2, Steps: 10, Cap: 30 * time.Second}
}

// Options configures a Notifier. Only the destinations are required; New
// fills the rest with the defaults above.
type Options struct {
	// Webhooks get one document per outcome.
	Webhooks []Webhook
	// Status, when set, posts commit statuses.
	Status *StatusOptions
	// QueueSize bounds the messages waiting per destination; more are dropped.
	QueueSize int
	// Attempts bounds the tries per message (retryable failures only).
	Attempts int
	// AttemptTimeout bounds one HTTP request, hanging servers included.
	AttemptTimeout time.Duration
	// Backoff is the wait between attempts (Steps is ignored: see Attempts).
	Backoff wait.Backoff
	// Client makes the requests (default: a client of its own).
	Client *http.Client
	// OnResult, when set, is called once per message and destination with
	// what became of it. It must not block for long.
	OnResult func(Result)
}

// Result says what became of one message at one destination.
type Result struct {
	// Kind is KindWebhook or KindCommitStatus.
	Kind string
	// Target names the destination without credentials: a webhook's
	// scheme, host and path, or "github owner/repo".
	Target string
	// Subject names the message: "shop promoted" or "status failure on 77ab0c1".
	Subject string
	// Outcome is Delivered, Failed or Dropped.
	Outcome string
	// Attempts is the number of requests made.
	Attempts int
	// Err is the last error (nil when delivered). It never holds a token.
	Err error
}

// HTTPError is a response outside 2xx.
type HTTPError struct {
	StatusCode int
	// Body is the start of the response body, with any token removed.
	Body string
	// RetryAfter is the pause a 429 or 503 asked for (Retry-After), 0 if none.
	RetryAfter time.Duration
}

// maxRetryAfter bounds the pause a Retry-After can impose on one delivery.
const maxRetryAfter = 2 * time.Minute

// retryAfter parses a Retry-After header: seconds or an HTTP date, bounded.
func retryAfter(h string, now time.Time) time.Duration {
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

func (e *HTTPError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("HTTP %d", e.StatusCode)
	}
	return fmt.Sprintf("HTTP %d: %s", e.StatusCode, e.Body)
}

// Retryable reports whether trying again may help: a 5xx, 408 or 429.
func (e *HTTPError) Retryable() bool {
	return e.StatusCode >= 500 || e.StatusCode == http.StatusRequestTimeout || e.StatusCode == http.StatusTooManyRequests
}

// retryable reports whether err is worth another attempt: any transport
// error or timeout, and the retryable HTTP statuses.
func retryable(err error) bool {
	var he *HTTPError
	if errors.As(err, &he) {
		return he.Retryable()
	}
	var te *terminalError
	return !errors.As(err, &te)
}

// terminalError is a failure no retry can fix (a bad file, a bad request).
type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// Notifier delivers outcomes and commit statuses in the background. Create
// it with New, start it with Start; Notify and SetStatus never block.
type Notifier struct {
	opts     Options
	webhooks []*queue
	status   *queue
	wg       sync.WaitGroup
	pending  atomic.Int64 // messages queued or being delivered
}

// job is one message for one destination.
type job struct {
	subject string
	send    func(ctx context.Context) error
}

// queue is one destination: a bounded channel and one worker, so messages
// to a destination arrive in order (pending before success) and a slow
// destination never delays another.
type queue struct {
	kind, target string
	jobs         chan job
}

// New validates o and builds a Notifier. It reads no file yet: secrets and
// tokens are read for each request, so a rotated file is used at once.
func New(o Options) (*Notifier, error) {
	if o.QueueSize == 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Attempts == 0 {
		o.Attempts = DefaultAttempts
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = DefaultAttemptTimeout
	}
	if o.Backoff.Duration == 0 {
		o.Backoff = DefaultBackoff()
	}
	if o.QueueSize < 0 || o.Attempts < 0 || o.AttemptTimeout < 0 {
		return nil, errors.New("notify: options must not be negative")
	}
	if o.Client == nil {
		o.Client = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	n := &Notifier{opts: o}
	for i, w := range o.Webhooks {
		if err := w.validate(); err != nil {
			return nil, fmt.Errorf("notify: webhook %d: %w", i+1, err)
		}
		n.webhooks = append(n.webhooks, &queue{kind: KindWebhook, target: redactURL(w.URL), jobs: make(chan job, o.QueueSize)})
	}
	if o.Status != nil {
		if err := o.Status.validate(); err != nil {
			return nil, fmt.Errorf("notify: commit status: %w", err)
		}
		n.status = &queue{kind: KindCommitStatus, target: o.Status.Provider + " " + o.Status.Repo, jobs: make(chan job, o.QueueSize)}
	}
	return n, nil
}

// Enabled reports whether there is any destination.
func (n *Notifier) Enabled() bool { return n != nil && (len(n.webhooks) > 0 || n.status != nil) }

// Start runs one worker per destination until ctx ends; messages still
// queued then are reported as Dropped. Wait waits for the workers.
func (n *Notifier) Start(ctx context.Context) {
	qs := append([]*queue{}, n.webhooks...)
	if n.status != nil {
		qs = append(qs, n.status)
	}
	for _, q := range qs {
		n.wg.Go(func() { n.work(ctx, q) })
	}
}

// Wait returns when every worker has stopped (after Start's ctx ended).
func (n *Notifier) Wait() { n.wg.Wait() }

// Drain waits until every queued message was delivered, failed or dropped,
// or until ctx ends; call it before ending Start's ctx to give messages of
// the last moments a chance. It reports whether everything was handled.
func (n *Notifier) Drain(ctx context.Context) bool {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for n.pending.Load() > 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
	}
	return true
}

// Notify queues o for every webhook. It never blocks.
func (n *Notifier) Notify(o Outcome) {
	if n == nil {
		return
	}
	if o.At.IsZero() {
		o.At = time.Now().UTC()
	}
	for i, q := range n.webhooks {
		w := n.opts.Webhooks[i]
		n.enqueue(q, job{subject: o.Bundle + " " + o.Result, send: func(ctx context.Context) error {
			return w.send(ctx, n.opts.Client, o)
		}})
	}
}

// SetStatus queues a commit status. It never blocks; without a status
// destination it does nothing.
func (n *Notifier) SetStatus(s Status) {
	if n == nil || n.status == nil || s.Commit == "" {
		return
	}
	so := n.opts.Status
	n.enqueue(n.status, job{subject: fmt.Sprintf("status %s on %s", s.State, short(s.Commit)), send: func(ctx context.Context) error {
		return so.send(ctx, n.opts.Client, s)
	}})
}

func (n *Notifier) enqueue(q *queue, j job) {
	n.pending.Add(1)
	select {
	case q.jobs <- j:
	default:
		n.pending.Add(-1)
		n.report(Result{Kind: q.kind, Target: q.target, Subject: j.subject, Outcome: Dropped,
			Err: fmt.Errorf("queue full (%d waiting)", cap(q.jobs))})
	}
}

func (n *Notifier) report(r Result) {
	if n.opts.OnResult != nil {
		n.opts.OnResult(r)
	}
}

// work delivers q's messages one at a time until ctx ends.
func (n *Notifier) work(ctx context.Context, q *queue) {
	for {
		select {
		case <-ctx.Done():
			for {
				select {
				case j := <-q.jobs:
					n.report(Result{Kind: q.kind, Target: q.target, Subject: j.subject, Outcome: Dropped, Err: context.Cause(ctx)})
					n.pending.Add(-1)
				default:
					return
				}
			}
		case j := <-q.jobs:
			n.deliver(ctx, q, j)
			n.pending.Add(-1)
		}
	}
}

// deliver tries j up to Attempts times, waiting Backoff between retryable
// failures.
func (n *Notifier) deliver(ctx context.Context, q *queue, j job) {
	bo := n.opts.Backoff
	bo.Steps = n.opts.Attempts
	r := Result{Kind: q.kind, Target: q.target, Subject: j.subject}
	for {
		r.Attempts++
		actx, cancel := context.WithTimeout(ctx, n.opts.AttemptTimeout)
		err := j.send(actx)
		cancel()
		r.Err = err
		switch {
		case err == nil:
			r.Outcome = Delivered
			n.report(r)
			return
		case ctx.Err() != nil:
			r.Outcome = Dropped
			n.report(r)
			return
		case !retryable(err) || r.Attempts >= n.opts.Attempts:
			r.Outcome = Failed
			n.report(r)
			return
		}
		pause := bo.Step()
		if he := (*HTTPError)(nil); errors.As(err, &he) && he.RetryAfter > pause {
			pause = he.RetryAfter // the server asked for longer
		}
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			r.Outcome = Dropped
			n.report(r)
			return
		case <-t.C:
		}
	}
}

// redactURL is u without user info, query and fragment (they may hold
// tokens, as Slack's and Mattermost's webhook paths do: only the host and
// the first path segment are kept).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "(invalid URL)"
	}
	p := strings.TrimPrefix(u.EscapedPath(), "/")
	first, _, more := strings.Cut(p, "/")
	out := u.Scheme + "://" + u.Host + "/" + first
	if more {
		out += "/..."
	}
	return out
}

// short is the 7-character form of a commit hash.
func short(commit string) string {
	if len(commit) > 7 {
		return commit[:7]
	}
	return commit
}

// truncate cuts s to at most n runes, ending with "..." when cut.
func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	if n <= 3 {
		return string(r[:n])
	}
	return string(r[:n-3]) + "..."
}
