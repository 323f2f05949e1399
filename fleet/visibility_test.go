package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/testenv"
)

// TestOutcomesFromNotes feeds a visibility the notes a driver writes for a
// release that degrades during its soak, one superseded by a newer commit
// and one that renders what is live, and checks the notifications and
// commit statuses real local servers receive.
func TestOutcomesFromNotes(t *testing.T) {
	hooks, github := testenv.NewRecorder(t, 200), testenv.NewRecorder(t, 201)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("tok"), 0o600); err != nil {
		t.Fatal(err)
	}
	urls := filepath.Join(t.TempDir(), "urls")
	if err := os.WriteFile(urls, []byte("# the team's receiver\n"+hooks.URL+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := VisibilityOptions{Notify: notify.Options{
		Webhooks: []notify.Webhook{{URL: hooks.URL, Format: notify.FormatJSON}},
		Status:   &notify.StatusOptions{Provider: "github", BaseURL: github.URL, Repo: "acme/shop", TokenFile: token},
	}}
	v, err := NewVisibility(ctx, o, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer v.Stop()
	for _, n := range []promote.Note{
		// c2: promoted to green, degrades in the soak, flipped back and reverted.
		{Phase: "candidate", Commit: "c2"},
		{Phase: "apply", Color: "green", Commit: "c2", Detail: "2 created, 0 configured, 0 unchanged, 0 pruned"},
		{Phase: "verify", Color: "green", Commit: "c2", Detail: "server-green: 2/2 ready; verified in 3s"},
		{Phase: "flip", Color: "green", Commit: "c2", Detail: "stable Services switched"},
		{Phase: "commit", Color: "green", Commit: "a1", Result: "promoted", Live: "green", LiveCommit: "c2"},
		{Phase: "promote", Color: "green", Commit: "c2"},
		{Phase: "soak", Color: "green", Commit: "c2", Err: errors.New("server-green: CrashLoopBackOff"), Warn: true},
		{Phase: "flip-back", Color: "blue", Commit: "c2"},
		{Phase: "fail", Color: "green", Commit: "c2", Detail: "degraded during the soak: server-green: CrashLoopBackOff", Warn: true},
		{Phase: "commit", Color: "green", Commit: "a2", Result: "reverted", Live: "blue", LiveCommit: "c1"},
		// c3 is replaced by c4 before it was verified.
		{Phase: "candidate", Commit: "c3"},
		{Phase: "apply", Color: "green", Commit: "c3", Detail: "0 created, 2 configured, 0 unchanged, 0 pruned"},
		{Phase: "verify", Color: "green", Commit: "c3", Detail: "a newer commit arrived; verification cancelled"},
		{Phase: "candidate", Commit: "c4"},
		{Phase: "idle", Commit: "c4", Detail: "nothing to release: the candidate renders what is live"},
	} {
		v.Observe("shop", n)
	}

	var got []string
	for range 3 {
		var o notify.Outcome
		if err := json.Unmarshal(hooks.Next(t, "notification").Body, &o); err != nil {
			t.Fatal(err)
		}
		got = append(got, strings.Join([]string{o.Result, o.SourceCommit, o.AgentCommit, o.Color, o.Live, o.Reason}, "|"))
	}
	want := []string{
		"promoted|c2|a1|green|green|",
		"flipped-back|c2||green|blue|server-green: CrashLoopBackOff",
		"reverted|c2|a2|green|blue|degraded during the soak: server-green: CrashLoopBackOff",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("notifications:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	got = nil
	for range 7 {
		req := github.Next(t, "commit status")
		var b map[string]string
		if err := json.Unmarshal(req.Body, &b); err != nil {
			t.Fatal(err)
		}
		got = append(got, req.Path[strings.LastIndex(req.Path, "/")+1:]+" "+b["state"])
	}
	if s := strings.Join(got, ", "); s != "c2 pending, c2 success, c2 failure, c3 pending, c3 error, c4 pending, c4 success" {
		t.Errorf("statuses: %s", s)
	}
}
