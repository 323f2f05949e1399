package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// HookRequest is one request a recorder received.
type HookRequest struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Recorder is a local HTTP server standing in for a webhook receiver or a
// Git host's API. code is its answer; 0 hangs until the client gives up.
type Recorder struct {
	*httptest.Server
	code int
	mu   sync.Mutex
	reqs []HookRequest
	got  chan HookRequest
}

// NewRecorder starts a Recorder answering code, closed when t ends.
func NewRecorder(t *testing.T, code int) *Recorder {
	t.Helper()
	r := &Recorder{code: code, got: make(chan HookRequest, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		hr := HookRequest{Method: req.Method, Path: req.URL.Path, Header: req.Header.Clone(), Body: body}
		r.mu.Lock()
		r.reqs = append(r.reqs, hr)
		r.mu.Unlock()
		r.got <- hr
		if r.code == 0 {
			<-req.Context().Done()
			return
		}
		w.WriteHeader(r.code)
	}))
	t.Cleanup(r.Close)
	return r
}

// Next waits up to 3 minutes for the next request; what names it in the failure.
func (r *Recorder) Next(t *testing.T, what string) HookRequest {
	t.Helper()
	select {
	case req := <-r.got:
		return req
	case <-time.After(3 * time.Minute):
		t.Fatalf("no %s within 3 minutes", what)
		return HookRequest{}
	}
}

// Count is how many requests arrived so far.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reqs)
}
