package main

import (
	"fmt"
	"sync"

	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// rendered is one release of a bundle as the agent rendered it: the bundle
// (spec) at that commit and its render for each color.
type rendered struct {
	bundle *render.Bundle
	colors map[string]*render.Result
}

// releaseStore holds the renders the drivers refer to, by bundle and
// release (commit and digest). The loop puts a render in before it names
// the release to a driver; the cluster adapters only read. Values flow one
// way: Snapshot → render → store → apply.
type releaseStore struct {
	mu      sync.Mutex
	bundles map[string]map[promote.ReleaseRef]*rendered
	specs   map[string]*render.Bundle // the newest bundle.yaml of each bundle
}

func newReleaseStore() *releaseStore {
	return &releaseStore{bundles: map[string]map[promote.ReleaseRef]*rendered{}, specs: map[string]*render.Bundle{}}
}

// put stores r as release ref of its bundle and makes its spec the newest.
func (s *releaseStore) put(ref promote.ReleaseRef, r *rendered) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name := r.bundle.Name
	if s.bundles[name] == nil {
		s.bundles[name] = map[promote.ReleaseRef]*rendered{}
	}
	s.bundles[name][ref] = r
	s.specs[name] = r.bundle
}

// has reports whether ref of bundle is stored.
func (s *releaseStore) has(bundle string, ref promote.ReleaseRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.bundles[bundle][ref]
	return ok
}

// get returns ref's render for color.
func (s *releaseStore) get(bundle string, ref promote.ReleaseRef, color string) (*render.Bundle, *render.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.bundles[bundle][ref]
	if !ok || r.colors[color] == nil {
		return nil, nil, fmt.Errorf("bundle %s: release %s (%s) has no render for color %s", bundle, promote.Short(ref.Commit), ref.Digest, color)
	}
	return r.bundle, r.colors[color], nil
}

// spec is the newest bundle.yaml of bundle.
func (s *releaseStore) spec(bundle string) *render.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.specs[bundle]
}

// keep drops bundle's renders other than refs.
func (s *releaseStore) keep(bundle string, refs ...promote.ReleaseRef) {
	want := map[promote.ReleaseRef]bool{}
	for _, r := range refs {
		want[r] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ref := range s.bundles[bundle] {
		if !want[ref] {
			delete(s.bundles[bundle], ref)
		}
	}
}
