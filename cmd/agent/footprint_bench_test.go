package main

// Footprint and scale benchmarks (issue 8): the real tandem-agent binary, the
// testenv control plane and a bare Git remote holding 1 to 100 bundles. The
// agent's memory and CPU come from /proc/<pid>/status and /proc/<pid>/stat,
// its Go heap and poll counts from its own /metrics.
//
// Every benchmark here measures once per process and reports the same
// figures to each b.N round (go test calls a benchmark with N=1 before
// -benchtime's N; a fleet of 100 bundles is not worth building twice).

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// idleWindow is how long an idle agent is sampled: a minute unless
// TANDEM_BENCH_IDLE_WINDOW (a Go duration) says otherwise; make bench
// reports the window it used.
func idleWindow(b *testing.B) time.Duration {
	v := os.Getenv("TANDEM_BENCH_IDLE_WINDOW")
	if v == "" {
		return time.Minute
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("TANDEM_BENCH_IDLE_WINDOW=%q: want a positive Go duration such as 30s", v)
	}
	return d
}

var (
	measuredMu sync.Mutex
	measured   = map[string]map[string]float64{}
)

// measureOnce runs measure the first time b's name is seen and reports its
// figures as b's metrics every time.
func measureOnce(b *testing.B, measure func(b *testing.B) map[string]float64) {
	measuredMu.Lock()
	m, ok := measured[b.Name()]
	measuredMu.Unlock()
	if !ok {
		m = measure(b)
		measuredMu.Lock()
		measured[b.Name()] = m
		measuredMu.Unlock()
	}
	b.StopTimer()
	for k, v := range m {
		b.ReportMetric(v, k)
	}
}

var (
	releaseOnce sync.Once
	releaseBin  string
	releaseErr  error
)

// releaseAgent builds tandem-agent as `make build` ships it (static,
// -trimpath, -s -w), once per process: footprint is measured on what users run.
func releaseAgent(b testing.TB) string {
	b.Helper()
	releaseOnce.Do(func() {
		releaseBin = filepath.Join(filepath.Dir(agentBin), "tandem-agent-release")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", releaseBin, ".")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			releaseErr = fmt.Errorf("build the release agent: %v\n%s", err, out)
		}
	})
	if releaseErr != nil {
		b.Fatal(releaseErr)
	}
	return releaseBin
}

// fleet is one repository holding n bundles under bundles/<prefix>/ and one
// agent watching them all.
type benchFleet struct {
	*scenario
	names   []string
	metrics string // host:port of the agent's /metrics and /debug/pprof
}

// fleetApp is an app of a fleet bundle: a Deployment of one replica and its Service.
func fleetApp(name, image string) string { return appWithReplicas(app{name, image}, 1) }

// twoApps is the files of a bundle (relative to its directory) with a client and a server.
func twoApps(name string) map[string]string {
	return map[string]string{
		"app/kustomization.yaml": "resources:\n- client.yaml\n- server.yaml\n",
		"app/client.yaml":        fleetApp("client", "example/client:v1"),
		"app/server.yaml":        fleetApp("server", "example/server:v1"),
	}
}

// newFleet makes a remote with n bundles; files gives each bundle's app/ files.
func newFleet(b testing.TB, n int, files func(name string) map[string]string) *benchFleet {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute+time.Duration(n)*5*time.Second)
	b.Cleanup(cancel)
	work := b.TempDir()
	cs, err := env.Client()
	if err != nil {
		b.Fatal(err)
	}
	s := &scenario{t: b, ctx: ctx, work: work, cs: cs,
		remote: filepath.Join(work, "remote.git"), clone: filepath.Join(work, "dev"),
		ns: fmt.Sprintf("fl%d", time.Now().UnixNano()%1_000_000_000)}
	s.git(".", "init", "--quiet", "--bare", "-b", "main", s.remote)
	s.git(s.remote, "config", "receive.denyNonFastForwards", "true")
	s.git(".", "clone", "--quiet", s.remote, s.clone)
	f := &benchFleet{scenario: s}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("%s-%d", s.ns, i)
		f.names = append(f.names, name)
		dir := "bundles/" + s.ns + "/" + name + "/"
		s.write(dir+"bundle.yaml", fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata:
  name: %[1]s
spec:
  namespace: %[1]s
  shared: shared
  healthTimeout: 3m
  scaleDownAfter: never
`, name))
		s.write(dir+"shared/kustomization.yaml", "resources:\n- namespace.yaml\n")
		s.write(dir+"shared/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
		for rel, content := range files(name) {
			s.write(dir+rel, content)
		}
	}
	s.write("README.md", "human notes\n")
	s.push(fmt.Sprintf("add %d bundles", n))
	return f
}

// start runs the agent on every bundle of the fleet, with pprof on so that a
// benchmark can force a GC before reading the heap.
func (f *benchFleet) start(extra ...string) {
	f.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	f.metrics = ln.Addr().String()
	ln.Close()
	args := append([]string{"run", "--repo", "file://" + f.remote, "--kubeconfig", env.Kubeconfig,
		"--metrics-addr", f.metrics, "--pprof", "--workdir", filepath.Join(f.work, "agent"),
		"--root", "bundles/" + f.ns, "--log-format", "json"}, extra...)
	a, err := testenv.StartAgent(releaseAgent(f.t), args, filepath.Join(f.work, "agent.log"))
	if err != nil {
		f.t.Fatal(err)
	}
	f.agent = a
	f.t.Cleanup(func() {
		_ = a.Stop(10 * time.Second)
		if dir := os.Getenv("TANDEM_BENCH_PROFILE_DIR"); dir != "" {
			// Kept beside the profiles: the phases' durations say where the time went.
			if data, err := os.ReadFile(a.Log); err == nil {
				_ = os.WriteFile(filepath.Join(dir, fmt.Sprintf("agent-%d.log", len(f.names))), data, 0o644)
			}
		}
		if f.t.Failed() {
			f.t.Logf("agent log:\n%s", a.LogTail())
		}
	})
}

// waitLive waits until every bundle has its first promotion commit.
func (f *benchFleet) waitLive(timeout time.Duration) {
	f.t.Helper()
	if _, err := testenv.WaitAgentCommits(f.ctx, f.remote, "main", len(f.names), timeout); err != nil {
		f.t.Fatalf("%v\nagent log:\n%s", err, f.agent.LogTail())
	}
}

// scrape reads the agent's /metrics: "name{labels}" → value.
func (f *benchFleet) scrape() map[string]float64 {
	f.t.Helper()
	resp, err := http.Get("http://" + f.metrics + "/metrics")
	if err != nil {
		f.t.Fatalf("scrape the agent's /metrics: %v", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		f.t.Fatalf("read the agent's /metrics: %v", err)
	}
	return out
}

// saveHeap writes the agent's heap profile to $TANDEM_BENCH_PROFILE_DIR/name
// when that is set (for `go tool pprof -base`); otherwise it does nothing.
func (f *benchFleet) saveHeap(name string) {
	f.t.Helper()
	dir := os.Getenv("TANDEM_BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	resp, err := http.Get("http://" + f.metrics + "/debug/pprof/heap?gc=1")
	if err != nil {
		f.t.Fatalf("heap profile of the agent: %v", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, name), data, 0o644)
	}
	if err != nil {
		f.t.Fatalf("heap profile of the agent: %v", err)
	}
}

// cpuProfile records the agent's CPU profile from now until stop is called,
// as consecutive 10 s profiles $TANDEM_BENCH_PROFILE_DIR/name-<k>.pb.gz
// (`go tool pprof` merges them); without that variable it does nothing. stop
// waits for the profile under way to end.
func (f *benchFleet) cpuProfile(name string) (stop func()) {
	f.t.Helper()
	dir := os.Getenv("TANDEM_BENCH_PROFILE_DIR")
	if dir == "" {
		return func() {}
	}
	var stopped atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := 0; !stopped.Load(); k++ {
			resp, err := http.Get("http://" + f.metrics + "/debug/pprof/profile?seconds=10")
			if err != nil { // the agent is not listening yet
				time.Sleep(50 * time.Millisecond)
				continue
			}
			data, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, fmt.Sprintf("%s-%d.pb.gz", name, k)), data, 0o644)
			}
			if err != nil {
				f.t.Logf("cpu profile %s: %v", name, err)
				return
			}
		}
	}()
	return func() {
		stopped.Store(true)
		<-done
	}
}

// gc makes the agent collect garbage (pprof's heap handler with gc=1), so
// that heap figures taken before and after compare live data, not GC timing.
func (f *benchFleet) gc() {
	f.t.Helper()
	resp, err := http.Get("http://" + f.metrics + "/debug/pprof/heap?gc=1")
	if err != nil {
		f.t.Fatalf("force a GC in the agent: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

const (
	syncNewCount  = `tandem_sync_duration_seconds_count{tip="new"}`
	syncNewSum    = `tandem_sync_duration_seconds_sum{tip="new"}`
	syncSameCount = `tandem_sync_duration_seconds_count{tip="unchanged"}`
	syncSameSum   = `tandem_sync_duration_seconds_sum{tip="unchanged"}`
	pollCount     = `tandem_git_poll_duration_seconds_count`
	heapInuse     = `go_memstats_heap_inuse_bytes`
)

// settle waits until the agent has stopped reacting to new tips (its own
// promotion commits) for quiet.
func (f *benchFleet) settle(quiet time.Duration) {
	f.t.Helper()
	last, since := -1.0, time.Now()
	deadline := time.Now().Add(5 * time.Minute)
	for time.Since(since) < quiet {
		if time.Now().After(deadline) {
			f.t.Fatalf("the agent never settled:\n%s", f.agent.LogTail())
		}
		if n := f.scrape()[syncNewCount]; n != last {
			last, since = n, time.Now()
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// procStat is what /proc says about a process.
type procStat struct {
	rss, hwm float64       // MiB
	anon     float64       // MiB of RSS that is anonymous memory (heap, stacks, runtime), not the mapped binary
	cpu      time.Duration // user + system
}

func readProc(b testing.TB, pid int) procStat {
	b.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatalf("agent process %d: %v", pid, err)
	}
	var p procStat
	for _, line := range strings.Split(string(status), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseFloat(f[1], 64)
		switch f[0] {
		case "VmRSS:":
			p.rss = kb / 1024
		case "VmHWM:":
			p.hwm = kb / 1024
		case "RssAnon:":
			p.anon = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatalf("agent process %d: %v", pid, err)
	}
	// Fields after "(comm) ": state is field 3, utime 14 and stime 15.
	rest := string(stat[strings.LastIndexByte(string(stat), ')')+2:])
	f := strings.Fields(rest)
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	p.cpu = time.Duration(utime+stime) * time.Second / 100 // USER_HZ is 100 on Linux
	return p
}

// idle samples the settled agent for window (after a warm-up): mean RSS,
// CPU in millicores, the lifetime peak (VmHWM) and the Go heap in use.
func (f *benchFleet) idle(window time.Duration, m map[string]float64) {
	f.t.Helper()
	f.settle(3 * time.Second)
	time.Sleep(5 * time.Second) // warm-up
	pid := f.agent.PID()
	p0, t0 := readProc(f.t, pid), time.Now()
	var rss, anon []float64
	for time.Since(t0) < window {
		time.Sleep(time.Second)
		p := readProc(f.t, pid)
		rss, anon = append(rss, p.rss), append(anon, p.anon)
	}
	p1, t1 := readProc(f.t, pid), time.Now()
	f.saveHeap(fmt.Sprintf("heap-idle-%d.pb.gz", len(f.names)))
	met := f.scrape()
	m["idle-rss-MiB"] = mean(rss)
	m["idle-max-rss-MiB"] = slices.Max(rss)
	m["idle-anon-MiB"] = mean(anon)
	if os.Getenv("TANDEM_BENCH_DEBUG") != "" {
		smaps, _ := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
		var mem []string
		for k, v := range met {
			if strings.HasPrefix(k, "go_memstats") || strings.HasPrefix(k, "go_gc") || strings.HasPrefix(k, "go_goroutines") {
				mem = append(mem, fmt.Sprintf("%s %.0f", k, v))
			}
		}
		slices.Sort(mem)
		f.t.Logf("smaps_rollup:\n%s\n%s", smaps, strings.Join(mem, "\n"))
	}
	m["hwm-MiB"] = p1.hwm
	m["idle-cpu-mcores"] = float64(p1.cpu-p0.cpu) / float64(t1.Sub(t0)) * 1000
	m["heap-MiB"] = met[heapInuse] / (1 << 20)
	m["idle-window-s"] = window.Seconds()
}

func mean(xs []float64) float64 {
	var sum float64
	for _, x := range xs {
		sum += x
	}
	return sum / float64(len(xs))
}

// noopCycles pushes k commits that touch no bundle (README only) and returns
// the mean duration of the agent's pass over each new tip: fetch, checkout,
// discovery and one diff per bundle, no render.
func (f *benchFleet) noopCycles(k int) float64 {
	f.t.Helper()
	f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
	before := f.scrape()
	for i := 0; i < k; i++ {
		f.write("README.md", fmt.Sprintf("human notes, take %d\n", i))
		f.push(fmt.Sprintf("notes %d", i))
		want := before[syncNewCount] + float64(i+1)
		deadline := time.Now().Add(time.Minute)
		for f.scrape()[syncNewCount] < want {
			if time.Now().After(deadline) {
				f.t.Fatalf("the agent did not sync README commit %d:\n%s", i, f.agent.LogTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	after := f.scrape()
	return (after[syncNewSum] - before[syncNewSum]) / (after[syncNewCount] - before[syncNewCount]) * 1000
}

// promoteOne changes bundle i's images and returns the median time, over
// runs, from `git push` to the agent's promotion commit for that bundle.
func (f *benchFleet) promoteOne(i, runs int) float64 {
	f.t.Helper()
	name := f.names[i]
	var ms []float64
	for r := 0; r < runs; r++ {
		f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
		have, err := testenv.AgentCommits(f.ctx, f.remote, "main")
		if err != nil {
			f.t.Fatal(err)
		}
		tag := fmt.Sprintf("v%d", r+2)
		dir := "bundles/" + f.ns + "/" + name + "/app/"
		f.write(dir+"client.yaml", fleetApp("client", "example/client:"+tag))
		f.write(dir+"server.yaml", fleetApp("server", "example/server:"+tag))
		f.git(f.clone, "add", "-A")
		f.git(f.clone, "commit", "--quiet", "-m", name+" "+tag)
		start := time.Now()
		f.git(f.clone, "push", "--quiet", "origin", "HEAD:main")
		commits := f.waitCommits(len(have) + 1)
		ms = append(ms, float64(time.Since(start).Milliseconds()))
		if got := commits[0].Trailers["Tandem-Bundle"]; got != name || commits[0].Trailers["Tandem-Result"] != "promoted" {
			f.t.Fatalf("after pushing %s %s the agent wrote %q (%v), want a promotion of %s", name, tag, commits[0].Subject, commits[0].Trailers, name)
		}
	}
	return percentile(ms, 50)
}

// BenchmarkFleet runs one agent on 1, 10 and 100 bundles of two apps each:
// the time for all to go live from an empty cluster, the idle footprint, the
// cost of a pass over a new tip that changes no bundle, and the time to
// promote one bundle while the others are idle.
func BenchmarkFleet(b *testing.B) {
	for _, n := range fleetSizes(b) {
		b.Run(fmt.Sprintf("bundles=%d", n), func(b *testing.B) {
			measureOnce(b, func(b *testing.B) map[string]float64 {
				m := map[string]float64{}
				releaseAgent(b) // built before the clock starts
				f := newFleet(b, n, twoApps)
				floor := bareFloor(b, f.ctx, n, "flr"+f.ns[2:])
				m["floor-live-s"] = floor.Seconds()
				start := time.Now()
				f.start()
				stop := f.cpuProfile(fmt.Sprintf("cpu-live-%d", n))
				f.waitLive(10*time.Minute + time.Duration(n)*4*time.Second)
				m["all-live-s"] = time.Since(start).Seconds()
				stop()
				m["live-vs-floor"] = m["all-live-s"] / m["floor-live-s"]
				f.idle(idleWindow(b), m)
				met := f.scrape()
				if c := met[syncSameCount]; c > 0 {
					m["head-check-ms"] = met[syncSameSum] / c * 1000
				}
				m["noop-cycle-ms"] = f.noopCycles(5)
				m["promote-one-ms"] = f.promoteOne(n/2, 3)
				return m
			})
		})
	}
}

// BenchmarkPollGrowth runs an agent on 10 bundles with --interval 20ms
// against a remote that does not change, and compares its Go heap (after a
// forced GC) and resident memory before and after 1,000 polls.
func BenchmarkPollGrowth(b *testing.B) {
	b.Run("bundles=10/polls=1000", func(b *testing.B) {
		measureOnce(b, func(b *testing.B) map[string]float64 {
			f := newFleet(b, 10, twoApps)
			f.start("--interval", "20ms")
			f.waitLive(5 * time.Minute)
			f.settle(3 * time.Second)
			waitPolls := func(n float64) {
				deadline := time.Now().Add(5 * time.Minute)
				for f.scrape()[pollCount] < n {
					if time.Now().After(deadline) {
						b.Fatalf("the agent did not reach %v polls:\n%s", n, f.agent.LogTail())
					}
					time.Sleep(200 * time.Millisecond)
				}
			}
			waitPolls(f.scrape()[pollCount] + 100) // warm-up
			f.gc()
			f.saveHeap("heap-polls-0.pb.gz")
			m0, p0 := f.scrape(), readProc(b, f.agent.PID())
			waitPolls(m0[pollCount] + 1000)
			f.gc()
			f.saveHeap("heap-polls-1000.pb.gz")
			m1, p1 := f.scrape(), readProc(b, f.agent.PID())
			return map[string]float64{
				"polls":           m1[pollCount] - m0[pollCount],
				"heap-before-MiB": m0[heapInuse] / (1 << 20),
				"heap-after-MiB":  m1[heapInuse] / (1 << 20),
				"heap-growth-KiB": (m1[heapInuse] - m0[heapInuse]) / 1024,
				"rss-before-MiB":  p0.rss,
				"rss-after-MiB":   p1.rss,
				"rss-growth-KiB":  (p1.rss - p0.rss) * 1024,
				"head-check-ms":   (m1[syncSameSum] - m0[syncSameSum]) / (m1[syncSameCount] - m0[syncSameCount]) * 1000,
			}
		})
	})
}

// bigBundle is a bundle of 500 objects: 20 apps (Deployment + Service) and
// 460 ConfigMaps; version goes into every ConfigMap.
func bigBundle(version string) map[string]string {
	res := []string{"resources:"}
	files := map[string]string{}
	for i := 0; i < 20; i++ {
		n := fmt.Sprintf("app%02d", i)
		files["app/"+n+".yaml"] = fleetApp(n, "example/"+n+":"+version)
		res = append(res, "- "+n+".yaml")
	}
	var cms strings.Builder
	for i := 0; i < 460; i++ {
		fmt.Fprintf(&cms, "---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings-%03d\ndata:\n  version: %q\n  peer: \"http://server-${TANDEM_COLOR}:8080\"\n", i, version)
	}
	files["app/settings.yaml"] = cms.String()
	res = append(res, "- settings.yaml")
	files["app/kustomization.yaml"] = strings.Join(res, "\n") + "\n"
	return files
}

// BenchmarkPeakMemory deploys a 500-object bundle and promotes a change of
// every object to the other color; peak-MiB is the agent's VmHWM afterwards.
func BenchmarkPeakMemory(b *testing.B) {
	b.Run("objects=500", func(b *testing.B) {
		measureOnce(b, func(b *testing.B) map[string]float64 {
			f := newFleet(b, 1, func(string) map[string]string { return bigBundle("v1") })
			f.start()
			f.waitLive(5 * time.Minute)
			f.settle(2 * time.Second)
			before := readProc(b, f.agent.PID())
			f.git(f.clone, "pull", "--quiet", "--rebase", "origin", "main")
			for rel, content := range bigBundle("v2") {
				f.write("bundles/"+f.ns+"/"+f.names[0]+"/"+rel, content)
			}
			f.git(f.clone, "add", "-A")
			f.git(f.clone, "commit", "--quiet", "-m", "every object to v2")
			start := time.Now()
			f.git(f.clone, "push", "--quiet", "origin", "HEAD:main")
			c := f.waitCommits(2)[0]
			d := time.Since(start)
			if c.Trailers["Tandem-Result"] != "promoted" {
				b.Fatalf("the 500-object change was not promoted: %q %v", c.Subject, c.Trailers)
			}
			after := readProc(b, f.agent.PID())
			return map[string]float64{
				"rss-before-MiB": before.rss,
				"hwm-before-MiB": before.hwm,
				"peak-MiB":       after.hwm,
				"promote-ms":     float64(d.Milliseconds()),
			}
		})
	})
}
