package promote

// BundleState is the one word that says where a bundle is, for the state
// gauge (tandem_bundle_state) and alerts.
type BundleState string

// Bundle states. The driver knows all but two: Waiting (at a stage gate)
// and Suspended (spec.suspend) are the loop's, combined by Overall.
const (
	BundlePending    BundleState = "pending"    // nothing released yet
	BundleLive       BundleState = "live"       // the last release is live, nothing under way
	BundleVerifying  BundleState = "verifying"  // a candidate is being applied, verified, checked or flipped
	BundleSoaking    BundleState = "soaking"    // the new live color is being watched
	BundleRecovering BundleState = "recovering" // the driver is reading the cluster after a (re)start
	BundleHeld       BundleState = "held"       // the last outcome was a hold: a person must act
	BundleFailed     BundleState = "failed"     // the last release failed and was reverted
	BundleWaiting    BundleState = "waiting"    // a candidate waits at its stage gate
	BundleSuspended  BundleState = "suspended"  // spec.suspend is set
)

// BundleStates lists every state, for exporting all of them.
var BundleStates = []BundleState{BundlePending, BundleLive, BundleVerifying, BundleSoaking, BundleRecovering,
	BundleHeld, BundleFailed, BundleWaiting, BundleSuspended}

// Summary is the state a driver's State amounts to.
func Summary(s State) BundleState {
	switch s.Phase {
	case PhaseRecovering:
		return BundleRecovering
	case PhaseConfirming, PhaseDeploying, PhaseVerifying, PhaseChecking, PhaseFlipping, PhaseFailing,
		PhaseFlippingBack, PhaseRecording:
		return BundleVerifying // a release is under way until its outcome is recorded
	case PhaseSoaking:
		return BundleSoaking
	}
	switch {
	case s.Last == ResultHeld:
		return BundleHeld
	case s.Last == ResultReverted:
		return BundleFailed
	case s.Live == "":
		return BundlePending
	}
	return BundleLive
}

// Overall is a bundle's state: suspended, else waiting at its gate, else
// what its driver says.
func Overall(driver BundleState, waiting, suspended bool) BundleState {
	switch {
	case suspended:
		return BundleSuspended
	case waiting:
		return BundleWaiting
	case driver == "":
		return BundlePending
	}
	return driver
}
