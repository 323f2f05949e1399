package main

import (
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/tandem-gitops/tandem/contract"
)

// throttlingProxy is a reverse proxy in front of the test control plane's
// kube-apiserver that answers 429 Too Many Requests with Retry-After: 1,
// as an API server's priority and fairness does under load, for the
// requests rule selects (none while it is nil). It terminates TLS with its
// own certificate and forwards the client's bearer token.
type throttlingProxy struct {
	rule      atomic.Pointer[func(r *http.Request, n int64) bool]
	seen      atomic.Int64
	throttled atomic.Int64
	next      http.Handler
}

func (p *throttlingProxy) set(rule func(r *http.Request, n int64) bool) {
	if rule == nil {
		p.rule.Store(nil)
		return
	}
	p.rule.Store(&rule)
}

func (p *throttlingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := p.seen.Add(1)
	if rule := p.rule.Load(); rule != nil && (*rule)(r, n) {
		p.tooMany(w, r)
		return
	}
	p.next.ServeHTTP(w, r)
}

// every request; oneInThree of them; flipWrites: the writes (not dry
// runs) to the stable Service named app.
func every(*http.Request, int64) bool          { return true }
func oneInThree(_ *http.Request, n int64) bool { return n%3 == 0 }
func flipWrites(app string) func(*http.Request, int64) bool {
	return func(r *http.Request, n int64) bool {
		if strings.HasSuffix(r.URL.Path, "/services/"+app) && r.Method != http.MethodGet && r.URL.Query().Get("dryRun") == "" {
			return true
		}
		return oneInThree(r, n)
	}
}

func (p *throttlingProxy) tooMany(w http.ResponseWriter, r *http.Request) {
	p.throttled.Add(1)
	w.Header().Set("Retry-After", "1")
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_ = json.NewEncoder(w).Encode(metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure, Code: http.StatusTooManyRequests, Reason: metav1.StatusReasonTooManyRequests,
		Message: "the test proxy is throttling " + r.Method + " " + r.URL.Path,
		Details: &metav1.StatusDetails{RetryAfterSeconds: 1},
	})
}

// startThrottlingProxy starts the proxy and writes a kubeconfig that
// reaches the control plane through it.
func (s *scenario) startThrottlingProxy() (*throttlingProxy, string) {
	s.t.Helper()
	target, err := url.Parse(env.Config.Host)
	if err != nil {
		s.t.Fatal(err)
	}
	rp := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(target) },
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, // the testenv kubeconfig skips it too
		FlushInterval: -1,                                                                      // watches stream
	}
	p := &throttlingProxy{next: rp}
	srv := httptest.NewTLSServer(p)
	s.t.Cleanup(srv.Close)
	kc, err := clientcmd.LoadFromFile(env.Kubeconfig)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, c := range kc.Clusters {
		c.Server, c.InsecureSkipTLSVerify = srv.URL, true
	}
	file := filepath.Join(s.work, "throttled.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, file); err != nil {
		s.t.Fatal(err)
	}
	return p, file
}

// TestAPIServerThrottling: the agent reaches the API server through a
// proxy answering 429 with Retry-After. In the first release every request
// is throttled from the push until tandem_transient_errors_total
// {dependency="cluster"} rises (client-go's own retries of a 429 are spent),
// then one in three until the release ends: apply and the health wait (the
// image is Ready 2s after it starts) meet it. In the second, every write of
// the flip to the stable Service is throttled until the metric rises, and
// one other request in three. Both releases are promoted, none is reverted,
// and traffic ends on the new color.
func TestAPIServerThrottling(t *testing.T) {
	s := newScenario(t, "revert", "2m", app{"server", "example/server:v1"})
	p, kubeconfig := s.startThrottlingProxy()
	s.start("--kubeconfig", kubeconfig)
	base := metricsURL(t, s.agent)
	want(t, s.waitCommits(1)[0], "promoted")

	cases := []struct {
		name, image, color string
		burst, rest        func(*http.Request, int64) bool
		phase              string // the phase the agent's log must show meeting it
	}{
		{"apply and verification", "example/server:v2-slow", "green", every, oneInThree, "apply"},
		{"the flip", "example/server:v3", "blue", flipWrites("server"), oneInThree, "flip"},
	}
	for i, tc := range cases {
		before := transientErrors(t, base, "cluster")
		mark, throttledBefore := len(s.events()), p.throttled.Load()
		s.setImage("server", tc.image)
		cand := s.push("server " + tc.image)
		p.set(tc.burst)
		deadline := time.Now().Add(2 * time.Minute)
		for transientErrors(t, base, "cluster") <= before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: 2m of 429s and tandem_transient_errors_total{dependency=\"cluster\"} still %v\n%s", tc.name, before, s.agent.LogTail())
			}
			time.Sleep(100 * time.Millisecond)
		}
		p.set(tc.rest)
		c := s.waitCommits(2 + i)[0]
		p.set(nil)
		want(t, c, "promoted")
		if c.Trailers["Tandem-Source"] != cand || c.Trailers["Tandem-Color"] != tc.color {
			t.Fatalf("%s: promoted %v, want %s on %s", tc.name, c.Trailers, contract.Short(cand), tc.color)
		}
		s.wantSelectors(tc.color, "server")
		if n := countResults(s.agentCommits(), "reverted", cand); n != 0 {
			t.Fatalf("%s: the agent reverted %s because of throttling", tc.name, contract.Short(cand))
		}
		phases := map[string]int{}
		for _, e := range s.events()[mark:] {
			if err := e.str("error"); strings.Contains(err, "throttling") || strings.Contains(err, "Too Many Requests") || strings.Contains(err, "429") {
				phases[e.str("phase")+"/"+e.str("op")]++
			}
		}
		t.Logf("%s: %d requests answered 429; tandem_transient_errors_total{dependency=\"cluster\"} +%.0f; agent log lines naming it by phase/op: %v",
			tc.name, p.throttled.Load()-throttledBefore, transientErrors(t, base, "cluster")-before, phases)
		met := false
		for k := range phases {
			met = met || strings.HasPrefix(k, tc.phase+"/")
		}
		if !met {
			t.Errorf("%s: the agent's log never shows phase %s meeting the throttling\n%s", tc.name, tc.phase, s.agent.LogTail())
		}
	}
}
