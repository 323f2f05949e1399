package render

import (
	"fmt"
	"slices"
	"strings"
)

// Approval values of spec.approval.
const (
	ApprovalNone     = "none"
	ApprovalRequired = "required"
)

// Stage is where a bundle sits in a promotion pipeline: the bundles a
// change must pass first (spec.after) and whether a person must approve
// each release (spec.approval). See docs/stages.md.
type Stage struct {
	// After names the upstream bundles (same repository and branch): a
	// change to an input this bundle shares with one of them is released
	// here only once that upstream promoted it and finished its soak.
	After []string
	// Approval is ApprovalRequired or ApprovalNone (the default).
	Approval string
}

// parseStage reads spec.after and spec.approval.
func parseStage(r *rawBundle, s *Spec, bad func(string, string, ...any) error) error {
	seen := map[string]bool{}
	for i, name := range r.Spec.After {
		field := fmt.Sprintf("spec.after[%d]", i)
		if !validLabel(name) {
			return bad(field, "%q is not a bundle name (a DNS label)", name)
		}
		if seen[name] {
			return bad(field, "%q is listed twice", name)
		}
		seen[name] = true
		s.Stage.After = append(s.Stage.After, name)
	}
	switch r.Spec.Approval {
	case "", ApprovalNone:
		s.Stage.Approval = ApprovalNone
	case ApprovalRequired:
		s.Stage.Approval = ApprovalRequired
	default:
		return bad("spec.approval", "must be %s or %s, not %q", ApprovalRequired, ApprovalNone, r.Spec.Approval)
	}
	return nil
}

// vetStages moves to Broken every bundle whose spec.after names a bundle
// that is not in the repository, or that is part of a cycle (a after b,
// b after a, or a after itself). An upstream that may be one of the
// broken bundles (whose names are unknown) is not refused here: the
// downstream waits for it instead.
func (d *Discovery) vetStages() {
	names := map[string]*Bundle{}
	for _, b := range d.Bundles {
		names[b.Name] = b
	}
	bad := map[string]error{}
	for _, b := range d.Bundles {
		for i, up := range b.Spec.Stage.After {
			if up == b.Name {
				bad[b.Name] = fmt.Errorf("%s: spec.after[%d]: %q is this bundle: a bundle cannot come after itself", b.File, i, up)
				break
			}
			if names[up] == nil && len(d.Broken) == 0 {
				bad[b.Name] = fmt.Errorf("%s: spec.after[%d]: no bundle named %q in the repository", b.File, i, up)
				break
			}
		}
		if bad[b.Name] != nil {
			continue
		}
		if cycle := cycleFrom(b.Name, names); cycle != nil {
			bad[b.Name] = fmt.Errorf("%s: spec.after: a cycle (each bundle comes after the next): %s", b.File, strings.Join(cycle, " → "))
		}
	}
	var ok []*Bundle
	for _, b := range d.Bundles {
		if err := bad[b.Name]; err != nil {
			d.Broken = append(d.Broken, Broken{File: b.File, Dir: b.Dir, Err: err, Name: b.Name})
			continue
		}
		ok = append(ok, b)
	}
	d.Bundles = ok
}

// cycleFrom returns the names of a cycle through start (start first and
// last), following spec.after, or nil when start is on none.
func cycleFrom(start string, names map[string]*Bundle) []string {
	var path []string
	visited := map[string]bool{}
	var walk func(name string) []string
	walk = func(name string) []string {
		b := names[name]
		if b == nil {
			return nil
		}
		path = append(path, name)
		defer func() { path = path[:len(path)-1] }()
		for _, up := range b.Spec.Stage.After {
			if up == start {
				return append(slices.Clone(path), start)
			}
			if visited[up] {
				continue
			}
			visited[up] = true
			if c := walk(up); c != nil {
				return c
			}
		}
		return nil
	}
	return walk(start)
}
