package main

import (
	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/gitsync"
)

// rewound handles a tip that does not descend from the last one: someone
// rewound or force-pushed the branch. The agent never writes over it
// blindly: it says so once, and treats the rewound tip as a restart would.
// Every driver is stopped and, in the full pass that follows, started again
// from the rewound release.yaml and the cluster (promote.Recover): what
// serves is committed again when release.yaml no longer says it, unless the
// commit it runs left the branch (fleet.Git abandons such an outcome), and
// then the tip is offered to every bundle like any new tip.
func (a *agent) rewound(p gitsync.Poll) {
	a.m.rewinds.Inc()
	a.log.Warn().Str("phase", "sync").Str("previous", contract.Short(p.Previous)).Str("commit", contract.Short(p.Tip)).
		Msg("branch rewound or force-pushed: the new tip does not descend from the last one; recovering every bundle from it")
	a.settled = nil // a full pass: the drivers start again there
	a.drivers.restart()
}

// restart stops every driver; the next pass starts them again (runFor),
// each recovering from release.yaml at the tip and the cluster, as after a
// restart of the agent.
func (d *drivers) restart() {
	d.mu.Lock()
	runs := make([]*bundleRun, 0, len(d.bundles))
	for _, run := range d.bundles {
		runs = append(runs, run)
	}
	d.bundles = map[string]*bundleRun{}
	d.mu.Unlock()
	for _, run := range runs {
		run.stop()
		<-run.done
	}
}
