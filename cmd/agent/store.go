package main

import (
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/gitsync"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

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
	// inputs: bundle → commit → the files its render at that commit read
	// (failed renders included); latest: bundle → the newest of those.
	inputs map[string]map[string]gitsync.Paths
	latest map[string]gitsync.Paths
	newest map[string]*rendered // bundle → the newest render put
}

func newReleaseStore() *releaseStore {
	return &releaseStore{bundles: map[string]map[promote.ReleaseRef]*rendered{}, specs: map[string]*render.Bundle{},
		inputs: map[string]map[string]gitsync.Paths{}, latest: map[string]gitsync.Paths{},
		newest: map[string]*rendered{}}
}

// setInputs records the files bundle's render at commit read.
func (s *releaseStore) setInputs(bundle, commit string, in []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inputs[bundle] == nil {
		s.inputs[bundle] = map[string]gitsync.Paths{}
	}
	s.inputs[bundle][commit] = in
	s.latest[bundle] = in
}

// inputsAt is what bundle's render at commit read (nil: not known).
func (s *releaseStore) inputsAt(bundle, commit string) gitsync.Paths {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inputs[bundle][commit]
}

// latestInputs is what bundle's newest render read.
func (s *releaseStore) latestInputs(bundle string) gitsync.Paths {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest[bundle]
}

// readers lists the bundles other than bundle whose newest render read p.
func (s *releaseStore) readers(p, bundle string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for name, in := range s.latest {
		if name != bundle && in.Match(p) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// forget drops everything stored of bundle (it left the repository).
func (s *releaseStore) forget(bundle string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.bundles, bundle)
	delete(s.specs, bundle)
	delete(s.inputs, bundle)
	delete(s.latest, bundle)
	delete(s.newest, bundle)
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
	s.newest[name] = r
}

// setSpec makes b the newest bundle.yaml of its bundle.
func (s *releaseStore) setSpec(b *render.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs[b.Name] = b
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
		return nil, nil, fmt.Errorf("bundle %s: release %s (%s) has no render for color %s", bundle, contract.Short(ref.Commit), ref.Digest, color)
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
	commits := map[string]bool{}
	for ref := range s.bundles[bundle] {
		if !want[ref] {
			delete(s.bundles[bundle], ref)
		} else {
			commits[ref.Commit] = true
		}
	}
	for c := range s.inputs[bundle] {
		if !commits[c] && !slices.ContainsFunc(refs, func(r promote.ReleaseRef) bool { return r.Commit == c }) {
			delete(s.inputs[bundle], c)
		}
	}
}

// names lists the bundles with a stored spec.
func (s *releaseStore) names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.specs))
	for n := range s.specs {
		out = append(out, n)
	}
	return out
}

// shared is the shared objects of bundle's newest stored render.
func (s *releaseStore) shared(bundle string) []*unstructured.Unstructured {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.newest[bundle]
	if r == nil {
		return nil
	}
	for _, res := range r.colors {
		return res.Shared
	}
	return nil
}
