// Package applier is the agent's only contact with the cluster: server-side
// apply with a dry run first, inventories and pruning, health by kstatus rules
// with fail-fast pod signals, and the all-at-once traffic flip of a bundle's
// stable Services.
//
// It knows nothing of Git and decides nothing: it returns typed results
// (ChangeSet, HealthReport) and typed errors for the caller to act on.
package applier
