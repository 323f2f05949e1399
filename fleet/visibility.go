package fleet

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Visibility turns the drivers' notes into what users see outside the
// logs: Kubernetes Events, commit statuses and notifications. It follows
// each bundle's release from its notes (candidate, evidence, reason) so
// every outcome carries its source commit and why.
type Visibility struct {
	onResult func(notify.Result)
	events   *eventer
	notify   *notify.Notifier
	sent     *prometheus.CounterVec
	cancel   context.CancelFunc // stops the notifier

	mu      sync.Mutex
	bundles map[string]*release // by bundle
}

// release is what the notes told so far about a bundle's release in flight.
type release struct {
	namespace string
	candidate string // source commit of the release in flight, or of the last one
	inflight  bool   // the candidate has no outcome yet
	announced bool   // the candidate's event was recorded
	evidence  string // the verification's evidence
	reason    string // why it failed
	live      string // the live color, as last committed
	color     string // the last color a note of this release named
}

// VisibilityOptions say what users see outside the logs.
type VisibilityOptions struct {
	// Events: record Kubernetes Events for each release step.
	Events bool
	// Notify are the notifications and commit statuses (none when empty).
	Notify notify.Options
	// OnResult, when set, hears what became of each notification or status
	// (after it is counted).
	OnResult func(notify.Result)
}

// NewVisibility starts the event recorder and the notifier of o until ctx
// ends or Stop is called; reg takes its metric.
func NewVisibility(ctx context.Context, o VisibilityOptions, cfg *rest.Config, reg prometheus.Registerer) (*Visibility, error) {
	v := &Visibility{onResult: o.OnResult, bundles: map[string]*release{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_notifications_total",
			Help: "Notifications and commit statuses by kind (webhook, commit-status) and outcome (delivered, failed, dropped).",
		}, []string{"kind", "outcome"})}
	reg.MustRegister(v.sent)
	if o.Events {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		v.events = newEventer(cs)
	}
	no := o.Notify
	if len(no.Webhooks) > 0 || no.Status != nil {
		no.OnResult = v.delivered
		n, err := notify.New(no)
		if err != nil {
			return nil, err
		}
		ctx, v.cancel = context.WithCancel(ctx)
		n.Start(ctx)
		v.notify = n
	}
	return v, nil
}

// drainTimeout bounds how long a stopping agent waits for notifications
// and statuses still queued (a revert's, say, made just before SIGTERM).
const drainTimeout = 5 * time.Second

// Stop gives queued notifications drainTimeout, then ends the notifier
// (what is still queued is dropped, and counted) and the event recorder.
func (v *Visibility) Stop() {
	if v == nil {
		return
	}
	if v.notify != nil {
		ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
		v.notify.Drain(ctx)
		cancel()
		v.cancel()
		v.notify.Wait()
	}
	v.events.stop()
}

// delivered counts what became of a notification or status.
func (v *Visibility) delivered(r notify.Result) {
	v.sent.WithLabelValues(r.Kind, r.Outcome).Inc()
	if v.onResult != nil {
		v.onResult(r)
	}
}

// Track remembers the namespace of b (its events go there).
func (v *Visibility) Track(b *render.Bundle) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.rel(b.Name).namespace = b.Spec.Namespace
}

// eventColor is the color whose inventory an event goes to: the step's, or
// for a step that names none (a render error fails before any apply) the
// release's color so far, else the live one.
func (r *release) eventColor(color string) string {
	for _, c := range []string{color, r.color, r.live} {
		if c != "" {
			return c
		}
	}
	return ""
}

func (v *Visibility) rel(bundle string) *release {
	r := v.bundles[bundle]
	if r == nil {
		r = &release{}
		v.bundles[bundle] = r
	}
	return r
}

// Observe turns one note of bundle's driver into events, statuses and
// notifications.
func (v *Visibility) Observe(bundle string, n promote.Note) {
	if v == nil {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	r := v.rel(bundle)
	transient := n.Err != nil && errors.Is(n.Err, promote.ErrTransient)
	if n.Color != "" {
		r.color = n.Color
	}
	event := func(color string, warning bool, reason, format string, args ...any) {
		v.events.emit(r.namespace, bundle, r.eventColor(color), warning, reason, fmt.Sprintf(format, args...))
	}
	// The candidate's own event waits for the first step that names a color.
	announce := func() {
		if r.inflight && !r.announced && n.Color != "" {
			event(n.Color, false, reasonCandidate, "candidate %s for %s", contract.Short(r.candidate), n.Color)
			r.announced = true
		}
	}
	switch n.Phase {
	case promote.NoteCandidate:
		if r.inflight && r.candidate != n.Commit {
			v.status(r.candidate, bundle, notify.StateCanceled, "superseded by "+contract.Short(n.Commit)+" before it was verified")
		}
		*r = release{namespace: r.namespace, live: r.live, candidate: n.Commit, inflight: true}
		v.status(n.Commit, bundle, notify.StatePending, "tandem is applying and verifying this commit")
	case promote.NoteIdle:
		v.status(n.Commit, bundle, notify.StateSuccess, "already live: this commit renders what runs")
		r.inflight = false
	case promote.NoteApply:
		announce()
		switch {
		case n.Err == nil:
			event(n.Color, false, reasonApplied, "applied %s to %s: %s", contract.Short(n.Commit), n.Color, n.Detail)
			if n.Pruned > 0 {
				event(n.Color, false, reasonPruned, "pruned %d objects of %s that %s no longer has", n.Pruned, n.Color, contract.Short(n.Commit))
			}
		case !transient:
			event(n.Color, true, reasonApplyFailed, "applying %s to %s failed: %v", contract.Short(n.Commit), n.Color, n.Err)
		}
	case promote.NoteVerify:
		announce()
		switch {
		case n.Err == nil && n.Reason == promote.ReasonCancelled:
			event(n.Color, false, reasonSuperseded, "verification of %s on %s cancelled: a newer commit arrived", contract.Short(n.Commit), n.Color)
		case n.Err == nil && n.Reason == promote.ReasonNotWarm:
			// a warm flip-back found the color changed: an apply follows
		case n.Err == nil:
			r.evidence = n.Detail
			event(n.Color, false, reasonVerified, "%s verified on %s: %s", contract.Short(n.Commit), n.Color, n.Detail)
		case !transient:
			r.reason = n.Err.Error()
			event(n.Color, true, reasonVerifyFailed, "%s failed on %s: %v", contract.Short(n.Commit), n.Color, n.Err)
		}
	case promote.NoteFlip:
		announce()
		if n.Err == nil {
			msg := "stable Services now select " + n.Color
			if n.Reason == promote.ReasonWarmFlip {
				msg += ": " + n.Detail
			}
			event(n.Color, false, reasonSwitched, "%s", msg)
		}
	case promote.NoteSoak:
		if n.Err != nil && !transient {
			r.reason = n.Err.Error()
			event(n.Color, true, reasonDegraded, "%s degraded during the soak: %v", n.Color, n.Err)
		}
	case promote.NoteFlipBack:
		if n.Err == nil {
			from := r.live
			event(n.Color, true, reasonFlippedBack, "traffic flipped back to %s: %s degraded after the flip: %s", n.Color, from, r.reason)
			v.outcome(notify.Outcome{Bundle: bundle, Result: notify.ResultFlippedBack, Color: from, Live: n.Color,
				SourceCommit: r.candidate, Reason: r.reason})
			r.live = n.Color
		}
	case promote.NoteFail:
		if n.Err == nil {
			if n.Commit != "" {
				r.candidate = n.Commit
			}
			r.reason = n.Detail
			event(n.Color, true, reasonReleaseFailed, "release of %s failed on %s: %s", contract.Short(n.Commit), n.Color, n.Detail)
		}
	case promote.NoteCommit:
		if n.Err != nil || n.Result == "" || n.Result == promote.ResultSoaked {
			return // a soak record is no outcome of a release
		}
		v.committed(bundle, r, n)
	case promote.NoteScaleDown:
		if n.Err == nil {
			event(n.Color, false, reasonScaledDown, "previous color %s scaled to zero (objects kept)", n.Color)
		}
	case promote.NoteSuspend:
		reason := reasonSuspended
		if n.Reason == promote.ReasonResumed {
			reason = reasonResumed
		}
		event("", false, reason, "%s", n.Detail)
	case promote.NoteRecover:
		if n.Err == nil && n.Detail != "" {
			event(n.Color, true, reasonRecovering, "%s", n.Detail)
		}
	}
}

// committed reports an outcome that reached Git (or that a newer commit
// made moot): an event, the source commit's final status and a notification.
func (v *Visibility) committed(bundle string, r *release, n promote.Note) {
	o := notify.Outcome{Bundle: bundle, Result: n.Result, Color: n.Color, Live: n.Live, AgentCommit: n.Commit}
	recorded := "recorded in " + contract.Short(n.Commit)
	if n.Commit == "" {
		recorded = n.Detail
	}
	switch n.Result {
	case promote.ResultPromoted:
		o.SourceCommit, o.Evidence = n.LiveCommit, r.evidence
		v.events.emit(r.namespace, bundle, r.eventColor(n.Color), false, reasonPromoted,
			cut(fmt.Sprintf("promoted %s to %s (%s): %s", contract.Short(o.SourceCommit), n.Color, recorded, r.evidence), maxEventMessage))
		v.status(o.SourceCommit, bundle, notify.StateSuccess, "promoted to "+n.Color)
	default:
		o.SourceCommit, o.Reason, o.Evidence = r.candidate, r.reason, r.evidence
		reason := reasonReverted
		if n.Result == promote.ResultHeld {
			reason = reasonHeld
		}
		live := ""
		if n.Live != "" {
			live = "; traffic stays on " + n.Live
		}
		v.events.emit(r.namespace, bundle, r.eventColor(n.Color), true, reason,
			fmt.Sprintf("%s %s (%s): %s%s", n.Result, contract.Short(r.candidate), recorded, r.reason, live))
		v.status(r.candidate, bundle, notify.StateFailure, n.Result+": "+r.reason)
	}
	v.outcome(o)
	if n.Live != "" {
		r.live = n.Live
	}
	// The source stays known: a soak that fails later reverts it.
	r.inflight, r.announced, r.evidence, r.reason = false, false, "", ""
}

func (v *Visibility) status(commit, bundle string, st notify.State, desc string) {
	if v.notify != nil && commit != "" {
		v.notify.SetStatus(notify.Status{Commit: commit, Bundle: bundle, State: st, Description: desc})
	}
}

func (v *Visibility) outcome(o notify.Outcome) {
	if v.notify != nil {
		v.notify.Notify(o)
	}
}
