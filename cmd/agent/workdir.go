package main

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"time"
)

// workDirFault returns the path of err's failing file operation when it is
// in the work directory dir (checkouts, render scratch): the disk is full,
// read-only, or a directory was replaced. That is a local fault, not Git's,
// and a restart would not fix it.
func workDirFault(err error, dir string) (string, bool) {
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		return "", false
	}
	rel, rerr := filepath.Rel(dir, pe.Path)
	if rerr != nil || rel == ".." || strings.HasPrefix(rel, "../") || filepath.IsAbs(rel) {
		return "", false
	}
	return pe.Path, true
}

// syncFailed reports a failed sync, retried in next: a fault of the work
// directory by name (tandem_transient_errors_total{dependency="workdir"}),
// anything else as Git's.
func (a *agent) syncFailed(err error, next time.Duration) {
	work := filepath.Dir(a.dir)
	if p, ok := workDirFault(err, work); ok {
		a.m.transient.WithLabelValues("workdir").Inc()
		a.log.Error().Err(err).Str("phase", "sync").Str("workdir", work).Str("path", p).Dur("retry_in", next).
			Msg("work directory not writable (full, read-only or replaced): no new tip is released until it is; will retry")
		return
	}
	a.m.transient.WithLabelValues("git").Inc()
	a.log.Error().Err(err).Str("phase", "sync").Dur("retry_in", next).Msg("sync failed; will retry")
}
