package main

import (
	"context"
	"io"
	"net/mail"
	"os"
	"path/filepath"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/gitsync"
)

// runAgent is `tandem-agent run`: flags → config → wiring, then the loop.
func runAgent(ctx context.Context, args []string, _, stderr io.Writer) error {
	c, err := parseRunFlags(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(c.LogFormat, c.LogLevel, os.Stderr)
	if err != nil {
		return err
	}
	ctx = log.WithContext(ctx)
	work, err := c.workDir()
	if err != nil {
		return err
	}
	author, _ := mail.ParseAddress(c.GitAuthor) // validated by parseRunFlags

	repo, err := gitsync.Open(ctx, gitsync.Options{
		URL:      c.Repo,
		Branch:   c.Branch,
		CacheDir: filepath.Join(work, "repo"),
		Auth: gitsync.Auth{
			SSHKeyFile: c.SSHKeyFile, KnownHostsFile: c.KnownHostsFile,
			Username: c.GitUsername, PasswordFile: c.GitPasswordFile, TokenFile: c.GitTokenFile,
		},
		Author:         gitsync.Signature{Name: author.Name, Email: author.Address},
		SigningKeyFile: c.SigningKeyFile,
	})
	if err != nil {
		return err
	}
	defer repo.Close()
	tr, err := newTrust(c)
	if err != nil {
		return err
	}
	if tr != nil && !tr.agentKey {
		log.Warn().Msg("--verify-commits without --git-signing-key-file: the agent's own commits are recognised by author and trailers, which anyone who can push can copy")
	}
	restCfg, err := restConfig(c.Kubeconfig)
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
	a := newAgent(c, repo, cluster, m, filepath.Join(work, "checkouts"), log)
	a.ten = newTenancy(restCfg, apOpts, cluster, c)
	a.trust = tr
	if a.checks, err = newCheckRunner(c.Checks); err != nil {
		return err
	}
	if a.vis, err = newVisibility(ctx, &c.Vis, restCfg, m, log); err != nil {
		return err
	}
	defer a.vis.stop()
	srv := newServer(c.MetricsAddr, m, a.webhook(), c.Pprof)
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
		a.run(ctx, func() { srv.ready.Store(true) })
	})
	log.Info().Msg("stopped")
	return err
}
