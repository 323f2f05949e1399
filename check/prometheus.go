package check

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/internal/redact"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
)

// PromSource is the Prometheus the agent queries (--prometheus-url), with
// an optional bearer token read from TokenFile at every query, so a
// rotated token is picked up; the token is never logged.
type PromSource struct {
	api promv1.API
}

// NewPromSource returns the Prometheus at url; tokenFile may be empty; rt
// nil is client_golang's default transport.
func NewPromSource(url, tokenFile string, rt http.RoundTripper) (*PromSource, error) {
	if rt == nil {
		rt = api.DefaultRoundTripper
	}
	if tokenFile != "" {
		rt = &bearerFile{file: tokenFile, next: rt}
	}
	rt = &retryAfterRT{next: rt}
	c, err := api.NewClient(api.Config{Address: url, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("--prometheus-url: %s", redact.Text(err.Error()))
	}
	return &PromSource{api: promv1.NewAPI(c)}, nil
}

// bearerFile adds "Authorization: Bearer <token>" from a file.
type bearerFile struct {
	file string
	next http.RoundTripper
}

func (b *bearerFile) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := os.ReadFile(b.file)
	if err != nil {
		// The path is not secret; the content is never in an error.
		return nil, fmt.Errorf("--prometheus-token-file %s: %w", b.file, errors.Unwrap(err))
	}
	req = req.Clone(req.Context())
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	return b.next.RoundTrip(req)
}

// retryAfterKey carries a *time.Duration in a query's context, which
// retryAfterRT sets from a 429's Retry-After.
type retryAfterKey struct{}

// retryAfterRT records the Retry-After of a 429 answer where the query's
// context asks for it (client_golang's error does not keep headers).
type retryAfterRT struct{ next http.RoundTripper }

func (t *retryAfterRT) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if d, ok := req.Context().Value(retryAfterKey{}).(*time.Duration); ok {
			*d = RetryAfter(resp.Header.Get("Retry-After"), time.Now())
		}
	}
	return resp, err
}

// queryTimeout bounds one Prometheus query (within the check's window).
func queryTimeout(interval time.Duration) time.Duration {
	return max(interval, 10*time.Second)
}

// probe runs query once: passed when it returns values that all meet c,
// failed when one does not; inconclusive when it returns nothing, NaN or
// ±Inf, or Prometheus errs (its error redacted: it may quote the query
// URL), cannot be reached or asks to slow down (429, Retry-After kept).
func (p *PromSource) probe(query string, c Condition, interval time.Duration) probe {
	return func(ctx context.Context) measurement {
		var retryAfter time.Duration
		qctx, cancel := context.WithTimeout(context.WithValue(ctx, retryAfterKey{}, &retryAfter), queryTimeout(interval))
		defer cancel()
		v, _, _, err := p.api.Query(qctx, query, time.Now())
		if err != nil {
			return measurement{value: "query error: " + shortErr(err), verdict: Inconclusive, retryAfter: retryAfter}
		}
		vals, err := values(v)
		if err != nil {
			return measurement{value: err.Error(), verdict: Inconclusive}
		}
		var texts []string
		nan, fail := false, false
		for _, f := range vals {
			texts = append(texts, strconv.FormatFloat(f, 'g', 4, 64))
			switch {
			case math.IsNaN(f) || math.IsInf(f, 0):
				nan = true
			case !c.Met(f):
				fail = true
			}
		}
		verdict := Passed
		if fail {
			verdict = Failed
		} else if nan {
			verdict = Inconclusive
		}
		return measurement{value: strings.Join(texts, " "), verdict: verdict}
	}
}

// values are the sample values of a query result; no data is an error.
func values(v model.Value) ([]float64, error) {
	var out []float64
	switch r := v.(type) {
	case model.Vector:
		for _, s := range r {
			out = append(out, float64(s.Value))
		}
	case *model.Scalar:
		out = append(out, float64(r.Value))
	case model.Matrix:
		return nil, errors.New("a range vector: use an instant query")
	default:
		return nil, fmt.Errorf("a %v result, not a number", v.Type())
	}
	if len(out) == 0 {
		return nil, errors.New("no data")
	}
	return out, nil
}
