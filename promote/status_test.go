package promote

import (
	"strings"
	"testing"
	"time"
)

func TestStatusTable(t *testing.T) {
	r, err := ParseRelease("r", []byte(sampleRelease), colorsBG)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	when := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	var trail []Outcome
	for i, msg := range []string{
		RevertMessage("shop", "bump", "77ab", "3f2a", "server-green: ImagePullBackOff", "traffic stayed on green"),
		"a human commit\n\nSigned-off-by: someone\n",
		PromoteMessage("shop", "green", "9c1e", ""),
		PromoteMessage("other", "blue", "aaaa", ""),
	} {
		if o, ok := OutcomeOf(string(rune('a'+i))+"0000000", when, ParseTrailers(msg)); ok {
			trail = append(trail, o)
		}
	}
	last := LastOutcomes(trail)
	if len(trail) != 3 || last["shop"].Result != ResultReverted || last["other"].Result != ResultPromoted {
		t.Fatalf("outcomes %+v, last %+v", trail, last)
	}
	if err := WriteTable(&b, StatusRows([]Release{*r}, last)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "shop") || !strings.Contains(b.String(), "green") || !strings.Contains(b.String(), "blue") ||
		!strings.Contains(b.String(), "77ab: server-green") || !strings.Contains(b.String(), "reverted a000000 2026-11-23T10:00:00Z") {
		t.Fatalf("table:\n%s", b.String())
	}
}
