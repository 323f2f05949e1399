package main

import (
	"slices"
	"time"
)

// results is everything one run measured.
type results struct {
	Live               []latency // push (or apply) → live
	Switch             []latency // → Services switched
	Failures           []failure
	Idle               []idle
	Elapsed            time.Duration
	LoadStart, LoadEnd string
}

// latency is one scenario's samples.
type latency struct {
	Who, How, To string
	Samples      []time.Duration
}

func (l *latency) add(d time.Duration) { l.Samples = append(l.Samples, d) }

// pct is the p-th percentile (nearest rank).
func (l latency) pct(p int) time.Duration {
	if len(l.Samples) == 0 {
		return 0
	}
	s := slices.Clone(l.Samples)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}

// failure is one failed release and how long until the tool knew.
type failure struct {
	Who, Case, Outcome string
	Took               time.Duration
}

// idle is one tool's footprint with Apps apps, idle.
type idle struct {
	Who      string
	Apps     int
	RSSMiB   float64 // at the end of the window, summed over the tool's processes
	CPUMilli float64 // CPU time over the window / window
	Window   time.Duration
	LiveIn   time.Duration // from start to all apps live
}
