package testenv

import (
	"context"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// StableSelector is the label selector of a bundle's stable Services (its
// twins): they carry the bundle label and no color label.
func StableSelector(bundle string) string {
	return "tandem.dev/bundle=" + bundle + ",!tandem.dev/color"
}

// WatchServices calls seen for every version of the Services of ns that
// opts selects, from opts.ResourceVersion ("": from now) until the returned
// stop is called; it re-establishes the watch when the API server ends it
// (a restart, an expired version). stop waits for the last call to seen and
// returns how many versions were seen. seen is never called concurrently.
func WatchServices(ctx context.Context, cs kubernetes.Interface, ns string, opts metav1.ListOptions,
	seen func(watch.EventType, *corev1.Service)) (stop func() int) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	n := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			w, err := cs.CoreV1().Services(ns).Watch(ctx, opts)
			if err != nil {
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			for ev := range w.ResultChan() {
				svc, ok := ev.Object.(*corev1.Service)
				if !ok {
					opts.ResourceVersion = "" // expired: go on from now
					continue
				}
				mu.Lock()
				n++
				seen(ev.Type, svc)
				mu.Unlock()
				opts.ResourceVersion = svc.ResourceVersion
			}
			w.Stop()
		}
	}()
	return func() int {
		cancel()
		<-done
		mu.Lock()
		defer mu.Unlock()
		return n
	}
}
