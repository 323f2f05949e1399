package main

import (
	"fmt"
	"sync/atomic"
	"time"
)

// watchdog tells a wedged sync loop from a busy one: the loop marks each
// pass's start and end and every bundle it handles on the way; /healthz
// fails when a pass has made no progress for longer than the bound, so the
// kubelet restarts the process. A pass that waits on Git or the API server
// is bounded by their own timeouts (--git-timeout, client-go's), far below
// the default bound.
type watchdog struct {
	bound time.Duration
	busy  atomic.Bool  // a pass is running
	beat  atomic.Int64 // unix nanoseconds of the last progress
}

// start marks the start of a pass.
func (w *watchdog) start() {
	w.progress()
	w.busy.Store(true)
}

// progress marks a step of a pass (a bundle handled).
func (w *watchdog) progress() { w.beat.Store(time.Now().UnixNano()) }

// done marks the end of a pass.
func (w *watchdog) done() {
	w.progress()
	w.busy.Store(false)
}

// check is nil while the loop is alive at now.
func (w *watchdog) check(now time.Time) error {
	return stuck(w.busy.Load(), time.Unix(0, w.beat.Load()), now, w.bound)
}

// stuck says why a loop is wedged: a pass is running and its last progress
// is older than bound (nil otherwise; a zero bound turns the check off).
func stuck(busy bool, last, now time.Time, bound time.Duration) error {
	if !busy || bound <= 0 {
		return nil
	}
	if idle := now.Sub(last); idle > bound {
		return fmt.Errorf("sync loop made no progress for %s (--liveness-timeout %s)", idle.Round(time.Second), bound)
	}
	return nil
}
