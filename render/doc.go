// Package render turns a bundle in a checked-out repository into the exact set
// of objects for one color: the user's kustomization, a color overlay,
// ${TANDEM_COLOR}/${TANDEM_BUNDLE} substitution and a stable twin per
// Service, in a deterministic order with a digest.
//
// kustomize builds the user's kustomization once (with a sentinel color, so
// one build serves both colors); the color overlay (name suffix, labels on
// metadata, selectors and templates, hash suffixes kept last, name
// references) is then applied to that build's objects with kustomize's own
// filters and default field specs, with the output a generated
// kustomization level on top would give. Where a one-level build would
// differ from the user's level under a generated one (vars, custom
// configurations or crds, buildMetadata, openapi, local-config objects),
// render builds under a generated level instead.
//
// Each Result also lists its Inputs, every repository file the render read
// (a base outside the bundle too), so the agent knows which commits change
// what a bundle renders; DiscoverAll reports broken bundles apart.
//
// It is pure: a directory and parameters in, objects and a digest out. It
// never talks to a cluster or to Git, and it never reads outside the
// repository root.
package render
