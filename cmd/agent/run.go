package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/notify"
)

// runAgent is `tandem-agent run`: flags → config → wiring, then the loop.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	c, err := parseRunFlags(args, stdout, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogFormat, c.LogLevel, os.Stderr)
	if err != nil {
		return err
	}
	ctx = log.WithContext(ctx)
	work, unlock, err := c.workDir()
	if err != nil {
		return err
	}
	defer unlock()

	gopts := gitsync.Options{
		URL:      c.Repo,
		Branch:   c.Branch,
		CacheDir: filepath.Join(work, "repo"),
		Auth: gitsync.Auth{
			SSHKeyFile: c.SSHKeyFile, KnownHostsFile: c.KnownHostsFile,
			Username: c.GitUsername, PasswordFile: c.GitPasswordFile, TokenFile: c.GitTokenFile,
		},
		Author:         gitsync.Signature{Name: c.authorName, Email: c.authorEmail},
		SigningKeyFile: c.SigningKeyFile,
		NetworkTimeout: c.GitTimeout,
	}
	repo, err := gitsync.Open(ctx, gopts)
	if err != nil {
		return err
	}
	defer repo.Close()
	protected, err := c.Protect.open(ctx, c, repo, gopts, work)
	if err != nil {
		return err
	}
	restCfg, err := c.Kube.restConfig()
	if err != nil {
		return err
	}
	m := newMetrics()
	apOpts := applier.Options{OnUnreachable: func(op string, err error) {
		// A wait rides a short API server outage out; say so all the same.
		m.transient.WithLabelValues("cluster").Inc()
		log.Warn().Str("dependency", "cluster").Str("op", op).Err(err).Msg("api server unreachable; waiting for it, not failing the release")
	}}
	cluster, err := applier.New(restCfg, apOpts)
	if err != nil {
		return err
	}
	tenancy, err := c.tenancyOptions()
	if err != nil {
		return err
	}
	parts := fleetParts{protected: protected, store: fleet.NewStore(), ten: fleet.NewTenancy(restCfg, apOpts, cluster, tenancy)}
	if c.VerifyCommits {
		if parts.trust, err = fleet.NewTrust(fleet.TrustOptions{TrustedKeys: c.TrustedKeys, AgentKeyFile: c.SigningKeyFile,
			Author: c.identity}, repo, cluster); err != nil {
			return err
		}
		if !parts.trust.AgentSigns() {
			log.Warn().Msg("--verify-commits without --git-signing-key-file: the agent's own commits are recognised by author and trailers, which anyone who can push can copy")
		}
	}
	if parts.checks, err = newCheckRunner(c.Checks); err != nil {
		return err
	}
	vo, err := c.Vis.options()
	if err != nil {
		return err
	}
	vo.OnResult = func(r notify.Result) {
		ev := log.Debug()
		if r.Outcome != notify.Delivered {
			ev = log.Warn().Err(r.Err)
		}
		ev.Str("phase", "notify").Str("kind", r.Kind).Str("target", r.Target).Str("subject", r.Subject).
			Str("outcome", r.Outcome).Int("attempts", r.Attempts).Msg("notification " + r.Outcome)
	}
	if parts.vis, err = fleet.NewVisibility(ctx, vo, restCfg, m.reg); err != nil {
		return err
	}
	defer parts.vis.Stop()
	if c.Charts.Cache == "" {
		c.Charts.Cache = filepath.Join(work, "charts")
	}
	if parts.renderOpts, err = c.renderOptions(); err != nil {
		return err
	}
	// Charts see the cluster's version and API versions as .Capabilities
	// (read once, at start); without them, the Helm SDK's defaults.
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	parts.renderOpts.KubeVersion, parts.renderOpts.APIVersions, err = clusterCapabilities(dctx, restCfg)
	cancel()
	if err != nil {
		log.Warn().Err(err).Msg("charts get the Helm SDK's default .Capabilities: the cluster's could not be read")
	}
	a := newAgent(c, repo, parts, m, filepath.Join(work, "checkouts"), log)
	srv := newServer(c.MetricsAddr, m, a.webhook(), c.Pprof, a.watch.check)
	srv.standby.Store(c.LeaderElect) // until this replica holds the Lease
	if c.MetricsAddr != "" {
		go func() {
			listening := func(addr string) {
				log.Info().Str("addr", addr).Msg("serving /healthz, /readyz, /metrics and /hooks/git")
			}
			if err := srv.serve(ctx, listening); err != nil {
				log.Error().Err(err).Str("addr", c.MetricsAddr).Msg("http server stopped")
			}
		}()
	}
	log.Info().Str("repo", gitsync.Redact(c.Repo)).Str("branch", c.Branch).Str("version", version).
		Dur("interval", c.Interval).Bool("leader_elect", c.LeaderElect).Msg("starting")
	err = withLeadership(ctx, restCfg, c, log, func(ctx context.Context) {
		srv.standby.Store(false)
		a.run(ctx, func() { srv.synced.Store(true) })
	})
	log.Info().Msg("stopped")
	return err
}
