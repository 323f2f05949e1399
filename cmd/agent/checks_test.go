package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-gitops/tandem/testenv"
)

// withChecks adds spec lines (indented under spec:) to the scenario's
// bundle.yaml and the smoke check Job running smokeImage, then pushes.
func (s *scenario) withChecks(spec, smokeImage string) string {
	s.t.Helper()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	appendSpec(s, "bundles/"+s.ns, spec)
	s.setSmoke(smokeImage)
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", "resources:\n- client.yaml\n- server.yaml\n- smoke.yaml\n")
	return s.push("end-to-end checks")
}

// setSmoke writes the smoke check's Job: it calls the color's own client,
// which calls the color's own server.
func (s *scenario) setSmoke(image string) {
	s.write("bundles/"+s.ns+"/app/smoke.yaml", fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: smoke
  annotations: {tandem.dev/check: smoke}
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
      - name: smoke
        image: %s
        args: ["http://client-${TANDEM_COLOR}:8080/orders"]
`, image))
}

// watchColors records every color each stable Service of ns selects from
// now on; the returned func stops and returns them.
func (s *scenario) watchColors(ns string) func() map[string][]string {
	seen := map[string][]string{}
	stop := testenv.WatchServices(s.ctx, s.cs, ns, metav1.ListOptions{LabelSelector: testenv.StableSelector(ns)},
		func(t watch.EventType, svc *corev1.Service) {
			if t == watch.Deleted {
				return
			}
			c := svc.Spec.Selector["tandem.dev/color"]
			if l := seen[svc.Name]; len(l) == 0 || l[len(l)-1] != c {
				seen[svc.Name] = append(l, c)
			}
		})
	return func() map[string][]string {
		stop()
		return seen
	}
}

// onlyColor fails unless every Service seen selected color only.
func onlyColor(t *testing.T, seen map[string][]string, color string) {
	t.Helper()
	for svc, colors := range seen {
		for _, c := range colors {
			if c != color {
				t.Errorf("stable Service %s selected %v while the check ran; want %s throughout", svc, colors, color)
				break
			}
		}
	}
}

// apiServer stands in for the new release's public endpoint: a real HTTP
// server that checks every request (the color in the path, the agent's
// User-Agent) and answers per color.
type apiServer struct {
	*httptest.Server
	mu     sync.Mutex
	status map[string]int
	colors map[string]int // requests per color
	bad    []string
}

func newAPIServer(t *testing.T) *apiServer {
	a := &apiServer{status: map[string]int{}, colors: map[string]int{}}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		defer a.mu.Unlock()
		color, ok := strings.CutPrefix(r.URL.Path, "/preview/")
		if !ok || r.Method != http.MethodGet || r.Header.Get("User-Agent") != "tandem-check" || (color != "blue" && color != "green") {
			a.bad = append(a.bad, r.Method+" "+r.URL.Path+" "+r.Header.Get("User-Agent"))
			w.WriteHeader(http.StatusTeapot)
			return
		}
		a.colors[color]++
		code := a.status[color]
		if code == 0 {
			code = http.StatusOK
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(func() {
		a.Close()
		if len(a.bad) > 0 {
			t.Errorf("unexpected check requests: %v", a.bad)
		}
	})
	return a
}

func (a *apiServer) set(color string, code int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.status[color] = code
}

func (a *apiServer) requests(color string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.colors[color]
}

// The point of checks: client v2 and server v2 both become Ready, but the
// end-to-end check run against the idle color fails, so traffic never
// moves and the revert names the check and what it measured. A check Job
// whose image never pulls fails the release too (it is not a pass).
func TestEndToEndCheckGatesTheFlip(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	api := newAPIServer(t)
	s.withChecks(fmt.Sprintf(`  checks:
  - name: smoke
    job: {}
    timeout: 60s
  - name: api
    http:
      url: %s/preview/${TANDEM_COLOR}
      count: 2
      interval: 200ms
`, api.URL), "example/smoke:v1")
	s.start("--allow-local-check-targets") // the test API server is on loopback
	first := s.waitCommits(1)
	want(t, first[0], "promoted")
	s.wantSelectors("blue", "client", "server")
	body := s.git(s.remote, "log", "-1", "--format=%B", first[0].Hash)
	for _, w := range []string{"smoke (job): passed", "api (http): passed", "Tandem-Check: smoke=passed", "Tandem-Check: api=passed"} {
		if !strings.Contains(body, w) {
			t.Errorf("promotion commit lacks %q:\n%s", w, body)
		}
	}
	if api.requests("blue") < 2 {
		t.Errorf("the http check sent %d requests for blue, want 2", api.requests("blue"))
	}

	// v2: both apps Ready, but the end-to-end check finds the API broken.
	stop := s.watchColors(s.ns)
	s.setImage("client", "example/client:v2")
	s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:v2"}))
	s.setSmoke("example/smoke:v2-fail")
	bad := s.push("client and server v2 (breaking API change done wrong)")
	commits := s.waitCommits(2)
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != bad {
		t.Errorf("Tandem-Reverts %q, want %s", commits[0].Trailers["Tandem-Reverts"], bad)
	}
	body = s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	for _, w := range []string{"check smoke (job): failed", "smoke-green-", "Tandem-Check: smoke=failed", "traffic stayed on blue"} {
		if !strings.Contains(body, w) {
			t.Errorf("revert lacks %q:\n%s", w, body)
		}
	}
	onlyColor(t, stop(), "blue")
	s.wantSelectors("blue", "client", "server")
	health := s.waitEvent("a healthy green before the check", time.Minute, phaseOf("verify", bad, true))
	if !strings.Contains(health.str("detail"), "client-green") {
		t.Errorf("green was not verified healthy before its check failed: %v", health)
	}
	ev := s.waitEvent("the failed check's log event", time.Minute, func(e logEvent) bool {
		return e.str("phase") == "check" && e.str("check") == "smoke" && e.str("verdict") == "failed"
	})
	if ev.str("commit") != bad[:len(ev.str("commit"))] {
		t.Errorf("check event for commit %s, want %s", ev.str("commit"), bad)
	}
	_, metrics := httpGet(t, metricsURL(t, s.agent)+"/metrics")
	if v, ok := metric(metrics, "tandem_check_runs_total", "bundle="+s.ns, "check=smoke", "verdict=failed"); !ok || v < 1 {
		t.Errorf("tandem_check_runs_total{check=smoke,verdict=failed} = %v (found %v)", v, ok)
	}
	if _, ok := metric(metrics, "tandem_check_duration_seconds_count", "bundle="+s.ns, "check=smoke"); !ok {
		t.Errorf("no tandem_check_duration_seconds for smoke")
	}

	// A check Job whose image never pulls is a failed check, not a pass.
	stop = s.watchColors(s.ns)
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setImage("client", "example/client:v3")
	s.setSmoke("missing.invalid/smoke:v3")
	s.push("v3 with a smoke image that does not exist")
	commits = s.waitCommits(3)
	want(t, commits[0], "reverted")
	body = s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	if !strings.Contains(body, "check smoke (job): failed") || !strings.Contains(body, "missing.invalid/smoke:v3") {
		t.Errorf("revert does not name the smoke check and its image:\n%s", body)
	}
	onlyColor(t, stop(), "blue")
}

// A soak check that fails after the flip sends traffic back to the warm
// previous color and reverts, naming the check.
func TestSoakCheckFailureFlipsBack(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	api := newAPIServer(t)
	api.set("green", http.StatusServiceUnavailable) // green's public endpoint fails once it has traffic
	s.withChecks(fmt.Sprintf(`  soak: 20s
  checks:
  - name: smoke
    job: {}
  - name: errors
    when: soak
    timeout: 15s
    http:
      url: %s/preview/${TANDEM_COLOR}
      count: 3
      interval: 500ms
`, api.URL), "example/smoke:v1")
	s.start("--allow-local-check-targets")   // the test API server is on loopback
	want(t, s.waitCommits(1)[0], "promoted") // first deploy: no soak (nothing to go back to)
	s.wantSelectors("blue", "client", "server")

	s.setImage("client", "example/client:v2")
	v2 := s.push("client v2")
	commits := s.waitCommits(3)
	want(t, commits[1], "promoted")
	want(t, commits[0], "reverted")
	if commits[0].Trailers["Tandem-Reverts"] != v2 {
		t.Errorf("the revert reverts %q, want %s", commits[0].Trailers["Tandem-Reverts"], v2)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	for _, w := range []string{"degraded during the soak", "errors (http): failed", "503", "traffic went back to blue", "Tandem-Check: errors=failed"} {
		if !strings.Contains(body, w) {
			t.Errorf("soak revert lacks %q:\n%s", w, body)
		}
	}
	s.wantSelectors("blue", "client", "server")
}

// Prometheus down when a release is verified: the check is inconclusive,
// which is never a pass, so the release fails at the end of the window and
// no traffic moves.
func TestPrometheusDownIsNoPass(t *testing.T) {
	reg := prometheus.NewRegistry()
	ratio := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "shop_error_ratio", Help: "errors per request"}, []string{"color"})
	reg.MustRegister(ratio)
	ratio.WithLabelValues("blue").Set(0.001)
	ratio.WithLabelValues("green").Set(0.001)
	exp := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer exp.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	prom, err := testenv.StartPrometheus(ctx, t.TempDir(), []string{strings.TrimPrefix(exp.URL, "http://")})
	if err != nil {
		t.Fatal(err)
	}
	defer prom.Stop() //nolint:errcheck // stopped again below

	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	s.withChecks(`  checks:
  - name: smoke
    job: {}
  - name: errors
    timeout: 20s
    prometheus:
      query: shop_error_ratio{color="${TANDEM_COLOR}"}
      condition: "< 0.01"
      count: 2
      interval: 1s
`, "example/smoke:v1")
	s.start("--prometheus-url", prom.URL)
	first := s.waitCommits(1)
	want(t, first[0], "promoted")
	if body := s.git(s.remote, "log", "-1", "--format=%B", first[0].Hash); !strings.Contains(body, "errors (prometheus): passed; want < 0.01 in 2 of 2 measurements") || !strings.Contains(body, "0.001, 0.001") {
		t.Errorf("promotion lacks the measured values:\n%s", body)
	}

	if err := prom.Stop(); err != nil {
		t.Fatal(err)
	}
	stop := s.watchColors(s.ns)
	s.setImage("client", "example/client:v2")
	s.push("client v2 while Prometheus is down")
	commits := s.waitCommits(2)
	want(t, commits[0], "reverted")
	body := s.git(s.remote, "log", "-1", "--format=%B", commits[0].Hash)
	if !strings.Contains(body, "inconclusive") || !strings.Contains(body, "Tandem-Check: errors=inconclusive") {
		t.Errorf("the revert must say the check was inconclusive:\n%s", body)
	}
	onlyColor(t, stop(), "blue")
}
