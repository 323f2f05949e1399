package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/notify"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// Protected branches (docs/rollback.md): --write-mode=status-branch keeps
// every write of the agent off the tracked branch. Records go to
// tandem/status/<branch>; reverts become requests on the forge of
// --forge*. promote.Step and promote.Admit decide; this file only wires.

// Write modes of --write-mode.
const (
	writeDirect       = "direct"
	writeStatusBranch = "status-branch"
)

// protectConfig is what `tandem-agent run` is told about where it writes.
type protectConfig struct {
	WriteMode      string
	Forge          string
	ForgeURL       string
	ForgeRepo      string
	ForgeTokenFile string
	AutoMerge      bool
}

// register adds the flags to fs.
func (p *protectConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&p.WriteMode, "write-mode", writeDirect, "where the agent writes: direct (commits to --branch) or status-branch (never pushes to --branch: records on tandem/status/<branch>, reverts as pull/merge requests; for protected branches, see docs/rollback.md)")
	fs.StringVar(&p.Forge, "forge", "", "forge that hosts the repository, for revert requests with --write-mode=status-branch: github, gitlab or gitea (Forgejo too); default: --commit-status")
	fs.StringVar(&p.ForgeURL, "forge-url", "", "API base URL of --forge (default https://api.github.com or https://gitlab.com; required for gitea); default: --commit-status-url")
	fs.StringVar(&p.ForgeRepo, "forge-repo", "", "owner/repo (github, gitea) or project id or path (gitlab) of the tracked repository; default: --commit-status-repo")
	fs.StringVar(&p.ForgeTokenFile, "forge-token-file", "", "file holding the API token that opens, closes and merges revert requests (scopes: docs/git-auth.md; reloaded for each request, never logged); default: --commit-status-token-file")
	fs.BoolVar(&p.AutoMerge, "auto-merge", false, "merge a revert request as soon as it is open (the forge's own rules, such as required reviews, may refuse it; it then waits for a person)")
}

// validate checks the flags, filling the forge from --commit-status*.
func (p *protectConfig) validate(v visConfig) error {
	switch p.WriteMode {
	case writeDirect:
		if p.Forge != "" || p.ForgeURL != "" || p.ForgeRepo != "" || p.ForgeTokenFile != "" || p.AutoMerge {
			return errors.New("--forge* and --auto-merge are only used with --write-mode=status-branch")
		}
		return nil
	case writeStatusBranch:
	default:
		return fmt.Errorf("--write-mode %q: want direct or status-branch", p.WriteMode)
	}
	if p.Forge == "" {
		p.Forge, p.ForgeURL, p.ForgeRepo, p.ForgeTokenFile = v.StatusProvider, or(p.ForgeURL, v.StatusURL), or(p.ForgeRepo, v.StatusRepo), or(p.ForgeTokenFile, v.StatusTokenFile)
	}
	if p.Forge == "" {
		return errors.New("--write-mode=status-branch needs --forge (github, gitlab or gitea) to propose reverts")
	}
	if p.Forge == notify.Gitea && p.ForgeURL == "" {
		return errors.New("--forge-url is required for gitea")
	}
	if _, err := notify.NewPulls(p.pullOptions()); err != nil {
		return fmt.Errorf("--forge: %w", err)
	}
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func (p *protectConfig) pullOptions() notify.StatusOptions {
	return notify.StatusOptions{Provider: p.Forge, BaseURL: p.ForgeURL, Repo: p.ForgeRepo, TokenFile: p.ForgeTokenFile}
}

// open returns what the adapters of a protected branch share, with the
// cache of the status branch under work; nil in direct mode.
func (p *protectConfig) open(ctx context.Context, c *config, repo *gitsync.Repo, o gitsync.Options, work string) (*fleet.Protected, error) {
	if p.WriteMode != writeStatusBranch {
		return nil, nil
	}
	o.Branch, o.CacheDir, o.CreateBranch = fleet.StatusBranch(c.Branch), filepath.Join(work, "status"), true
	status, err := gitsync.Open(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("status branch: %w", err)
	}
	pulls, err := notify.NewPulls(p.pullOptions())
	if err != nil {
		status.Close()
		return nil, fmt.Errorf("--forge: %w", err)
	}
	return &fleet.Protected{Tracked: repo, Status: status, Branch: c.Branch, Pulls: pulls, AutoMerge: p.AutoMerge}, nil
}

// gitFor is the Git role of bundle's driver: the tracked branch, or the
// status branch and revert requests when it is protected.
func (d *drivers) gitFor(bundle string) promote.Git {
	if d.parts.protected != nil {
		return fleet.NewStatusGit(d.parts.protected, d.parts.store, bundle)
	}
	return fleet.NewGit(d.repo, d.parts.store, bundle)
}

// statusTip is the status branch's tip ("" in direct mode, and before the
// agent's first record there).
func (a *agent) statusTip(ctx context.Context) (string, error) {
	p := a.drivers.parts.protected
	if p == nil {
		return "", nil
	}
	poll, err := p.Status.Poll(ctx)
	if errors.Is(err, gitsync.ErrBranchNotFound) {
		return "", nil
	}
	return poll.Tip, err
}

// overlay lays the records of the status branch at tip over the checkout
// snap of the tracked branch: release.yaml is read there as usual.
func (a *agent) overlay(ctx context.Context, snap gitsync.Snapshot, tip string) error {
	p := a.drivers.parts.protected
	if p == nil || tip == "" {
		return nil
	}
	st, err := p.Status.CheckoutFrom(ctx, a.statusSnap, tip, filepath.Join(filepath.Dir(a.dir), "status-at", tip))
	if err != nil {
		return fmt.Errorf("status branch: %w", err)
	}
	a.statusSnap = st
	if _, err := fleet.OverlayReleases(st.Dir, snap.Dir); err != nil {
		return fmt.Errorf("status branch %s: %w", fleet.StatusBranch(a.cfg.Branch), err)
	}
	return nil
}

// repass admits the tracked tip again after the agent's records moved on
// the status branch (a release.yaml an upstream's stage gate reads).
func (a *agent) repass(ctx context.Context, tip string) error {
	if err := a.overlay(ctx, a.checkout, tip); err != nil {
		return err
	}
	a.statusAt = tip
	disc, err := render.DiscoverAll(a.checkout.Dir, a.cfg.Root)
	if err != nil {
		return nil // reported when the tip was new
	}
	a.gates.atTip(a.checkout.Commit, disc)
	a.pass(ctx, a.checkout, disc)
	a.admit.offered = 0
	return nil
}
