package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// visConfig is what `tandem-agent run` is told about events, commit
// statuses and notifications.
type visConfig struct {
	Events          bool
	NotifyURLs      []string
	NotifyURLFile   string
	NotifyFormat    string
	NotifySecret    string
	StatusProvider  string
	StatusURL       string
	StatusRepo      string
	StatusTokenFile string
	StatusTarget    string
}

// register adds the flags to fs.
func (v *visConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&v.Events, "events", true, "record Kubernetes Events for each release step in the bundle's namespace")
	fs.Func("notify-url", "POST one JSON document per outcome (promoted, reverted, held, flipped-back) to this URL; repeatable", func(s string) error {
		v.NotifyURLs = append(v.NotifyURLs, s)
		return nil
	})
	fs.StringVar(&v.NotifyURLFile, "notify-url-file", "", "file with more --notify-url URLs, one a line (for URLs that hold a token, such as Slack's; read at start)")
	fs.StringVar(&v.NotifyFormat, "notify-format", "json", "body of --notify-url requests: json, or slack (Slack and Mattermost incoming webhooks)")
	fs.StringVar(&v.NotifySecret, "notify-secret-file", "", "file holding a key to sign --notify-url bodies (header X-Tandem-Signature-256: sha256=HMAC); reloaded when it changes")
	fs.StringVar(&v.StatusProvider, "commit-status", "", "set commit statuses on each candidate's source commit: github, gitlab or gitea (Forgejo too)")
	fs.StringVar(&v.StatusURL, "commit-status-url", "", "API base URL (default https://api.github.com or https://gitlab.com; e.g. https://ghe.example.com/api/v3; required for gitea)")
	fs.StringVar(&v.StatusRepo, "commit-status-repo", "", "owner/repo (github, gitea) or project id or path (gitlab) of the tracked repository")
	fs.StringVar(&v.StatusTokenFile, "commit-status-token-file", "", "file holding the API token for commit statuses (reloaded when it changes; never logged)")
	fs.StringVar(&v.StatusTarget, "commit-status-target-url", "", "link shown with each commit status (a dashboard or runbook; optional)")
}

// notifyOptions is the notify.Options of the flags (destinations only).
func (v *visConfig) notifyOptions() (notify.Options, error) {
	var o notify.Options
	urls := v.NotifyURLs
	if v.NotifyURLFile != "" {
		data, err := os.ReadFile(v.NotifyURLFile)
		if err != nil {
			return o, fmt.Errorf("--notify-url-file: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				urls = append(urls, line)
			}
		}
	}
	for _, u := range urls {
		o.Webhooks = append(o.Webhooks, notify.Webhook{URL: u, Format: v.NotifyFormat, SecretFile: v.NotifySecret})
	}
	if v.StatusProvider != "" {
		o.Status = &notify.StatusOptions{Provider: v.StatusProvider, BaseURL: v.StatusURL, Repo: v.StatusRepo,
			TokenFile: v.StatusTokenFile, TargetURL: v.StatusTarget}
	}
	return o, nil
}

// validate checks the flags (and that the files they name can be read).
func (v *visConfig) validate() error {
	var errs []error
	if v.NotifyFormat != notify.FormatJSON && v.NotifyFormat != notify.FormatSlack {
		errs = append(errs, fmt.Errorf("--notify-format %q: want json or slack", v.NotifyFormat))
	}
	if v.StatusProvider == "" && (v.StatusURL != "" || v.StatusRepo != "" || v.StatusTokenFile != "" || v.StatusTarget != "") {
		errs = append(errs, errors.New("--commit-status-* flags need --commit-status github, gitlab or gitea"))
	}
	if len(errs) == 0 {
		o, err := v.notifyOptions()
		if err == nil {
			_, err = notify.New(o)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// visibility turns the drivers' notes into what users see outside the
// logs: Kubernetes Events, commit statuses and notifications. It follows
// each bundle's release from its notes (candidate, evidence, reason) so
// every outcome carries its source commit and why.
type visibility struct {
	log    zerolog.Logger
	events *eventer
	notify *notify.Notifier
	sent   *prometheus.CounterVec
	cancel context.CancelFunc // stops the notifier

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

// newVisibility starts the event recorder and the notifier of c until ctx
// ends or stop is called.
func newVisibility(ctx context.Context, c *visConfig, cfg *rest.Config, m *metrics, log zerolog.Logger) (*visibility, error) {
	v := &visibility{log: log, bundles: map[string]*release{},
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_notifications_total",
			Help: "Notifications and commit statuses by kind (webhook, commit-status) and outcome (delivered, failed, dropped).",
		}, []string{"kind", "outcome"})}
	m.reg.MustRegister(v.sent)
	if c.Events {
		cs, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("events: %w", err)
		}
		v.events = newEventer(cs)
	}
	o, err := c.notifyOptions()
	if err != nil {
		return nil, err
	}
	if len(o.Webhooks) > 0 || o.Status != nil {
		o.OnResult = v.delivered
		n, err := notify.New(o)
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

// stop gives queued notifications drainTimeout, then ends the notifier
// (what is still queued is dropped, and counted) and the event recorder.
func (v *visibility) stop() {
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

// delivered logs and counts what became of a notification or status.
func (v *visibility) delivered(r notify.Result) {
	v.sent.WithLabelValues(r.Kind, r.Outcome).Inc()
	ev := v.log.Debug()
	if r.Outcome != notify.Delivered {
		ev = v.log.Warn().Err(r.Err)
	}
	ev.Str("phase", "notify").Str("kind", r.Kind).Str("target", r.Target).Str("subject", r.Subject).
		Str("outcome", r.Outcome).Int("attempts", r.Attempts).Msg("notification " + r.Outcome)
}

// track remembers the namespace of b (its events go there).
func (a *agent) track(b *render.Bundle) {
	if a.vis == nil {
		return
	}
	a.vis.mu.Lock()
	defer a.vis.mu.Unlock()
	a.vis.rel(b.Name).namespace = b.Spec.Namespace
}

// observe is called by the notifier for every note of a bundle's driver.
func (a *agent) observe(bundle string, n promote.Note) {
	if a.vis != nil {
		a.vis.observe(bundle, n)
	}
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

func (v *visibility) rel(bundle string) *release {
	r := v.bundles[bundle]
	if r == nil {
		r = &release{}
		v.bundles[bundle] = r
	}
	return r
}

// observe turns one note into events, statuses and notifications.
func (v *visibility) observe(bundle string, n promote.Note) {
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
	case "candidate":
		if r.inflight && r.candidate != n.Commit {
			v.status(r.candidate, bundle, notify.StateCanceled, "superseded by "+contract.Short(n.Commit)+" before it was verified")
		}
		*r = release{namespace: r.namespace, live: r.live, candidate: n.Commit, inflight: true}
		v.status(n.Commit, bundle, notify.StatePending, "tandem is applying and verifying this commit")
	case "idle":
		v.status(n.Commit, bundle, notify.StateSuccess, "already live: this commit renders what runs")
		r.inflight = false
	case "apply":
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
	case "verify":
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
	case "flip":
		announce()
		if n.Err == nil {
			msg := "stable Services now select " + n.Color
			if n.Reason == promote.ReasonWarmFlip {
				msg += ": " + n.Detail
			}
			event(n.Color, false, reasonSwitched, "%s", msg)
		}
	case "soak":
		if n.Err != nil && !transient {
			r.reason = n.Err.Error()
			event(n.Color, true, reasonDegraded, "%s degraded during the soak: %v", n.Color, n.Err)
		}
	case "flip-back":
		if n.Err == nil {
			from := r.live
			event(n.Color, true, reasonFlippedBack, "traffic flipped back to %s: %s degraded after the flip: %s", n.Color, from, r.reason)
			v.outcome(notify.Outcome{Bundle: bundle, Result: notify.ResultFlippedBack, Color: from, Live: n.Color,
				SourceCommit: r.candidate, Reason: r.reason})
			r.live = n.Color
		}
	case "fail":
		if n.Err == nil {
			if n.Commit != "" {
				r.candidate = n.Commit
			}
			r.reason = n.Detail
			event(n.Color, true, reasonReleaseFailed, "release of %s failed on %s: %s", contract.Short(n.Commit), n.Color, n.Detail)
		}
	case "commit":
		if n.Err != nil || n.Result == "" {
			return
		}
		v.committed(bundle, r, n)
	case "scale-down":
		if n.Err == nil {
			event(n.Color, false, reasonScaledDown, "previous color %s scaled to zero (objects kept)", n.Color)
		}
	case "recover":
		if n.Err == nil && n.Detail != "" {
			event(n.Color, true, reasonRecovering, "%s", n.Detail)
		}
	}
}

// committed reports an outcome that reached Git (or that a newer commit
// made moot): an event, the source commit's final status and a notification.
func (v *visibility) committed(bundle string, r *release, n promote.Note) {
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

func (v *visibility) status(commit, bundle string, st notify.State, desc string) {
	if v.notify != nil && commit != "" {
		v.notify.SetStatus(notify.Status{Commit: commit, Bundle: bundle, State: st, Description: desc})
	}
}

func (v *visibility) outcome(o notify.Outcome) {
	if v.notify != nil {
		v.notify.Notify(o)
	}
}
