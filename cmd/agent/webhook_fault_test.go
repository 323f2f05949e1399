package main

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// admissionWebhook is a validating webhook on 127.0.0.1 (the test's
// kube-apiserver runs locally) for the Deployments of one namespace: it
// denies any image containing ":denied" with a policy message, and while
// slow is set it answers after the API server's timeout.
type admissionWebhook struct {
	slow     atomic.Bool
	timeouts atomic.Int32
	mu       sync.Mutex
	denied   int
}

const webhookDenial = "images tagged :denied are not allowed by the platform policy"

func (w *admissionWebhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil || review.Request == nil {
		http.Error(rw, "bad review", http.StatusBadRequest)
		return
	}
	if w.slow.Load() {
		w.timeouts.Add(1)
		select {
		case <-time.After(3 * time.Second): // the API server gives up after 1s
		case <-r.Context().Done():
		}
		return
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if strings.Contains(string(review.Request.Object.Raw), ":denied") {
		w.mu.Lock()
		w.denied++
		w.mu.Unlock()
		resp.Allowed = false
		resp.Result = &metav1.Status{Code: http.StatusForbidden, Message: webhookDenial}
	}
	review.Response = resp
	_ = json.NewEncoder(rw).Encode(review)
}

// installWebhook starts w over HTTPS and registers it, failurePolicy Fail
// with a 1s timeout, for Deployments in ns.
func (s *scenario) installWebhook(w *admissionWebhook, ns string) {
	s.t.Helper()
	srv := httptest.NewTLSServer(w)
	s.t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	url := srv.URL + "/validate"
	fail, none, timeout := admissionregistrationv1.Fail, admissionregistrationv1.SideEffectClassNone, int32(1)
	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "tandem-test-" + ns},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "policy.tandem.test",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: ca},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}, Rule: admissionregistrationv1.Rule{APIGroups: []string{"apps"}, APIVersions: []string{"v1"}, Resources: []string{"deployments"}}}},
			NamespaceSelector:       &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": ns}},
			FailurePolicy:           &fail,
			SideEffects:             &none,
			TimeoutSeconds:          &timeout,
			AdmissionReviewVersions: []string{"v1"},
		}},
	}
	if _, err := s.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(s.ctx, cfg, metav1.CreateOptions{}); err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() {
		_ = s.cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Delete(context.Background(), cfg.Name, metav1.DeleteOptions{})
	})
}

// TestAdmissionWebhookDeniesOrTimesOut: an admission webhook that denies
// a release's Deployment fails the release with the webhook's message:
// the revert is committed and names it, traffic stays on the live color.
// A webhook that times out (the API server's 500) is retried like an
// outage: once it answers again the release promotes, with no revert.
func TestAdmissionWebhookDeniesOrTimesOut(t *testing.T) {
	s := newScenario(t, "revert", "1m", app{"server", "example/server:v1"})
	s.start()
	s.waitBundle(s.ns, "promoted", 1)
	w := &admissionWebhook{}
	s.installWebhook(w, s.ns)
	time.Sleep(2 * time.Second) // the API server's webhook informer sees the configuration

	s.setImage("server", "example/server:denied")
	s.push("server :denied")
	body := s.body(s.waitBundle(s.ns, "reverted", 2))
	t.Logf("reverted: %s", body)
	for _, want := range []string{`admission webhook "policy.tandem.test" denied the request`, webhookDenial} {
		if !strings.Contains(body, want) {
			t.Errorf("revert commit does not name the webhook's denial %q:\n%s", want, body)
		}
	}
	s.wantSelectors("blue", "server")

	w.slow.Store(true)
	s.setImage("server", "example/server:v3")
	s.push("server v3 while the webhook times out")
	deadline := time.Now().Add(2 * time.Minute)
	for w.timeouts.Load() < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook saw %d requests while slow\n%s", w.timeouts.Load(), s.agent.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if cs := s.bundleCommits(s.ns); len(cs) != 2 {
		t.Fatalf("while the webhook times out the agent wrote %q (%d commits), want nothing new", cs[0].Subject, len(cs))
	}
	s.wantSelectors("blue", "server")
	w.slow.Store(false)
	s.waitBundle(s.ns, "promoted", 3)
	reverts := 0
	for _, c := range s.bundleCommits(s.ns) {
		if c.Trailers["Tandem-Result"] == "reverted" {
			reverts++
		}
	}
	if reverts != 1 {
		t.Errorf("%d reverts, want only the denied release's", reverts)
	}
	s.wantSelectors("green", "server")
}
