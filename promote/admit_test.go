package promote

import (
	"errors"
	"testing"
)

// Every reason Admit gives, and the facts it asks for on the way.
func TestAdmit(t *testing.T) {
	yes, no := true, false
	broken := errors.New("bundles/shop/bundle.yaml: spec.namespace: required")
	unread := errors.New("git: connection refused")
	mine := Facts{Mine: true, Running: true, Seen: "a1", Tip: "b2"}
	with := func(f Facts, edit func(*Facts)) Facts { edit(&f); return f }
	changed := with(mine, func(f *Facts) { f.Changed, f.OnlyAgentCommits = &yes, &no })
	for _, tc := range []struct {
		name   string
		facts  Facts
		kind   VerdictKind
		reason AdmitReason
		need   Need
	}{
		{"bundle.yaml left the branch: remove", Facts{Gone: true, Mine: true}, Remove, ReasonGone, ""},
		{"a tip without any bundle prunes nothing", Facts{Gone: true, EmptyTip: true}, Skip, ReasonEmptyTip, ""},
		{"a tip without any bundle, --allow-empty: remove", Facts{Gone: true, EmptyTip: true, AllowEmpty: true}, Remove, ReasonGone, ""},
		{"another agent's bundle", Facts{Tip: "b2"}, Skip, ReasonNotMine, ""},
		{"broken release.yaml: refuse, never offered", with(changed, func(f *Facts) { f.Broken, f.Err = BrokenRelease, broken }), Refuse, ReasonBroken, ""},
		{"broken bundle.yaml of a new bundle: refuse", Facts{Mine: true, Tip: "b2", Broken: BrokenBundle, Err: broken}, Refuse, ReasonBroken, ""},
		{"broken bundle.yaml of a running bundle: ask whether it changed", with(mine, func(f *Facts) { f.Broken, f.Err = BrokenBundle, broken }), Ask, "", NeedChanged},
		{"broken bundle.yaml that changed the bundle: the driver fails it", with(changed, func(f *Facts) { f.Broken, f.Err = BrokenBundle, broken }), Offer, ReasonBroken, ""},
		{"broken bundle.yaml, inputs unchanged: refuse only", with(mine, func(f *Facts) { f.Broken, f.Err, f.Changed = BrokenBundle, broken, &no }), Refuse, ReasonBroken, ""},
		{"broken bundle.yaml already given to the driver", with(mine, func(f *Facts) { f.Broken, f.Err, f.Seen = BrokenBundle, broken, "b2" }), Refuse, ReasonBroken, ""},
		{"broken bundle.yaml, the diff could not be read", with(mine, func(f *Facts) { f.Broken, f.Err, f.FactErr = BrokenBundle, broken, unread }), Refuse, ReasonBroken, ""},
		{"a fact could not be read: wait", with(mine, func(f *Facts) { f.FactErr = unread }), Wait, ReasonUnknown, ""},
		{"suspended: waits, so what changed meanwhile is the candidate on resuming", with(changed, func(f *Facts) { f.Suspended = true }), Wait, ReasonSuspended, ""},
		{"tip already seen", with(mine, func(f *Facts) { f.Seen = "b2" }), Skip, ReasonUnchanged, ""},
		{"seen before: ask whether the inputs changed", mine, Ask, "", NeedChanged},
		{"inputs unchanged (a README, release.yaml)", with(mine, func(f *Facts) { f.Changed = &no }), Skip, ReasonUnchanged, ""},
		{"changed: ask whether only the agent wrote since", with(mine, func(f *Facts) { f.Changed = &yes }), Ask, "", NeedAgentCommits},
		{"only the agent's own commits (a revert)", with(mine, func(f *Facts) { f.Changed, f.OnlyAgentCommits = &yes, &yes }), Skip, ReasonAgentCommits, ""},
		{"a human change: offer", changed, Offer, ReasonNew, ""},
		{"first candidate of a new bundle: offer", Facts{Mine: true, Tip: "b2"}, Offer, ReasonNew, ""},
		{"restart after a recorded failure: ask whether anything changed since", with(changed, func(f *Facts) { f.FirstSight, f.LastFailure = true, "f0" }), Ask, "", NeedChangedSinceFailure},
		{"restart, nothing changed since the failure: not retried", with(changed, func(f *Facts) {
			f.FirstSight, f.LastFailure, f.ChangedSinceFailure = true, "f0", &no
		}), Skip, ReasonFailedUnchanged, ""},
		{"restart, a fix since the failure: offer", with(changed, func(f *Facts) {
			f.FirstSight, f.LastFailure, f.ChangedSinceFailure = true, "f0", &yes
		}), Offer, ReasonNew, ""},
		{"--verify-commits: ask for the signatures", with(changed, func(f *Facts) { f.VerifyCommits = true }), Ask, "", NeedTrust},
		{"an unsigned commit: hold", with(changed, func(f *Facts) {
			f.VerifyCommits, f.Trust = true, &TrustFact{Untrusted: "1 commit lacks a trusted signature"}
		}), Hold, ReasonUntrusted, ""},
		{"an unsigned commit is held even at a shut gate", with(changed, func(f *Facts) {
			f.VerifyCommits, f.Trust, f.Staged = true, &TrustFact{Untrusted: "unsigned"}, true
		}), Hold, ReasonUntrusted, ""},
		{"signed: offer", with(changed, func(f *Facts) { f.VerifyCommits, f.Trust = true, &TrustFact{} }), Offer, ReasonNew, ""},
		{"staged: ask for the gate", with(changed, func(f *Facts) { f.Staged = true }), Ask, "", NeedGate},
		{"gate shut: wait", with(changed, func(f *Facts) {
			f.Staged, f.Gate = true, &Gate{Wait: true, On: "shop-staging", Why: "it runs 1a2b3c4 without this change"}
		}), Wait, ReasonGate, ""},
		{"gate open: offer", with(changed, func(f *Facts) { f.Staged, f.Gate = true, &Open }), Offer, ReasonNew, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := Admit(tc.facts)
			if v.Kind != tc.kind || v.Reason != tc.reason || v.Need != tc.need {
				t.Fatalf("Admit = %+v, want %s %q need %q", v, tc.kind, tc.reason, tc.need)
			}
			if v.Kind == Offer && v.Reason == ReasonBroken && !errors.Is(v.Failed, broken) {
				t.Errorf("a broken bundle's candidate does not carry the error: %+v", v)
			}
			if (v.Kind == Wait || v.Kind == Refuse || v.Kind == Hold) && v.Detail == "" {
				t.Errorf("%s without a detail for people: %+v", v.Kind, v)
			}
		})
	}
}

func TestBaseline(t *testing.T) {
	rel := &Release{Live: "green", Colors: map[string]ColorRelease{"green": {Commit: "v2"}, "blue": {Commit: "v1", State: StatePrevious}},
		LastFailure: &Failure{Commit: "v3"}}
	healthy := func(c string) ColorView { return ColorView{Commit: c, Healthy: true, Replicas: 1, Ready: 1} }
	for _, tc := range []struct {
		name string
		rel  *Release
		v    View
		want string
	}{
		{"first deploy", nil, View{}, ""},
		{"release.yaml's live commit", rel, View{Live: "green", Colors: map[string]ColorView{"green": healthy("v2")}}, "v2"},
		{"flipped before a restart: the flipped commit", rel, View{Live: "blue", Colors: map[string]ColorView{"blue": healthy("v4")}}, "v4"},
		{"flipped to an unhealthy color: release.yaml's", rel, View{Live: "blue", Colors: map[string]ColorView{"blue": {Commit: "v4"}}}, "v2"},
		{"mixed: release.yaml's", rel, View{Mixed: true, Live: "blue", Colors: map[string]ColorView{"blue": healthy("v4")}}, "v2"},
		{"first deploy flipped before a restart", nil, View{Live: "blue", Colors: map[string]ColorView{"blue": healthy("v1")}}, "v1"},
	} {
		if got := Baseline(tc.rel, tc.v); got != tc.want {
			t.Errorf("%s: Baseline = %q, want %q", tc.name, got, tc.want)
		}
	}
	if got := RecordedFailure(rel); got != "v3" {
		t.Errorf("RecordedFailure = %q, want v3", got)
	}
	if got := RecordedFailure(&Release{LastFailure: &Failure{Commit: "v1"}}); got != "" {
		t.Errorf("a first deploy's failure is no retry point: %q", got)
	}
}
