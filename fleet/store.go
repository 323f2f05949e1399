package fleet

import (
	"encoding/json"
	"errors"
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

// Rendered is one release of a bundle as the agent rendered it: the bundle
// (spec) at that commit and its render for each color.
type Rendered struct {
	Bundle *render.Bundle
	Colors map[string]*render.Result
}

// Store holds the renders the drivers refer to, by bundle and
// release (commit and digest). The loop puts a render in before it names
// the release to a driver; the cluster adapters only read. Values flow one
// way: Snapshot → render → store → apply.
type Store struct {
	mu      sync.Mutex
	bundles map[string]map[promote.ReleaseRef]*stored
	specs   map[string]*render.Bundle // the newest bundle.yaml of each bundle
	// inputs: bundle → commit → the files its render at that commit read
	// (failed renders included); latest: bundle → the newest of those.
	inputs map[string]map[string]gitsync.Paths
	latest map[string]gitsync.Paths
	newest map[string]*stored // bundle → the newest render put
}

func NewStore() *Store {
	return &Store{bundles: map[string]map[promote.ReleaseRef]*stored{}, specs: map[string]*render.Bundle{},
		inputs: map[string]map[string]gitsync.Paths{}, latest: map[string]gitsync.Paths{},
		newest: map[string]*stored{}}
}

// SetInputs records the files bundle's render at commit read.
func (s *Store) SetInputs(bundle, commit string, in []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.inputs[bundle] == nil {
		s.inputs[bundle] = map[string]gitsync.Paths{}
	}
	s.inputs[bundle][commit] = in
	s.latest[bundle] = in
}

// InputsAt is what bundle's render at commit read (nil: not known).
func (s *Store) InputsAt(bundle, commit string) gitsync.Paths {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inputs[bundle][commit]
}

// LatestInputs is what bundle's newest render read.
func (s *Store) LatestInputs(bundle string) gitsync.Paths {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest[bundle]
}

// Readers lists the bundles other than bundle whose newest render read p.
func (s *Store) Readers(p, bundle string) []string {
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

// Forget drops everything stored of bundle (it left the repository).
func (s *Store) Forget(bundle string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.bundles, bundle)
	delete(s.specs, bundle)
	delete(s.inputs, bundle)
	delete(s.latest, bundle)
	delete(s.newest, bundle)
}

// Put stores r as release ref of its bundle and makes its spec the newest.
func (s *Store) Put(ref promote.ReleaseRef, r *Rendered) {
	name := r.Bundle.Name
	st := &stored{bundle: r.Bundle, colors: map[string]*frozenResult{}}
	for color, res := range r.Colors {
		st.colors[color] = freeze(res)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.bundles[name] == nil {
		s.bundles[name] = map[promote.ReleaseRef]*stored{}
	}
	s.bundles[name][ref] = st
	s.specs[name] = r.Bundle
	s.newest[name] = st
}

// SetSpec makes b the newest bundle.yaml of its bundle.
func (s *Store) SetSpec(b *render.Bundle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.specs[b.Name] = b
}

// Has reports whether ref of bundle is stored.
func (s *Store) Has(bundle string, ref promote.ReleaseRef) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.bundles[bundle][ref]
	return ok
}

// Get returns ref's render for color.
func (s *Store) Get(bundle string, ref promote.ReleaseRef, color string) (*render.Bundle, *render.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.bundles[bundle][ref]
	if !ok || r.colors[color] == nil {
		return nil, nil, fmt.Errorf("bundle %s: release %s (%s) has no render for color %s", bundle, contract.Short(ref.Commit), ref.Digest, color)
	}
	res, err := r.colors[color].thaw()
	if err != nil {
		return nil, nil, fmt.Errorf("bundle %s: release %s (%s) color %s: %w", bundle, contract.Short(ref.Commit), ref.Digest, color, err)
	}
	return r.bundle, res, nil
}

// Spec is the newest bundle.yaml of bundle.
func (s *Store) Spec(bundle string) *render.Bundle {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.specs[bundle]
}

// Keep drops bundle's renders other than refs.
func (s *Store) Keep(bundle string, refs ...promote.ReleaseRef) {
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

// Names lists the bundles with a stored spec.
func (s *Store) Names() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]string, 0, len(s.specs))
	for n := range s.specs {
		out = append(out, n)
	}
	return out
}

// Shared is the shared objects of bundle's newest stored render.
func (s *Store) Shared(bundle string) []*unstructured.Unstructured {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.newest[bundle]
	if r == nil {
		return nil
	}
	for _, f := range r.colors {
		res, err := f.thaw()
		if err != nil {
			return nil
		}
		return res.Shared
	}
	return nil
}

// stored is a rendered release as the store keeps it.
type stored struct {
	bundle *render.Bundle
	colors map[string]*frozenResult
}

// frozenResult is a render.Result kept compact: its objects as JSON, a
// fraction of the memory of the unstructured maps (with 1,000 bundles the
// maps were most of the agent's heap); thaw decodes a fresh copy for each
// use. A result that cannot be encoded is kept as it is.
type frozenResult struct {
	res                    *render.Result // Objects, Twins and Shared are nil once frozen
	objects, twins, shared []byte
}

func freeze(r *render.Result) *frozenResult {
	var f frozenResult
	var errs [3]error
	f.objects, errs[0] = json.Marshal(r.Objects)
	f.twins, errs[1] = json.Marshal(r.Twins)
	f.shared, errs[2] = json.Marshal(r.Shared)
	if errors.Join(errs[:]...) != nil {
		return &frozenResult{res: r}
	}
	rest := *r
	rest.Objects, rest.Twins, rest.Shared = nil, nil, nil
	f.res = &rest
	return &f
}

func (f *frozenResult) thaw() (*render.Result, error) {
	if f.objects == nil {
		return f.res, nil // kept as it was
	}
	r := *f.res
	for _, part := range []struct {
		data []byte
		to   *[]*unstructured.Unstructured
	}{{f.objects, &r.Objects}, {f.twins, &r.Twins}, {f.shared, &r.Shared}} {
		if err := json.Unmarshal(part.data, part.to); err != nil {
			return nil, fmt.Errorf("decode the stored render: %w", err)
		}
	}
	return &r, nil
}
