package applier

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	utilnet "k8s.io/apimachinery/pkg/util/net"
)

// TransientError wraps an error that retrying later can fix: the API server
// was unreachable, overloaded or timed out. It is never a verdict on the
// objects themselves.
type TransientError struct {
	// Op says what was being done ("wait for health", "apply").
	Op  string
	Err error
}

// Error implements error.
func (e *TransientError) Error() string {
	return fmt.Sprintf("%s: api server unavailable (retryable): %v", e.Op, e.Err)
}

// Unwrap returns the underlying error.
func (e *TransientError) Unwrap() error { return e.Err }

// IsTransient reports whether err is worth retrying unchanged: a
// *TransientError, a refused or reset connection, a network timeout, an
// unexpected EOF, or an API status of 429 or 5xx. A cancelled context and
// a *HealthError are not transient.
func IsTransient(err error) bool {
	if err == nil {
		return false
	}
	var te *TransientError
	if errors.As(err, &te) {
		return true
	}
	var he *HealthError
	if errors.As(err, &he) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if apierrors.IsTooManyRequests(err) || apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) ||
		apierrors.IsInternalError(err) || apierrors.IsServiceUnavailable(err) || apierrors.IsUnexpectedServerError(err) {
		return true
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return st.Status().Code >= 500 || st.Status().Code == 429
	}
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	if utilnet.IsConnectionRefused(err) || utilnet.IsConnectionReset(err) || utilnet.IsProbableEOF(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var oe *net.OpError
	return errors.As(err, &oe) // dial and read failures below the HTTP layer
}

// Failure is one object that is not healthy, and why.
type Failure struct {
	// Object names the object: "Deployment shop/server-green".
	Object string
	// Reason says why, naming the pod, container and image when a pod is
	// the cause.
	Reason string
}

// String formats the failure as "<Object>: <Reason>".
func (f Failure) String() string { return f.Object + ": " + f.Reason }

// HealthError is the terminal verdict of WaitHealthy: the objects failed
// (fail-fast pod signals, a Failed kstatus) or did not become healthy in
// time. It never stands for an unreachable API server or a cancelled wait.
type HealthError struct {
	// TimedOut is true when the wait ran out of time rather than failing fast.
	TimedOut bool
	// Failures lists every failing or not-ready object.
	Failures []Failure
	// Report is the last health observed.
	Report HealthReport
}

// Error implements error. The text is the evidence a revert commit gives:
// every failing object and why, then how long the wait took.
func (e *HealthError) Error() string {
	parts := make([]string, len(e.Failures))
	for i, f := range e.Failures {
		parts[i] = f.String()
	}
	reason := strings.Join(parts, "; ")
	if e.TimedOut {
		reason = "not ready in time: " + reason
	}
	return fmt.Sprintf("%s after %s", reason, e.Report.Duration.Round(100*time.Millisecond))
}
