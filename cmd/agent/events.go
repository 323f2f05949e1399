package main

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/tandem-gitops/tandem/applier"
)

// Reasons of the Kubernetes Events the agent records, one per release step.
const (
	reasonCandidate     = "Candidate"
	reasonApplied       = "Applied"
	reasonApplyFailed   = "ApplyFailed"
	reasonPruned        = "Pruned"
	reasonVerified      = "Verified"
	reasonVerifyFailed  = "VerificationFailed"
	reasonSuperseded    = "Superseded"
	reasonSwitched      = "TrafficSwitched"
	reasonPromoted      = "Promoted"
	reasonDegraded      = "Degraded"
	reasonFlippedBack   = "FlippedBack"
	reasonReleaseFailed = "ReleaseFailed"
	reasonReverted      = "Reverted"
	reasonHeld          = "Held"
	reasonScaledDown    = "ScaledDown"
	reasonRecovering    = "Recovering"
)

// maxEventMessage bounds an Event's message (events.k8s.io allows 1 kB).
const maxEventMessage = 1024

// eventer records Kubernetes Events about a bundle on the inventory
// ConfigMap of the color concerned (tandem-inventory-<bundle>-<color> in
// the bundle's namespace), so `kubectl -n shop get events` tells the story
// of each release. It is client-go's recorder: events are sent in the
// background, similar events are aggregated, and each object and reason is
// rate-limited (a burst of 25, then one per 5 minutes).
type eventer struct {
	b   record.EventBroadcaster
	rec record.EventRecorder
}

// newEventer starts a broadcaster that writes core/v1 Events through cs.
func newEventer(cs kubernetes.Interface) *eventer {
	b := record.NewBroadcasterWithCorrelatorOptions(record.CorrelatorOptions{
		// Rate-limit per object and reason: a burst of one reason (say
		// many retries) never silences the outcome that follows it.
		SpamKeyFunc: func(e *corev1.Event) string {
			o := e.InvolvedObject
			return strings.Join([]string{e.Source.Component, o.Kind, o.Namespace, o.Name, e.Type, e.Reason}, "/")
		},
	})
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: cs.CoreV1().Events("")})
	return &eventer{b: b, rec: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "tandem-agent"})}
}

// emit records one Event; warning selects the Warning type. It never blocks
// on the API server.
func (e *eventer) emit(ns, bundle, color string, warning bool, reason, msg string) {
	if e == nil || ns == "" || color == "" {
		return
	}
	typ := corev1.EventTypeNormal
	if warning {
		typ = corev1.EventTypeWarning
	}
	ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: applier.InventoryName(bundle, color)}
	e.rec.AnnotatedEventf(ref, map[string]string{applier.LabelBundle: bundle, applier.LabelColor: color},
		typ, reason, "%s", cut(msg, maxEventMessage))
}

// stop ends the broadcaster.
func (e *eventer) stop() {
	if e != nil {
		e.b.Shutdown()
	}
}

// cut shortens s to n bytes at most, on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
