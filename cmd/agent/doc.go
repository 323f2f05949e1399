// Command tandem-agent is the tandem GitOps pull agent. Package main is
// wiring: flags, leadership, the HTTP server, the subcommands, and the loop
// that connects the libraries. It decides nothing about a release:
// promote.Admit decides what a bundle does with a new tip, promote.Step
// everything that follows, and package fleet carries their decisions to the
// cluster and to Git.
//
// The loop, one new tip at a time:
//
//	gitsync.Repo.Poll → CheckoutFrom → render.DiscoverAll
//	  → for each bundle: gather facts → promote.Admit → act on the verdict
//	  → promote.Driver.Offer(candidate) → Step → fleet.Cluster / fleet.Git
//
// Files:
//
//   - main.go: the subcommands (run, render, diff, status, version) and exit codes.
//   - config.go: the flags of `run` and their checks.
//   - run.go: `run`: builds the repository, the cluster clients and the fleet adapters, then the loop under leadership.
//   - leader.go: leader election with a Kubernetes Lease.
//   - server.go: /healthz, /readyz, /metrics, /hooks/git and pprof.
//   - agent.go: the loop: poll, check out, discover, one admission pass per new tip, resync.
//   - admit.go: admission: gathers each bundle's facts (cheap ones first, costly ones when Admit asks) and performs the verdict.
//   - drivers.go: the bundles' drivers: started on first sight with their fleet adapters, candidates rendered into the store.
//   - lifecycle.go: bundles that left the branch: admitted for removal, then deleted.
//   - rewind.go: a rewound or force-pushed branch: logged, counted, every driver recovered from the new tip.
//   - workdir.go: a failed sync reported as the work directory's fault when it is one.
//   - stages.go: stage gates at the newest tip, --bundles selection, the waiting gauge.
//   - notes.go: the drivers' notes as log lines, metrics and visibility (notes only report).
//   - metrics.go: the Prometheus series.
//   - notify.go, checks.go: the flags of notifications, commit statuses and checks.
//   - render_cmd.go, diff_cmd.go, status_cmd.go, status_cluster.go, stages_status.go: the read-only subcommands.
//
// Values flow one way: a gitsync.Snapshot is rendered into the fleet.Store
// (fleet.Renderer), a promote.Candidate names the release by commit and
// digest, and the driver's adapters (fleet.Cluster, fleet.Git) resolve it.
// The adapters never call into this package; the only callback is the
// driver's notes, which are logged and counted here.
package main
