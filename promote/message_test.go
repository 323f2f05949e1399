package promote

import (
	"reflect"
	"strings"
	"testing"
)

func TestPromoteMessageGolden(t *testing.T) {
	got := PromoteMessage("shop", "green", "9c1e4b2aaaa", "client-green: 3/3 ready; server-green: 2/2 ready; verified in 14s")
	want := "tandem: promote shop to green (9c1e4b2)\n\nclient-green: 3/3 ready; server-green: 2/2 ready; verified in 14s\n\nTandem-Bundle: shop\nTandem-Result: promoted\nTandem-Color: green\nTandem-Source: 9c1e4b2aaaa\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	tr := ParseTrailers(got)
	if tr["Tandem-Result"][0] != "promoted" || tr["Tandem-Source"][0] != "9c1e4b2aaaa" || !IsAgentCommit(got) {
		t.Fatalf("trailers %v", tr)
	}
}

func TestRevertMessageGolden(t *testing.T) {
	got := RevertMessage("shop", "bump server to v3", "77ab", "3f2a", "server-green: ImagePullBackOff (example/server:v3) after 9s", "traffic stayed on blue")
	want := "Revert \"bump server to v3\" in bundle shop\n\nserver-green: ImagePullBackOff (example/server:v3) after 9s; traffic stayed on blue.\n\nTandem-Bundle: shop\nTandem-Result: reverted\nTandem-Reverts: 77ab\nTandem-Restores: 3f2a\n"
	if got != want {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
	if !IsAgentCommit(got) || IsAgentCommit("bump server\n\nSigned-off-by: a <b>") {
		t.Fatal("IsAgentCommit")
	}
}

func FuzzParseTrailers(f *testing.F) {
	f.Add(PromoteMessage("shop", "green", "9c1e", "ok"))
	f.Add("x\n\nA: b\nc")
	f.Add("s\n\nA: 1\nB: 2\nA: 3\n")
	f.Add("s\n\n: \n:\n")
	f.Fuzz(func(t *testing.T, s string) {
		for k := range ParseTrailers(s) {
			if k == "" || strings.ContainsAny(k, " :\n") {
				t.Fatalf("trailer key %q from %q", k, s)
			}
		}
		_ = IsAgentCommit(s)
	})
}

func FuzzParseRelease(f *testing.F) {
	f.Add(sampleRelease)
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRelease("r", []byte(s), colorsBG)
		if err != nil {
			return
		}
		b, err := r.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		r2, err := ParseRelease("r", b, colorsBG)
		if err != nil {
			t.Fatalf("reparse: %v\n%s", err, b)
		}
		b2, _ := r2.Marshal()
		if string(b) != string(b2) {
			t.Fatalf("round trip differs")
		}
	})
}

func TestParseTrailers(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want map[string][]string
	}{
		{"subject", map[string][]string{}},
		{"s\n\nbody\n\nA: 1\nB: 2\nA: 3\n", map[string][]string{"A": {"1", "3"}, "B": {"2"}}},
		{"s\n\nnot a trailer line\n", map[string][]string{}},
		{"s\r\n\r\nA: 1\r\n", map[string][]string{"A": {"1"}}},
	} {
		if got := ParseTrailers(tc.msg); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseTrailers(%q) = %v, want %v", tc.msg, got, tc.want)
		}
	}
}

func TestRevertMessageListsRestoredFiles(t *testing.T) {
	msg := RevertMessage("shop", "bump base", "77ab", "3f2a", "server-green: ImagePullBackOff", "traffic stayed on blue")
	got := WithRestored(msg, []string{"apps/base/deploy.yaml", "bundles/shop/app/kustomization.yaml"},
		map[string][]string{"apps/base/deploy.yaml": {"cart", "shop-prod"}})
	if !strings.Contains(got, "\n\nRestored:\n  apps/base/deploy.yaml (also read by cart, shop-prod)\n  bundles/shop/app/kustomization.yaml\n\nTandem-Bundle: shop\n") {
		t.Fatalf("message:\n%s", got)
	}
	if tr := ParseTrailers(got); tr[TrailerReverts][0] != "77ab" || tr[TrailerRestores][0] != "3f2a" {
		t.Fatalf("trailers lost: %v", tr)
	}
}
