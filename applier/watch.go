package applier

import (
	"context"
	"math"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
)

// listTimeout bounds one List of a watch source, so a hung API server is
// noticed like an unreachable one.
const listTimeout = 10 * time.Second

// sourceEvent is what a watch source reports to its consumer: a fresh
// list (reset), one watch event, or a failed list.
type sourceEvent struct {
	src   int
	reset bool
	items []unstructured.Unstructured
	typ   watch.EventType
	obj   *unstructured.Unstructured
	err   error
}

// watchSource lists and then watches ri with selector sel until ctx ends,
// re-listing (with capped, jittered backoff) whenever the watch breaks.
func watchSource(ctx context.Context, src int, ri dynamic.ResourceInterface, sel string, out chan<- sourceEvent) {
	send := func(ev sourceEvent) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
			return false
		}
	}
	newBackoff := func() wait.Backoff {
		return wait.Backoff{Duration: 200 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: math.MaxInt32, Cap: 2 * time.Second}
	}
	bo := newBackoff()
	sleep := func() bool {
		t := time.NewTimer(bo.Step())
		defer t.Stop()
		select {
		case <-t.C:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		lctx, cancel := context.WithTimeout(ctx, listTimeout)
		list, err := ri.List(lctx, metav1.ListOptions{LabelSelector: sel})
		cancel()
		if err != nil {
			if ctx.Err() != nil || !send(sourceEvent{src: src, err: err}) || !sleep() {
				return
			}
			continue
		}
		if !send(sourceEvent{src: src, reset: true, items: list.Items}) {
			return
		}
		w, err := ri.Watch(ctx, metav1.ListOptions{LabelSelector: sel, ResourceVersion: list.GetResourceVersion(), AllowWatchBookmarks: true})
		if err != nil {
			if ctx.Err() != nil || !send(sourceEvent{src: src, err: err}) || !sleep() {
				return
			}
			continue
		}
		bo = newBackoff()
		if !pump(ctx, src, w, send) {
			return
		}
	}
}

// pump forwards watch events until the watch ends (false: ctx ended).
func pump(ctx context.Context, src int, w watch.Interface, send func(sourceEvent) bool) bool {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case ev, ok := <-w.ResultChan():
			if !ok || ev.Type == watch.Error {
				return true
			}
			u, isU := ev.Object.(*unstructured.Unstructured)
			if !isU || ev.Type == watch.Bookmark {
				continue
			}
			if !send(sourceEvent{src: src, typ: ev.Type, obj: u}) {
				return false
			}
		}
	}
}

// cache holds the objects of several watch sources, keyed by namespace/name
// per source.
type cache struct {
	objs   []map[string]*unstructured.Unstructured
	synced []bool
	errs   []error
	since  []time.Time // when the current run of list errors began
	told   bool        // the current outage was reported (see outage)
}

func newCache(n int) *cache {
	c := &cache{objs: make([]map[string]*unstructured.Unstructured, n), synced: make([]bool, n), errs: make([]error, n), since: make([]time.Time, n)}
	for i := range c.objs {
		c.objs[i] = map[string]*unstructured.Unstructured{}
	}
	return c
}

func (c *cache) apply(ev sourceEvent, now time.Time) {
	i := ev.src
	switch {
	case ev.err != nil:
		c.errs[i] = ev.err
		if c.since[i].IsZero() {
			c.since[i] = now
		}
	case ev.reset:
		c.errs[i], c.since[i], c.synced[i] = nil, time.Time{}, true
		m := make(map[string]*unstructured.Unstructured, len(ev.items))
		for j := range ev.items {
			u := &ev.items[j]
			m[u.GetNamespace()+"/"+u.GetName()] = u
		}
		c.objs[i] = m
	case ev.typ == watch.Deleted:
		delete(c.objs[i], ev.obj.GetNamespace()+"/"+ev.obj.GetName())
	default:
		c.objs[i][ev.obj.GetNamespace()+"/"+ev.obj.GetName()] = ev.obj
	}
}

func (c *cache) allSynced() bool {
	for _, s := range c.synced {
		if !s {
			return false
		}
	}
	return true
}

// failing returns the first source error and how long sources have been
// failing, if any source currently fails to list.
func (c *cache) failing(now time.Time) (time.Duration, error) {
	var err error
	var d time.Duration
	for i, e := range c.errs {
		if e != nil && (err == nil || now.Sub(c.since[i]) > d) {
			err, d = e, now.Sub(c.since[i])
		}
	}
	return d, err
}

// outage returns the error of an API server that became unreachable since
// the sources were last all healthy, once per outage; otherwise nil.
func (c *cache) outage(now time.Time) error {
	_, err := c.failing(now)
	switch {
	case err == nil:
		c.told = false
		return nil
	case c.told || !IsTransient(err):
		return nil
	}
	c.told = true
	return err
}

// reportOutage tells Options.OnUnreachable about a new outage seen by c.
func (a *Applier) reportOutage(op string, c *cache, now time.Time) {
	if err := c.outage(now); err != nil && a.opts.OnUnreachable != nil {
		a.opts.OnUnreachable(op, err)
	}
}
