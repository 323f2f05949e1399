package promote

import (
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"
)

// Recovery after a restart: release.yaml plus what the cluster shows (the
// stable twins' selectors and each color's annotations and health).
func TestRecover(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	promoted := now.Add(-30 * time.Second)
	rel := &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: "shop", Live: "green", Colors: map[string]ColorRelease{
		"green": {Commit: "v2", Digest: "sha256:2", State: StateLive, PromotedAt: &promoted},
		"blue":  {Commit: "v1", Digest: "sha256:1", State: StatePrevious},
	}}
	healthy := func(commit, digest string) ColorView {
		return ColorView{Commit: commit, Digest: digest, Healthy: true, Replicas: 2, Ready: 2}
	}
	base := State{Bundle: "shop", Colors: colorsBG, Policy: Policy{OnFailure: OnFailureRevert, ScaleDownAfter: 10 * time.Minute}}
	withSoak := base
	withSoak.Policy.Soak = time.Minute
	recordSoak := withSoak
	recordSoak.Policy.RecordSoak = true
	longAgo := now.Add(-time.Hour)
	relSoakOver := &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: "shop", Live: "green", Colors: map[string]ColorRelease{
		"green": {Commit: "v2", Digest: "sha256:2", State: StateLive, PromotedAt: &longAgo},
		"blue":  {Commit: "v1", Digest: "sha256:1", State: StatePrevious},
	}}
	relSoakRecorded := &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: "shop", Live: "green", Colors: map[string]ColorRelease{
		"green": {Commit: "v2", Digest: "sha256:2", State: StateLive, PromotedAt: &longAgo, SoakedAt: &promoted},
		"blue":  {Commit: "v1", Digest: "sha256:1", State: StatePrevious},
	}}
	for _, tc := range []struct {
		name   string
		base   State
		rel    *Release
		view   View
		action Action
		color  string
		check  func(t *testing.T, s State, d Decision)
	}{
		{"nothing yet: wait for the first candidate", base, nil, View{}, ActNone, "", nil},
		{"selectors match release.yaml: resume, scale the warm previous color down later", base, rel,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": healthy("v1", "sha256:1")}},
			ActNone, "", func(t *testing.T, s State, d Decision) {
				if d.ScaleDown != "blue" || !s.PreviousWarm || s.Live != "green" || s.LiveCommit != "v2" {
					t.Errorf("resume: %+v %+v", s, d)
				}
			}},
		{"previous color already scaled down: it is cold", base, rel,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": {Commit: "v1", Digest: "sha256:1", ScaledDown: true}}},
			ActNone, "", func(t *testing.T, s State, d Decision) {
				if s.PreviousWarm || d.ScaleDown != "" {
					t.Errorf("cold previous counted warm: %+v", s)
				}
			}},
		{"killed after the flip, before the commit: commit the promotion", base, rel,
			View{Live: "blue", Colors: map[string]ColorView{"blue": healthy("v3", "sha256:3"), "green": healthy("v2", "sha256:2")}},
			ActRecord, "blue", func(t *testing.T, s State, d Decision) {
				if s.Live != "blue" || s.LiveCommit != "v3" || s.Previous != "green" || !s.PreviousWarm ||
					!strings.Contains(d.Message, "recovered after a restart") || ParseTrailers(d.Message)[TrailerSource][0] != "v3" {
					t.Errorf("recovered promotion: %+v\n%s", s, d.Message)
				}
				// What follows is the ordinary end of a promotion.
				if _, next := Step(s, Event{Kind: EvRecorded}); next.Action != ActNone || next.ScaleDown != "green" {
					t.Errorf("after the recovered commit: %+v", next)
				}
			}},
		{"first deploy flipped, nothing recorded: commit it", base, nil,
			View{Live: "blue", Colors: map[string]ColorView{"blue": healthy("v1", "sha256:1")}},
			ActRecord, "blue", func(t *testing.T, s State, _ Decision) {
				if s.Previous != "" || s.PreviousWarm {
					t.Errorf("first deploy has no previous: %+v", s)
				}
			}},
		{"selectors on an unhealthy color: put them back on the recorded live color", base, rel,
			View{Live: "blue", Colors: map[string]ColorView{"blue": {Commit: "v3", Digest: "sha256:3", Replicas: 2}, "green": healthy("v2", "sha256:2")}},
			ActReroute, "green", nil},
		{"selectors mixed (killed mid-flip): put them back", base, rel,
			View{Mixed: true, Colors: map[string]ColorView{"blue": healthy("v3", "sha256:3"), "green": healthy("v2", "sha256:2")}},
			ActReroute, "green", nil},
		{"mixed and nothing recorded: wait, say why", base, nil,
			View{Mixed: true, Colors: map[string]ColorView{"blue": healthy("v1", "sha256:1")}},
			ActNone, "", func(t *testing.T, _ State, d Decision) {
				if d.Reason == "" {
					t.Error("no reason given")
				}
			}},
		{"soak over before a restart, not recorded, a bundle waits for it: record it", recordSoak, relSoakOver,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": healthy("v1", "sha256:1")}},
			ActRecord, "green", func(t *testing.T, s State, d Decision) {
				if d.Result != ResultSoaked || d.Commit.Release.Colors["green"].SoakedAt == nil {
					t.Fatalf("recovered soak record: %+v", d)
				}
				if _, next := Step(s, Event{Kind: EvRecorded, At: now}); next.Action != ActNone || next.ScaleDown != "blue" {
					t.Errorf("after the recovered soak record: %+v", next)
				}
			}},
		{"soak over before a restart, nobody waits for it: nothing to record", withSoak, relSoakOver,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": healthy("v1", "sha256:1")}},
			ActNone, "", nil},
		{"soak over and already recorded: nothing to record", recordSoak, relSoakRecorded,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": healthy("v1", "sha256:1")}},
			ActNone, "", nil},
		{"killed during the soak: watch for the rest of it", withSoak, rel,
			View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2", "sha256:2"), "blue": healthy("v1", "sha256:1")}},
			ActSoak, "green", func(t *testing.T, s State, d Decision) {
				if d.After != 30*time.Second {
					t.Errorf("soak the remaining %s, want 30s", d.After)
				}
				// A degradation now flips back to blue and reverts v2.
				s, d = Step(s, Event{Kind: EvSoaked, Err: errString("server-green: CrashLoopBackOff")})
				if d.Action != ActFlipBack || d.Color != "blue" {
					t.Fatalf("after a failed resumed soak: %+v", d)
				}
				_, d = Step(s, Event{Kind: EvFlippedBack})
				if d.Action != ActFail || d.Restores != "v1" || d.Failing != "v2" {
					t.Errorf("revert after resumed soak: %+v", d)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, d := Recover(tc.base, tc.rel, tc.view, now)
			if d.Action != tc.action || d.Color != tc.color {
				t.Fatalf("got %s %q, want %s %q (%+v)", d.Action, d.Color, tc.action, tc.color, d)
			}
			if tc.check != nil {
				tc.check(t, s, d)
			}
		})
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func TestRecordKeepsPromotedAtAndNamesThePrevious(t *testing.T) {
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	s := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1"}
	r1 := Record(nil, s, t0, nil)
	if r1.Live != "blue" || r1.Colors["blue"].PromotedAt == nil || !r1.Colors["blue"].PromotedAt.Equal(t0) || len(r1.Colors) != 1 {
		t.Fatalf("first record: %+v", r1)
	}
	// A failure later keeps the promotion time and adds lastFailure.
	r2 := Record(r1, s, t0.Add(time.Hour), &Failure{Commit: "v2", Reason: "bad", At: t0.Add(time.Hour)})
	if !r2.Colors["blue"].PromotedAt.Equal(t0) || r2.LastFailure == nil || r2.LastFailure.Commit != "v2" {
		t.Fatalf("after a failure: %+v", r2)
	}
	s.Previous, s.PrevCommit, s.PrevDigest = "blue", "v1", "sha256:1"
	s.Live, s.LiveCommit, s.LiveDigest = "green", "v3", "sha256:3"
	r3 := Record(r2, s, t0.Add(2*time.Hour), nil)
	if r3.Colors["blue"].State != StatePrevious || r3.Colors["blue"].PromotedAt != nil || r3.Colors["green"].State != StateLive ||
		r3.LastFailure == nil {
		t.Fatalf("after promotion: %+v", r3)
	}
	data, err := r3.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseRelease("release.yaml", data, colorsBG)
	if err != nil || back.Live != "green" || back.Colors["blue"].Commit != "v1" {
		t.Fatalf("round trip: %v %+v", err, back)
	}
}
