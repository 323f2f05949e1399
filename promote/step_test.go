package promote

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/check"
	"github.com/tandem-gitops/tandem/contract"
)

// tstep is one event fed to Step and what must come out.
type tstep struct {
	ev     Event
	action Action
	color  string
	check  func(t *testing.T, s State, d Decision)
}

// runSteps feeds the steps to Step from state from, checking each decision.
func runSteps(t *testing.T, from State, steps []tstep) {
	t.Helper()
	s := from
	for i, st := range steps {
		var d Decision
		s, d = Step(s, st.ev)
		if d.Action != st.action || d.Color != st.color {
			t.Fatalf("step %d (%s): got %s %q, want %s %q (decision %+v)", i, st.ev.Kind, d.Action, d.Color, st.action, st.color, d)
		}
		if st.check != nil {
			st.check(t, s, d)
		}
	}
}

func ev(k EventKind) Event                { return Event{Kind: k} }
func evErr(k EventKind, msg string) Event { return Event{Kind: k, Err: errors.New(msg)} }
func cand(commit, digest string) Event {
	return candWith(commit, digest, Policy{OnFailure: OnFailureRevert})
}
func candWith(commit, digest string, p Policy) Event {
	return Event{Kind: EvCandidate, Candidate: &Candidate{Commit: commit, Subject: "change " + commit, Digest: digest, Policy: p}}
}

func result(want string) func(*testing.T, State, Decision) {
	return func(t *testing.T, _ State, d Decision) {
		t.Helper()
		if got := ParseTrailers(d.Message)[TrailerResult]; len(got) != 1 || got[0] != want {
			t.Errorf("Tandem-Result %v, want %s; message:\n%s", got, want, d.Message)
		}
	}
}

func live(color, commit string) func(*testing.T, State, Decision) {
	return func(t *testing.T, s State, _ Decision) {
		t.Helper()
		if s.Live != color || s.LiveCommit != commit {
			t.Errorf("live %s@%s, want %s@%s", s.Live, s.LiveCommit, color, commit)
		}
	}
}

func trailers(key string, want ...string) func(*testing.T, State, Decision) {
	return func(t *testing.T, _ State, d Decision) {
		t.Helper()
		if got := ParseTrailers(d.Message)[key]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s %v, want %v; message:\n%s", key, got, want, d.Message)
		}
	}
}

func contains(text string) func(*testing.T, State, Decision) {
	return func(t *testing.T, _ State, d Decision) {
		t.Helper()
		if !strings.Contains(d.Message, text) {
			t.Errorf("message lacks %q:\n%s", text, d.Message)
		}
	}
}

func all(fs ...func(*testing.T, State, Decision)) func(*testing.T, State, Decision) {
	return func(t *testing.T, s State, d Decision) {
		t.Helper()
		for _, f := range fs {
			f(t, s, d)
		}
	}
}

// Every transition of the contract's lifecycle (section 4), as sequences of
// events from a starting state.
func TestStep(t *testing.T) {
	blueLive := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1"}
	// green is live with v2; blue still runs v1, scaled up (warm).
	greenWarmBlue := State{Bundle: "shop", Colors: colorsBG, Live: "green", LiveCommit: "v2", LiveDigest: "sha256:2",
		Previous: "blue", PrevCommit: "v1", PrevDigest: "sha256:1", PreviousWarm: true}
	soak := Policy{OnFailure: OnFailureRevert, Soak: time.Minute, ScaleDownAfter: 10 * time.Minute}
	recordSoak := soak
	recordSoak.RecordSoak = true
	soakEnd := time.Date(2026, 11, 23, 10, 5, 0, 0, time.UTC)
	checked := soak
	checked.Checks = []check.Spec{{Name: "smoke", When: check.WhenVerify, Job: &check.Job{}},
		{Name: "errors", When: check.WhenSoak, Prometheus: &check.Prometheus{}}}
	passedSmoke := check.Result{Name: "smoke", Kind: "job", Verdict: check.Passed}
	failedSmoke := check.Result{Name: "smoke", Kind: "job", Verdict: check.Failed, Detail: "Job smoke-green-x: BackoffLimitExceeded"}
	failedErrors := check.Result{Name: "errors", Kind: "prometheus", Verdict: check.Failed, Condition: "< 0.01", Values: []string{"0.2"}}
	for _, tc := range []struct {
		name  string
		from  State
		steps []tstep
	}{
		{"first deploy goes live on the first color", State{Bundle: "shop", Colors: colorsBG}, []tstep{
			{cand("v1", "sha256:1"), ActDeploy, "blue", nil},
			{ev(EvDeployed), ActVerify, "blue", nil},
			{Event{Kind: EvVerified, Evidence: "client-blue: 2/2 ready"}, ActFlip, "blue", nil},
			{ev(EvFlipped), ActRecord, "blue", all(result(ResultPromoted), live("blue", "v1"), func(t *testing.T, _ State, d Decision) {
				if !strings.Contains(d.Message, "client-blue: 2/2 ready") {
					t.Errorf("promotion message lacks the evidence:\n%s", d.Message)
				}
			})},
			{ev(EvRecorded), ActNone, "", func(t *testing.T, s State, d Decision) {
				if d.ScaleDown != "" || s.Previous != "" {
					t.Errorf("first deploy has no previous color: %+v", d)
				}
			}},
		}},
		{"first deploy fails: hold, nothing to revert to", State{Bundle: "shop", Colors: colorsBG}, []tstep{
			{cand("v1", "sha256:1"), ActDeploy, "blue", nil},
			{ev(EvDeployed), ActVerify, "blue", nil},
			{evErr(EvVerified, "server-blue: ImagePullBackOff"), ActFail, "blue", all(result(ResultHeld), func(t *testing.T, s State, d Decision) {
				if d.Restores != "" || s.Live != "" || d.Reason != "server-blue: ImagePullBackOff" {
					t.Errorf("hold: %+v", d)
				}
			})},
		}},
		{"promote to the idle color, previous scaled down later", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", all(result(ResultPromoted), live("green", "v2"))},
			{ev(EvRecorded), ActNone, "", func(t *testing.T, s State, d Decision) {
				if d.ScaleDown != "blue" || s.Previous != "blue" || s.PrevCommit != "v1" || !s.PreviousWarm {
					t.Errorf("after promotion: %+v %+v", s, d)
				}
			}},
		}},
		{"verification fails: revert, traffic stays", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{evErr(EvVerified, "client-green: CrashLoopBackOff"), ActFail, "green", all(result(ResultReverted), live("blue", "v1"), func(t *testing.T, s State, d Decision) {
				if d.Restores != "v1" || d.Failing != "v2" || !strings.Contains(d.Message, "traffic stayed on blue") {
					t.Errorf("revert: %+v", d)
				}
			})},
		}},
		{"apply fails (dry run refused): revert", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{evErr(EvDeployed, "Deployment shop/client-green: invalid"), ActFail, "green", result(ResultReverted)},
		}},
		{"flip fails: revert", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{evErr(EvFlipped, "Service shop/client: forbidden"), ActFail, "green", all(result(ResultReverted), live("blue", "v1"))},
		}},
		{"onFailure hold records the failure only", blueLive, []tstep{
			{candWith("v2", "sha256:2", Policy{OnFailure: OnFailureHold}), ActDeploy, "green", nil},
			{evErr(EvDeployed, "bad"), ActFail, "green", all(result(ResultHeld), func(t *testing.T, _ State, d Decision) {
				if d.Restores != "" {
					t.Errorf("hold restores files: %+v", d)
				}
			})},
		}},
		{"render error: nothing applied, nothing taken out", greenWarmBlue, []tstep{
			{Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v3", RenderErr: errors.New("bundles/shop/app/kustomization.yaml: boom"), Policy: Policy{OnFailure: OnFailureRevert}}},
				ActFail, "", all(result(ResultReverted), func(t *testing.T, s State, d Decision) {
					if !s.PreviousWarm || s.Previous != "blue" {
						t.Errorf("a render error cooled the warm previous color: %+v", s)
					}
				})},
		}},
		{"untrusted candidate: held whatever onFailure says, nothing taken out, warm standby kept", greenWarmBlue, []tstep{
			{Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v3", Digest: "sha256:3", Untrusted: "commit v3 \"x\": unsigned",
				Policy: Policy{OnFailure: OnFailureRevert, HealthTimeout: time.Second}}},
				ActFail, "", all(result(ResultHeld), live("green", "v2"), func(t *testing.T, s State, d Decision) {
					if d.Restores != "" || d.Restore != nil || d.Failing != "v3" || d.Reason != "commit v3 \"x\": unsigned" {
						t.Errorf("untrusted hold: %+v", d)
					}
					if !s.PreviousWarm || s.Previous != "blue" || s.PrevCommit != "v1" {
						t.Errorf("an untrusted candidate touched the warm previous color: %+v", s)
					}
					if s.Policy.HealthTimeout == time.Second {
						t.Errorf("the untrusted candidate's policy was adopted: %+v", s.Policy)
					}
				})},
			// A later trusted commit is released as usual.
			{cand("v4", "sha256:4"), ActDeploy, "blue", nil},
		}},
		{"untrusted first deploy: held, nothing deployed", State{Bundle: "shop", Colors: colorsBG}, []tstep{
			{Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v1", Digest: "sha256:1", Untrusted: "unsigned", Policy: Policy{OnFailure: OnFailureRevert}}},
				ActFail, "", all(result(ResultHeld), live("", ""))},
		}},
		{"untrusted candidate that renders what is live is still held", blueLive, []tstep{
			{Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v1b", Digest: "sha256:1", Untrusted: "unsigned", Policy: Policy{OnFailure: OnFailureRevert}}},
				ActFail, "", result(ResultHeld)},
		}},
		{"newest wins: a newer candidate replaces one in verification", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{cand("v3", "sha256:3"), ActDeploy, "green", func(t *testing.T, s State, _ Decision) {
				if s.Candidate.Commit != "v3" {
					t.Errorf("candidate %s, want v3", s.Candidate.Commit)
				}
			}},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", live("green", "v3")},
		}},
		{"a candidate that renders what is live is no release", blueLive, []tstep{
			{cand("v1-again", "sha256:1"), ActNone, "", nil},
		}},
		{"human git revert to the warm previous release flips back at once", greenWarmBlue, []tstep{
			{cand("revert-v2", "sha256:1"), ActObserve, "blue", nil},
			{observed("blue", runs("v1", "sha256:1")), ActVerify, "blue", func(t *testing.T, _ State, d Decision) {
				if !d.Warm {
					t.Error("rollback to the warm color not marked warm")
				}
			}},
			{ev(EvVerified), ActFlip, "blue", func(t *testing.T, _ State, d Decision) {
				if !d.Warm {
					t.Error("flip back not marked warm")
				}
			}},
			{ev(EvFlipped), ActRecord, "blue", all(result(ResultPromoted), live("blue", "revert-v2"), func(t *testing.T, s State, d Decision) {
				if !strings.Contains(d.Message, "warm") || s.Previous != "green" || !s.PreviousWarm {
					t.Errorf("warm flip back: %+v\n%s", s, d.Message)
				}
			})},
		}},
		{"warm flip back finds the color cold: deploy and verify it", greenWarmBlue, []tstep{
			{cand("revert-v2", "sha256:1"), ActObserve, "blue", nil},
			{observed("blue", ColorView{Commit: "v1", Digest: "sha256:1", ScaledDown: true}), ActDeploy, "blue", func(t *testing.T, s State, d Decision) {
				if s.PreviousWarm || s.Previous != "" || d.Say == nil {
					t.Errorf("cold color still counted as the warm previous: %+v", s)
				}
			}},
			{ev(EvDeployed), ActVerify, "blue", nil},
		}},
		{"a failed candidate restores the warm release it displaced", greenWarmBlue, []tstep{
			{cand("v3", "sha256:3"), ActDeploy, "blue", func(t *testing.T, s State, _ Decision) {
				if s.PreviousWarm {
					t.Error("blue counted warm while v3 is deployed to it")
				}
			}},
			{ev(EvDeployed), ActVerify, "blue", nil},
			{evErr(EvVerified, "server-blue: ErrImagePull"), ActFail, "blue", all(result(ResultReverted), live("green", "v2"), func(t *testing.T, s State, d Decision) {
				if d.Restore == nil || d.Restore.Commit != "v1" || !s.PreviousWarm || s.Previous != "blue" || d.Restores != "v2" {
					t.Errorf("restore: %+v state %+v", d, s)
				}
			})},
			{ev(EvTakenOut), ActRecord, "blue", func(t *testing.T, s State, d Decision) {
				if d.Commit == nil || d.Commit.Revert == nil || d.Commit.Revert.From != "v2" || d.Commit.Release.LastFailure == nil ||
					d.Commit.Release.Colors["blue"].Commit != "v1" || d.Commit.Release.Colors["blue"].State != StatePrevious {
					t.Errorf("revert commit: %+v", d.Commit)
				}
			}},
			{ev(EvRecorded), ActNone, "", nil},
			// The human then reverts v2: blue runs v1 again, so no deploy.
			{cand("revert-v2", "sha256:1"), ActObserve, "blue", nil},
			{observed("blue", runs("v1", "sha256:1")), ActVerify, "blue", nil},
		}},
		{"a success over the warm previous color does not restore it", greenWarmBlue, []tstep{
			{cand("v3", "sha256:3"), ActDeploy, "blue", nil},
			{ev(EvDeployed), ActVerify, "blue", nil},
			{ev(EvVerified), ActFlip, "blue", nil},
			{ev(EvFlipped), ActRecord, "blue", func(t *testing.T, s State, _ Decision) {
				if s.Previous != "green" || s.PrevCommit != "v2" || s.Displaced != nil {
					t.Errorf("after promotion over the warm color: %+v", s)
				}
			}},
		}},
		{"soak passes: previous color scaled down later", blueLive, []tstep{
			{candWith("v2", "sha256:2", soak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", func(t *testing.T, _ State, d Decision) {
				if d.After != time.Minute {
					t.Errorf("soak for %s, want 1m", d.After)
				}
			}},
			{ev(EvSoaked), ActNone, "", func(t *testing.T, _ State, d Decision) {
				if d.ScaleDown != "blue" {
					t.Errorf("scale down %q, want blue", d.ScaleDown)
				}
			}},
		}},
		{"soak passes with a bundle after this one: record soakedAt, then settle", blueLive, []tstep{
			{candWith("v2", "sha256:2", recordSoak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", nil},
			{Event{Kind: EvSoaked, At: soakEnd}, ActRecord, "green", all(result(ResultSoaked), trailers(TrailerSource, "v2"),
				func(t *testing.T, s State, d Decision) {
					c := d.Commit
					if c == nil || c.Result != ResultSoaked || c.Revert != nil || c.Release.Live != "green" {
						t.Fatalf("soak record: %+v", c)
					}
					at := c.Release.Colors["green"].SoakedAt
					if at == nil || !at.Equal(soakEnd) || c.Release.Colors["green"].Commit != "v2" || c.Release.Colors["blue"].State != StatePrevious {
						t.Errorf("release.yaml after the soak: %+v", c.Release.Colors)
					}
					if s.Release.Colors["green"].SoakedAt != nil {
						t.Error("Step changed the recorded release before the commit landed")
					}
				})},
			{ev(EvRecorded), ActNone, "", func(t *testing.T, s State, d Decision) {
				if d.ScaleDown != "blue" || !Soaked(s.Release, time.Minute) {
					t.Errorf("after the soak record: scale down %q, soaked %v", d.ScaleDown, Soaked(s.Release, time.Minute))
				}
				// A later record of the same live release keeps soakedAt.
				if r := Record(s.Release, s, soakEnd.Add(time.Hour), nil); r.Colors["green"].SoakedAt == nil {
					t.Errorf("a later record dropped soakedAt: %+v", r.Colors["green"])
				}
			}},
		}},
		{"a soak cut short by a newer commit records nothing", blueLive, []tstep{
			{candWith("v2", "sha256:2", recordSoak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", nil},
			{ev(EvCancelled), ActNone, "", func(t *testing.T, _ State, d Decision) {
				if d.Say == nil || d.Say.Reason != ReasonSoakCut {
					t.Errorf("cut soak note: %+v", d.Say)
				}
			}},
		}},
		{"soak fails: flip back to the warm previous color, then revert", blueLive, []tstep{
			{candWith("v2", "sha256:2", soak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", nil},
			{evErr(EvSoaked, "server-green: CrashLoopBackOff"), ActFlipBack, "blue", nil},
			{ev(EvFlippedBack), ActFail, "green", all(result(ResultReverted), live("blue", "v1"), func(t *testing.T, s State, d Decision) {
				if d.Restores != "v1" || d.Failing != "v2" || !strings.Contains(d.Message, "traffic went back to blue") ||
					!strings.Contains(d.Reason, "CrashLoopBackOff") || s.Previous != "" {
					t.Errorf("soak revert: %+v state %+v\n%s", d, s, d.Message)
				}
			})},
		}},
		{"soak fails and the flip back fails: hold on the live color", blueLive, []tstep{
			{candWith("v2", "sha256:2", soak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", nil},
			{evErr(EvSoaked, "degraded"), ActFlipBack, "blue", nil},
			{evErr(EvFlippedBack, "forbidden"), ActFail, "", all(result(ResultHeld), live("green", "v2"))},
		}},
		{"no soak without a previous color to go back to", State{Bundle: "shop", Colors: colorsBG}, []tstep{
			{candWith("v1", "sha256:1", soak), ActDeploy, "blue", nil},
			{ev(EvDeployed), ActVerify, "blue", nil},
			{ev(EvVerified), ActFlip, "blue", nil},
			{ev(EvFlipped), ActRecord, "blue", nil},
			{ev(EvRecorded), ActNone, "", nil},
		}},
		{"verify checks run on the healthy target before the flip; their evidence is committed", blueLive, []tstep{
			{candWith("v2", "sha256:2", checked), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActCheck, "green", func(t *testing.T, s State, d Decision) {
				if len(d.Checks) != 1 || d.Checks[0].Name != "smoke" || s.Phase != PhaseChecking {
					t.Errorf("want the verify check smoke only, got %+v in %s", d.Checks, s.Phase)
				}
			}},
			{Event{Kind: EvChecked, Checks: check.Results{passedSmoke}}, ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", all(result(ResultPromoted), trailers(TrailerCheck, "smoke=passed"), contains("smoke (job): passed"))},
			{ev(EvRecorded), ActSoak, "green", func(t *testing.T, _ State, d Decision) {
				if len(d.Checks) != 1 || d.Checks[0].Name != "errors" {
					t.Errorf("want the soak check errors during the soak, got %+v", d.Checks)
				}
			}},
		}},
		{"a failing verify check fails the release: traffic stays, the revert names the check", blueLive, []tstep{
			{candWith("v2", "sha256:2", checked), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActCheck, "green", nil},
			{Event{Kind: EvChecked, Checks: check.Results{failedSmoke}, Err: &check.Error{Results: check.Results{failedSmoke}}}, ActFail, "green",
				func(t *testing.T, s State, d Decision) {
					if !strings.Contains(d.Reason, "smoke (job): failed") || s.Live != "blue" {
						t.Errorf("reason %q, live %s", d.Reason, s.Live)
					}
				}},
			{ev(EvTakenOut), ActRecord, "green", all(result(ResultReverted), trailers(TrailerCheck, "smoke=failed"), contains("Job smoke-green-x: BackoffLimitExceeded"))},
		}},
		{"a failing soak check flips back and reverts", blueLive, []tstep{
			{candWith("v2", "sha256:2", checked), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActCheck, "green", nil},
			{Event{Kind: EvChecked, Checks: check.Results{passedSmoke}}, ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{ev(EvRecorded), ActSoak, "green", nil},
			{Event{Kind: EvSoaked, Checks: check.Results{failedErrors}, Err: &check.Error{Results: check.Results{failedErrors}}}, ActFlipBack, "blue", nil},
			{ev(EvFlippedBack), ActFail, "green", nil},
			{ev(EvTakenOut), ActRecord, "green", all(result(ResultReverted), trailers(TrailerCheck, "smoke=passed", "errors=failed"), contains("want < 0.01; measured 0.2"))},
		}},
		{"an API server outage during a check is retried, never a failure", blueLive, []tstep{
			{candWith("v2", "sha256:2", checked), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActCheck, "green", nil},
			{Event{Kind: EvChecked, Err: Transient(errors.New("connection refused"))}, ActRetry, "", retry(ActCheck, time.Second)},
		}},
		{"transient errors are retried with backoff, never a failure", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{Event{Kind: EvDeployed, Err: Transient(errors.New("connection refused"))}, ActRetry, "", retry(ActDeploy, time.Second)},
			{Event{Kind: EvDeployed, Err: Transient(errors.New("connection refused"))}, ActRetry, "", retry(ActDeploy, 2*time.Second)},
			{ev(EvDeployed), ActVerify, "green", nil},
			{Event{Kind: EvVerified, Err: Transient(errors.New("etcd down"))}, ActRetry, "", retry(ActVerify, time.Second)},
			{ev(EvVerified), ActFlip, "green", nil},
			{Event{Kind: EvFlipped, Err: Transient(errors.New("timeout"))}, ActRetry, "", retry(ActFlip, time.Second)},
			{ev(EvFlipped), ActRecord, "green", live("green", "v2")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.from, tc.steps) })
	}
}

func retry(want Action, after time.Duration) func(*testing.T, State, Decision) {
	return func(t *testing.T, _ State, d Decision) {
		t.Helper()
		if d.Redo == nil || d.Redo.Action != want || d.After != after {
			t.Errorf("retry: redo %+v after %s, want %s after %s", d.Redo, d.After, want, after)
		}
	}
}

func observed(color string, cv ColorView) Event {
	return Event{Kind: EvObserved, View: View{Live: "green", Colors: map[string]ColorView{color: cv}}}
}

func runs(commit, digest string) ColorView {
	return ColorView{Commit: commit, Digest: digest, Healthy: true, Replicas: 2, Ready: 2}
}

// The phases around a release: failures taken out and recorded, commits
// retried or superseded, newer candidates, resyncs and scale-downs.
func TestStepAroundARelease(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	blueLive := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1"}
	greenWarmBlue := State{Bundle: "shop", Colors: colorsBG, Live: "green", LiveCommit: "v2", LiveDigest: "sha256:2",
		Previous: "blue", PrevCommit: "v1", PrevDigest: "sha256:1", PreviousWarm: true,
		Policy: Policy{OnFailure: OnFailureRevert, ScaleDownAfter: 10 * time.Minute}}
	soak := Policy{OnFailure: OnFailureRevert, Soak: time.Minute, ScaleDownAfter: 10 * time.Minute}
	gitDown := Event{Kind: EvRecorded, Err: errors.New("dial tcp: connection refused")}
	for _, tc := range []struct {
		name  string
		from  State
		steps []tstep
	}{
		{"a failed verification scales the color down, then commits the revert", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{evErr(EvVerified, "server-green: ImagePullBackOff"), ActFail, "green", func(t *testing.T, _ State, d Decision) {
				if d.Restore != nil {
					t.Errorf("nothing to restore, got %+v", d.Restore)
				}
			}},
			{Event{Kind: EvTakenOut, At: at}, ActRecord, "green", func(t *testing.T, s State, d Decision) {
				f := d.Commit.Release.LastFailure
				if f == nil || f.Commit != "v2" || f.Reason != "server-green: ImagePullBackOff" || !f.At.Equal(at) || d.Say == nil || d.Say.Phase != NoteFail {
					t.Errorf("failure record: %+v say %+v", f, d.Say)
				}
			}},
			{ev(EvRecorded), ActNone, "", func(t *testing.T, s State, _ Decision) {
				if s.Phase != PhaseIdle || s.Release == nil || s.Release.LastFailure == nil {
					t.Errorf("after the revert: %+v", s)
				}
			}},
		}},
		{"a restore that fails leaves no warm copy", greenWarmBlue, []tstep{
			{cand("v3", "sha256:3"), ActDeploy, "blue", nil},
			{evErr(EvDeployed, "invalid"), ActFail, "blue", nil},
			{evErr(EvTakenOut, "forbidden"), ActRecord, "blue", func(t *testing.T, s State, d Decision) {
				if s.PreviousWarm || d.Say == nil || d.Say.Err == nil {
					t.Errorf("failed restore: warm %v say %+v", s.PreviousWarm, d.Say)
				}
			}},
		}},
		{"an outcome commit is retried with the Git policy until it lands", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{gitDown, ActRetry, "", retry(ActRecord, time.Second)},
			{gitDown, ActRetry, "", retry(ActRecord, 2*time.Second)},
			{gitDown, ActRetry, "", retry(ActRecord, 4*time.Second)},
			{gitDown, ActRetry, "", retry(ActRecord, 4*time.Second)},
			{ev(EvRecorded), ActNone, "", func(t *testing.T, _ State, d Decision) {
				if d.ScaleDown != "blue" {
					t.Errorf("after the commit landed: %+v", d)
				}
			}},
		}},
		{"a revert superseded by a newer human commit is given up", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{evErr(EvDeployed, "invalid"), ActFail, "green", nil},
			{ev(EvTakenOut), ActRecord, "green", nil},
			{Event{Kind: EvRecorded, Err: ErrSuperseded}, ActNone, "", func(t *testing.T, s State, d Decision) {
				if s.Phase != PhaseIdle || d.Say == nil || !strings.Contains(d.Say.Detail, "newer commit") {
					t.Errorf("superseded: %+v %+v", s, d.Say)
				}
			}},
		}},
		{"a newer candidate cancels a verification", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvCancelled), ActNone, "", func(t *testing.T, s State, _ Decision) {
				if s.Phase != PhaseIdle || s.Live != "blue" {
					t.Errorf("cancelled: %+v", s)
				}
			}},
			{cand("v3", "sha256:3"), ActDeploy, "green", nil},
		}},
		{"a newer candidate ends a soak; the promotion stands", blueLive, []tstep{
			{candWith("v2", "sha256:2", soak), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{Event{Kind: EvFlipped, At: at}, ActRecord, "green", nil},
			{Event{Kind: EvRecorded, At: at}, ActSoak, "green", nil},
			{Event{Kind: EvCancelled, At: at}, ActNone, "", func(t *testing.T, s State, d Decision) {
				if s.Live != "green" || d.ScaleDown != "blue" || !s.ScaleDownAt.Equal(at.Add(10*time.Minute)) {
					t.Errorf("soak cut short: %+v %+v", s, d)
				}
			}},
		}},
		{"the previous color scales down when due, then is cold", greenWarmBlue, []tstep{
			{ev(EvScaleDownDue), ActScale, "blue", nil},
			{ev(EvScaled), ActNone, "", func(t *testing.T, s State, _ Decision) {
				if s.PreviousWarm || !s.ScaleDownAt.IsZero() {
					t.Errorf("after scale-down: %+v", s)
				}
			}},
			{ev(EvScaleDownDue), ActNone, "", nil},
		}},
		{"a scale-down that fails is tried again a minute later", greenWarmBlue, []tstep{
			{ev(EvScaleDownDue), ActScale, "blue", nil},
			{Event{Kind: EvScaled, Err: errors.New("forbidden"), At: at}, ActNone, "", func(t *testing.T, s State, _ Decision) {
				if !s.PreviousWarm || !s.ScaleDownAt.Equal(at.Add(time.Minute)) {
					t.Errorf("after a failed scale-down: %+v", s)
				}
			}},
		}},
		{"resync re-applies the live release", greenWarmBlue, []tstep{
			{ev(EvResync), ActResync, "green", func(t *testing.T, _ State, d Decision) {
				if d.Ref != (ReleaseRef{Commit: "v2", Digest: "sha256:2"}) {
					t.Errorf("resync ref %+v", d.Ref)
				}
			}},
			{Event{Kind: EvDeployed, Err: Transient(errors.New("down"))}, ActRetry, "", retry(ActResync, time.Second)},
			{ev(EvDeployed), ActNone, "", nil},
		}},
		{"no resync before the first release", State{Bundle: "shop", Colors: colorsBG}, []tstep{
			{ev(EvResync), ActNone, "", nil},
		}},
		{"a start observes the cluster, retrying until it answers", blueLive, []tstep{
			{ev(EvStart), ActObserve, "", nil},
			{evErr(EvObserved, "forbidden"), ActRetry, "", retry(ActObserve, time.Second)},
			{Event{Kind: EvObserved, View: View{}}, ActNone, "", nil},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.from, tc.steps) })
	}
}

// Step returns a new state and never writes through the pointers of the
// one it was given (candidate, release.yaml, displaced release).
func TestStepDoesNotMutateItsInput(t *testing.T) {
	at := time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)
	rel := &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: "shop", Live: "green",
		Colors: map[string]ColorRelease{"green": {Commit: "v2", Digest: "sha256:2", State: StateLive, PromotedAt: &at}}}
	events := []Event{cand("v3", "sha256:3"), ev(EvDeployed), ev(EvVerified), ev(EvFlipped), ev(EvRecorded),
		evErr(EvVerified, "bad"), ev(EvTakenOut), ev(EvSoaked), evErr(EvSoaked, "bad"), ev(EvFlippedBack),
		ev(EvScaleDownDue), ev(EvScaled), ev(EvResync), ev(EvCancelled), ev(EvStart), {Kind: EvObserved}}
	for _, e := range events {
		s := State{Bundle: "shop", Colors: colorsBG, Live: "green", LiveCommit: "v2", LiveDigest: "sha256:2",
			Previous: "blue", PrevCommit: "v1", PrevDigest: "sha256:1", PreviousWarm: true, Release: rel,
			Candidate: &Candidate{Commit: "v3", Digest: "sha256:3"}, Displaced: &ReleaseRef{Commit: "v0", Digest: "sha256:0"},
			Target: "blue", Phase: PhaseVerifying, Policy: Policy{OnFailure: OnFailureRevert, Soak: time.Minute}}
		s.Pending = Decision{Action: ActRecord, Result: ResultPromoted, Commit: &Commit{Release: rel}}
		before := deepCopy(t, s)
		Step(s, e)
		if after := deepCopy(t, s); !reflect.DeepEqual(before, after) {
			t.Errorf("Step(%s) changed its input:\nbefore %+v\nafter  %+v", e.Kind, before, after)
		}
	}
}

// deepCopy snapshots everything s reaches.
func deepCopy(t *testing.T, s State) string {
	t.Helper()
	b, err := json.Marshal(struct {
		S         State
		C         Candidate
		R         Release
		D         ReleaseRef
		PendingRL Release
	}{s, *s.Candidate, *s.Release, *s.Displaced, *s.Pending.Commit.Release})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBackoffIsCapped(t *testing.T) {
	for n, want := range map[int]time.Duration{0: time.Second, 1: 2 * time.Second, 5: 32 * time.Second, 6: time.Minute, 60: time.Minute} {
		if got := backoffDelay(ClusterRetry, n); got != want {
			t.Errorf("backoffDelay(ClusterRetry, %d) = %s, want %s", n, got, want)
		}
	}
	if !errors.Is(Transient(errors.New("down")), ErrTransient) || Transient(nil) != nil {
		t.Fatal("Transient")
	}
}
