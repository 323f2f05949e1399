package check

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// colorServer is a real HTTP server standing in for a color's client: it
// checks every request (method, path, agent) and answers with the status
// and body the test sets per color.
type colorServer struct {
	*httptest.Server
	mu       sync.Mutex
	status   map[string]int
	body     map[string]string
	requests atomic.Int32
	bad      atomic.Value // string: a request the check should not have sent
}

func newColorServer(t *testing.T) *colorServer {
	s := &colorServer{status: map[string]int{}, body: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		color, ok := strings.CutPrefix(r.URL.Path, "/shop/")
		color, _, _ = strings.Cut(color, "/")
		if !ok || r.Method != http.MethodGet || r.Header.Get("User-Agent") != "tandem-check" {
			s.bad.Store(fmt.Sprintf("%s %s (agent %q)", r.Method, r.URL.Path, r.Header.Get("User-Agent")))
			http.Error(w, "unexpected request", http.StatusTeapot)
			return
		}
		s.mu.Lock()
		code, body := s.status[color], s.body[color]
		s.mu.Unlock()
		if code == 0 {
			code = http.StatusNotFound
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(func() {
		s.Close()
		if b, _ := s.bad.Load().(string); b != "" {
			t.Errorf("the check sent an unexpected request: %s", b)
		}
	})
	return s
}

func (s *colorServer) set(color string, code int, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status[color], s.body[color] = code, body
}

func httpCheck(url string, count, successes int) Spec {
	return Spec{Name: "api", When: WhenVerify, Timeout: 20 * time.Second, HTTP: &HTTP{
		URL: url, Method: "GET", Status: []int{200}, Count: count, Successes: successes,
		Interval: 100 * time.Millisecond, RequestTimeout: 2 * time.Second}}
}

var green = Target{Vars: Vars{Color: "green", Bundle: "shop", Namespace: "prod"}}

func TestHTTPCheck(t *testing.T) {
	srv := newColorServer(t)
	srv.set("green", 200, `{"version":"v2"}`)
	srv.set("blue", 503, "down")
	r := &Runner{AllowLocalTargets: true}
	url := srv.URL + "/${TANDEM_BUNDLE}/${TANDEM_COLOR}/healthz"

	rs, err := r.Run(context.Background(), []Spec{httpCheck(url, 3, 3)}, green)
	if err != nil || rs[0].Verdict != Passed || len(rs[0].Values) != 3 {
		t.Fatalf("green answers 200: %v, %+v", err, rs)
	}

	blue := Target{Vars: Vars{Color: "blue", Bundle: "shop", Namespace: "prod"}}
	rs, err = r.Run(context.Background(), []Spec{httpCheck(url, 3, 3)}, blue)
	var ce *Error
	if !errors.As(err, &ce) || rs[0].Verdict != Failed || rs[0].Values[0] != "503" {
		t.Fatalf("blue answers 503: %v, %+v", err, rs)
	}
	if !strings.Contains(err.Error(), "api (http): failed") || !strings.Contains(err.Error(), "503") {
		t.Errorf("the error must name the check and what it measured: %v", err)
	}

	s := httpCheck(url, 2, 2)
	s.HTTP.Body = regexp.MustCompile(`"version":"v3"`)
	rs, err = r.Run(context.Background(), []Spec{s}, green)
	if err == nil || rs[0].Verdict != Failed || !strings.Contains(rs[0].Values[0], "body did not match") {
		t.Fatalf("a body that does not match: %v, %+v", err, rs)
	}
}

// An endpoint that never answers is inconclusive at the window's end, never
// a pass; one that starts answering within the window passes.
func TestHTTPCheckUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens here now

	s := httpCheck("http://"+addr+"/shop/${TANDEM_COLOR}/healthz", 2, 2)
	s.Timeout = time.Second
	rs, err := (&Runner{AllowLocalTargets: true}).Run(context.Background(), []Spec{s}, green)
	if err == nil || rs[0].Verdict != Inconclusive || !strings.Contains(err.Error(), "inconclusive") {
		t.Fatalf("nothing answers: %v, %+v", err, rs)
	}

	// Now the endpoint comes up while the check is retrying.
	s.Timeout = 20 * time.Second
	srv := newColorServer(t)
	srv.set("green", 200, "ok")
	refused := make(chan struct{}, 1000)
	client := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			refused <- struct{}{}
		}
		return resp, err
	})}
	done := make(chan struct{})
	var got Results
	go func() {
		defer close(done)
		got, err = (&Runner{HTTP: client, AllowLocalTargets: true}).Run(context.Background(), []Spec{s}, green)
	}()
	<-refused // the check met a refused connection; now the endpoint comes up
	l2, lerr := net.Listen("tcp", addr)
	if lerr != nil {
		t.Fatalf("listen again on %s: %v", addr, lerr)
	}
	defer l2.Close()
	go http.Serve(l2, srv.Config.Handler) //nolint:errcheck // ends with l2
	<-done
	if err != nil || got[0].Verdict != Passed || !strings.Contains(strings.Join(got[0].Values, ","), "inconclusive") {
		t.Fatalf("the endpoint came up within the window: %v, %+v", err, got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// The first check that does not pass stops the others; the error names it,
// not the ones it stopped.
func TestRunStopsOthersOnFailure(t *testing.T) {
	srv := newColorServer(t)
	srv.set("green", 500, "")
	slow := httpCheck(srv.URL+"/shop/${TANDEM_COLOR}/slow", 1000, 1000)
	slow.Name, slow.Timeout, slow.HTTP.Status = "slow", time.Hour, []int{500}
	failing := httpCheck(srv.URL+"/shop/${TANDEM_COLOR}/healthz", 1, 1)
	rs, err := (&Runner{AllowLocalTargets: true}).Run(context.Background(), []Spec{slow, failing}, green)
	var ce *Error
	if !errors.As(err, &ce) || rs[1].Verdict != Failed || rs[0].Verdict != Inconclusive || !strings.Contains(rs[0].Detail, "stopped") {
		t.Fatalf("got %v, %+v", err, rs)
	}
	if f := ce.Results.Failing(); f.Name != "api" {
		t.Errorf("the error names %s, want the failing check api", f.Name)
	}
}
