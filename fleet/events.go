package fleet

import (
	"context"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/internal/redact"
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
	reasonSuspended     = "Suspended"
	reasonResumed       = "Resumed"
)

// maxEventMessage bounds an Event's message (events.k8s.io allows 1 kB).
const maxEventMessage = 1024

// eventer records Kubernetes Events about a bundle on the inventory
// ConfigMap of the color concerned (tandem-inventory-<bundle>-<color> in
// the bundle's namespace), so `kubectl -n shop get events` tells the story
// of each release, and `kubectl describe configmap` shows the color's. It
// is client-go's recorder: events are sent in the background, similar
// events are aggregated, and each object and reason is rate-limited (a
// burst of 25, then one per 5 minutes).
//
// One worker looks up each ConfigMap's uid (cached for uidTTL; describe
// matches events by uid) and hands the events to the recorder in order; a
// full queue drops events rather than delay a release.
type eventer struct {
	b    record.EventBroadcaster
	rec  record.EventRecorder
	cs   kubernetes.Interface
	q    chan pendingEvent
	done chan struct{}
	uids map[string]cachedUID // by namespace/name; the worker's alone

	mu     sync.Mutex
	closed bool // q is closed: emit drops
}

// pendingEvent is an Event waiting for its object's uid.
type pendingEvent struct {
	ref         corev1.ObjectReference
	annotations map[string]string
	typ, reason string
	msg         string
}

type cachedUID struct {
	uid types.UID
	at  time.Time
}

// uidTTL bounds how long a ConfigMap's uid is trusted (a bundle removed and
// added again gets new inventories).
const uidTTL = time.Minute

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
	e := &eventer{b: b, rec: b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "tandem-agent"}), cs: cs,
		q: make(chan pendingEvent, 256), done: make(chan struct{}), uids: map[string]cachedUID{}}
	go e.work()
	return e
}

// work records queued events in order, each with its object's uid.
func (e *eventer) work() {
	defer close(e.done)
	for p := range e.q {
		p.ref.UID = e.uid(p.ref.Namespace, p.ref.Name)
		e.rec.AnnotatedEventf(&p.ref, p.annotations, p.typ, p.reason, "%s", p.msg)
	}
}

// uid is the uid of ConfigMap ns/name, "" when it cannot be read (the
// event is recorded all the same; only describe will not list it).
func (e *eventer) uid(ns, name string) types.UID {
	key := ns + "/" + name
	if c, ok := e.uids[key]; ok && time.Since(c.at) < uidTTL {
		return c.uid
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cm, err := e.cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	e.uids[key] = cachedUID{uid: cm.UID, at: time.Now()}
	return cm.UID
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
	p := pendingEvent{
		ref:         corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: ns, Name: applier.InventoryName(bundle, color)},
		annotations: map[string]string{contract.LabelBundle: bundle, contract.LabelColor: color},
		typ:         typ, reason: reason, msg: redact.Event(msg), // redacted, one line, bounded
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return
	}
	select {
	case e.q <- p:
	default: // the API server is far behind: drop rather than block a release
	}
}

// stop records what is queued, then ends the broadcaster; later events
// are dropped.
func (e *eventer) stop() {
	if e == nil {
		return
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	close(e.q)
	e.mu.Unlock()
	select {
	case <-e.done:
	case <-time.After(5 * time.Second): // an API server that does not answer
	}
	e.b.Shutdown()
}

// cut shortens s to n bytes at most, on a rune boundary, marking the cut.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n-3], "") + "..."
}
