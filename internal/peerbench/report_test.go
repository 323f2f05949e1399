package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReportReplacesOnlyItsSection(t *testing.T) {
	out := filepath.Join(t.TempDir(), "benchmarks.md")
	cfg := config{Out: out, Sizes: []int{1}, IdleWindow: time.Second}
	res := &results{
		Live:     []latency{{Who: "tandem", How: "file watch", Samples: []time.Duration{time.Second, 2 * time.Second}}},
		Failures: []failure{{Who: "Flux", Case: "crash loop", Took: 61 * time.Second, Outcome: "Ready=False"}},
		Idle:     []idle{{Who: "tandem", Apps: 1, RSSMiB: 40}, {Who: "Flux", Apps: 1, RSSMiB: 200}},
	}
	// No file yet: the section is the whole file.
	if err := writeReport(cfg, res); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(out)
	if !strings.HasPrefix(string(first), beginMarker) || !strings.HasSuffix(string(first), endMarker+"\n") {
		t.Fatalf("new report is not one marked section:\n%s", first)
	}
	for _, want := range []string{"| tandem | file watch | 2 | 1.00 | 2.00 |", "| Flux | crash loop | 61.00 | Ready=False |", "| 1 | Flux | 200.0 |", "0.20x"} {
		if !strings.Contains(string(first), want) {
			t.Errorf("report lacks %q:\n%s", want, first)
		}
	}
	// Text around the section survives a regeneration; the section is replaced.
	doc := "# Benchmarks\n\nbefore\n\n" + string(first) + "\nafter\n"
	if err := os.WriteFile(out, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	res.Live[0].Samples = []time.Duration{3 * time.Second}
	if err := writeReport(cfg, res); err != nil {
		t.Fatal(err)
	}
	second, _ := os.ReadFile(out)
	s := string(second)
	if !strings.HasPrefix(s, "# Benchmarks\n\nbefore\n\n"+beginMarker) || !strings.HasSuffix(s, endMarker+"\n\nafter\n") {
		t.Errorf("text around the section changed:\n%s", s)
	}
	if strings.Count(s, beginMarker) != 1 || !strings.Contains(s, "| tandem | file watch | 1 | 3.00 |") {
		t.Errorf("section not replaced once with the new figures:\n%s", s)
	}
}

func TestPercentileIsNearestRank(t *testing.T) {
	l := latency{}
	for _, ms := range []int{50, 10, 40, 20, 30} {
		l.add(time.Duration(ms) * time.Millisecond)
	}
	for p, want := range map[int]time.Duration{0: 10 * time.Millisecond, 50: 30 * time.Millisecond, 95: 50 * time.Millisecond, 100: 50 * time.Millisecond} {
		if got := l.pct(p); got != want {
			t.Errorf("p%d = %v, want %v", p, got, want)
		}
	}
}
