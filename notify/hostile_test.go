package notify

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// Text from outside in a reason reaches chat inert and without
// credentials, and the JSON body without credentials or control bytes.
func TestWebhookEscapesOutsideText(t *testing.T) {
	o := revert
	o.Reason = "check smoke: <!channel> query error: Get \"http://prom/api/v1/query?token=s3cr3t\": EOF\x1b[2J"
	o.Result, o.Evidence = ResultPromoted, "<@U123> & co"
	slack, err := (&Webhook{Format: FormatSlack}).Body(o)
	if err != nil {
		t.Fatal(err)
	}
	var sb map[string]string
	must(t, json.Unmarshal(slack, &sb))
	for _, bad := range []string{"<!channel>", "<@U123>", "s3cr3t", "\x1b"} {
		if strings.Contains(sb["text"], bad) {
			t.Errorf("slack text holds %q: %q", bad, sb["text"])
		}
	}
	if !strings.Contains(sb["text"], "&lt;!channel&gt;") || !strings.Contains(sb["text"], "&amp; co") {
		t.Errorf("slack text not escaped: %q", sb["text"])
	}
	plain, err := (&Webhook{}).Body(o)
	must(t, err)
	var pb Outcome
	must(t, json.Unmarshal(plain, &pb))
	if strings.Contains(pb.Reason, "s3cr3t") || strings.Contains(pb.Reason, "\x1b") || !strings.Contains(pb.Reason, "token=REDACTED") {
		t.Errorf("json reason %q", pb.Reason)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// A 429 with Retry-After is retried no sooner than it asks, even when the
// backoff is shorter.
func TestRetryAfterHonoured(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			t.Errorf("unexpected %s", r.Method)
		}
		mu.Lock()
		times = append(times, time.Now())
		n := len(times)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusTooManyRequests)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer srv.Close()
	n, res := start(t, Options{Webhooks: []Webhook{{URL: srv.URL}}})
	n.Notify(revert)
	r := res.next(t)
	if r.Outcome != Delivered || r.Attempts != 2 {
		t.Fatalf("result %+v, want delivered on the second attempt", r)
	}
	mu.Lock()
	defer mu.Unlock()
	if d := times[1].Sub(times[0]); d < time.Second {
		t.Errorf("retried %v after a 429 asking for 1s", d)
	}
}

func TestRetryAfterParse(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for h, want := range map[string]time.Duration{"": 0, "2": 2 * time.Second, "-5": 0, "1e9": 0, "100000": maxRetryAfter,
		now.Add(30 * time.Second).Format(http.TimeFormat): 30 * time.Second} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}
