// Package fleet holds the concrete roles the release state machine needs
// for each bundle an agent runs, built from gitsync, render and applier:
//
//   - store.go: Store, the renders the drivers refer to, by bundle and
//     release (commit and digest), kept compact and decoded on use.
//   - render.go: Renderer, which renders a bundle at a checkout for both
//     colors into the Store, and on a driver's start the releases that
//     release.yaml and the cluster say each color runs.
//   - cluster.go, checks.go: Cluster, promote.Cluster for one bundle:
//     observe, deploy, verify, check, route and scale, acting as the
//     bundle's identity; the release in flight is decoded once.
//   - git.go: Git, promote.Git for one bundle: the only writer of its
//     release.yaml (promotions, reverts, holds, soak records).
//   - protect.go: StatusGit, promote.Git and promote.Proposer when the
//     tracked branch is protected (--write-mode=status-branch): the only
//     writer of release.yaml there, on the agent's status branch; reverts
//     proposed as requests from a branch per failure; OverlayReleases, the
//     status branch's records laid over a checkout of the tracked branch.
//   - release.go: a bundle's release.yaml (ReleasePath, ReadRelease,
//     VetRelease) and its Inputs, the one definition of what a release
//     depends on.
//   - trail.go: Trail, what the branch says between two commits (changed
//     inputs, the agent's own commits, subjects), for admission.
//   - tenancy.go: Tenancy, who acts for a bundle (impersonated
//     ServiceAccounts) and which namespaces it may use; tenancyfile.go:
//     the platform's tenancy rules (--tenancy-file), binding repository
//     paths to namespaces, ServiceAccounts and kinds.
//   - trust.go: Trust, --verify-commits: the signatures a candidate needs.
//   - gate.go: GateReader, what a stage gate decides on, read from a
//     checkout of the branch.
//   - delete.go: DeleteBundle, for a bundle that left the branch.
//   - visibility.go, events.go: Visibility, the drivers' notes as
//     Kubernetes Events, commit statuses and notifications.
//
// Package fleet decides nothing about a release (promote.Admit and
// promote.Step do), never logs, reads no flags and never calls back into
// the agent's loop.
package fleet
