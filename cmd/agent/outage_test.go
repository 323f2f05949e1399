package main

// Outages: kube-apiserver and etcd stopped and restarted during verification
// and during the flip, and the Git remote unreachable during the commit.
// These tests stop parts of a control plane, so they run against their own
// testenv, never the package's shared one.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/testenv"
)

// outageFor is how long each dependency stays down.
const outageFor = 6 * time.Second

// TestOutage runs one bundle through six releases on a private control
// plane, each hit by one outage: kube-apiserver down during verification,
// during the flip; etcd down during verification, during the flip; the Git
// remote gone during the promotion commit. Every release must be promoted
// once the dependency is back (never reverted because of an outage). For
// kube-apiserver and Git the agent must say so in its log and
// tandem_transient_errors_total on /metrics must grow. An etcd outage
// reaches the agent only as slowness (the API server answers reads from its
// watch cache and holds writes), so there it is logged when seen, not
// required.
func TestOutage(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	oe, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		t.Fatalf("start a private control plane for outages: %v", err)
	}
	t.Cleanup(func() { // after the agent's own cleanup stopped it
		if err := oe.Stop(); err != nil {
			t.Errorf("stop the private control plane: %v", err)
		}
	})
	cs, err := oe.Client()
	if err != nil {
		t.Fatal(err)
	}
	apps := []string{"client", "server"}
	// The health timeout leaves the control plane its own recovery time:
	// after etcd comes back, kube-apiserver's etcd client can sit in gRPC
	// reconnect backoff for most of a minute (its log goes quiet from the
	// last failed dial until then), and the controller-manager creates no
	// pod meanwhile. A release must not be reverted for that.
	s := newScenario(t, "revert", "3m", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	s.ctx, s.cs = ctx, cs
	l := newLedger()
	l.candidate(s.git(s.clone, "rev-parse", "HEAD"), "promoted")
	s.start("--kubeconfig", oe.Kubeconfig)
	base := metricsURL(t, s.agent)
	s.waitOutcome(l.candidates[0], 2*time.Minute)
	s.invariants(l, apps...)

	// during says whether the phase of the release was still under way
	// when the last outage began (its event not yet logged).
	var during bool
	down := func(c testenv.Component, phase, cand string) func() {
		during = !s.hasEvent(phaseOf(phase, cand, true)) && !s.hasEvent(phaseOf(phase, cand, false))
		start := time.Now()
		if err := oe.StopComponent(c); err != nil {
			t.Fatalf("stop %s: %v", c, err)
		}
		return func() {
			if rest := outageFor - time.Since(start); rest > 0 {
				time.Sleep(rest)
			}
			if err := oe.StartComponent(ctx, c); err != nil {
				t.Fatalf("start %s again: %v", c, err)
			}
			t.Logf("%s was down for %s", c, time.Since(start).Round(100*time.Millisecond))
		}
	}
	cases := []struct {
		name string
		dep  string // the transient_errors_total label the outage must raise
		// hit waits for the moment, takes the dependency down and returns
		// what brings it back.
		hit func(cand string) (restore func())
		// felt reports whether the agent's log since event mark shows it
		// met the outage.
		felt func(cand string, mark int) bool
	}{
		{"apiserver-during-verification", "cluster", func(cand string) func() {
			s.waitEvent("apply event", time.Minute, phaseOf("apply", cand, true))
			return down(testenv.APIServer, "verify", cand)
		}, func(cand string, mark int) bool {
			// Verification of simulated pods takes well under a second and
			// the API server takes up to its stop grace to go: the outage
			// may be met first by the flip that follows. Either is the
			// agent riding out an outage that began during verification.
			return s.transientFor(cand, "verify", mark) || s.transientFor(cand, "flip", mark)
		}},
		{"apiserver-during-flip", "cluster", func(cand string) func() {
			s.waitEvent("verified event", 2*time.Minute, phaseOf("verify", cand, true))
			return down(testenv.APIServer, "flip", cand)
		}, func(cand string, mark int) bool { return s.transientFor(cand, "flip", mark) }},
		{"etcd-during-verification", "", func(cand string) func() {
			s.waitEvent("apply event", time.Minute, phaseOf("apply", cand, true))
			return down(testenv.Etcd, "verify", cand)
		}, func(cand string, mark int) bool { return s.transientFor(cand, "verify", mark) }},
		{"etcd-during-flip", "", func(cand string) func() {
			s.waitEvent("verified event", 2*time.Minute, phaseOf("verify", cand, true))
			return down(testenv.Etcd, "flip", cand)
		}, func(cand string, mark int) bool { return s.transientFor(cand, "flip", mark) }},
		{"git-remote-gone-during-commit", "git", func(cand string) func() {
			// Gone from the moment the candidate is applied, so that the
			// promotion commit meets it whatever the timing.
			s.waitEvent("apply event", time.Minute, phaseOf("apply", cand, true))
			during = true // the commit waits for the remote (checked below)
			away := s.remote + ".away"
			if err := os.Rename(s.remote, away); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			return func() {
				s.waitEvent("failed commit", 2*time.Minute, func(e logEvent) bool {
					return e.str("phase") == "commit" && e.str("error") != ""
				})
				if rest := outageFor - time.Since(start); rest > 0 {
					time.Sleep(rest)
				}
				if err := os.Rename(away, s.remote); err != nil {
					t.Fatal(err)
				}
				t.Logf("the Git remote was gone for %s", time.Since(start).Round(100*time.Millisecond))
			}
		}, func(_ string, mark int) bool {
			return s.hasEventSince(mark, func(e logEvent) bool { return e.str("phase") == "commit" && e.str("error") != "" })
		}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			outer := s.t
			s.t = t
			defer func() { s.t = outer }()
			before := map[string]float64{}
			for _, dep := range []string{"cluster", "git"} {
				before[dep] = transientErrors(t, base, dep)
			}
			mark := len(s.events())
			image := fmt.Sprintf("example/server:outage%d", i+1)
			s.setImage("server", image)
			cand := s.push("server " + image + " (" + tc.name + ")")
			l.candidate(cand, "promoted")
			restore := tc.hit(cand)
			restore()
			s.waitOutcome(cand, 4*time.Minute)
			s.settledAt("after the outage")
			live := s.invariants(l, apps...)
			if n := countResults(s.agentCommits(), "reverted", cand); n != 0 {
				t.Fatalf("the agent reverted %s because of an outage", contract.Short(cand))
			}
			felt := tc.felt(cand, mark)
			var grew []string
			for _, dep := range []string{"cluster", "git"} {
				if after := transientErrors(t, base, dep); after > before[dep] {
					grew = append(grew, fmt.Sprintf("%s +%.0f", dep, after-before[dep]))
				}
			}
			t.Logf("%s: phase under way when the outage began: %v; promoted to %s after the outage; agent log shows it: %v; tandem_transient_errors_total: %s",
				tc.name, during, live, felt, strings.Join(grew, ", "))
			if !during {
				t.Errorf("%s: the phase was over before the outage began; the case proved nothing", tc.name)
			}
			if tc.dep != "" {
				if !felt {
					t.Errorf("the agent's log does not show the outage (%s)\n%s", tc.name, s.agent.LogTail())
				}
				if !strings.Contains(strings.Join(grew, ","), tc.dep+" +") {
					t.Errorf("tandem_transient_errors_total{dependency=%q} did not grow during %s", tc.dep, tc.name)
				}
			}
		})
	}
}

// transientFor reports whether the agent logged, while releasing candidate,
// an unreachable API server in phase: an error of the phase (the driver
// then retries it), a retry of the phase, or a wait of the phase riding an
// outage out.
func (s *scenario) transientFor(candidate, phase string, mark int) bool {
	op := map[string]string{"verify": "wait for health", "flip": "wait for EndpointSlices"}[phase]
	return s.hasEventSince(mark, func(e logEvent) bool {
		switch {
		case e.str("phase") == "retry" && e.str("detail") == phase:
			return true
		case e.str("dependency") == "cluster" && e.str("op") == op:
			return true
		}
		return e.str("phase") == phase && e.str("commit") == contract.Short(candidate) && e.str("error") != ""
	})
}

// hasEventSince is hasEvent for the events after the first mark ones.
func (s *scenario) hasEventSince(mark int, match func(logEvent) bool) bool {
	evs := s.events()
	for _, e := range evs[min(mark, len(evs)):] {
		if match(e) {
			return true
		}
	}
	return false
}
