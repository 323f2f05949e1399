package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/rs/zerolog"

	"github.com/tandem-gitops/tandem/check"
)

// checkConfig is the flags of end-to-end checks (spec.checks).
type checkConfig struct {
	PrometheusURL       string
	PrometheusTokenFile string
	AllowLocalTargets   bool
}

// register adds the flags to fs.
func (c *checkConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&c.PrometheusURL, "prometheus-url", "", "Prometheus that prometheus checks query (e.g. http://prometheus.monitoring:9090); without it they are inconclusive and fail the release")
	fs.BoolVar(&c.AllowLocalTargets, "allow-local-check-targets", false, "let http checks reach loopback, link-local and cloud metadata addresses (off: such a check fails, naming its field)")
	fs.StringVar(&c.PrometheusTokenFile, "prometheus-token-file", "", "file holding a bearer token for --prometheus-url (read at every query, so a rotated token is picked up; never logged)")
}

func (c *checkConfig) validate() error {
	if c.PrometheusURL == "" {
		if c.PrometheusTokenFile != "" {
			return errors.New("--prometheus-token-file is only used with --prometheus-url")
		}
		return nil
	}
	u, err := url.Parse(c.PrometheusURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("--prometheus-url: want an http(s) URL with a host")
	}
	if u.User != nil {
		return fmt.Errorf("--prometheus-url: put credentials in --prometheus-token-file, not in the URL")
	}
	return nil
}

// newCheckRunner is the runner of every bundle's checks.
func newCheckRunner(c checkConfig) (*check.Runner, error) {
	r := &check.Runner{HTTP: &http.Client{Timeout: time.Minute}, AllowLocalTargets: c.AllowLocalTargets}
	if c.PrometheusURL != "" {
		p, err := check.NewPromSource(c.PrometheusURL, c.PrometheusTokenFile, nil)
		if err != nil {
			return nil, err
		}
		r.Prometheus = p
	}
	return r, nil
}

// logCheck adds a check run's fields to a log event.
func logCheck(ev *zerolog.Event, r *check.Result) *zerolog.Event {
	ev = ev.Str("check", r.Name).Str("kind", r.Kind).Str("when", r.When).Str("verdict", r.Verdict)
	if r.Condition != "" {
		ev = ev.Str("condition", r.Condition)
	}
	if len(r.Values) > 0 {
		ev = ev.Strs("values", r.Values)
	}
	return ev
}
