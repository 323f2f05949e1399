package promote

import (
	"testing"
	"time"
)

func TestSummaryAndOverall(t *testing.T) {
	live := State{Live: "blue", LiveCommit: "v1", Last: ResultPromoted}
	with := func(s State, edit func(*State)) State { edit(&s); return s }
	for _, tc := range []struct {
		name string
		s    State
		want BundleState
	}{
		{"nothing released yet", State{}, BundlePending},
		{"recovering after a start", with(live, func(s *State) { s.Phase = PhaseRecovering }), BundleRecovering},
		{"applying a candidate", with(live, func(s *State) { s.Phase = PhaseDeploying }), BundleVerifying},
		{"waiting for health", with(live, func(s *State) { s.Phase = PhaseVerifying }), BundleVerifying},
		{"running checks", with(live, func(s *State) { s.Phase = PhaseChecking }), BundleVerifying},
		{"recording the outcome", with(live, func(s *State) { s.Phase = PhaseRecording }), BundleVerifying},
		{"soaking", with(live, func(s *State) { s.Phase = PhaseSoaking }), BundleSoaking},
		{"promoted, idle", live, BundleLive},
		{"last release reverted", with(live, func(s *State) { s.Last = ResultReverted }), BundleFailed},
		{"last release held", with(live, func(s *State) { s.Last = ResultHeld }), BundleHeld},
		{"first deploy held", State{Last: ResultHeld}, BundleHeld},
	} {
		if got := Summary(tc.s); got != tc.want {
			t.Errorf("%s: Summary = %s, want %s", tc.name, got, tc.want)
		}
	}
	for _, tc := range []struct {
		driver             BundleState
		waiting, suspended bool
		want               BundleState
	}{
		{BundleLive, false, false, BundleLive},
		{BundleLive, true, false, BundleWaiting},
		{BundleFailed, true, true, BundleSuspended},
		{"", false, false, BundlePending},
	} {
		if got := Overall(tc.driver, tc.waiting, tc.suspended); got != tc.want {
			t.Errorf("Overall(%s, waiting %v, suspended %v) = %s, want %s", tc.driver, tc.waiting, tc.suspended, got, tc.want)
		}
	}
}

// A suspended bundle's driver neither resyncs nor scales down; resuming
// brings the due scale-down back.
func TestSuspend(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := State{Bundle: "shop", Colors: colorsBG, Live: "green", LiveCommit: "v2", LiveDigest: "sha256:2",
		Previous: "blue", PrevCommit: "v1", PrevDigest: "sha256:1", PreviousWarm: true, ScaleDownAt: at}
	s, d := Step(s, Event{Kind: EvSuspend, On: true})
	if !s.Suspended || d.Action != ActNone || d.Say == nil || d.Say.Phase != NoteSuspend {
		t.Fatalf("suspend: %+v %+v", s, d)
	}
	if _, d := Step(s, Event{Kind: EvSuspend, On: true}); d.Say != nil {
		t.Errorf("a repeated suspend says something: %+v", d.Say)
	}
	if _, d := Step(s, Event{Kind: EvResync}); d.Action != ActNone {
		t.Errorf("resync while suspended: %s, want none", d.Action)
	}
	if !s.ScaleDownTimer().IsZero() {
		t.Error("a suspended driver arms the scale-down timer")
	}
	s2, d := Step(s, Event{Kind: EvScaleDownDue})
	if d.Action != ActNone || !s2.ScaleDownAt.Equal(at) {
		t.Errorf("scale-down while suspended: %s, ScaleDownAt %v", d.Action, s2.ScaleDownAt)
	}
	s, d = Step(s2, Event{Kind: EvSuspend, On: false})
	if s.Suspended || d.Say == nil || !s.ScaleDownTimer().Equal(at) {
		t.Fatalf("resume: %+v %+v", s, d)
	}
	if _, d := Step(s, Event{Kind: EvScaleDownDue}); d.Action != ActScale || d.Color != "blue" {
		t.Errorf("scale-down after resuming: %+v", d)
	}
	if _, d := Step(s, Event{Kind: EvResync}); d.Action != ActResync {
		t.Errorf("resync after resuming: %+v", d)
	}
}

// Last follows the recorded outcomes: a revert makes the bundle failed
// until the next promotion; a restart reads it back from release.yaml.
func TestLastOutcome(t *testing.T) {
	s := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1", Last: ResultPromoted}
	steps := []Event{cand("v2", "sha256:2"), evErr(EvDeployed, "Deployment shop/server-green: invalid"), ev(EvTakenOut), ev(EvRecorded)}
	var d Decision
	for _, e := range steps {
		s, d = Step(s, e)
	}
	if d.Action != ActNone || s.Last != ResultReverted || Summary(s) != BundleFailed {
		t.Fatalf("after a revert: Last %q, summary %s (%+v)", s.Last, Summary(s), d)
	}
	promoted := time.Date(2026, 12, 7, 9, 0, 0, 0, time.UTC)
	rel := &Release{Live: "blue", Colors: map[string]ColorRelease{"blue": {Commit: "v1", Digest: "sha256:1", State: StateLive, PromotedAt: &promoted}},
		LastFailure: &Failure{Commit: "v2", Reason: "invalid", At: promoted.Add(time.Minute)}}
	base := State{Bundle: "shop", Colors: colorsBG, Policy: Policy{OnFailure: OnFailureRevert}}
	if r, _ := Recover(base, rel, View{}, promoted.Add(time.Hour)); r.Last != ResultReverted {
		t.Errorf("recovered Last %q, want reverted", r.Last)
	}
	rel.LastFailure.At = promoted.Add(-time.Minute) // an older failure; the live release came after
	if r, _ := Recover(base, rel, View{}, promoted.Add(time.Hour)); r.Last != ResultPromoted {
		t.Errorf("recovered Last %q, want promoted", r.Last)
	}
}

// The Helm charts a release runs are in its promotion's trailers and in
// release.yaml, follow it to previous on the next promotion, and are read
// back after a restart.
func TestChartsInTheTrail(t *testing.T) {
	at := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	s := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1",
		LiveCharts: []string{"web@0.1.0"}}
	c := Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v2", Digest: "sha256:2", Policy: Policy{OnFailure: OnFailureRevert},
		Charts: []string{"web@0.2.0", "podinfo@6.5.0 oci://registry.example/charts sha256:abc"}}}
	var d Decision
	for _, e := range []Event{c, ev(EvDeployed), ev(EvVerified), {Kind: EvFlipped, At: at}} {
		s, d = Step(s, e)
	}
	if d.Action != ActRecord {
		t.Fatalf("after the flip: %+v", d)
	}
	if got := ParseTrailers(d.Message)[TrailerChart]; len(got) != 2 || got[1] != "podinfo@6.5.0 oci://registry.example/charts sha256:abc" {
		t.Errorf("Tandem-Chart trailers %q:\n%s", got, d.Message)
	}
	rel := d.Commit.Release
	if got := rel.Colors["green"].Charts; len(got) != 2 || got[0] != "web@0.2.0" {
		t.Errorf("release.yaml live charts %v", got)
	}
	if got := rel.Colors["blue"].Charts; len(got) != 1 || got[0] != "web@0.1.0" {
		t.Errorf("release.yaml previous charts %v", got)
	}
	data, err := rel.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseRelease("release.yaml", data, colorsBG)
	if err != nil {
		t.Fatalf("release.yaml with charts does not parse back: %v\n%s", err, data)
	}
	r, _ := Recover(State{Bundle: "shop", Colors: colorsBG}, back, View{}, at.Add(time.Minute))
	if len(r.LiveCharts) != 2 || len(r.PrevCharts) != 1 {
		t.Errorf("recovered charts: live %v, previous %v", r.LiveCharts, r.PrevCharts)
	}
}
