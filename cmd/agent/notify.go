package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/tandem-gitops/tandem/fleet"
	"github.com/tandem-gitops/tandem/notify"
)

// visConfig is what `tandem-agent run` is told about events, commit
// statuses and notifications.
type visConfig struct {
	Events          bool
	NotifyURLs      []string
	NotifyURLFile   string
	NotifyFormat    string
	NotifySecret    string
	StatusProvider  string
	StatusURL       string
	StatusRepo      string
	StatusTokenFile string
	StatusTarget    string
}

// register adds the flags to fs.
func (v *visConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&v.Events, "events", true, "record Kubernetes Events for each release step in the bundle's namespace")
	fs.Func("notify-url", "POST one JSON document per outcome (promoted, reverted, held, flipped-back) to this URL; repeatable", func(s string) error {
		v.NotifyURLs = append(v.NotifyURLs, s)
		return nil
	})
	fs.StringVar(&v.NotifyURLFile, "notify-url-file", "", "file with more --notify-url URLs, one a line (for URLs that hold a token, such as Slack's; read at start)")
	fs.StringVar(&v.NotifyFormat, "notify-format", "json", "body of --notify-url requests: json, or slack (Slack and Mattermost incoming webhooks)")
	fs.StringVar(&v.NotifySecret, "notify-secret-file", "", "file holding a key to sign --notify-url bodies (header X-Tandem-Signature-256: sha256=HMAC); reloaded when it changes")
	fs.StringVar(&v.StatusProvider, "commit-status", "", "set commit statuses on each candidate's source commit: github, gitlab or gitea (Forgejo too)")
	fs.StringVar(&v.StatusURL, "commit-status-url", "", "API base URL (default https://api.github.com or https://gitlab.com; e.g. https://ghe.example.com/api/v3; required for gitea)")
	fs.StringVar(&v.StatusRepo, "commit-status-repo", "", "owner/repo (github, gitea) or project id or path (gitlab) of the tracked repository")
	fs.StringVar(&v.StatusTokenFile, "commit-status-token-file", "", "file holding the API token for commit statuses (reloaded when it changes; never logged)")
	fs.StringVar(&v.StatusTarget, "commit-status-target-url", "", "link shown with each commit status (a dashboard or runbook; optional)")
}

// options are the fleet.VisibilityOptions of the flags.
func (v *visConfig) options() (fleet.VisibilityOptions, error) {
	n, err := v.notifyOptions()
	return fleet.VisibilityOptions{Events: v.Events, Notify: n}, err
}

// notifyOptions is the notify.Options of the flags (destinations only).
func (v *visConfig) notifyOptions() (notify.Options, error) {
	var o notify.Options
	urls := v.NotifyURLs
	if v.NotifyURLFile != "" {
		data, err := os.ReadFile(v.NotifyURLFile)
		if err != nil {
			return o, fmt.Errorf("--notify-url-file: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				urls = append(urls, line)
			}
		}
	}
	for _, u := range urls {
		o.Webhooks = append(o.Webhooks, notify.Webhook{URL: u, Format: v.NotifyFormat, SecretFile: v.NotifySecret})
	}
	if v.StatusProvider != "" {
		o.Status = &notify.StatusOptions{Provider: v.StatusProvider, BaseURL: v.StatusURL, Repo: v.StatusRepo,
			TokenFile: v.StatusTokenFile, TargetURL: v.StatusTarget}
	}
	return o, nil
}

// validate checks the flags (and that the files they name can be read).
func (v *visConfig) validate() error {
	var errs []error
	if v.NotifyFormat != notify.FormatJSON && v.NotifyFormat != notify.FormatSlack {
		errs = append(errs, fmt.Errorf("--notify-format %q: want json or slack", v.NotifyFormat))
	}
	if v.StatusProvider == "" && (v.StatusURL != "" || v.StatusRepo != "" || v.StatusTokenFile != "" || v.StatusTarget != "") {
		errs = append(errs, errors.New("--commit-status-* flags need --commit-status github, gitlab or gitea"))
	}
	if len(errs) == 0 {
		o, err := v.notifyOptions()
		if err == nil {
			_, err = notify.New(o)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
