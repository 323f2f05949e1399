// Package render turns a bundle in a checked-out repository into the exact set
// of objects for one color: the user's kustomization (or, in a directory
// without one, its YAML files as they are), a color overlay,
// ${TANDEM_COLOR}/${TANDEM_BUNDLE} substitution and a stable twin per
// Service, in a deterministic order with a digest.
//
// The Helm charts a kustomization names in helmCharts are rendered in
// process with the Helm SDK, as `helm template` would (values files from
// the repository, release name and namespace from the bundle,
// .Capabilities from Options, schema validation, subcharts; lookup finds
// nothing), and their output is served to kustomize as one more resource
// of that kustomization: the chart is a base like any other. Chart
// directories are read through the confined filesystem; remote charts (a
// Helm HTTP repository or an OCI registry) are fetched only when told to,
// by exact version, cached by digest and pinned to the first digest seen.
// A test hook that is a job check's Job is kept; other hooks are refused.
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
// Files: bundle.go (bundle.yaml parsed strictly, and the bundles of a
// repository discovered, broken ones apart), checks.go (spec.checks and the
// Jobs of job checks), stages.go (spec.after and spec.approval, unknown
// upstreams and cycles), render.go (Render and RenderColors), overlay.go
// (the color level), kustconfig.go (kustomize's default field specs, which
// kustomize keeps internal), fs.go (the filesystem confined to the
// repository root, which records every file read, and serves the
// generated kustomization of a plain directory and the rendered charts),
// helm.go (helmCharts rendered with the Helm SDK), chartfetch.go (remote
// charts: HTTP repositories, OCI registries, the digest cache and pins,
// credentials), limits.go (the render's limits and LimitError), worker.go
// (renders in worker processes) and schema.go
// (BundleSchema, the JSON schema of bundle.yaml in docs/bundle.schema.json;
// `go generate ./render` rewrites it).
//
// It is pure: a directory and parameters in, objects and a digest out. It
// never talks to a cluster or to Git, never reads outside the repository
// root (but the chart cache it is given), never runs plugins or a helm
// binary, and loads remote bases and remote charts only when told to.
package render
