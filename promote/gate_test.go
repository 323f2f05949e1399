package promote

import (
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	const cand = "c0ffee0000000000000000000000000000000000"
	staging := func(mod func(*Upstream)) Upstream {
		u := Upstream{Name: "shop-staging", Shared: true, Live: "abcdef1234567890", Soaked: true}
		if mod != nil {
			mod(&u)
		}
		return u
	}
	for _, tc := range []struct {
		name string
		in   GateInput
		want string // Gate.String() prefix
	}{
		{"no stages", GateInput{Bundle: "shop", Commit: cand}, "open"},
		{"upstream runs the change, soaked", GateInput{Upstreams: []Upstream{staging(nil)}}, "open"},
		{"upstream has not promoted the change", GateInput{Upstreams: []Upstream{staging(func(u *Upstream) {
			u.Unreleased = []string{"apps/shop/base/server.yaml"}
		})}}, "waiting for shop-staging: shop-staging runs abcdef1, without this change to apps/shop/base/server.yaml"},
		{"upstream soaking", GateInput{Upstreams: []Upstream{staging(func(u *Upstream) { u.Soaked = false })}},
			"waiting for shop-staging: shop-staging is soaking abcdef1"},
		{"upstream never released", GateInput{Upstreams: []Upstream{staging(func(u *Upstream) {
			u.Live, u.Soaked, u.Unreleased = "", false, []string{"a", "b", "c", "d"}
		})}}, "waiting for shop-staging: shop-staging has released nothing yet"},
		{"no shared input changed: an overlay-only change never waits", GateInput{Upstreams: []Upstream{staging(func(u *Upstream) {
			u.Shared, u.Live, u.Soaked, u.Unreleased = false, "", false, nil
		})}}, "open"},
		{"missing upstream", GateInput{Commit: cand, Upstreams: []Upstream{{Name: "qa", Missing: true}}},
			"waiting for qa: no valid bundle qa at c0ffee0"},
		{"first upstream in order", GateInput{Upstreams: []Upstream{staging(nil), {Name: "qa", Shared: true, Live: "1234567", Unreleased: []string{"x"}}}},
			"waiting for qa:"},
		{"approval missing", GateInput{Bundle: "shop", Commit: cand, ApprovalRequired: true},
			`waiting for approval: spec.approval is required: push a commit with the trailer "Tandem-Approve: shop c0ffee0"`},
		{"upstream before approval", GateInput{ApprovalRequired: true, Upstreams: []Upstream{staging(func(u *Upstream) { u.Soaked = false })}},
			"waiting for shop-staging"},
		{"approved", GateInput{ApprovalRequired: true, Approved: true, Upstreams: []Upstream{staging(nil)}}, "open"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := Decide(tc.in)
			if got := g.String(); !strings.HasPrefix(got, tc.want) {
				t.Errorf("gate %q, want %q", got, tc.want)
			}
			if g.Wait != (tc.want != "open") {
				t.Errorf("Wait %v for %q", g.Wait, g)
			}
		})
	}
}

func TestSoaked(t *testing.T) {
	at := time.Date(2026, 11, 29, 20, 0, 0, 0, time.UTC)
	rel := func(prev bool, soaked bool) *Release {
		r := &Release{Live: "green", Colors: map[string]ColorRelease{"green": {Commit: "b", State: StateLive, PromotedAt: &at}}}
		if prev {
			r.Colors["blue"] = ColorRelease{Commit: "a", State: StatePrevious}
		}
		if soaked {
			c := r.Colors["green"]
			c.SoakedAt = &at
			r.Colors["green"] = c
		}
		return r
	}
	for _, tc := range []struct {
		name string
		rel  *Release
		soak time.Duration
		want bool
	}{
		{"no release", nil, 0, false},
		{"no soak configured", rel(true, false), 0, true},
		{"soaking", rel(true, false), time.Minute, false},
		{"soak recorded", rel(true, true), time.Minute, true},
		{"first release: nothing to soak against", rel(false, false), time.Minute, true},
	} {
		if got := Soaked(tc.rel, tc.soak); got != tc.want {
			t.Errorf("%s: Soaked %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestApprovals(t *testing.T) {
	msg := "ship it\n\nTandem-Approve: shop-prod c0ffee1\nTandem-Approve: shop-prod nothex!\nTandem-Approve: shop-prod abc\nTandem-Approve: shop-qa C0FFEE1234\n"
	got := Approvals(msg)
	if len(got) != 2 || got[0] != (Approval{"shop-prod", "c0ffee1"}) || got[1] != (Approval{"shop-qa", "c0ffee1234"}) {
		t.Fatalf("approvals %v", got)
	}
	if !got[0].Names("shop-prod", "c0ffee1999") || got[0].Names("shop-qa", "c0ffee1999") || got[0].Names("shop-prod", "c0ffee2000") {
		t.Error("Names matches the wrong commits")
	}
	if len(Approvals("approve\n\nTandem-Approve: shop-prod\n")) != 0 {
		t.Error("an approval without a commit is no approval")
	}
}

func TestSoakedMessageIsAnAgentCommit(t *testing.T) {
	msg := SoakedMessage("shop-staging", "green", "c0ffee0000")
	tr := ParseTrailers(msg)
	if !IsAgentCommit(msg) || tr[TrailerResult][0] != ResultSoaked || tr[TrailerBundle][0] != "shop-staging" || tr[TrailerSource][0] != "c0ffee0000" {
		t.Fatalf("trailers %v of\n%s", tr, msg)
	}
}
