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
//   - main.go: the subcommands (run, render, diff, status, version, and the
//     hidden render-worker) and exit codes; cli.go: flag parsing shared by
//     the subcommands (--help on stdout, exit codes 0/1/2) and client-go's
//     kubeconfig loading rules (--kubeconfig, --context).
//   - config.go: the flags of `run` and their checks; lock.go: the work
//     directory's lock; tenancy_file.go: --tenancy-file.
//   - run.go: `run`: builds the repository, the cluster clients and the
//     fleet adapters, then the loop under leadership.
//   - leader.go: leader election with a Kubernetes Lease.
//   - server.go: /healthz (the watchdog), /readyz (standbys are ready),
//     /metrics, /hooks/git and pprof; watchdog.go: is the loop making progress.
//   - agent.go: the loop: poll, check out, discover, one admission pass per
//     new tip, resync; rewind.go: a branch rewound under the agent;
//     workdir.go: a work directory that cannot be written.
//   - admit.go: admission: gathers each bundle's facts (cheap ones first,
//     costly ones when Admit asks), performs the verdict, and renders the
//     tip's candidates at once.
//   - drivers.go: the bundles' drivers, started on first sight with their
//     fleet adapters; lifecycle.go: bundles that left the branch.
//   - stages.go: stage gates at the newest tip, --bundles, the waiting gauge.
//   - protect.go: --write-mode=status-branch and the forge of revert requests.
//   - notes.go: the drivers' notes as log lines, metrics and visibility
//     (notes only report); metrics.go: the Prometheus series.
//   - notify.go, checks.go: the flags of notifications, commit statuses and checks.
//   - render_cmd.go, diff_cmd.go, status_cmd.go, status_cluster.go,
//     stages_status.go: the read-only subcommands; render_worker.go: the
//     agent's render worker processes.
//
// Values flow one way: a gitsync.Snapshot is rendered into the fleet.Store
// (fleet.Renderer), a promote.Candidate names the release by commit and
// digest, and the driver's adapters (fleet.Cluster, fleet.Git) resolve it.
// The adapters never call into this package; the only callback is the
// driver's notes, which are logged and counted here.
package main
