package check

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/tandem-gitops/tandem/internal/redact"
)

// maxBody bounds how much of a response an http check reads.
const maxBody = 1 << 20

// maxRetryAfter bounds the pause a 429's Retry-After can ask for.
const maxRetryAfter = 5 * time.Minute

// httpProbe sends one request: passed when the status is one of h.Status
// (and the body matches), failed otherwise; inconclusive when no answer
// came (refused, timed out) or the target asked to slow down (429). The
// error refuses the check's target before any request.
func (r *Runner) httpProbe(h *HTTP, v Vars) (probe, *http.Client, error) {
	client, err := r.httpClient()
	if err != nil {
		return nil, nil, err
	}
	target := v.Expand(h.URL)
	if !r.AllowLocalTargets {
		u, err := url.Parse(target)
		if err != nil {
			return nil, client, errors.New(redact.Text(err.Error()))
		}
		if err := refusedHost(u.Hostname()); err != nil {
			return nil, client, err
		}
	}
	return func(ctx context.Context) measurement {
		rctx, cancel := context.WithTimeout(ctx, h.RequestTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, h.Method, target, nil)
		if err != nil {
			return measurement{value: "bad request: " + shortErr(err), verdict: Inconclusive}
		}
		req.Header.Set("User-Agent", "tandem-check")
		resp, err := client.Do(req)
		if err != nil {
			if rt := (*refusedTarget)(nil); errors.As(err, &rt) {
				return measurement{value: rt.Error(), verdict: Failed, final: true}
			}
			return measurement{value: "no answer: " + shortErr(err), verdict: Inconclusive}
		}
		defer resp.Body.Close()
		code := strconv.Itoa(resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && !slices.Contains(h.Status, resp.StatusCode) {
			return measurement{value: code + " too many requests", verdict: Inconclusive, retryAfter: RetryAfter(resp.Header.Get("Retry-After"), time.Now())}
		}
		if !slices.Contains(h.Status, resp.StatusCode) {
			return measurement{value: code, verdict: Failed}
		}
		if h.Body == nil {
			return measurement{value: code, verdict: Passed}
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return measurement{value: code + ", body unread: " + shortErr(err), verdict: Inconclusive}
		}
		if !h.Body.Match(body) {
			return measurement{value: code + ", body did not match", verdict: Failed}
		}
		return measurement{value: code, verdict: Passed}
	}, client, nil
}

// RetryAfter parses a Retry-After header (seconds or an HTTP date) into
// a pause, bounded to 5 minutes; 0 when absent or unreadable.
func RetryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(h); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), maxRetryAfter)
}

// shortErr is err's text, credentials in URLs redacted and bounded for a
// commit message.
func shortErr(err error) string {
	return redact.Truncate(redact.Text(err.Error()), 160)
}
