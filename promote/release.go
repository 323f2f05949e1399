package promote

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/internal/yamlguard"

	"sigs.k8s.io/yaml"
)

// KindRelease is the kind of release.yaml.
const KindRelease = "Release"

// ColorRelease is what one color of a bundle runs, as recorded in release.yaml.
type ColorRelease struct {
	Commit     string     `json:"commit,omitempty"`
	Digest     string     `json:"digest,omitempty"`
	State      string     `json:"state,omitempty"`
	PromotedAt *time.Time `json:"promotedAt,omitempty"`
	// SoakedAt: when this release finished its soak (written only when a
	// bundle lists this one in spec.after; see gate.go).
	SoakedAt *time.Time `json:"soakedAt,omitempty"`
	// Charts are the Helm charts the release runs: "name@version", then
	// the repository and digest of a remote chart.
	Charts []string `json:"charts,omitempty"`
}

// Failure is the last failed candidate of a bundle.
type Failure struct {
	Commit string    `json:"commit"`
	Reason string    `json:"reason"`
	At     time.Time `json:"at"`
	// RevertRequest is the link of the pull or merge request that reverts
	// Commit (--write-mode=status-branch); pending until the bundle's
	// inputs change.
	RevertRequest string `json:"revertRequest,omitempty"`
}

// Release is release.yaml, the agent's record of a bundle (contract section 5).
// A ParseRelease error never moves traffic: the driver treats it as hold and reports it.
type Release struct {
	APIVersion  string                  `json:"apiVersion"`
	Kind        string                  `json:"kind"`
	Bundle      string                  `json:"bundle"`
	Live        string                  `json:"live,omitempty"`
	Colors      map[string]ColorRelease `json:"colors,omitempty"`
	LastFailure *Failure                `json:"lastFailure,omitempty"`
}

// ParseRelease parses release.yaml strictly: unknown fields, a wrong apiVersion or kind,
// and colors that are not the bundle's are errors naming file and field.
func ParseRelease(file string, data []byte, colors [2]string) (*Release, error) {
	if err := yamlguard.Check(data); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	var r Release
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if r.APIVersion != contract.APIVersion {
		return nil, fmt.Errorf("%s: apiVersion %q: want %q", file, r.APIVersion, contract.APIVersion)
	}
	if r.Kind != KindRelease {
		return nil, fmt.Errorf("%s: kind %q: want %q", file, r.Kind, KindRelease)
	}
	ok := func(c string) bool { return c == colors[0] || c == colors[1] }
	if r.Live != "" && !ok(r.Live) {
		return nil, fmt.Errorf("%s: live: %q is not one of the bundle's colors %v", file, r.Live, colors)
	}
	for c, cr := range r.Colors {
		if !ok(c) {
			return nil, fmt.Errorf("%s: colors: %q is not one of the bundle's colors %v", file, c, colors)
		}
		if cr.State != StateLive && cr.State != StatePrevious {
			return nil, fmt.Errorf("%s: colors.%s.state: %q: want %q or %q", file, c, cr.State, StateLive, StatePrevious)
		}
		if (cr.State == StateLive) != (c == r.Live) {
			return nil, fmt.Errorf("%s: colors.%s.state: %q disagrees with live: %q", file, c, cr.State, r.Live)
		}
	}
	if r.Live != "" && r.Colors[r.Live].Commit == "" {
		return nil, fmt.Errorf("%s: colors.%s.commit: the live color names no commit", file, r.Live)
	}
	return &r, nil
}

// Marshal renders the release as YAML with a stable field order.
func (r *Release) Marshal() ([]byte, error) {
	return yaml.Marshal(r)
}

// Color states in release.yaml.
const (
	StateLive     = "live"
	StatePrevious = "previous"
)

// Record is release.yaml after a decision: prior (nil before the first
// deploy) updated with s's live and previous colors; promotedAt stamps a
// color that became live now; failure, when set, becomes lastFailure.
func Record(prior *Release, s State, now time.Time, failure *Failure) *Release {
	r := &Release{APIVersion: contract.APIVersion, Kind: KindRelease, Bundle: s.Bundle, Colors: map[string]ColorRelease{}}
	if prior != nil {
		r.LastFailure = prior.LastFailure
	}
	if failure != nil {
		r.LastFailure = failure
	}
	r.Live = s.Live
	if s.Live != "" {
		live := ColorRelease{Commit: s.LiveCommit, Digest: s.LiveDigest, State: StateLive, Charts: s.LiveCharts}
		if prior != nil && prior.Live == s.Live && prior.Colors[s.Live].Commit == s.LiveCommit {
			live.PromotedAt, live.SoakedAt = prior.Colors[s.Live].PromotedAt, prior.Colors[s.Live].SoakedAt
		} else {
			at := now.UTC().Truncate(time.Second)
			live.PromotedAt = &at
		}
		r.Colors[s.Live] = live
	}
	if s.Previous != "" && s.Previous != s.Live {
		r.Colors[s.Previous] = ColorRelease{Commit: s.PrevCommit, Digest: s.PrevDigest, State: StatePrevious, Charts: s.PrevCharts}
	}
	return r
}
