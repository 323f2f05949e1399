package applier

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

func TestIsTransient(t *testing.T) {
	gr := schema.GroupResource{Group: "apps", Resource: "deployments"}
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:1", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"wrapper", &TransientError{Op: "x", Err: errors.New("boom")}, true},
		{"connection refused", refused, true},
		{"wrapped connection refused", fmt.Errorf("Deployment a/b: %w", refused), true},
		{"too many requests", apierrors.NewTooManyRequests("slow down", 1), true},
		{"internal error", apierrors.NewInternalError(errors.New("etcd")), true},
		{"service unavailable", apierrors.NewServiceUnavailable("later"), true},
		{"server timeout", apierrors.NewServerTimeout(gr, "get", 1), true},
		{"timeout", apierrors.NewTimeoutError("slow", 1), true},
		{"not found", apierrors.NewNotFound(gr, "x"), false},
		{"invalid", apierrors.NewBadRequest("bad"), false},
		{"forbidden", apierrors.NewForbidden(gr, "x", errors.New("no")), false},
		{"conflict", apierrors.NewConflict(gr, "x", errors.New("no")), false},
		{"cancelled", fmt.Errorf("wait: %w", context.Canceled), false},
		{"health", &HealthError{Failures: []Failure{{Object: "Deployment a/b", Reason: "x"}}}, false},
		{"plain", errors.New("something"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsTransient(tt.err); got != tt.want {
				t.Errorf("IsTransient(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestCommonSelector(t *testing.T) {
	blue := deployment("ns", "a", "blue", "x", 1)
	green := deployment("ns", "b", "green", "x", 1)
	if got := commonSelector(objs(blue, deployment("ns", "c", "blue", "x", 1))); got != "tandem.dev/bundle=shop,tandem.dev/color=blue" {
		t.Errorf("same color: %q", got)
	}
	if got := commonSelector(objs(blue, green)); got != "tandem.dev/bundle=shop" {
		t.Errorf("two colors: %q", got)
	}
	bare := deployment("ns", "d", "blue", "x", 1)
	bare.SetLabels(nil)
	if got := commonSelector(objs(blue, bare)); got != "" {
		t.Errorf("unlabelled object: %q", got)
	}
}
