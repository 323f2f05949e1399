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
