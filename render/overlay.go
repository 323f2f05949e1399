package render

import (
	"fmt"
	"sort"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"sigs.k8s.io/kustomize/api/filters/labels"
	"sigs.k8s.io/kustomize/api/filters/nameref"
	"sigs.k8s.io/kustomize/api/filters/suffix"
	"sigs.k8s.io/kustomize/api/hasher"
	"sigs.k8s.io/kustomize/api/resmap"
	"sigs.k8s.io/kustomize/api/resource"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/resid"
	"sigs.k8s.io/yaml"
)

// The color overlay is what a generated kustomization level on top of the
// user's would do (nameSuffix, labels with selectors and templates, and the
// top level's hash suffixes and name-reference fix-ups), done with
// kustomize's own filters on the ResMap of the user's one build, so that
// kustomize's quadratic resource map is paid once and not twice.

// overlayConfig is the part of kustomize's default transformer config the
// overlay uses.
type overlayConfig struct {
	CommonLabels  types.FsSlice  `json:"commonLabels,omitempty"`
	NameReference []nameBackRefs `json:"nameReference,omitempty"`
}

// nameBackRefs is kustomize's NameBackReferences: the fields (Referrers)
// that hold the name of an object of kind Gvk.
type nameBackRefs struct {
	resid.Gvk `json:",inline,omitempty"`
	Referrers types.FsSlice `json:"fieldSpecs,omitempty"`
}

// defaultOverlayConfig parses the copied defaults and orders them as
// kustomize does (sortFields).
var defaultOverlayConfig = sync.OnceValues(func() (*overlayConfig, error) {
	var c overlayConfig
	if err := yaml.UnmarshalStrict([]byte(kustomizeCommonLabelFieldSpecs+"\n"+kustomizeNameReferenceFieldSpecs), &c); err != nil {
		return nil, fmt.Errorf("kustomize default field specs: %w", err)
	}
	sort.Sort(c.CommonLabels)
	sort.SliceStable(c.NameReference, func(i, j int) bool { return c.NameReference[i].Gvk.IsLessThan(c.NameReference[j].Gvk) })
	labels, err := types.FsSlice(nil).MergeAll(c.CommonLabels)
	if err != nil {
		return nil, fmt.Errorf("kustomize default field specs: %w", err)
	}
	c.CommonLabels = labels
	return &c, nil
})

// suffixSkipped are the kinds kustomize's SuffixTransformer leaves alone.
var suffixSkipped = []resid.Gvk{
	{Kind: "CustomResourceDefinition"},
	{Group: "apiregistration.k8s.io", Kind: "APIService"},
	{Kind: "Namespace"},
}

// colorOverlay renames every object of m with the suffix "-"+color, labels
// it (metadata, selectors, templates) with the bundle and color, moves the
// content-hash suffix of generated ConfigMaps and Secrets after the color
// (re-hashed, as kustomize hashes at the top level), and fixes the name
// references to renamed objects.
func colorOverlay(m resmap.ResMap, bundle, color string) error {
	cfg, err := defaultOverlayConfig()
	if err != nil {
		return err
	}
	hashed, err := hashSuffixed(m)
	if err != nil {
		return err
	}
	sfx := "-" + color
	for _, r := range m.Resources() {
		if skipSuffix(r.OrgId()) {
			continue
		}
		r.AddNameSuffix(sfx)
		r.StorePreviousId()
		if err := r.ApplyFilter(suffix.Filter{Suffix: sfx, FieldSpec: types.FieldSpec{Path: "metadata/name"}}); err != nil {
			return fmt.Errorf("%s: name suffix: %w", r.CurId(), err)
		}
	}
	if err := m.ApplyFilter(labels.Filter{
		Labels:  map[string]string{contract.LabelBundle: bundle, contract.LabelColor: color},
		FsSlice: cfg.CommonLabels,
	}); err != nil {
		return fmt.Errorf("color labels: %w", err)
	}
	var h hasher.Hasher
	for r, base := range hashed {
		// As kustomize's HashTransformer: the hash of the object under its
		// colored name, appended to that name.
		r.SetName(base + sfx)
		sum, err := r.Hash(&h)
		if err != nil {
			return fmt.Errorf("%s: name hash: %w", r.CurId(), err)
		}
		r.StorePreviousId()
		r.SetName(base + sfx + "-" + sum)
	}
	if err := fixNameReferences(m, cfg.NameReference); err != nil {
		return err
	}
	m.RemoveBuildAnnotations()
	return nil
}

// sharedOverlay puts the bundle label on the metadata of every object of m.
func sharedOverlay(m resmap.ResMap, bundle string) error {
	return m.ApplyFilter(labels.Filter{
		Labels:  map[string]string{contract.LabelBundle: bundle},
		FsSlice: types.FsSlice{{Path: "metadata/labels", CreateIfNotPresent: true}},
	})
}

func skipSuffix(id resid.ResId) bool {
	for _, g := range suffixSkipped {
		if id.IsSelected(&g) {
			return true
		}
	}
	return false
}

// hashSuffixed finds the ConfigMaps and Secrets whose names end in
// kustomize's content hash (generated, with the hash suffix enabled) and
// returns them with their names without it.
func hashSuffixed(m resmap.ResMap) (map[*resource.Resource]string, error) {
	out := map[*resource.Resource]string{}
	var h hasher.Hasher
	for _, r := range m.Resources() {
		if k := r.GetKind(); (k != "ConfigMap" && k != "Secret") || r.GetApiVersion() != "v1" {
			continue
		}
		name := r.GetName()
		const n = 10 // kustomize's hash length
		if len(name) < n+2 || name[len(name)-n-1] != '-' {
			continue
		}
		base := name[:len(name)-n-1]
		c := r.DeepCopy()
		c.SetName(base)
		sum, err := c.Hash(&h)
		if err != nil {
			return nil, fmt.Errorf("%s: name hash: %w", r.CurId(), err)
		}
		if sum == name[len(name)-n:] {
			out[r] = base
		}
	}
	return out, nil
}

// fixNameReferences is kustomize's name-reference transformer (its
// nameref filter for each referrer field of each kind), with candidates
// grouped by kind first, so that the work is not quadratic in objects.
func fixNameReferences(m resmap.ResMap, backRefs []nameBackRefs) error {
	res := m.Resources()
	orgIds := make([]resid.ResId, len(res))
	prevIds := make([][]resid.ResId, len(res))
	for i, r := range res {
		orgIds[i] = r.OrgId()
		prevIds[i] = r.PrevIds()
	}
	candidates := map[int]resmap.ResMap{}
	for bi := range backRefs {
		br := &backRefs[bi]
		for _, spec := range br.Referrers {
			for i, r := range res {
				if !orgIds[i].IsSelected(&spec.Gvk) {
					continue
				}
				c, err := candidatesFor(res, prevIds, candidates, bi, br.Gvk)
				if err != nil {
					return err
				}
				if c.Size() == 0 {
					continue
				}
				sub, err := c.SubsetThatCouldBeReferencedByResource(r)
				if err != nil {
					return fmt.Errorf("%s: name references: %w", r.CurId(), err)
				}
				f := nameref.Filter{Referrer: r, NameFieldToUpdate: spec, ReferralTarget: br.Gvk, ReferralCandidates: sub}
				if err := r.ApplyFilter(f); err != nil {
					return fmt.Errorf("%s: name references: %w", r.CurId(), err)
				}
			}
		}
	}
	return nil
}

// candidatesFor returns (and caches under key) the objects of res (with
// their previous ids) one of whose previous ids is of kind gvk: the only
// ones nameref can pick.
func candidatesFor(res []*resource.Resource, prevIds [][]resid.ResId, cache map[int]resmap.ResMap, key int, gvk resid.Gvk) (resmap.ResMap, error) {
	if c, ok := cache[key]; ok {
		return c, nil
	}
	c := resmap.New()
	for i, r := range res {
		for _, id := range prevIds[i] {
			if id.IsSelected(&gvk) {
				if err := c.Append(r); err != nil {
					return nil, err
				}
				break
			}
		}
	}
	cache[key] = c
	return c, nil
}
