package promote

import (
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// The retry policies of the state machine: Step picks one by the action it
// repeats, and the driver waits Decision.After plus Jitter.
var (
	// ClusterRetry repeats an effect on the cluster: 1s, 2s, 4s ... 1m.
	ClusterRetry = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Cap: time.Minute}
	// GitRetry repeats writing an outcome: a rejected push means the branch
	// moved (retry on the new tip soon, or busy teams starve the agent); an
	// unreachable remote costs one cheap attempt every few seconds.
	GitRetry = wait.Backoff{Duration: time.Second, Factor: 2, Jitter: 0.1, Cap: 4 * time.Second}
)

// retryPolicy is the backoff for repeating action a.
func retryPolicy(a Action) wait.Backoff {
	if a == ActRecord {
		return GitRetry
	}
	return ClusterRetry
}

// backoffDelay is b's delay before retry n (0-based), without jitter: the
// pure counterpart of wait.Backoff.Step, so that Step stays deterministic.
func backoffDelay(b wait.Backoff, n int) time.Duration {
	d := b.Duration
	for i := 0; i < n && d < b.Cap; i++ {
		d = time.Duration(float64(d) * b.Factor)
	}
	if b.Cap > 0 && d > b.Cap {
		d = b.Cap
	}
	return d
}
