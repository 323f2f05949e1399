// Package render turns a bundle in a checked-out repository into the exact set
// of objects for one color: the user's kustomization, a generated color
// overlay, ${TANDEM_COLOR}/${TANDEM_BUNDLE} substitution and a stable twin per
// Service, in a deterministic order with a digest.
//
// Each Result also lists its Inputs, every repository file the render read
// (a base outside the bundle too), so the agent knows which commits change
// what a bundle renders; DiscoverAll reports broken bundles apart.
//
// It is pure: a directory and parameters in, objects and a digest out. It
// never talks to a cluster or to Git, and it never reads outside the
// repository root.
package render
