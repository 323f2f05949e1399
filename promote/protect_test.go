package promote

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// The decisions of a protected tracked branch (--write-mode=status-branch)
// and of a refused push, as sequences of events.
func TestStepProtected(t *testing.T) {
	blueLive := State{Bundle: "shop", Colors: colorsBG, Live: "blue", LiveCommit: "v1", LiveDigest: "sha256:1", Propose: true}
	direct := blueLive
	direct.Propose = false
	link := "https://github.com/acme/shop/pull/7"
	pending := blueLive
	pending.Release = &Release{Bundle: "shop", Live: "blue", Colors: map[string]ColorRelease{"blue": {Commit: "v1", Digest: "sha256:1", State: StateLive}},
		LastFailure: &Failure{Commit: "v2", Reason: "client-green: ImagePullBackOff", RevertRequest: link}}
	refused := Refused(errors.New("gitsync: push to main refused: GH006: Protected branch update failed"))
	say := func(reason NoteReason) func(*testing.T, State, Decision) {
		return func(t *testing.T, _ State, d Decision) {
			t.Helper()
			if d.Say == nil || d.Say.Reason != reason {
				t.Errorf("note %+v, want reason %q", d.Say, reason)
			}
		}
	}
	silent := func(t *testing.T, _ State, d Decision) {
		t.Helper()
		if d.Say != nil {
			t.Errorf("a repeated refusal is reported again: %+v", d.Say)
		}
	}
	for _, tc := range []struct {
		name  string
		from  State
		steps []tstep
	}{
		{"a failure proposes its revert, then records it with the link", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{evErr(EvVerified, "client-green: ImagePullBackOff"), ActFail, "green", func(t *testing.T, _ State, d Decision) {
				if !d.Propose || d.Restores != "v1" {
					t.Errorf("fail decision %+v: want a proposed revert of v1", d)
				}
			}},
			{ev(EvTakenOut), ActPropose, "green", all(result(ResultReverted), trailers(TrailerReverts, "v2"), trailers(TrailerRestores, "v1"),
				live("blue", "v1"), func(t *testing.T, s State, d Decision) {
					if d.Commit == nil || d.Commit.Revert == nil || d.Commit.Revert.Failing != "v2" || d.Commit.Revert.From != "v1" || d.Commit.Release != nil {
						t.Errorf("proposal %+v: want the revert of v2 to v1, no release.yaml", d.Commit)
					}
					if s.Phase != PhaseProposing {
						t.Errorf("phase %s", s.Phase)
					}
				})},
			{Event{Kind: EvProposed, Request: link}, ActRecord, "green", all(result(ResultReverted), trailers(TrailerRequest, link),
				contains("Revert pending: "+link), say(ReasonRevertRequest), func(t *testing.T, _ State, d Decision) {
					if d.Commit.Revert != nil {
						t.Errorf("the record restores files itself: %+v", d.Commit.Revert)
					}
					lf := d.Commit.Release.LastFailure
					if lf == nil || lf.Commit != "v2" || lf.RevertRequest != link || d.Commit.Release.Live != "blue" {
						t.Errorf("release.yaml %+v: want live blue and lastFailure v2 with the request", d.Commit.Release)
					}
				})},
			{ev(EvRecorded), ActNone, "", live("blue", "v1")},
		}},
		{"a newer change to the bundle: no request, the failure is held on record", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{evErr(EvDeployed, "bad"), ActFail, "green", nil},
			{ev(EvTakenOut), ActPropose, "green", nil},
			{Event{Kind: EvProposed, Err: ErrSuperseded}, ActRecord, "green", all(result(ResultHeld), say(ReasonSuperseded), func(t *testing.T, _ State, d Decision) {
				if lf := d.Commit.Release.LastFailure; lf == nil || lf.Commit != "v2" || lf.RevertRequest != "" || d.Commit.Revert != nil {
					t.Errorf("record %+v", d.Commit)
				}
			})},
		}},
		{"direct mode reverts by commit, as before", direct, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{evErr(EvDeployed, "bad"), ActFail, "green", nil},
			{ev(EvTakenOut), ActRecord, "green", func(t *testing.T, _ State, d Decision) {
				if d.Commit.Revert == nil || d.Propose {
					t.Errorf("direct revert %+v", d)
				}
			}},
		}},
		{"hold in propose mode records release.yaml only, no request", blueLive, []tstep{
			{candWith("v2", "sha256:2", Policy{OnFailure: OnFailureHold}), ActDeploy, "green", nil},
			{evErr(EvDeployed, "bad"), ActFail, "green", nil},
			{ev(EvTakenOut), ActRecord, "green", result(ResultHeld)},
		}},
		{"a request that cannot be opened is retried, traffic stays", blueLive, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{evErr(EvDeployed, "bad"), ActFail, "green", nil},
			{ev(EvTakenOut), ActPropose, "green", nil},
			{Event{Kind: EvProposed, Err: Transient(errors.New("forge: 502"))}, ActRetry, "", retry(ActPropose, time.Second)},
			{Event{Kind: EvProposed, Err: refused}, ActRetry, "", all(retry(ActPropose, time.Minute), say(ReasonRefused))},
			{Event{Kind: EvProposed, Request: link}, ActRecord, "green", trailers(TrailerRequest, link)},
		}},
		{"a refused push is reported once and retried slowly", direct, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
			{Event{Kind: EvRecorded, Err: refused}, ActRetry, "", all(retry(ActRecord, time.Minute), say(ReasonRefused), func(t *testing.T, _ State, d Decision) {
				if !strings.Contains(d.Say.Detail, "--write-mode=status-branch") {
					t.Errorf("the note does not say the fix: %s", d.Say.Detail)
				}
			})},
			{Event{Kind: EvRecorded, Err: refused}, ActRetry, "", all(retry(ActRecord, 2*time.Minute), silent)},
			{Event{Kind: EvRecorded, Err: refused}, ActRetry, "", all(retry(ActRecord, 4*time.Minute), silent)},
			{ev(EvRecorded), ActNone, "", live("green", "v2")},
		}},
		{"a refused push backs off to a quarter of an hour", direct, append([]tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
			{ev(EvDeployed), ActVerify, "green", nil},
			{ev(EvVerified), ActFlip, "green", nil},
			{ev(EvFlipped), ActRecord, "green", nil},
		}, func() []tstep {
			var out []tstep
			for i := 0; i < 5; i++ {
				out = append(out, tstep{Event{Kind: EvRecorded, Err: refused}, ActRetry, "", nil})
			}
			return append(out, tstep{Event{Kind: EvRecorded, Err: refused}, ActRetry, "", retry(ActRecord, 15*time.Minute)})
		}()...)},
		{"a person's fix closes the stale request, then deploys", pending, []tstep{
			{cand("v3", "sha256:3"), ActWithdraw, "", func(t *testing.T, s State, d Decision) {
				if d.Request != link || d.Failing != "v2" || !strings.Contains(d.Reason, "v3") {
					t.Errorf("withdraw %+v", d)
				}
				if RevertPending(s.Release) != "" || RevertPending(pending.Release) != link {
					t.Errorf("the request is still pending in the state, or the input was changed")
				}
			}},
			{ev(EvWithdrawn), ActDeploy, "green", func(t *testing.T, s State, _ Decision) {
				if s.Candidate.Commit != "v3" {
					t.Errorf("candidate %+v", s.Candidate)
				}
			}},
			{ev(EvDeployed), ActVerify, "green", nil},
		}},
		{"the merged request renders what is live: nothing to deploy", pending, []tstep{
			{cand("m1", "sha256:1"), ActWithdraw, "", nil},
			{ev(EvWithdrawn), ActNone, "", func(t *testing.T, s State, d Decision) {
				if d.Say == nil || d.Say.Phase != NoteIdle || s.Live != "blue" {
					t.Errorf("after the merge: %+v %+v", s, d.Say)
				}
			}},
			// Closed once: the next candidate deploys at once.
			{cand("v4", "sha256:4"), ActDeploy, "green", nil},
		}},
		{"a request that cannot be closed does not hold the fix up", pending, []tstep{
			{cand("v3", "sha256:3"), ActWithdraw, "", nil},
			{evErr(EvWithdrawn, "forge: 500"), ActDeploy, "green", say(ReasonRevertRequest)},
		}},
		{"the failed candidate itself is not a fix", pending, []tstep{
			{cand("v2", "sha256:2"), ActDeploy, "green", nil},
		}},
		{"an untrusted candidate closes nothing", pending, []tstep{
			{Event{Kind: EvCandidate, Candidate: &Candidate{Commit: "v3", Untrusted: "unsigned", Policy: Policy{OnFailure: OnFailureRevert}}}, ActFail, "", result(ResultHeld)},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runSteps(t, tc.from, tc.steps) })
	}
}

// Admission pins a failed candidate out while its revert request waits.
func TestAdmitRevertPending(t *testing.T) {
	yes, no := true, false
	link := "https://gitlab.com/acme/shop/-/merge_requests/3"
	base := Facts{Mine: true, Running: true, Seen: "v1", Tip: "v2", Changed: &yes, OnlyAgentCommits: &no,
		FirstSight: true, LastFailure: "v2", RevertPending: link}
	for _, tc := range []struct {
		name   string
		edit   func(*Facts)
		kind   VerdictKind
		reason AdmitReason
		detail string
	}{
		{"restart, the request still open: pinned", func(f *Facts) { f.ChangedSinceFailure = &no }, Skip, ReasonRevertPending, "revert pending: " + link},
		{"restart, the request merged or a fix pushed: offered", func(f *Facts) { f.ChangedSinceFailure = &yes }, Offer, ReasonNew, ""},
		{"restart: asks whether anything changed first", func(*Facts) {}, Ask, "", ""},
		{"no request (direct mode): failed-unchanged as before", func(f *Facts) { f.ChangedSinceFailure, f.RevertPending = &no, "" }, Skip, ReasonFailedUnchanged, "nothing changed since the recorded failure"},
		{"running: the failed tip is already seen", func(f *Facts) { f.FirstSight, f.Seen = false, "v2" }, Skip, ReasonUnchanged, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := base
			tc.edit(&f)
			v := Admit(f)
			if v.Kind != tc.kind || v.Reason != tc.reason || v.Detail != tc.detail {
				t.Fatalf("Admit = %+v, want %s %q %q", v, tc.kind, tc.reason, tc.detail)
			}
		})
	}
}

// release.yaml keeps the link of a revert request, and reads it back.
func TestReleaseRevertRequestRoundTrip(t *testing.T) {
	rel := &Release{APIVersion: "tandem.dev/v1alpha1", Kind: KindRelease, Bundle: "shop", Live: "blue",
		Colors:      map[string]ColorRelease{"blue": {Commit: "v1", State: StateLive}},
		LastFailure: &Failure{Commit: "v2", Reason: "x", RevertRequest: "https://gitea.example.com/acme/shop/pulls/4"}}
	data, err := rel.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseRelease("release.yaml", data, colorsBG)
	if err != nil {
		t.Fatal(err)
	}
	if RevertPending(got) != rel.LastFailure.RevertRequest || RevertPending(nil) != "" {
		t.Fatalf("round trip: %+v", got.LastFailure)
	}
}
