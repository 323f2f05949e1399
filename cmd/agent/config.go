package main

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/render"
	"k8s.io/apimachinery/pkg/util/validation"
)

// config is everything `tandem-agent run` is told on its command line.
type config struct {
	Repo            string
	Branch          string
	Root            string
	Interval        time.Duration
	ResyncInterval  time.Duration
	WorkDir         string
	SSHKeyFile      string
	KnownHostsFile  string
	GitUsername     string
	GitPasswordFile string
	GitTokenFile    string
	SigningKeyFile  string
	WebhookSecret   string
	GitAuthor       string
	// The parts of GitAuthor, parsed once; identity is "Name <email>" as
	// gitsync.Commit.Author spells it.
	authorName, authorEmail, identity string
	AllowRemoteBases                  bool
	AllowEmpty                        bool
	Kube                              kubeFlags
	LeaderElect                       bool
	LeaderNamespace                   string
	LeaderID                          string
	MetricsAddr                       string
	LogFormat                         string
	LogLevel                          string
	Concurrency                       int
	Pprof                             bool
	VerifyCommits                     bool
	TrustedKeys                       stringList
	// DefaultServiceAccount acts for bundles without spec.serviceAccountName.
	DefaultServiceAccount string
	// AllowedNamespaces, when given, are the only namespaces bundles may use.
	AllowedNamespaces namespaceList
	// TenancyFile, when given, binds bundles to the platform's rules (tenancy_file.go).
	TenancyFile string
	Bundles     stringList
	// Render bounds every render: its wall time, objects and output, and
	// the worker processes that run it (render.Options, WorkerOptions).
	RenderTimeout      time.Duration
	RenderMaxObjects   int
	RenderMaxBytes     int64
	RenderWorkers      int
	RenderWorkerMemory int64
	GitTimeout         time.Duration
	LivenessTimeout    time.Duration
	Charts             chartConfig   // helm charts (charts.go)
	Vis                visConfig     // events, commit statuses, notifications (notify.go)
	Checks             checkConfig   // end-to-end checks (checks.go)
	Protect            protectConfig // --write-mode and the forge of revert requests (protect.go)
}

// parseRunFlags reads the flags of `tandem-agent run`. Defaults are the
// contract's (--interval 30s, --resync-interval 10m, author tandem <tandem@localhost>).
func parseRunFlags(args []string, stdout, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("tandem-agent run", flag.ContinueOnError)
	fs.StringVar(&c.Repo, "repo", "", "Git repository to watch: https://, ssh://, user@host:path, file:// or a local path (required)")
	fs.StringVar(&c.Branch, "branch", "main", "branch to track; the agent commits promotions and reverts to it")
	fs.StringVar(&c.Root, "root", ".", "directory inside the repository under which bundle.yaml files are found")
	fs.DurationVar(&c.Interval, "interval", 30*time.Second, "how often to check the remote for a new tip (a cheap head check)")
	fs.DurationVar(&c.ResyncInterval, "resync-interval", 10*time.Minute, "how often to re-apply live colors and stable Services (drift correction)")
	fs.StringVar(&c.WorkDir, "workdir", "", "where the local clone and checkouts live, locked by one agent at a time (default: tandem-agent/<hash of repository and branch> under the user's cache directory, else the temp dir)")
	fs.StringVar(&c.SSHKeyFile, "git-ssh-key-file", "", "SSH private key file for ssh:// and scp-style remotes (reloaded when it changes)")
	fs.StringVar(&c.KnownHostsFile, "git-known-hosts-file", "", "known_hosts file; required for SSH remotes (no trust on first use)")
	fs.StringVar(&c.GitUsername, "git-username", "", "user name for HTTPS basic auth (default \"x-access-token\" with a token or password file)")
	fs.StringVar(&c.GitPasswordFile, "git-password-file", "", "file holding the HTTPS password (reloaded when it changes)")
	fs.StringVar(&c.GitTokenFile, "git-token-file", "", "file holding an HTTPS access token (reloaded when it changes)")
	fs.StringVar(&c.SigningKeyFile, "git-signing-key-file", "", "armored OpenPGP private key to sign the agent's commits (optional)")
	fs.StringVar(&c.WebhookSecret, "webhook-secret-file", "", "file holding the secret for POST /hooks/git (GitHub HMAC or GitLab token); without it the webhook is off")
	fs.StringVar(&c.GitAuthor, "git-author", "tandem <tandem@localhost>", "author and committer of the agent's commits")
	fs.BoolVar(&c.AllowRemoteBases, "allow-remote-bases", false, "let kustomizations load remote bases (off: rendering never leaves the repository)")
	fs.BoolVar(&c.AllowEmpty, "allow-empty", false, "let a tip with no bundles at all prune every bundle (off: such a tip prunes nothing)")
	c.Kube.register(fs)
	fs.BoolVar(&c.LeaderElect, "leader-elect", false, "hold a Lease so that only one replica acts at a time")
	fs.StringVar(&c.LeaderNamespace, "leader-election-namespace", "", "namespace of the leader Lease (default: the pod's namespace, else default)")
	fs.StringVar(&c.LeaderID, "leader-election-id", "tandem-agent", "name of the leader Lease")
	fs.StringVar(&c.MetricsAddr, "metrics-addr", ":8080", "address for /healthz, /readyz, /metrics and /hooks/git; empty turns the server off")
	fs.StringVar(&c.LogFormat, "log-format", "json", "log format: json or console")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.IntVar(&c.Concurrency, "concurrency", 4, "bundles rendering, applying, flipping or committing at once, and new bundles starting at once (a bundle waiting for health or soaking holds no slot)")
	fs.BoolVar(&c.Pprof, "pprof", false, "serve /debug/pprof on the metrics address")
	fs.BoolVar(&c.VerifyCommits, "verify-commits", false, "deploy only commits signed by a trusted key: a candidate with an unsigned or untrusted commit that changed the bundle is held (see docs/git-auth.md)")
	fs.Var(&c.TrustedKeys, "trusted-keys", "file or directory of trusted public keys for --verify-commits: armored OpenPGP keys, SSH keys (authorized_keys or allowed_signers lines); repeatable, reloaded when they change")
	fs.StringVar(&c.DefaultServiceAccount, "default-service-account", "", "ServiceAccount, in each bundle's spec.namespace, that the agent impersonates for a bundle without spec.serviceAccountName (default: the agent's own identity; see docs/install.md)")
	fs.Var(&c.AllowedNamespaces, "allowed-namespaces", "comma-separated namespaces bundles may use (spec.namespace and shared objects); a bundle targeting another is refused before anything is applied. Default: any but kube-system, kube-public and kube-node-lease, which only this flag can allow")
	fs.StringVar(&c.TenancyFile, "tenancy-file", "", "YAML file of the platform's tenancy rules: which namespaces, ServiceAccounts and kinds the bundles under each repository path may use; a bundle outside its rule, or under no rule, is refused before anything is applied (see docs/install.md)")
	fs.Var(&c.Bundles, "bundles", "release only the bundles whose name matches this glob (repeatable; default every bundle): one agent per cluster on one branch, e.g. --bundles 'shop-prod' (see docs/stages.md)")
	fs.DurationVar(&c.RenderTimeout, "render-timeout", render.DefaultTimeout, "longest a bundle's render may take; a render over it fails that bundle alone")
	fs.IntVar(&c.RenderMaxObjects, "render-max-objects", render.DefaultMaxObjects, "most objects a bundle's render may read or produce; a file over it is refused before kustomize works on it")
	fs.Int64Var(&c.RenderMaxBytes, "render-max-bytes", render.DefaultMaxBytes, "largest rendered output of a bundle, in bytes")
	fs.IntVar(&c.RenderWorkers, "render-workers", 2, "renders run in this many worker processes at once, each killed at --render-timeout and bounded by --render-worker-memory; 0 renders in the agent's own process (no hard deadline or memory bound)")
	fs.Int64Var(&c.RenderWorkerMemory, "render-worker-memory", 256<<20, "memory bound of each render worker process, in bytes (at least 128 MiB)")
	fs.DurationVar(&c.GitTimeout, "git-timeout", 2*time.Minute, "longest one Git network operation (ls-remote, fetch, push) may take before it is retried")
	fs.DurationVar(&c.LivenessTimeout, "liveness-timeout", 5*time.Minute, "/healthz fails when a sync pass makes no progress (no bundle handled) for this long, so the kubelet restarts a wedged agent; 0 turns the check off")
	c.Charts.register(fs, true)
	c.Vis.register(fs)
	c.Checks.register(fs)
	c.Protect.register(fs)
	positional, err := parseCommand(fs, "usage: tandem-agent run --repo URL [flags]", args, stdout, stderr)
	if err != nil {
		return nil, err
	}
	if len(positional) > 0 {
		fmt.Fprintf(stderr, "tandem-agent run: unexpected argument %q\n", positional[0])
		return nil, errUsage
	}
	return c, c.validate()
}

// validate checks the flags that can be checked without I/O.
func (c *config) validate() error {
	var errs []error
	if c.Repo == "" {
		errs = append(errs, errors.New("--repo is required"))
	}
	if c.Interval <= 0 {
		errs = append(errs, errors.New("--interval must be positive"))
	}
	if c.ResyncInterval <= 0 {
		errs = append(errs, errors.New("--resync-interval must be positive"))
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		errs = append(errs, fmt.Errorf("--log-format %q: want json or console", c.LogFormat))
	}
	if c.RenderTimeout <= 0 || c.RenderMaxObjects < 1 || c.RenderMaxBytes < 1 {
		errs = append(errs, errors.New("--render-timeout, --render-max-objects and --render-max-bytes must be positive"))
	}
	if c.Charts.MaxBytes < 1 {
		errs = append(errs, errors.New("--chart-max-bytes must be positive"))
	}
	if c.RenderWorkers < 0 {
		errs = append(errs, errors.New("--render-workers must be 0 (in process) or more"))
	}
	if c.GitTimeout <= 0 {
		errs = append(errs, errors.New("--git-timeout must be positive"))
	}
	if c.Concurrency < 1 {
		errs = append(errs, errors.New("--concurrency must be at least 1"))
	}
	if a, err := parseAuthor(c.GitAuthor); err != nil {
		errs = append(errs, err)
	} else {
		c.authorName, c.authorEmail, c.identity = a.name, a.email, a.ident
	}
	if filepath.IsAbs(c.Root) || c.Root == ".." || len(c.Root) > 2 && c.Root[:3] == "../" {
		errs = append(errs, fmt.Errorf("--root %q must be a relative path inside the repository", c.Root))
	}
	if c.VerifyCommits && len(c.TrustedKeys) == 0 {
		errs = append(errs, errors.New("--verify-commits needs at least one --trusted-keys file or directory"))
	}
	if !c.VerifyCommits && len(c.TrustedKeys) > 0 {
		errs = append(errs, errors.New("--trusted-keys is only used with --verify-commits"))
	}
	for _, p := range c.Bundles {
		if _, err := path.Match(p, ""); err != nil {
			errs = append(errs, fmt.Errorf("--bundles %q: %v", p, err))
		}
	}
	if sa := c.DefaultServiceAccount; sa != "" {
		if bad := validation.IsDNS1123Subdomain(sa); len(bad) > 0 {
			errs = append(errs, fmt.Errorf("--default-service-account %q: %s", sa, strings.Join(bad, "; ")))
		}
	}
	errs = append(errs, c.Vis.validate(), c.Checks.validate(), c.Protect.validate(c.Vis))
	return errors.Join(errs...)
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// workDir returns the working directory, created and locked for this
// process: --workdir, else a directory under the user's cache directory
// keyed by repository and branch. unlock releases it.
func (c *config) workDir() (string, func(), error) {
	dir := c.WorkDir
	if dir == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			base = os.TempDir() // no home directory (a container's nobody)
		}
		// One directory per repository and branch: two agents on one
		// machine never share a clone.
		sum := sha256.Sum256([]byte(gitsync.Redact(c.Repo) + "\x00" + c.Branch))
		dir = filepath.Join(base, "tandem-agent", hex.EncodeToString(sum[:8]))
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", nil, fmt.Errorf("work directory %s (--workdir): cannot create it: %w", dir, err)
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return "", nil, fmt.Errorf("work directory %s (--workdir): %w", dir, err)
	}
	return dir, unlock, nil
}

// namespaceList is the --allowed-namespaces flag: a comma-separated list,
// repeatable.
type namespaceList []string

func (l *namespaceList) String() string { return strings.Join(*l, ",") }

func (l *namespaceList) Set(v string) error {
	for _, ns := range strings.Split(v, ",") {
		ns = strings.TrimSpace(ns)
		if ns == "" {
			continue
		}
		if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
			return fmt.Errorf("%q is not a namespace name: %s", ns, strings.Join(errs, "; "))
		}
		*l = append(*l, ns)
	}
	return nil
}

// list is the sorted list of allowed namespaces; nil when the flag was not given.
func (l namespaceList) list() []string {
	if l == nil {
		return nil
	}
	out := slices.Clone(l)
	sort.Strings(out)
	return slices.Compact(out)
}

// renderOptions are the bounds of every render, with the worker pool of
// --render-workers (nil: renders run in this process).
func (c *config) renderOptions() (render.Options, error) {
	o := render.Options{AllowRemoteBases: c.AllowRemoteBases, Timeout: c.RenderTimeout,
		MaxObjects: c.RenderMaxObjects, MaxBytes: c.RenderMaxBytes}
	c.Charts.apply(&o)
	if c.RenderWorkers == 0 {
		return o, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return o, fmt.Errorf("--render-workers: cannot find the agent's own binary: %w", err)
	}
	o.Workers, err = render.NewWorkerPool(render.WorkerOptions{Command: []string{exe, "render-worker"},
		Parallel: c.RenderWorkers, MemoryLimit: c.RenderWorkerMemory})
	if err != nil {
		return o, fmt.Errorf("--render-workers: %w", err)
	}
	return o, nil
}
