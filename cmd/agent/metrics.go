package main

import (
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/promote"
)

// metrics are the agent's Prometheus series. They hold no credentials and
// no free text beyond bundle, color, phase and commit.
type metrics struct {
	reg          *prometheus.Registry
	results      *prometheus.CounterVec
	phase        *prometheus.HistogramVec
	live         *prometheus.GaugeVec
	lastSync     prometheus.Gauge
	poll         prometheus.Histogram
	sync         *prometheus.HistogramVec
	transient    *prometheus.CounterVec
	untrusted    *prometheus.CounterVec
	refused      *prometheus.CounterVec
	pruned       *prometheus.CounterVec
	checkRuns    *prometheus.CounterVec
	checkTime    *prometheus.HistogramVec
	state        *prometheus.GaugeVec
	buildInfo    *prometheus.GaugeVec
	mu           sync.Mutex
	liveByBundle map[string][2]string // bundle → {color, commit} currently exported
	states       map[string]*bundleState
}

// bundleState is what makes up a bundle's state gauge (promote.Overall).
type bundleState struct {
	driver             promote.BundleState
	waiting, suspended bool
	exported           promote.BundleState
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_releases_total",
			Help: "Outcomes per bundle: promoted, reverted, held.",
		}, []string{"bundle", "result"}),
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_phase_duration_seconds",
			Help:    "Time spent per lifecycle phase (render, apply, verify, flip, commit).",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"bundle", "phase"}),
		live: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_live_info",
			Help: "1 for the color and source commit each bundle's stable Services select.",
		}, []string{"bundle", "color", "commit"}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_last_sync_timestamp_seconds",
			Help: "Unix time of the last successful Git poll.",
		}),
		poll: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tandem_git_poll_duration_seconds",
			Help:    "Duration of a Git poll (head check, and fetch when the tip moved).",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30},
		}),
		sync: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_sync_duration_seconds",
			Help:    "Duration of one pass of the loop: the head check and, on a new tip, checkout, bundle discovery, diffs and renders of changed bundles. tip is unchanged or new.",
			Buckets: []float64{.001, .005, .01, .05, .1, .5, 1, 5, 30, 120},
		}, []string{"tip"}),
		transient: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_transient_errors_total",
			Help: "Errors retried without failing a release, by dependency (git, cluster).",
		}, []string{"dependency"}),
		untrusted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_untrusted_commits_total",
			Help: "Commits without a trusted signature that held a candidate (--verify-commits), per bundle; each commit counts once until a candidate is accepted.",
		}, []string{"bundle"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_bundle_errors_total",
			Help: "Bundles refused at a tip (a broken bundle.yaml, release.yaml or name clash), by bundle file.",
		}, []string{"file"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_bundles_pruned_total",
			Help: "Bundles that left the repository and whose objects were deleted, by bundle.",
		}, []string{"bundle"}),
		checkRuns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_check_runs_total",
			Help: "Runs of each check of spec.checks, by bundle, check and verdict (passed, failed, inconclusive).",
		}, []string{"bundle", "check", "verdict"}),
		checkTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "tandem_check_duration_seconds",
			Help:    "Duration of each check run, by bundle and check.",
			Buckets: []float64{.1, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900},
		}, []string{"bundle", "check"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_bundle_state",
			Help: "1 for each bundle's current state: pending, live, verifying, soaking, recovering, held, failed, waiting or suspended (one series per bundle).",
		}, []string{"bundle", "state"}),
		buildInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_build_info",
			Help: "1, labelled with the agent's version and the Go version that built it.",
		}, []string{"version", "goversion"}),
		liveByBundle: map[string][2]string{},
		states:       map[string]*bundleState{},
	}
	m.buildInfo.WithLabelValues(version, runtime.Version()).Set(1)
	m.reg.MustRegister(m.state, m.buildInfo, m.results, m.phase, m.live, m.lastSync, m.poll, m.sync, m.transient, m.untrusted, m.refused, m.pruned, m.checkRuns, m.checkTime,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setLive exports the live color and commit of a bundle, replacing the old series.
func (m *metrics) setLive(bundle, color, commit string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if old, ok := m.liveByBundle[bundle]; ok {
		m.live.DeleteLabelValues(bundle, old[0], old[1])
	}
	m.liveByBundle[bundle] = [2]string{color, commit}
	m.live.WithLabelValues(bundle, color, commit).Set(1)
}

// dropLive removes a bundle's live and state series (it left the repository).
func (m *metrics) dropLive(bundle string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if b := m.states[bundle]; b != nil && b.exported != "" {
		m.state.DeleteLabelValues(bundle, string(b.exported))
	}
	delete(m.states, bundle)
	if old, ok := m.liveByBundle[bundle]; ok {
		m.live.DeleteLabelValues(bundle, old[0], old[1])
		delete(m.liveByBundle, bundle)
	}
}

func (m *metrics) observePhase(bundle, phase string, d time.Duration) {
	m.phase.WithLabelValues(bundle, phase).Observe(d.Seconds())
}

// observeCheck counts a check run and its duration.
func (m *metrics) observeCheck(bundle string, r *check.Result) {
	if r == nil {
		return
	}
	m.checkRuns.WithLabelValues(bundle, r.Name, r.Verdict).Inc()
	m.checkTime.WithLabelValues(bundle, r.Name).Observe(r.Duration.Seconds())
}

// setDriverState, setWaiting and setSuspended update a part of a bundle's
// state and export the state they make (promote.Overall).
func (m *metrics) setDriverState(bundle string, s promote.BundleState) {
	m.updateState(bundle, func(b *bundleState) { b.driver = s })
}

func (m *metrics) setWaiting(bundle string, on bool) {
	m.updateState(bundle, func(b *bundleState) { b.waiting = on })
}

func (m *metrics) setSuspended(bundle string, on bool) {
	m.updateState(bundle, func(b *bundleState) { b.suspended = on })
}

func (m *metrics) updateState(bundle string, edit func(*bundleState)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	b := m.states[bundle]
	if b == nil {
		b = &bundleState{}
		m.states[bundle] = b
	}
	edit(b)
	now := promote.Overall(b.driver, b.waiting, b.suspended)
	if now == b.exported {
		return
	}
	if b.exported != "" {
		m.state.DeleteLabelValues(bundle, string(b.exported))
	}
	b.exported = now
	m.state.WithLabelValues(bundle, string(now)).Set(1)
}
