// Command benchreport turns `go test -bench` output into docs/benchmarks.md:
// one table per area, tandem's figure beside the reference measured in the
// same run, and their ratio. Machines here are noisy; ratios hold better
// than absolute times, which is why every figure has its reference.
//
//	go test -run '^$' -bench . ./... | go run ./internal/benchreport -o docs/benchmarks.md
package main

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// area is one table: benchmarks named <Bench>/<row>/<impl> with a metric.
type area struct {
	Title     string
	Benches   []string          // benchmark functions in this table
	Aliases   map[string]string // name part → column (the rest of the name is the row)
	Metric    string
	Reference string // the impl that is the reference
	Higher    bool   // higher metric is better (throughput)
	Note      string
}

var areas = []area{
	{Title: "Render: tandem vs the kustomize CLI", Benches: []string{"BenchmarkRender"}, Aliases: map[string]string{"kustomize-cli": "cli"}, Metric: "ns/op", Reference: "cli",
		Note: "Deployments + Services per bundle; tandem renders in process (overlay, substitution, twins, digest), the CLI is `kustomize build` v5.8.2 on the same tree. Ratio = tandem / CLI time; below 1 is faster."},
	{Title: "Render CPU time: tandem vs the kustomize CLI", Benches: []string{"BenchmarkRender"}, Aliases: map[string]string{"kustomize-cli": "cli"}, Metric: "cpu-ms", Reference: "cli",
		Note: "The same renders, in CPU time (user+sys) per render, the CLI's counted as a child process: steadier than wall time when other work shares the cores. Ratio = tandem / CLI CPU time."},
	{Title: "Helm charts: tandem in process vs the helm template CLI", Benches: []string{"BenchmarkHelm"}, Aliases: map[string]string{"helm-cli": "cli"}, Metric: "ns/op", Reference: "cli",
		Note: "The charts of render/testdata/helm, examples/storefront and a chart of 500 objects (many-500), with their values files; tandem renders them in process with the Helm SDK (helm.sh/helm/v4 v4.3.2), the CLI is `helm template` v3.22.0 on the same charts and values, one process per chart. Ratio = tandem / CLI time; below 1 is faster."},
	{Title: "Helm charts CPU time: tandem in process vs the helm template CLI", Benches: []string{"BenchmarkHelm"}, Aliases: map[string]string{"helm-cli": "cli"}, Metric: "cpu-ms", Reference: "cli",
		Note: "The same renders in CPU time (user+sys), the CLI's counted as a child process. Ratio = tandem / CLI CPU time."},
	{Title: "gitsync: tandem vs the git CLI", Benches: []string{"BenchmarkPollNoop", "BenchmarkFetch"}, Aliases: map[string]string{"gitsync": "tandem", "git-cli": "git"}, Metric: "ns/op", Reference: "git",
		Note: "A no-op poll (remote head check, no fetch) and fetches of new commits on a repository with 10,000 commits. Ratio = tandem / git time."},
	{Title: "Applier: server-side apply vs a bare concurrent apply", Benches: []string{"BenchmarkApply"}, Aliases: map[string]string{"first": "first", "unchanged": "unchanged", "changed10": "changed10", "floor": "floor"}, Metric: "objects/s", Reference: "floor", Higher: true,
		Note: "ConfigMaps on the local control plane. tandem = Apply: a dry run of every object that is new or was written since tandem last applied it, the apply of those that change, inventory and prune check (first: all 2 requests per object; unchanged: none; changed10: the changed tenth); floor = a bare concurrent server-side apply of the same objects with the same client and concurrency (1 request per object). The benchmark also prints requests/object. Ratio = floor / tandem throughput; 1.0 is the floor."},
	{Title: "End to end: git push to promotion commit", Benches: []string{"BenchmarkPushToPromotion"}, Metric: "p50-ms", Reference: "",
		Note: "A 2-app bundle on the local control plane, pods ready at once in the simulated cluster; the agent is woken by the file watch on the local remote. p50 and p95 over the runs, in milliseconds, split by phase (sync: the pass over the new tip, from the poll to the candidate handed to its bundle; apply, verify, flip, commit) from the durations in the agent's JSON log. Floor: after each push, the same release applied bare to another namespace of the same control plane (a concurrent server-side apply of both Deployments and Services, as `kubectl apply --server-side` sends them), until both Deployments are available and both Services' EndpointSlices list exactly the new ready pods."},
}

// figures is a table of named figures from one benchmark: one row per case
// (the part of the name after the function), one column per metric. Used
// where the reference cannot run here (it is a figure measured elsewhere,
// cited in Ref.Source) or where the comparison is between rows (Growth).
type figures struct {
	Title   string
	Bench   string
	Columns []column
	Ref     *reference
	Growth  *growth
	Note    string
}

type column struct {
	Metric, Header string
	Digits         int // decimals shown
}

// reference is a figure of another tool, measured elsewhere: shown beside
// Metric in the rows it applies to (all when Rows is empty), with the ratio.
type reference struct {
	Header, Metric, Source string
	Value                  float64
	Rows                   []string
}

// growth states how Metric grows from row From to row To (e.g. 10 → 100 bundles).
type growth struct {
	Metric, From, To string
	Scale            float64 // To's size / From's size
	What             string
}

var figureTables = []figures{
	{Title: "Isolation: a bundle slow to render beside a normal one", Bench: "BenchmarkSlowNeighbour",
		Columns: []column{
			{Metric: "alone-p50-ms", Header: "normal bundle, commit changes it alone (ms)"},
			{Metric: "beside-slow-p50-ms", Header: "normal bundle, same commit changes the slow one (ms)"},
			{Metric: "ratio", Header: "beside / alone", Digits: 2},
			{Metric: "slow-p50-ms", Header: "the slow bundle itself (ms)"},
		},
		Note: "Push to promotion commit, p50 over 5 pushes each, of a 1-app bundle on the local control plane, with and without a bundle of 2,000 ConfigMaps (under --render-max-objects; kustomize takes seconds to render it) changed in the same commit. The candidates of a commit render at once in the agent's worker processes and each goes to its bundle when its own render is done."},
	{Title: "Footprint: the idle agent", Bench: "BenchmarkFleet",
		Columns: []column{
			{Metric: "idle-rss-MiB", Header: "RSS (MiB)", Digits: 1},
			{Metric: "idle-anon-MiB", Header: "anonymous RSS (MiB)", Digits: 1},
			{Metric: "heap-MiB", Header: "Go heap in use (MiB)", Digits: 1},
			{Metric: "idle-cpu-mcores", Header: "CPU (millicores)", Digits: 1},
			{Metric: "hwm-MiB", Header: "peak RSS since start (MiB)", Digits: 1},
			{Metric: "idle-window-s", Header: "window (s)"},
		},
		Ref: &reference{Header: "kustomize-controller idle (MiB)", Metric: "idle-rss-MiB", Value: 171,
			Source: "Flux's kustomize-controller, idle in the field, as reported in the Sylva project's merge requests (https://gitlab.com/sylva-projects/sylva-core); it cannot run here, so this is not the same machine"},
		Note: "One agent (default --interval 30s) on N bundles of 2 apps each, after all went live and a 5 s warm-up, sampled every second over the window (`make bench BENCH_IDLE_WINDOW=30s` for a shorter run); no commits. The agent is built as `make build` ships it (static, -s -w). RSS is VmRSS from /proc; anonymous RSS (RssAnon) is the agent's own memory, the rest is the mapped binary (file-backed, shared page cache; about 26 MiB here, up to 58 MiB when the kernel maps the text in 2 MiB pages). CPU is utime+stime over the window. Ratio = tandem RSS / reference."},
	{Title: "Footprint: 1,000 no-op polls", Bench: "BenchmarkPollGrowth",
		Columns: []column{
			{Metric: "polls", Header: "polls"},
			{Metric: "heap-before-MiB", Header: "heap before (MiB)", Digits: 2},
			{Metric: "heap-after-MiB", Header: "heap after (MiB)", Digits: 2},
			{Metric: "heap-growth-KiB", Header: "heap growth (KiB)"},
			{Metric: "rss-before-MiB", Header: "RSS before (MiB)", Digits: 1},
			{Metric: "rss-after-MiB", Header: "RSS after (MiB)", Digits: 1},
			{Metric: "head-check-ms", Header: "head check (ms)", Digits: 2},
		},
		Note: "10 bundles, --interval 20ms, the remote unchanged. Heap is go_memstats_heap_inuse_bytes from the agent's /metrics right after a forced GC (pprof heap?gc=1), so before and after compare live data; polls are counted from tandem_git_poll_duration_seconds_count after 100 polls of warm-up. Goal: no growth."},
	{Title: "Footprint: peak memory during a 500-object promotion", Bench: "BenchmarkPeakMemory",
		Columns: []column{
			{Metric: "rss-before-MiB", Header: "RSS live, before (MiB)", Digits: 1},
			{Metric: "peak-MiB", Header: "peak RSS (MiB)", Digits: 1},
			{Metric: "promote-ms", Header: "push to promotion (ms)"},
		},
		Ref: &reference{Header: "kustomize-controller idle (MiB)", Metric: "peak-MiB", Value: 171,
			Source: "the same field figure as above"},
		Note: "One bundle of 20 Deployments, 20 Services and 460 ConfigMaps: first deploy, then a commit changing all 500 objects, promoted to the other color (render of both colors, dry run, apply, verify, flip of 20 stable Services, commit). Peak is VmHWM, the process's lifetime maximum. Ratio = tandem's peak / the reference's idle figure."},
	{Title: "Scale: one agent, many bundles", Bench: "BenchmarkFleet",
		Columns: []column{
			{Metric: "all-live-s", Header: "all live from empty (s)", Digits: 1},
			{Metric: "floor-live-s", Header: "bare apply floor, all available (s)", Digits: 1},
			{Metric: "live-vs-floor", Header: "all live / floor", Digits: 2},
			{Metric: "promote-one-ms", Header: "promote one, others idle (ms)"},
			{Metric: "noop-cycle-ms", Header: "no-op cycle (ms)", Digits: 1},
			{Metric: "head-check-ms", Header: "head check (ms)", Digits: 2},
		},
		Ref: &reference{Header: "Flux, 100 Kustomizations all applied (s)", Metric: "all-live-s", Value: 26, Rows: []string{"bundles=100"},
			Source: "https://github.com/fluxcd/flux-benchmark/blob/main/RESULTS.md, Flux 2.8/2.9 on a 16-core runner with a 3-node kind cluster and Deployments scaled to 0; not this machine"},
		Growth: &growth{Metric: "noop-cycle-ms", From: "bundles=10", To: "bundles=100", Scale: 10, What: "A no-op cycle"},
		Note:   "N bundles of 2 apps (a Deployment of 1 replica and a Service each) in one repository, one agent, default --concurrency 4 (a bundle holds a slot to render, apply, flip and commit, not while it waits for health). All live: agent start to the N-th first-promotion commit, on a cluster without the fleet's objects (the simulated kubelet makes pods ready at once; the controller-manager runs at its default 20 QPS). Floor, measured in the same run just before the agent starts: the same Namespaces, Deployments and Services (colored and stable) in namespaces of their own, each a bare server-side apply from one client (the agent's QPS, burst and apply concurrency), then one watch until every Deployment is Available; its objects stay while the agent runs. Goal: all live within 1.3x the floor (`TANDEM_BENCH_FLEET_SIZES=100,300` runs other sizes; default 1,10,100,1000). Promote one: median of 3 pushes changing one bundle, push to its promotion commit. No-op cycle: the agent's pass over a new tip that changes no bundle (a README commit: head check, fetch, one tree diff against the last tip; the tree is not checked out), mean of 5, from tandem_sync_duration_seconds{tip=\"new\"}. Head check: a poll of an unchanged remote."},
}

type result map[string]map[string]float64 // full name → metric → value

func main() {
	out := flag.String("o", "", "write the report here (default stdout)")
	elapsed := flag.Duration("elapsed", 0, "wall time of the benchmark run, shown in the header")
	flag.Parse()
	res, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	w := os.Stdout
	var notes []byte
	if *out != "" {
		// The hand-written notes at the end of the report survive a regeneration.
		if old, err := os.ReadFile(*out); err == nil {
			if i := bytes.Index(old, []byte("\n"+notesHeading)); i >= 0 {
				notes = old[i:]
			}
		}
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "benchreport:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	write(w, res, *elapsed)
	_, _ = w.Write(notes)
}

// notesHeading starts the hand-written part of the report, kept as is.
const notesHeading = "## Notes on the goals"

// parse reads benchmark lines: "BenchmarkX/a/b-2  10  123 ns/op  4.5 objects/s".
func parse(r io.Reader) (result, error) {
	res := result{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		res[name] = m
	}
	return res, sc.Err()
}

func write(w io.Writer, res result, elapsed time.Duration) {
	host, _ := os.Hostname()
	took := ""
	if elapsed > 0 {
		took = fmt.Sprintf(" The benchmarks took %s of wall time.", elapsed.Round(time.Second))
	}
	fmt.Fprintf(w, "# Benchmarks\n\nGenerated by `make bench` on %s from commit %s: %d cores, %s memory, %s, host %s.%s\n",
		time.Now().UTC().Format("2006-01-02"), sourceCommit(), runtime.NumCPU(), memTotal(), runtime.Version(), host, took)
	fmt.Fprintf(w, "Every tandem figure has its reference measured in the same run, except footprint and scale, whose references (Flux) are cited field figures; compare ratios, not absolute times. `make bench-peers` measures Flux and Argo Rollouts themselves beside tandem on this machine: its tables are at the end.\n")
	for _, a := range areas {
		rows, impls := collect(res, a)
		fmt.Fprintf(w, "\n## %s\n\n%s\n\n", a.Title, a.Note)
		if len(rows) == 0 {
			fmt.Fprintf(w, "_Not measured in this run (no %s benchmark ran)._\n", strings.Join(a.Benches, ", "))
			continue
		}
		header := []string{"case"}
		for _, impl := range impls {
			header = append(header, impl+" ("+a.Metric+")")
		}
		if a.Reference != "" {
			for _, impl := range impls {
				if impl != a.Reference {
					header = append(header, impl+" ratio")
				}
			}
		}
		fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat(" --- |", len(header)))
		for _, row := range sortedKeys(rows) {
			cells := []string{row}
			for _, impl := range impls {
				cells = append(cells, format(rows[row][impl], a.Metric))
			}
			if a.Reference != "" {
				ref := rows[row][a.Reference]
				for _, impl := range impls {
					if impl == a.Reference {
						continue
					}
					v := rows[row][impl]
					switch {
					case v == 0 || ref == 0:
						cells = append(cells, "–")
					case a.Higher:
						cells = append(cells, fmt.Sprintf("%.2fx", ref/v))
					default:
						cells = append(cells, fmt.Sprintf("%.2fx", v/ref))
					}
				}
			}
			fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
		}
		if a.Metric == "p50-ms" {
			for _, impl := range impls {
				if t, f := rows["p50-ms"][impl], rows["floor-p50-ms"][impl]; t > 0 && f > 0 {
					fmt.Fprintf(w, "\nPush → promotion commit p50 / the control plane's floor p50, same run: %.0f / %.0f ms = %.2fx (goal: at most 1.2x).\n", t, f, t/f)
				}
			}
		}
	}
	for _, t := range figureTables {
		writeFigures(w, res, t)
	}
}

// writeFigures writes one figures table.
func writeFigures(w io.Writer, res result, t figures) {
	fmt.Fprintf(w, "\n## %s\n\n%s\n\n", t.Title, t.Note)
	rows := map[string]map[string]float64{}
	for name, m := range res {
		bench, row, _ := strings.Cut(name, "/")
		if bench != t.Bench {
			continue
		}
		for _, c := range t.Columns {
			if _, ok := m[c.Metric]; ok {
				rows[row] = m
				break
			}
		}
	}
	if len(rows) == 0 {
		fmt.Fprintf(w, "_Not measured in this run (%s did not run)._\n", t.Bench)
		return
	}
	header := []string{"case"}
	for _, c := range t.Columns {
		header = append(header, c.Header)
	}
	if t.Ref != nil {
		header = append(header, t.Ref.Header, "ratio")
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(header, " | "), strings.Repeat(" --- |", len(header)))
	for _, row := range sortedKeys(rows) {
		m := rows[row]
		cells := []string{row}
		for _, c := range t.Columns {
			if v, ok := m[c.Metric]; ok {
				cells = append(cells, strconv.FormatFloat(v, 'f', c.Digits, 64))
			} else {
				cells = append(cells, "–")
			}
		}
		if t.Ref != nil {
			if len(t.Ref.Rows) > 0 && !slices.Contains(t.Ref.Rows, row) {
				cells = append(cells, "", "")
			} else if v, ok := m[t.Ref.Metric]; ok && t.Ref.Value != 0 {
				cells = append(cells, strconv.FormatFloat(t.Ref.Value, 'f', -1, 64), fmt.Sprintf("%.2fx", v/t.Ref.Value))
			} else {
				cells = append(cells, strconv.FormatFloat(t.Ref.Value, 'f', -1, 64), "–")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	if t.Ref != nil {
		fmt.Fprintf(w, "\nReference: %s.\n", t.Ref.Source)
	}
	if g := t.Growth; g != nil {
		from, to := rows[g.From][g.Metric], rows[g.To][g.Metric]
		if from > 0 && to > 0 {
			r := to / from
			kind := "better than linear"
			switch {
			case r > g.Scale*1.1:
				kind = "worse than linear"
			case r >= g.Scale*0.9:
				kind = "linear"
			}
			fmt.Fprintf(w, "\n%s costs %.2fx as much at %s as at %s (%.0fx the bundles): %s.\n", g.What, r, g.To, g.From, g.Scale, kind)
		}
	}
}

// collect groups an area's results by row (middle of the name) and impl (last part).
func collect(res result, a area) (map[string]map[string]float64, []string) {
	rows := map[string]map[string]float64{}
	implSet := map[string]bool{}
	for name, m := range res {
		parts := strings.Split(name, "/")
		if !slices.Contains(a.Benches, parts[0]) {
			continue
		}
		impl, rest := "tandem", []string{}
		if len(a.Benches) > 1 {
			rest = append(rest, strings.TrimPrefix(parts[0], "Benchmark"))
		}
		for _, p := range parts[1:] {
			if col, ok := a.Aliases[p]; ok {
				impl = col
			} else {
				rest = append(rest, p)
			}
		}
		row := strings.Join(rest, "/")
		if row == "" {
			row = "all"
		}
		if a.Metric == "p50-ms" { // one row per metric: p50, p95 and phases
			for metric, v := range m {
				if strings.HasSuffix(metric, "-ms") {
					if rows[metric] == nil {
						rows[metric] = map[string]float64{}
					}
					rows[metric][impl] = v
					implSet[impl] = true
				}
			}
			continue
		}
		v, ok := m[a.Metric]
		if !ok {
			continue
		}
		if rows[row] == nil {
			rows[row] = map[string]float64{}
		}
		rows[row][impl] = v
		implSet[impl] = true
	}
	impls := sortedKeys(implSet)
	// The reference goes last.
	sort.SliceStable(impls, func(i, j int) bool { return impls[j] == a.Reference && impls[i] != a.Reference })
	return rows, impls
}

func format(v float64, metric string) string {
	switch {
	case v == 0:
		return "–"
	case metric == "ns/op":
		return time.Duration(v).Round(time.Microsecond).String()
	case strings.HasSuffix(metric, "-ms"):
		return strconv.FormatFloat(v, 'f', 0, 64) + " ms"
	default:
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return natLess(keys[i], keys[j]) })
	return keys
}

// natLess orders "objects=100" before "objects=1000".
func natLess(a, b string) bool {
	if len(a) != len(b) && strings.TrimRight(a, "0123456789") == strings.TrimRight(b, "0123456789") {
		return len(a) < len(b)
	}
	return a < b
}

// sourceCommit names the commit the benchmarks ran on ("4cc91fa", with
// "-dirty" when the tree had changes), or "unknown" outside a Git checkout.
func sourceCommit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty", "--abbrev=7", "--exclude=*").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

func memTotal() string {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "MemTotal:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			return fmt.Sprintf("%.0f GiB", kb/1024/1024)
		}
	}
	return "unknown"
}
