package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// request is one request a test server received.
type request struct {
	Method, Path, RawPath string
	Header                http.Header
	Body                  []byte
}

// server is a real local HTTP server that records requests and answers
// with the status codes of plan, in turn (the last one repeats). A code of
// 0 hangs until the client gives up.
type server struct {
	*httptest.Server
	t    *testing.T
	mu   sync.Mutex
	reqs []request
	plan []int
	body string // response body for errors
	got  chan request
}

func newServer(t *testing.T, plan ...int) *server {
	t.Helper()
	s := &server{t: t, plan: plan, got: make(chan request, 100)}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		req := request{Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Header: r.Header.Clone(), Body: body}
		s.mu.Lock()
		i := len(s.reqs)
		s.reqs = append(s.reqs, req)
		code := s.plan[min(i, len(s.plan)-1)]
		s.mu.Unlock()
		s.got <- req
		if code == 0 {
			<-r.Context().Done() // hang until the client gives up
			return
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, s.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request{}, s.reqs...)
}

// results collects what the notifier reports.
type results chan Result

func (r results) next(t *testing.T) Result {
	t.Helper()
	select {
	case res := <-r:
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery result within 30s")
		return Result{}
	}
}

// start builds and starts a notifier with fast retries for tests.
func start(t *testing.T, o Options) (*Notifier, results) {
	t.Helper()
	res := make(results, 100)
	o.OnResult = func(r Result) { res <- r }
	if o.Backoff.Duration == 0 {
		o.Backoff = wait.Backoff{Duration: 5 * time.Millisecond, Factor: 2, Cap: 20 * time.Millisecond}
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 5 * time.Second
	}
	n, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.Start(ctx)
	t.Cleanup(func() { cancel(); n.Wait() })
	return n, res
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var revert = Outcome{Bundle: "shop", Result: ResultReverted, Color: "green", Live: "blue",
	SourceCommit: "77ab0c1d2e3f4a5b6c7d8e9f00112233445566aa", AgentCommit: "0123456789abcdef0123456789abcdef01234567",
	Reason: "server-green: ImagePullBackOff (example/server:v3) after 9s", At: time.Date(2026, 11, 23, 10, 2, 11, 0, time.UTC)}

func TestWebhookJSONSigned(t *testing.T) {
	srv := newServer(t, http.StatusNoContent)
	secret := writeFile(t, "s3cret\n")
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL + "/hooks/tandem?key=abc", SecretFile: secret}}})
	n.Notify(revert)
	r := res.next(t)
	if r.Outcome != Delivered || r.Attempts != 1 || r.Kind != KindWebhook {
		t.Fatalf("result %+v, want delivered in 1 attempt", r)
	}
	if strings.Contains(r.Target, "key=abc") {
		t.Errorf("target %q shows the query", r.Target)
	}
	req := srv.requests()[0]
	if req.Method != http.MethodPost || req.Path != "/hooks/tandem" || req.Header.Get("Content-Type") != "application/json" {
		t.Errorf("request %s %s %q", req.Method, req.Path, req.Header.Get("Content-Type"))
	}
	if got, want := req.Header.Get(SignatureHeader), Sign([]byte("s3cret"), req.Body); got != want || !strings.HasPrefix(got, "sha256=") {
		t.Errorf("signature %q, want %q", got, want)
	}
	var doc map[string]any
	if err := json.Unmarshal(req.Body, &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"apiVersion": "tandem.dev/v1alpha1", "kind": "Notification", "bundle": "shop", "result": "reverted",
		"color": "green", "live": "blue", "sourceCommit": revert.SourceCommit, "agentCommit": revert.AgentCommit,
		"reason": revert.Reason, "at": "2026-11-23T10:02:11Z"}
	for k, v := range want {
		if doc[k] != v {
			t.Errorf("body %s = %v, want %v", k, doc[k], v)
		}
	}
	if bytes.Contains(req.Body, []byte("s3cret")) {
		t.Error("the body holds the secret")
	}
}

func TestWebhookSlack(t *testing.T) {
	srv := newServer(t, http.StatusOK)
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL + "/services/T0/B0/XXXX", Format: FormatSlack}}})
	n.Notify(revert)
	r := res.next(t)
	if r.Outcome != Delivered {
		t.Fatalf("result %+v", r)
	}
	if strings.Contains(r.Target, "XXXX") || !strings.HasSuffix(r.Target, "/services/...") {
		t.Errorf("target %q shows the webhook's token path", r.Target)
	}
	var body map[string]any
	if err := json.Unmarshal(srv.requests()[0].Body, &body); err != nil {
		t.Fatal(err)
	}
	text, _ := body["text"].(string)
	if len(body) != 1 || !strings.Contains(text, "*shop*") || !strings.Contains(text, "77ab0c1 reverted") ||
		!strings.Contains(text, "ImagePullBackOff") || !strings.Contains(text, "0123456") {
		t.Errorf("slack body %v", body)
	}
}

func TestCommitStatusProviders(t *testing.T) {
	const sha = "9c1e4b2aa0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5"
	long := strings.Repeat("server-green: ImagePullBackOff ", 20)
	for _, tc := range []struct {
		provider, repo, base string
		path                 string // escaped path
		auth                 func(h http.Header) string
		wantAuth             string
		state                State
		wantState, nameKey   string
		maxDesc              int
	}{
		{provider: GitHub, repo: "acme/shop", base: "/api/v3", path: "/api/v3/repos/acme/shop/statuses/" + sha,
			auth: func(h http.Header) string { return h.Get("Authorization") }, wantAuth: "Bearer tok-123",
			state: StateFailure, wantState: "failure", nameKey: "context", maxDesc: 140},
		{provider: GitHub, repo: "acme/shop", path: "/repos/acme/shop/statuses/" + sha,
			auth: func(h http.Header) string { return h.Get("Authorization") }, wantAuth: "Bearer tok-123",
			state: StateCanceled, wantState: "error", nameKey: "context", maxDesc: 140},
		{provider: Gitea, repo: "acme/shop", path: "/api/v1/repos/acme/shop/statuses/" + sha,
			auth: func(h http.Header) string { return h.Get("Authorization") }, wantAuth: "token tok-123",
			state: StatePending, wantState: "pending", nameKey: "context", maxDesc: 140},
		{provider: GitLab, repo: "acme/shop", path: "/api/v4/projects/acme%2Fshop/statuses/" + sha,
			auth: func(h http.Header) string { return h.Get("PRIVATE-TOKEN") }, wantAuth: "tok-123",
			state: StateFailure, wantState: "failed", nameKey: "name", maxDesc: 255},
		{provider: GitLab, repo: "42", path: "/api/v4/projects/42/statuses/" + sha,
			auth: func(h http.Header) string { return h.Get("PRIVATE-TOKEN") }, wantAuth: "tok-123",
			state: StateSuccess, wantState: "success", nameKey: "name", maxDesc: 255},
	} {
		t.Run(tc.provider+"-"+string(tc.state), func(t *testing.T) {
			srv := newServer(t, http.StatusCreated)
			n, res := start(t, Options{Status: &StatusOptions{Provider: tc.provider, BaseURL: srv.URL + tc.base + "/", Repo: tc.repo,
				TokenFile: writeFile(t, "tok-123\n"), TargetURL: "https://ci.example.com/shop"}})
			n.SetStatus(Status{Commit: sha, Bundle: "shop", State: tc.state, Description: long})
			if r := res.next(t); r.Outcome != Delivered || r.Kind != KindCommitStatus {
				t.Fatalf("result %+v", r)
			}
			req := srv.requests()[0]
			if req.Method != http.MethodPost || req.RawPath != tc.path {
				t.Errorf("request %s %s, want POST %s", req.Method, req.RawPath, tc.path)
			}
			if got := tc.auth(req.Header); got != tc.wantAuth {
				t.Errorf("auth header %q, want %q", got, tc.wantAuth)
			}
			if tc.provider == GitHub && (req.Header.Get("Accept") != "application/vnd.github+json" || req.Header.Get("X-GitHub-Api-Version") == "") {
				t.Errorf("GitHub headers %v", req.Header)
			}
			if req.Header.Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", req.Header.Get("Content-Type"))
			}
			var body map[string]string
			if err := json.Unmarshal(req.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body["state"] != tc.wantState || body[tc.nameKey] != "tandem/shop" || body["target_url"] != "https://ci.example.com/shop" {
				t.Errorf("body %v", body)
			}
			if d := body["description"]; len([]rune(d)) != tc.maxDesc || !strings.HasSuffix(d, "...") {
				t.Errorf("description of %d characters, want cut to %d: %q", len([]rune(d)), tc.maxDesc, d)
			}
			if len(body) != 4 {
				t.Errorf("body has unexpected fields: %v", body)
			}
		})
	}
}

func TestRetriesServerErrorsThenDelivers(t *testing.T) {
	srv := newServer(t, 503, 502, 201)
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}})
	n.Notify(revert)
	r := res.next(t)
	if r.Outcome != Delivered || r.Attempts != 3 || r.Err != nil {
		t.Fatalf("result %+v, want delivered after 3 attempts", r)
	}
}

func TestRetriesAreBounded(t *testing.T) {
	srv := newServer(t, 500)
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}, Attempts: 4})
	n.Notify(revert)
	r := res.next(t)
	if r.Outcome != Failed || r.Attempts != 4 {
		t.Fatalf("result %+v, want failed after 4 attempts", r)
	}
	if got := len(srv.requests()); got != 4 {
		t.Errorf("server saw %d requests, want 4", got)
	}
}

// A 4xx is not retried, and a server echoing the token does not get it into
// the error.
func TestClientErrorNotRetriedTokenNotLeaked(t *testing.T) {
	srv := newServer(t, http.StatusUnprocessableEntity)
	srv.body = `{"message":"Validation Failed for token tok-SECRET-9"}`
	n, res := start(t, Options{Status: &StatusOptions{Provider: GitHub, BaseURL: srv.URL, Repo: "acme/shop", TokenFile: writeFile(t, "tok-SECRET-9")}})
	n.SetStatus(Status{Commit: "abc", Bundle: "shop", State: StateSuccess})
	r := res.next(t)
	if r.Outcome != Failed || r.Attempts != 1 {
		t.Fatalf("result %+v, want failed after 1 attempt", r)
	}
	var he *HTTPError
	if !asHTTPError(r.Err, &he) || he.StatusCode != 422 {
		t.Fatalf("error %v, want HTTP 422", r.Err)
	}
	if strings.Contains(r.Err.Error(), "tok-SECRET-9") || !strings.Contains(r.Err.Error(), "[redacted]") {
		t.Errorf("error %q leaks the token", r.Err)
	}
}

func TestHangingServerTimesOut(t *testing.T) {
	srv := newServer(t, 0)
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}, Attempts: 2, AttemptTimeout: 100 * time.Millisecond})
	begin := time.Now()
	n.Notify(revert)
	if d := time.Since(begin); d > 50*time.Millisecond {
		t.Errorf("Notify blocked for %s", d)
	}
	r := res.next(t)
	if r.Outcome != Failed || r.Attempts != 2 || !strings.Contains(r.Err.Error(), "no answer in time") {
		t.Fatalf("result %+v, want failed after 2 timed-out attempts", r)
	}
}

// A full queue drops (and reports) messages instead of blocking the caller.
func TestFullQueueDrops(t *testing.T) {
	srv := newServer(t, 0)
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}, QueueSize: 1, Attempts: 1, AttemptTimeout: time.Minute})
	n.Notify(revert)
	<-srv.got // the worker is now stuck on the hanging server
	begin := time.Now()
	for range 3 {
		n.Notify(revert) // one fits in the queue, two are dropped
	}
	if d := time.Since(begin); d > 50*time.Millisecond {
		t.Errorf("Notify blocked for %s", d)
	}
	for range 2 {
		if r := res.next(t); r.Outcome != Dropped || !strings.Contains(r.Err.Error(), "queue full") {
			t.Fatalf("result %+v, want dropped", r)
		}
	}
}

// Statuses for one commit arrive in order; a rotated token file is used at once.
func TestStatusOrderAndTokenReload(t *testing.T) {
	srv := newServer(t, 201)
	token := writeFile(t, "old-token")
	n, res := start(t, Options{Status: &StatusOptions{Provider: GitLab, BaseURL: srv.URL, Repo: "7", TokenFile: token}})
	n.SetStatus(Status{Commit: "c1", Bundle: "shop", State: StatePending, Description: "verifying green"})
	if r := res.next(t); r.Outcome != Delivered {
		t.Fatal(r)
	}
	if err := os.WriteFile(token, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n.SetStatus(Status{Commit: "c1", Bundle: "shop", State: StateSuccess, Description: "promoted"})
	if r := res.next(t); r.Outcome != Delivered {
		t.Fatal(r)
	}
	reqs := srv.requests()
	var states, tokens []string
	for _, r := range reqs {
		var b map[string]string
		_ = json.Unmarshal(r.Body, &b)
		states = append(states, b["state"])
		tokens = append(tokens, r.Header.Get("PRIVATE-TOKEN"))
	}
	if strings.Join(states, ",") != "pending,success" || strings.Join(tokens, ",") != "old-token,new-token" {
		t.Errorf("states %v with tokens %v", states, tokens)
	}
}

func TestOptionsValidation(t *testing.T) {
	tok := writeFile(t, "x")
	for _, o := range []Options{
		{Webhooks: []Webhook{{URL: "ftp://x"}}},
		{Webhooks: []Webhook{{URL: "http://x", Format: "teams"}}},
		{Webhooks: []Webhook{{URL: "http://x", SecretFile: "/nonexistent"}}},
		{Status: &StatusOptions{Provider: "bitbucket", Repo: "a/b", TokenFile: tok}},
		{Status: &StatusOptions{Provider: GitHub, Repo: "a/b/c", TokenFile: tok}},
		{Status: &StatusOptions{Provider: Gitea, Repo: "a/b", TokenFile: tok}},
		{Status: &StatusOptions{Provider: GitHub, Repo: "a/b", TokenFile: writeFile(t, " \n")}},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v) accepted", o)
		}
	}
}

func asHTTPError(err error, he **HTTPError) bool {
	e, ok := err.(*HTTPError)
	*he = e
	return ok
}

// Drain waits for queued messages, and gives up when its ctx ends.
func TestDrain(t *testing.T) {
	srv := newServer(t, 204)
	n, _ := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}})
	n.Notify(revert)
	n.Notify(revert)
	if !n.Drain(context.Background()) || len(srv.requests()) != 2 {
		t.Fatalf("Drain returned with %d of 2 requests made", len(srv.requests()))
	}
	hang := newServer(t, 0)
	n, _ = start(t, Options{Webhooks: []Webhook{{URL: hang.URL}}, AttemptTimeout: time.Minute})
	n.Notify(revert)
	<-hang.got
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if n.Drain(ctx) {
		t.Fatal("Drain reported a hanging delivery as done")
	}
}
