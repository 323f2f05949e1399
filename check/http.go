package check

import (
	"context"
	"io"
	"net/http"
	"slices"
	"strconv"
)

// maxBody bounds how much of a response an http check reads.
const maxBody = 1 << 20

// httpProbe sends one request: passed when the status is one of h.Status
// (and the body matches), failed otherwise; inconclusive when no answer
// came (refused, timed out).
func (r *Runner) httpProbe(h *HTTP, v Vars) probe {
	client := r.HTTP
	if client == nil {
		client = http.DefaultClient
	}
	url := v.Expand(h.URL)
	return func(ctx context.Context) (string, string) {
		rctx, cancel := context.WithTimeout(ctx, h.RequestTimeout)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, h.Method, url, nil)
		if err != nil {
			return "bad request: " + err.Error(), Inconclusive
		}
		req.Header.Set("User-Agent", "tandem-check")
		resp, err := client.Do(req)
		if err != nil {
			return "no answer: " + shortErr(err), Inconclusive
		}
		defer resp.Body.Close()
		code := strconv.Itoa(resp.StatusCode)
		if !slices.Contains(h.Status, resp.StatusCode) {
			return code, Failed
		}
		if h.Body == nil {
			return code, Passed
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
		if err != nil {
			return code + ", body unread: " + shortErr(err), Inconclusive
		}
		if !h.Body.Match(body) {
			return code + ", body did not match", Failed
		}
		return code, Passed
	}
}

// shortErr is err's text, bounded for a commit message.
func shortErr(err error) string {
	s := err.Error()
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return s
}
