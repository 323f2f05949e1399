package promote

import (
	"strings"
	"testing"
)

func TestStatusTable(t *testing.T) {
	r, err := ParseRelease("r", []byte(sampleRelease), colorsBG)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := WriteTable(&b, StatusRows([]Release{*r})); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "shop") || !strings.Contains(b.String(), "green") || !strings.Contains(b.String(), "blue") || !strings.Contains(b.String(), "77ab: server-green") {
		t.Fatalf("table:\n%s", b.String())
	}
}
