package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Prometheus is a real Prometheus server (Debian's prometheus package, run
// from a temporary directory, not as a service) that scrapes the given
// targets every second. Tests of prometheus checks query it.
type Prometheus struct {
	// URL is the server's base URL (http://127.0.0.1:<port>).
	URL string
	dir string
	p   *process
}

// StartPrometheus starts Prometheus in dir, scraping targets (host:port,
// path /metrics) every second. It fails with how to install Prometheus when
// it is missing; it never skips.
func StartPrometheus(ctx context.Context, dir string, targets []string) (*Prometheus, error) {
	if err := RequireTool("prometheus", "prometheus"); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	quoted := make([]string, len(targets))
	for i, t := range targets {
		quoted[i] = fmt.Sprintf("%q", t)
	}
	cfg := fmt.Sprintf(`global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
- job_name: test
  static_configs:
  - targets: [%s]
`, strings.Join(quoted, ", "))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	p := &Prometheus{URL: fmt.Sprintf("http://127.0.0.1:%d", port), dir: dir}
	return p, p.Start(ctx)
}

// Start (re)starts the server on its port, with its data kept.
func (p *Prometheus) Start(ctx context.Context) error {
	addr := strings.TrimPrefix(p.URL, "http://")
	proc, err := startProcess("prometheus", []string{
		"--config.file=" + filepath.Join(p.dir, "prometheus.yml"),
		"--storage.tsdb.path=" + filepath.Join(p.dir, "data"),
		"--web.listen-address=" + addr,
		"--log.level=warn",
	}, filepath.Join(p.dir, "prometheus.log"))
	if err != nil {
		return fmt.Errorf("testenv: start prometheus: %w", err)
	}
	p.p = proc
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = poll(wctx, proc, func() bool {
		req, _ := http.NewRequestWithContext(wctx, http.MethodGet, p.URL+"/-/ready", nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if err != nil {
		_ = proc.stop(time.Second)
		return fmt.Errorf("testenv: prometheus not ready: %w\n%s", err, proc.logTail())
	}
	return nil
}

// Stop stops the server; Start brings it back.
func (p *Prometheus) Stop() error {
	if p.p == nil {
		return nil
	}
	err := p.p.stop(5 * time.Second)
	p.p = nil
	return err
}
