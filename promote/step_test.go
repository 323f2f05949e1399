package promote

import (
	"errors"
	"testing"
)

func TestStepSequences(t *testing.T) {
	base := State{Bundle: "shop", Colors: colorsBG, OnFailure: "revert", Live: "blue", LiveCommit: "3f2a", LiveDigest: "sha256:a"}
	cand := &Candidate{Commit: "9c1e", Subject: "bump", Digest: "sha256:b"}
	type step struct {
		o    Observation
		want string
	}
	for name, tc := range map[string]struct {
		s     State
		steps []step
	}{
		"promote":      {base, []step{{Observation{Kind: "candidate", Candidate: cand}, "deploy"}, {Observation{Kind: "deployed"}, "verify"}, {Observation{Kind: "verified"}, "flip"}, {Observation{Kind: "flipped"}, "record"}}},
		"fail revert":  {base, []step{{Observation{Kind: "candidate", Candidate: cand}, "deploy"}, {Observation{Kind: "deployed"}, "verify"}, {Observation{Kind: "verified", Err: errors.New("x")}, "scaledown+record"}}},
		"transient":    {base, []step{{Observation{Kind: "candidate", Candidate: cand}, "deploy"}, {Observation{Kind: "deployed", Err: errors.New("down"), Transient: true}, "retry"}}},
		"same digest":  {base, []step{{Observation{Kind: "candidate", Candidate: &Candidate{Commit: "x", Digest: "sha256:a"}}, "none"}}},
		"first deploy": {State{Bundle: "shop", Colors: colorsBG}, []step{{Observation{Kind: "candidate", Candidate: cand}, "deploy"}, {Observation{Kind: "deployed", Err: errors.New("bad")}, "scaledown+record"}}},
	} {
		s := tc.s
		for i, st := range tc.steps {
			var d Decision
			s, d = Step(s, st.o)
			if d.Kind != st.want {
				t.Errorf("%s step %d: got %s want %s", name, i, d.Kind, st.want)
			}
		}
	}
}

func TestStepWarmFlipBackAndHold(t *testing.T) {
	s := State{Bundle: "shop", Colors: colorsBG, OnFailure: "hold", Live: "green", LiveCommit: "9c1e", LiveDigest: "sha256:b",
		Previous: "blue", PrevDigest: "sha256:a", PreviousWarm: true}
	s2, d := Step(s, Observation{Kind: "candidate", Candidate: &Candidate{Commit: "r1", Digest: "sha256:a"}})
	if d.Kind != "flip" || d.Color != "blue" {
		t.Fatalf("warm revert: %+v", d)
	}
	s3, d := Step(s2, Observation{Kind: "flipped"})
	if d.Kind != "record" || s3.Live != "blue" || s3.Previous != "green" || !s3.PreviousWarm {
		t.Fatalf("after flip: %+v %+v", s3, d)
	}
	_, d = Step(s, Observation{Kind: "candidate", Candidate: &Candidate{Commit: "x", RenderErr: errors.New("render")}})
	if d.Kind != "scaledown+record" || d.Restores != "" || !IsAgentCommit(d.Message) || ParseTrailers(d.Message)["Tandem-Result"][0] != "held" {
		t.Fatalf("hold: %+v", d)
	}
	if !errors.Is(Transient(errors.New("down")), ErrTransient) || Transient(nil) != nil {
		t.Fatal("Transient")
	}
}

// A candidate deployed over the warm previous color makes it cold: a later
// revert to the earlier release must be deployed and verified, not flipped
// to a color that no longer runs it.
func TestStepDeployOverPreviousMakesItCold(t *testing.T) {
	s := State{Bundle: "shop", Colors: colorsBG, OnFailure: "revert", Live: "green", LiveCommit: "v2", LiveDigest: "sha256:v2",
		Previous: "blue", PrevDigest: "sha256:v1", PreviousWarm: true}
	s, d := Step(s, Observation{Kind: "candidate", Candidate: &Candidate{Commit: "v3", Subject: "bad", Digest: "sha256:v3"}})
	if d.Kind != "deploy" || d.Color != "blue" {
		t.Fatalf("v3: %+v", d)
	}
	if s.PreviousWarm || s.PrevDigest != "" {
		t.Fatalf("blue still counted warm after v3 was deployed to it: %+v", s)
	}
	s, d = Step(s, Observation{Kind: "deployed"})
	s, d = Step(s, Observation{Kind: "verified", Err: errors.New("ImagePullBackOff")})
	if d.Kind != "scaledown+record" || d.Restores != "v2" {
		t.Fatalf("v3 failure: %+v", d)
	}
	_, d = Step(s, Observation{Kind: "candidate", Candidate: &Candidate{Commit: "revert-v2", Digest: "sha256:v1"}})
	if d.Kind != "deploy" || d.Color != "blue" {
		t.Fatalf("revert to v1 after blue went cold: got %+v, want a deploy to blue", d)
	}
}
