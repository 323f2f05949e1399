package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// newLogger builds the one logger of the process: JSON by default, console
// for people. Libraries get it through zerolog.Ctx(ctx).
func newLogger(format, level string, w *os.File) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Logger{}, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	// Milliseconds in the JSON timestamps: a release's phases are often
	// apart by less than a second.
	zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00"
	var log zerolog.Logger
	if format == "console" {
		log = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05.000"})
	} else {
		log = zerolog.New(w)
	}
	return log.Level(lvl).With().Timestamp().Logger(), nil
}

// leaderNamespace is --leader-election-namespace, else the pod's namespace.
func leaderNamespace(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if data, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace"); err == nil {
		if ns := strings.TrimSpace(string(data)); ns != "" {
			return ns
		}
	}
	return "default"
}

// withLeadership runs work only while this process holds the Lease, so two
// replicas never act at once. Losing the Lease cancels work's context and
// returns; the process then exits and its restart competes again.
func withLeadership(ctx context.Context, cfg *rest.Config, c *config, log zerolog.Logger, work func(context.Context)) error {
	if !c.LeaderElect {
		work(ctx)
		return nil
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	id, _ := os.Hostname()
	id = fmt.Sprintf("%s_%d", id, os.Getpid())
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: leaderNamespace(c.LeaderNamespace), Name: c.LeaderID},
		Client:     cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: id},
	}
	lost := make(chan struct{})
	leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
		Lock:            lock,
		ReleaseOnCancel: true,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				log.Info().Str("identity", id).Msg("leading")
				work(ctx)
			},
			OnStoppedLeading: func() {
				log.Info().Str("identity", id).Msg("stopped leading")
				close(lost)
			},
		},
	})
	select {
	case <-lost:
		if ctx.Err() == nil {
			return fmt.Errorf("lost the leader Lease %s", c.LeaderID)
		}
	default:
	}
	return nil
}
