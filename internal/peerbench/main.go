// Command peerbench measures tandem next to its peers on one local control
// plane, in one run: Flux (source-controller and kustomize-controller) and
// Argo Rollouts, built from the Go module proxy by internal/peerbench/build-peers.sh and
// run as local processes with a kubeconfig. It times push → live, failure
// detection, the blue/green Service switch and idle footprint, and writes the
// tables into docs/benchmarks.md between its markers. `make bench-peers`
// runs it; it is not part of `make test`. Every process it starts is
// stopped before it returns, and all traffic stays on 127.0.0.1.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// config is the command line.
type config struct {
	PeersDir   string          // binaries and CRDs from build-peers.sh
	Agent      string          // tandem-agent binary
	Out        string          // report file
	Runs       int             // rounds per latency scenario
	SlowRuns   int             // rounds at Flux's default interval (each waits up to a minute)
	Sizes      []int           // app counts for the idle footprint
	IdleWindow time.Duration   // sampling window per size
	Toolchains string          // how the peers were built, for the report
	Only       map[string]bool // steps to run (all when empty)
	Keep       bool            // keep the work directory (logs) for a look afterwards
}

func parseFlags() (config, error) {
	c := config{}
	var sizes, only string
	flag.StringVar(&c.PeersDir, "peers", "", "directory with the peer binaries and crds/ (internal/peerbench/build-peers.sh DIR)")
	flag.StringVar(&c.Agent, "agent", "bin/tandem-agent", "tandem-agent binary to measure (make build)")
	flag.StringVar(&c.Out, "o", "docs/benchmarks.md", "report to update between the peer markers (- for stdout)")
	flag.IntVar(&c.Runs, "runs", 5, "rounds per latency scenario")
	flag.IntVar(&c.SlowRuns, "slow-runs", 3, "rounds of Flux at its default interval")
	flag.StringVar(&sizes, "sizes", "1,10,100", "app counts for the idle footprint, comma-separated")
	flag.DurationVar(&c.IdleWindow, "idle-window", 30*time.Second, "how long each idle process is sampled per size")
	flag.StringVar(&c.Toolchains, "toolchains", "", "how the peers were built (shown in the report)")
	flag.StringVar(&only, "only", "", "run only these steps, comma-separated: rollouts, tandem, flux, footprint (flux includes Argo Rollouts' failure cases)")
	flag.BoolVar(&c.Keep, "keep", false, "keep the work directory with every process's log, and say where it is")
	flag.Parse()
	if only != "" {
		c.Only = map[string]bool{}
		for _, s := range strings.Split(only, ",") {
			c.Only[strings.TrimSpace(s)] = true
		}
	}
	if c.PeersDir == "" {
		return c, fmt.Errorf("-peers is required: the directory internal/peerbench/build-peers.sh built into (make bench-peers sets it)")
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return c, fmt.Errorf("-sizes %q: want positive integers such as 1,10,100", sizes)
		}
		c.Sizes = append(c.Sizes, n)
	}
	if fi, err := os.Stat(c.Agent); err != nil || fi.Mode()&0o111 == 0 {
		return c, fmt.Errorf("%s: missing or not executable; run `make build`", c.Agent)
	}
	return c, nil
}

func main() {
	cfg, err := parseFlags()
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	res, err := run(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
	res.Elapsed = time.Since(start)
	if err := writeReport(cfg, res); err != nil {
		fmt.Fprintln(os.Stderr, "peerbench:", err)
		os.Exit(1)
	}
}

// bench is one run: the control plane, the benchmark's client and every
// process it started (stopped at the end).
type bench struct {
	cfg   config
	env   *testenv.Env
	k     *kube
	work  string
	procs []*proc
	stops []func() // http servers of remotes
	res   *results
}

func run(ctx context.Context, cfg config) (*results, error) {
	work, err := os.MkdirTemp("", "tandem-peerbench-")
	if err != nil {
		return nil, err
	}
	if cfg.Keep {
		logf("work directory (kept): %s", work)
	} else {
		defer os.RemoveAll(work)
	}
	logf("starting a local control plane")
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return nil, err
	}
	defer env.Stop()
	k, err := newKube(env.Config)
	if err != nil {
		return nil, err
	}
	b := &bench{cfg: cfg, env: env, k: k, work: work, res: &results{LoadStart: loadavg()}}
	defer b.stopAll()
	for _, d := range []string{"source-controller", "kustomize-controller", "argo-rollouts"} {
		if err := k.applyDir(ctx, filepath.Join(cfg.PeersDir, "crds", d)); err != nil && cfg.Only == nil {
			return nil, err
		}
	}
	steps := []struct {
		key, name string
		fn        func(context.Context) error
	}{
		{"rollouts", "Argo Rollouts: apply → switched", b.rollouts},
		{"tandem", "tandem: push → promoted and switched, failures", b.tandem},
		{"flux", "Flux: push → live, failures; Argo Rollouts' failures", b.flux},
		{"footprint", "idle footprint", b.footprint},
	}
	for _, s := range steps {
		if cfg.Only != nil && !cfg.Only[s.key] {
			continue
		}
		logf("%s", s.name)
		if err := s.fn(ctx); err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	b.res.LoadEnd = loadavg()
	return b.res, nil
}

// start starts a process that stopAll stops; its log is in the work directory.
func (b *bench) start(name, bin string, args, env []string) (*proc, error) {
	p, err := startProc(name, bin, args, env, filepath.Join(b.work, name+".log"))
	if err != nil {
		return nil, err
	}
	b.procs = append(b.procs, p)
	return p, nil
}

func (b *bench) stopAll() {
	for _, p := range b.procs {
		p.stop()
	}
	b.procs = nil
	for _, s := range b.stops {
		s()
	}
	b.stops = nil
}

// peerBin is the path of a peer's binary, or an error saying how to build it.
func (b *bench) peerBin(name string) (string, error) {
	p := filepath.Join(b.cfg.PeersDir, name)
	if fi, err := os.Stat(p); err != nil || fi.Mode()&0o111 == 0 {
		return "", fmt.Errorf("%s: missing or not executable; run `make peers` to build it from the Go module proxy", p)
	}
	return p, nil
}

// waitHTTP waits until url answers 200 or p exits.
func waitHTTP(ctx context.Context, p *proc, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if p.exited() {
			return fmt.Errorf("%s exited before %s answered:\n%s", p.name, url, p.logTail())
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %s did not answer 200: %w\n%s", p.name, url, ctx.Err(), p.logTail())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freeAddr is a free 127.0.0.1 port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s peerbench: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}
