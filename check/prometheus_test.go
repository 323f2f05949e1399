package check

import (
	"context"
	"errors"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-gitops/tandem/testenv"
)

// exporter is a real /metrics endpoint whose per-color error ratio the
// tests set; Prometheus scrapes it every second.
type exporter struct {
	srv   *httptest.Server
	ratio *prometheus.GaugeVec
}

func newExporter() *exporter {
	reg := prometheus.NewRegistry()
	e := &exporter{ratio: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shop_error_ratio", Help: "errors per request"}, []string{"color"})}
	reg.MustRegister(e.ratio)
	e.srv = httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return e
}

func (e *exporter) target() string { return strings.TrimPrefix(e.srv.URL, "http://") }

const ratioQuery = `shop_error_ratio{color="${TANDEM_COLOR}"}`

func promCheck(cond string, timeout time.Duration) Spec {
	c, err := ParseCondition(cond)
	if err != nil {
		panic(err)
	}
	return Spec{Name: "errors", When: WhenVerify, Timeout: timeout, Prometheus: &Prometheus{
		Query: ratioQuery, Condition: c, Count: 3, Interval: 200 * time.Millisecond}}
}

// startProm starts a real Prometheus scraping e.
func startProm(t *testing.T, e *exporter) *testenv.Prometheus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p, err := testenv.StartPrometheus(ctx, t.TempDir(), []string{e.target()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	return p
}

// seen waits until Prometheus has scraped value for color (an observable
// event: the query answers it).
func seen(t *testing.T, src *PromSource, color string, want float64) {
	t.Helper()
	q := Vars{Color: color}.Expand(ratioQuery)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		v, _, _, err := src.api.Query(context.Background(), q, time.Now())
		if err == nil {
			if vals, err := values(v); err == nil && len(vals) == 1 && (vals[0] == want || math.IsNaN(want) && math.IsNaN(vals[0])) {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("Prometheus never showed %s = %v", q, want)
}

func TestPrometheusCheck(t *testing.T) {
	e := newExporter()
	defer e.srv.Close()
	p := startProm(t, e)
	src, err := NewPromSource(p.URL, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Prometheus: src}
	ctx := context.Background()

	e.ratio.WithLabelValues("green").Set(0.001)
	seen(t, src, "green", 0.001)
	rs, err := r.Run(ctx, []Spec{promCheck("< 0.01", 20*time.Second)}, green)
	if err != nil || rs[0].Verdict != Passed || len(rs[0].Values) != 3 || rs[0].Values[0] != "0.001" {
		t.Fatalf("0.001 < 0.01: %v, %+v", err, rs)
	}

	e.ratio.WithLabelValues("green").Set(0.2)
	seen(t, src, "green", 0.2)
	rs, err = r.Run(ctx, []Spec{promCheck("< 0.01", 20*time.Second)}, green)
	if err == nil || rs[0].Verdict != Failed || !strings.Contains(err.Error(), "want < 0.01 in 3 of 3 measurements; measured 0.2") {
		t.Fatalf("0.2 is not < 0.01: %v, %+v", err, rs)
	}

	t.Run("no data is inconclusive, never a pass", func(t *testing.T) {
		purple := Target{Vars: Vars{Color: "purple"}}
		rs, err := r.Run(ctx, []Spec{promCheck("< 0.01", 2*time.Second)}, purple)
		if err == nil || rs[0].Verdict != Inconclusive || !strings.Contains(rs[0].Values[0], "no data") {
			t.Fatalf("an empty result: %v, %+v", err, rs)
		}
	})
	t.Run("NaN is inconclusive", func(t *testing.T) {
		e.ratio.WithLabelValues("nan").Set(math.NaN())
		seen(t, src, "nan", math.NaN())
		rs, err := r.Run(ctx, []Spec{promCheck("< 0.01", 2*time.Second)}, Target{Vars: Vars{Color: "nan"}})
		if err == nil || rs[0].Verdict != Inconclusive || !strings.Contains(rs[0].Values[0], "NaN") {
			t.Fatalf("NaN: %v, %+v", err, rs)
		}
	})
	t.Run("a query Prometheus rejects is inconclusive", func(t *testing.T) {
		s := promCheck("< 0.01", 2*time.Second)
		s.Prometheus.Query = `rate(shop_error_ratio)` // rate needs a range vector
		rs, err := r.Run(ctx, []Spec{s}, green)
		if err == nil || rs[0].Verdict != Inconclusive || !strings.Contains(rs[0].Values[0], "query error") {
			t.Fatalf("a rejected query: %v, %+v", err, rs)
		}
	})
	t.Run("no --prometheus-url is inconclusive", func(t *testing.T) {
		rs, err := (&Runner{}).Run(ctx, []Spec{promCheck("< 0.01", 2*time.Second)}, green)
		if err == nil || rs[0].Verdict != Inconclusive || !strings.Contains(rs[0].Detail, "--prometheus-url") {
			t.Fatalf("no Prometheus: %v, %+v", err, rs)
		}
	})
	t.Run("bearer token from a file, reloaded when it changes", func(t *testing.T) {
		tokenFile := filepath.Join(t.TempDir(), "token")
		if err := os.WriteFile(tokenFile, []byte("first\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		var want atomic.Value
		want.Store("first")
		var bad atomic.Int32
		target, _ := url.Parse(p.URL)
		proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer "+want.Load().(string) {
				bad.Add(1)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			r.URL.Scheme, r.URL.Host, r.Host, r.RequestURI = target.Scheme, target.Host, target.Host, ""
			resp, err := http.DefaultTransport.RoundTrip(r)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}))
		defer proxy.Close()
		authed, err := NewPromSource(proxy.URL, tokenFile, nil)
		if err != nil {
			t.Fatal(err)
		}
		e.ratio.WithLabelValues("green").Set(0.001)
		seen(t, src, "green", 0.001)
		ra := &Runner{Prometheus: authed}
		if rs, err := ra.Run(ctx, []Spec{promCheck("< 0.01", 10*time.Second)}, green); err != nil {
			t.Fatalf("with the first token: %v %+v", err, rs)
		}
		want.Store("second")
		if err := os.WriteFile(tokenFile, []byte("second"), 0o600); err != nil {
			t.Fatal(err)
		}
		if rs, err := ra.Run(ctx, []Spec{promCheck("< 0.01", 10*time.Second)}, green); err != nil {
			t.Fatalf("after the token rotated: %v %+v", err, rs)
		}
		if n := bad.Load(); n != 0 {
			t.Errorf("%d requests came with a stale or missing token", n)
		}
		want.Store("third") // the file still says second: refused, inconclusive
		rs, err := ra.Run(ctx, []Spec{promCheck("< 0.01", time.Second)}, green)
		if err == nil || rs[0].Verdict != Inconclusive {
			t.Fatalf("a refused token: %v %+v", err, rs)
		}
		for _, v := range rs[0].Values {
			if strings.Contains(v, "second") {
				t.Errorf("the token leaked into the evidence: %q", v)
			}
		}
	})
}

// Prometheus down for the whole window: inconclusive, a failure. Down at
// first and back within the window: the check passes.
func TestPrometheusDown(t *testing.T) {
	e := newExporter()
	defer e.srv.Close()
	e.ratio.WithLabelValues("green").Set(0.001)
	p := startProm(t, e)
	failed := make(chan struct{}, 1000)
	rt := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			failed <- struct{}{}
		}
		return resp, err
	})
	src, err := NewPromSource(p.URL, "", rt)
	if err != nil {
		t.Fatal(err)
	}
	seen(t, src, "green", 0.001)
	if err := p.Stop(); err != nil {
		t.Fatal(err)
	}
	r := &Runner{Prometheus: src}
	rs, err := r.Run(context.Background(), []Spec{promCheck("< 0.01", 2*time.Second)}, green)
	var ce *Error
	if !errors.As(err, &ce) || rs[0].Verdict != Inconclusive || !strings.Contains(err.Error(), "inconclusive") {
		t.Fatalf("Prometheus down for the whole window: %v, %+v", err, rs)
	}

	for len(failed) > 0 {
		<-failed
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rs, err = r.Run(context.Background(), []Spec{promCheck("< 0.01", 90*time.Second)}, green)
	}()
	<-failed // the check met Prometheus down; bring it back
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		t.Fatal(err)
	}
	<-done
	if err != nil || rs[0].Verdict != Passed {
		t.Fatalf("Prometheus came back within the window: %v, %+v", err, rs)
	}
}
