package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/pprof"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// server serves /healthz, /readyz, /metrics, /hooks/git and, behind --pprof,
// /debug/pprof.
//
// /readyz: a standby replica (leader election on, another replica holds
// the Lease) is ready: it can take over. The replica that acts is ready once
// its first sync is done. /healthz fails when the sync loop is wedged (the
// watchdog), so the kubelet restarts it.
type server struct {
	standby atomic.Bool // waiting for the Lease
	synced  atomic.Bool // the acting replica's first sync is done
	alive   func(time.Time) error
	srv     *http.Server
}

func newServer(addr string, m *metrics, webhook http.Handler, withPprof bool, alive func(time.Time) error) *server {
	s := &server{alive: alive}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := s.alive(time.Now()); err != nil {
			http.Error(w, "unhealthy: "+err.Error()+"\n", http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.standby.Load():
			_, _ = w.Write([]byte("ok: standby, ready to take over\n"))
		case s.synced.Load():
			_, _ = w.Write([]byte("ok\n"))
		default:
			http.Error(w, "not ready: first sync not done\n", http.StatusServiceUnavailable)
		}
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{}))
	if webhook != nil {
		mux.Handle("/hooks/git", webhook)
	}
	if withPprof {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/heap", pprof.Index)
	}
	// A slow or endless request body (a hostile webhook client) cannot hold a
	// connection: headers within 10s, the whole request within 30s.
	s.srv = &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, MaxHeaderBytes: 64 << 10}
	return s
}

// serve listens until ctx ends, then shuts down gracefully. listening is
// told the bound address (useful with port 0).
func (s *server) serve(ctx context.Context, listening func(addr string)) error {
	ln, err := net.Listen("tcp", s.srv.Addr)
	if err != nil {
		return err
	}
	listening(ln.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.srv.Shutdown(shutdown)
	}()
	if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
