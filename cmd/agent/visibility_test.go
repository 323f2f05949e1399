package main

// Where users look: Kubernetes Events on the real control plane, commit
// statuses and notifications received by real local HTTP servers.

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/testenv"
)

// bundleEvents lists the Events the agent recorded in ns, oldest first.
func (s *scenario) bundleEvents() []corev1.Event {
	s.t.Helper()
	list, err := s.cs.CoreV1().Events(s.ns).List(s.ctx, metav1.ListOptions{FieldSelector: "source=tandem-agent"})
	if err != nil {
		s.t.Fatal(err)
	}
	return list.Items
}

// waitEventReason waits until an Event with reason exists in the bundle's
// namespace and returns it.
func (s *scenario) waitEventReason(reason string) corev1.Event {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	w, err := s.cs.CoreV1().Events(s.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "reason=" + reason})
	if err != nil {
		s.t.Fatal(err)
	}
	defer w.Stop()
	for _, e := range s.bundleEvents() {
		if e.Reason == reason {
			return e
		}
	}
	for {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				s.t.Fatalf("watch of %s events ended", reason)
			}
			if e, ok := ev.Object.(*corev1.Event); ok && e.Source.Component == "tandem-agent" {
				return *e
			}
		case <-ctx.Done():
			s.t.Fatalf("no %s event in %s; events: %v\nagent log:\n%s", reason, s.ns, s.bundleEvents(), s.agent.LogTail())
		}
	}
}

// TestWhereUsersLook follows a promotion and a revert and checks what users
// see outside Git: Kubernetes Events in the bundle's namespace, commit
// statuses on the source commits (GitHub's API shape), and signed JSON
// notifications. Three more webhook receivers misbehave (500, hanging, 403):
// the release is not delayed, retries are bounded and no secret is logged.
func TestWhereUsersLook(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	hooks, failing, hanging, forbidden := testenv.NewRecorder(t, 204), testenv.NewRecorder(t, 500), testenv.NewRecorder(t, 0), testenv.NewRecorder(t, 403)
	github := testenv.NewRecorder(t, 201)
	const token, secret = "ghp_tandemTESTtoken0123456789", "hook-secret-4711"
	tokenFile := filepath.Join(s.work, "token")
	secretFile := filepath.Join(s.work, "hmac")
	for f, v := range map[string]string{tokenFile: token + "\n", secretFile: secret} {
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	first := s.git(s.clone, "rev-parse", "HEAD")
	s.start("--notify-url", hooks.URL+"/tandem", "--notify-url", failing.URL, "--notify-url", hanging.URL,
		"--notify-url", forbidden.URL, "--notify-secret-file", secretFile,
		"--commit-status", "github", "--commit-status-url", github.URL+"/api/v3", "--commit-status-repo", "acme/shop",
		"--commit-status-token-file", tokenFile, "--commit-status-target-url", "https://ci.example.com/tandem")

	promoted := s.waitCommits(1)[0]
	want(t, promoted, "promoted")
	s.setImage("client", "missing.invalid/client:v2")
	bad := s.push("client v2")
	reverted := s.waitCommits(2)[0]
	want(t, reverted, "reverted")
	if hanging.Count() == 0 {
		t.Error("the hanging receiver got no request")
	}

	// Commit statuses: pending then success on the first commit, pending
	// then failure (naming the failing app) on the bad one.
	type status struct{ sha, state, desc string }
	var statuses []status
	for range 4 {
		req := github.Next(t, "commit status")
		var body map[string]string
		if err := json.Unmarshal(req.Body, &body); err != nil {
			t.Fatalf("status body %s: %v", req.Body, err)
		}
		sha, ok := strings.CutPrefix(req.Path, "/api/v3/repos/acme/shop/statuses/")
		if req.Method != http.MethodPost || !ok {
			t.Errorf("status request %s %s", req.Method, req.Path)
		}
		if req.Header.Get("Authorization") != "Bearer "+token || req.Header.Get("Accept") != "application/vnd.github+json" ||
			req.Header.Get("Content-Type") != "application/json" {
			t.Errorf("status headers %v", req.Header)
		}
		if body["context"] != "tandem/"+s.ns || body["target_url"] != "https://ci.example.com/tandem" || len(body["description"]) > 140 {
			t.Errorf("status body %v", body)
		}
		statuses = append(statuses, status{sha, body["state"], body["description"]})
	}
	if statuses[0] != (status{first, "pending", statuses[0].desc}) || statuses[1] != (status{first, "success", "promoted to blue"}) ||
		statuses[2] != (status{bad, "pending", statuses[2].desc}) || statuses[3].sha != bad || statuses[3].state != "failure" ||
		!strings.Contains(statuses[3].desc, "client-green") {
		t.Errorf("statuses %+v, want pending/success on %s, pending/failure on %s", statuses, first, bad)
	}

	// Notifications: one signed JSON document per outcome.
	var docs []notify.Outcome
	for range 2 {
		req := hooks.Next(t, "notification")
		if req.Path != "/tandem" || req.Header.Get(notify.SignatureHeader) != notify.Sign([]byte(secret), req.Body) {
			t.Errorf("notification %s with signature %q", req.Path, req.Header.Get(notify.SignatureHeader))
		}
		var o notify.Outcome
		if err := json.Unmarshal(req.Body, &o); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, o)
	}
	if o := docs[0]; o.Result != "promoted" || o.Bundle != s.ns || o.Color != "blue" || o.SourceCommit != first ||
		o.AgentCommit != promoted.Hash || !strings.Contains(o.Evidence, "client-blue") {
		t.Errorf("promotion notification %+v", o)
	}
	if o := docs[1]; o.Result != "reverted" || o.Color != "green" || o.Live != "blue" || o.SourceCommit != bad ||
		o.AgentCommit != reverted.Hash || !strings.Contains(o.Reason, "missing.invalid/client:v2") {
		t.Errorf("revert notification %+v", o)
	}

	// Events tell the story in the bundle's namespace.
	rev := s.waitEventReason("Reverted")
	if rev.Type != corev1.EventTypeWarning || rev.InvolvedObject.Kind != "ConfigMap" ||
		rev.InvolvedObject.Name != "tandem-inventory-"+s.ns+"-green" || !strings.Contains(rev.Message, "client-green") ||
		!strings.Contains(rev.Message, contract.Short(bad)) || !strings.Contains(rev.Message, "traffic stays on blue") {
		t.Errorf("Reverted event: %s %s/%s %q", rev.Type, rev.InvolvedObject.Kind, rev.InvolvedObject.Name, rev.Message)
	}
	// kubectl describe finds events by the object's uid.
	inv, err := s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, rev.InvolvedObject.Name, metav1.GetOptions{})
	if err != nil || rev.InvolvedObject.UID != inv.UID || rev.Annotations["tandem.dev/bundle"] != s.ns || rev.Annotations["tandem.dev/color"] != "green" {
		t.Errorf("Reverted event: uid %q, annotations %v; ConfigMap uid %v (err %v)", rev.InvolvedObject.UID, rev.Annotations, inv.UID, err)
	}
	if list, err := s.cs.CoreV1().Events(s.ns).SearchWithContext(s.ctx, scheme.Scheme, inv); err != nil || len(list.Items) < 5 {
		t.Errorf("the events of ConfigMap %s as kubectl describe finds them: %v (err %v)", inv.Name, list, err)
	}
	byColor := map[string][]string{}
	for _, e := range s.bundleEvents() {
		t.Logf("event %-7s %-18s %s: %s", e.Type, e.Reason, e.InvolvedObject.Name, e.Message)
		color := strings.TrimPrefix(e.InvolvedObject.Name, "tandem-inventory-"+s.ns+"-")
		byColor[color] = append(byColor[color], e.Reason)
		for _, leak := range []string{token, secret} {
			if strings.Contains(e.Message, leak) {
				t.Errorf("event %s leaks a credential: %q", e.Reason, e.Message)
			}
		}
	}
	for color, reasons := range map[string][]string{
		"blue":  {"Candidate", "Applied", "Verified", "TrafficSwitched", "Promoted"},
		"green": {"Candidate", "Applied", "VerificationFailed", "ReleaseFailed", "Reverted"},
	} {
		got := strings.Join(byColor[color], ",")
		for _, r := range reasons {
			if !strings.Contains(","+got+",", ","+r+",") {
				t.Errorf("%s events %s lack %s", color, got, r)
			}
		}
	}

	// The failing receivers: 403 is not retried; 500 gives up after 5
	// attempts; both are logged and counted, without a secret.
	s.waitEvent("the 500 receiver given up", 2*time.Minute, func(e logEvent) bool {
		return e["phase"] == "notify" && e["outcome"] == "failed" && e["attempts"] == float64(5)
	})
	if n := forbidden.Count(); n != 2 {
		t.Errorf("the 403 receiver got %d requests, want 2 (one per outcome, no retries)", n)
	}
	if n := failing.Count(); n < 5 || n > 10 {
		t.Errorf("the 500 receiver got %d requests, want 5 per outcome at most", n)
	}
	if v, _ := metric(scrape(t, s), "tandem_notifications_total", "kind=webhook", "outcome=failed"); v < 3 {
		t.Errorf("tandem_notifications_total{kind=webhook,outcome=failed} = %v, want at least 3", v)
	}
	if v, _ := metric(scrape(t, s), "tandem_notifications_total", "kind=commit-status", "outcome=delivered"); v != 4 {
		t.Errorf("tandem_notifications_total{kind=commit-status,outcome=delivered} = %v, want 4", v)
	}
	for _, leak := range []string{token, secret} {
		if s.agent.LogContains(leak) {
			t.Errorf("the agent log holds a credential")
		}
	}

	// A commit that drops the client: green (which kept the failed
	// client-green, scaled down) is applied without it, and it is pruned.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	if err := os.Remove(filepath.Join(s.clone, "bundles", s.ns, "app", "client.yaml")); err != nil {
		t.Fatal(err)
	}
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", "resources:\n- server.yaml\n")
	s.push("drop the client")
	want(t, s.waitCommits(3)[0], "promoted")
	pruned := s.waitEventReason("Pruned")
	if pruned.InvolvedObject.Name != "tandem-inventory-"+s.ns+"-green" || !strings.Contains(pruned.Message, "pruned 2 objects of green") {
		t.Errorf("Pruned event: %s %q", pruned.InvolvedObject.Name, pruned.Message)
	}
}

func scrape(t *testing.T, s *scenario) string {
	t.Helper()
	code, body := httpGet(t, metricsURL(t, s.agent)+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	return body
}

// TestSoakFailureIsSeen: a release that degrades during its soak leaves
// Degraded and FlippedBack events, and a flipped-back notification before
// the reverted one.
func TestSoakFailureIsSeen(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	spec := strings.Replace(s.read("bundles/"+s.ns+"/bundle.yaml"), "scaleDownAfter: never", "scaleDownAfter: never\n  soak: 40s", 1)
	s.write("bundles/"+s.ns+"/bundle.yaml", spec)
	s.push("soak for 40s")
	hooks := testenv.NewRecorder(t, 200)
	s.start("--notify-url", hooks.URL, "--notify-format", "json")
	want(t, s.waitCommits(1)[0], "promoted")
	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	want(t, s.waitCommits(2)[0], "promoted")
	patch := `{"spec":{"template":{"spec":{"containers":[{"name":"server","image":"example/server:v2-crash"}]}}}}`
	if _, err := s.cs.AppsV1().Deployments(s.ns).Patch(s.ctx, "server-green", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	reverted := s.waitCommits(3)[0]
	want(t, reverted, "reverted")

	var results []string
	for range 4 {
		var o notify.Outcome
		if err := json.Unmarshal(hooks.Next(t, "notification").Body, &o); err != nil {
			t.Fatal(err)
		}
		results = append(results, o.Result)
		if o.Result == "flipped-back" && (o.Color != "green" || o.Live != "blue" || o.SourceCommit != v2 || !strings.Contains(o.Reason, "server-green")) {
			t.Errorf("flipped-back notification %+v", o)
		}
		if o.Result == "reverted" && (o.SourceCommit != v2 || o.AgentCommit != reverted.Hash) {
			t.Errorf("reverted notification %+v", o)
		}
	}
	if got := strings.Join(results, ","); got != "promoted,promoted,flipped-back,reverted" {
		t.Errorf("notifications %s", got)
	}
	deg := s.waitEventReason("Degraded")
	back := s.waitEventReason("FlippedBack")
	if deg.InvolvedObject.Name != "tandem-inventory-"+s.ns+"-green" || !strings.Contains(deg.Message, "server-green") ||
		back.InvolvedObject.Name != "tandem-inventory-"+s.ns+"-blue" || back.Type != corev1.EventTypeWarning ||
		!strings.Contains(back.Message, "traffic flipped back to blue: green degraded") {
		t.Errorf("events:\n%s %s: %s\n%s %s: %s", deg.Reason, deg.InvolvedObject.Name, deg.Message, back.Reason, back.InvolvedObject.Name, back.Message)
	}
}
