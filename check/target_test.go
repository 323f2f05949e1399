package check

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestLocalTarget(t *testing.T) {
	for addr, refused := range map[string]bool{
		"169.254.169.254": true, "169.254.1.1": true, "fd00:ec2::254": true, "fe80::1": true,
		"127.0.0.1": true, "::1": true, "::ffff:127.0.0.1": true, "0.0.0.0": true, "100.100.100.200": true,
		"10.0.0.1": false, "192.168.1.1": false, "8.8.8.8": false, "2001:db8::1": false, "fd00::1": false,
	} {
		if got := LocalTarget(netip.MustParseAddr(addr)) != ""; got != refused {
			t.Errorf("LocalTarget(%s) refused=%v, want %v", addr, got, refused)
		}
	}
}

// TestHTTPCheckLocalTargetRefused: a real server on loopback, reached by
// address, by "localhost", and by a name resolving to loopback at dial
// time (DNS cannot smuggle the address past the guard), is refused by
// default without any request; with AllowLocalTargets it is reached.
func TestHTTPCheckLocalTargetRefused(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path != "/healthz" || r.Header.Get("User-Agent") != "tandem-check" {
			t.Errorf("unexpected request %s %s", r.Method, r.URL)
		}
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	// A name that is not an IP literal and resolves to the server's address.
	rebinding := &http.Client{Transport: &http.Transport{}}

	for _, u := range []string{srv.URL + "/healthz", "http://localhost:" + port + "/healthz", "http://169.254.169.254/latest/meta-data/", "http://metadata.google.internal/computeMetadata/v1/"} {
		other := httpCheck("http://example.invalid/ok", 1, 1)
		s := httpCheck(u, 3, 3)
		s.Name = "smoke"
		rs, err := (&Runner{HTTP: rebinding}).Run(context.Background(), []Spec{other, s}, green)
		if err == nil || rs[1].Verdict != Failed || !strings.Contains(rs[1].Detail, "spec.checks[1].http.url") || !strings.Contains(err.Error(), "smoke") {
			t.Fatalf("%s: got %v, %+v; want refused naming smoke and spec.checks[1].http.url", u, err, rs)
		}
		t.Log(rs[1].Detail)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server saw %d requests, want none", n)
	}

	// Dial-time: a resolver that answers loopback for a public-looking name.
	c, err := guardedClient(&http.Client{Transport: &http.Transport{}})
	if err != nil {
		t.Fatal(err)
	}
	gt := c.Transport.(*http.Transport)
	dial := gt.DialContext
	gt.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		_, p, _ := net.SplitHostPort(addr)
		return dial(ctx, network, net.JoinHostPort("127.0.0.1", p)) // what a rebinding DNS answer does
	}
	_, err = c.Get("http://app.example.com:" + port + "/healthz")
	var rt *refusedTarget
	if !errors.As(err, &rt) || !strings.Contains(err.Error(), "127.0.0.1 is a loopback address") {
		t.Fatalf("a name resolving to loopback: %v", err)
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("the server saw %d requests, want none", n)
	}

	rs, err := (&Runner{AllowLocalTargets: true}).Run(context.Background(), []Spec{httpCheck(srv.URL+"/healthz", 1, 1)}, green)
	if err != nil || rs[0].Verdict != Passed || hits.Load() != 1 {
		t.Fatalf("allowed: %v, %+v, %d requests", err, rs, hits.Load())
	}
}

// TestHTTPCheckRetryAfter: a 429 is inconclusive, and the next request
// waits for its Retry-After.
func TestHTTPCheckRetryAfter(t *testing.T) {
	var hits atomic.Int32
	var first time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			first = time.Now()
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		if d := time.Since(first); d < time.Second {
			t.Errorf("second request %v after the 429, want at least its Retry-After of 1s", d)
		}
	}))
	defer srv.Close()
	rs, err := (&Runner{AllowLocalTargets: true}).Run(context.Background(), []Spec{httpCheck(srv.URL+"/", 2, 1)}, green)
	if err != nil || rs[0].Verdict != Passed || !strings.Contains(rs[0].Values[0], "429") {
		t.Fatalf("got %v, %+v", err, rs)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "-1": 0, "x": 0, "99999": 5 * time.Minute,
		now.Add(10 * time.Second).Format(http.TimeFormat): 10 * time.Second} {
		if got := RetryAfter(h, now); got != want {
			t.Errorf("RetryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}
