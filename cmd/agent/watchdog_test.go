package main

import (
	"strings"
	"testing"
	"time"
)

func TestStuck(t *testing.T) {
	now := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name  string
		busy  bool
		last  time.Time
		bound time.Duration
		want  string // "" = alive
	}{
		{"idle between passes, however long", false, now.Add(-time.Hour), time.Minute, ""},
		{"a pass making progress", true, now.Add(-30 * time.Second), time.Minute, ""},
		{"a pass silent for longer than the bound", true, now.Add(-2 * time.Minute), time.Minute, "no progress for 2m0s"},
		{"the check turned off", true, now.Add(-time.Hour), 0, ""},
	} {
		err := stuck(tc.busy, tc.last, now, tc.bound)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}
