package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Why a worker process: kustomize cannot be interrupted. Its build takes
// no context and its resource map is quadratic in the objects (every
// resWrangler.Append looks the new object's id up among all the others),
// so a render of a large file runs for minutes inside one call that no
// deadline reaches, holding the mutex that serializes kustomize in a
// process. A child process can be killed at the deadline, given its own
// memory limit, and run beside other renders. Argo CD's repo-server runs
// its manifest generation the same way.

// WorkerOptions configure a WorkerPool.
type WorkerOptions struct {
	// Command is the worker's argv: a program that calls ServeWorker, such
	// as the agent's own binary and its hidden subcommand
	// ([os.Executable(), "render-worker"]). Required.
	Command []string
	// Parallel is the number of workers running at once (default 2);
	// further renders wait for a free place.
	Parallel int
	// MemoryLimit bounds each worker's memory in bytes (default
	// DefaultWorkerMemory): the Go runtime's soft limit, and RLIMIT_DATA
	// (Linux), above which its allocations fail and it dies.
	MemoryLimit int64
}

// WorkerPool runs renders in worker processes, at most Parallel at once:
// the memory of rendering is bounded by Parallel × MemoryLimit whatever
// the number of bundles.
type WorkerPool struct {
	o    WorkerOptions
	sem  chan struct{}
	busy atomic.Int32 // workers running (tests read peak)
	peak atomic.Int32
}

// NewWorkerPool validates o and fills in its defaults.
func NewWorkerPool(o WorkerOptions) (*WorkerPool, error) {
	if len(o.Command) == 0 || o.Command[0] == "" {
		return nil, errors.New("render worker pool: Command is empty")
	}
	if o.Parallel <= 0 {
		o.Parallel = 2
	}
	if o.MemoryLimit <= 0 {
		o.MemoryLimit = DefaultWorkerMemory
	}
	if o.MemoryLimit < minWorkerMemory {
		return nil, fmt.Errorf("render worker pool: MemoryLimit %d bytes is below the %d MiB a worker needs to start", o.MemoryLimit, minWorkerMemory>>20)
	}
	return &WorkerPool{o: o, sem: make(chan struct{}, o.Parallel)}, nil
}

// workerRequest is what RenderColors sends a worker on its stdin.
type workerRequest struct {
	// BundleFile is re-read and parsed by the worker (a Bundle holds
	// compiled regexps that JSON cannot carry); BundleName must match.
	BundleFile, BundleName string
	RepoRoot, Live, Commit string
	AllowRemoteBases       bool
	AllowRemoteCharts      bool
	ChartCache             string
	ChartCredentials       string // a path: the worker reads the file
	MaxChartBytes          int64
	KubeVersion            string
	APIVersions            []string
	MaxBytes               int64
	MaxObjects             int
	Colors                 []string
	MemoryLimit            int64
}

// workerResponse is what a worker writes on its stdout.
type workerResponse struct {
	Results []workerResult `json:",omitempty"`
	Err     *workerError   `json:",omitempty"`
}

type workerError struct {
	Message string
	Inputs  []string
	Limit   *LimitError `json:",omitempty"`
}

// workerResult is a Result with its objects as plain maps: decoded with
// encoding/json they hold the same types (float64 numbers) as in process.
type workerResult struct {
	Bundle, Color, Live, Digest string
	Objects, Twins, Shared      []map[string]any
	CheckJobs                   map[string]map[string]any
	Charts                      []ChartSource
	Inputs                      []string
}

// minWorkerMemory is the least MemoryLimit: the Go runtime and kustomize
// map about 100 MiB of data before rendering anything.
const minWorkerMemory = 128 << 20

// maxRequest bounds a worker's request.
const maxRequest = 1 << 20

// ServeWorker is a render worker's main: it reads one request from in,
// renders in this process, writes the result to out and returns. It
// limits its own memory as the request says, so it must run in a process
// of its own. The error is for the worker's exit status; a failed render
// is a result, not an error.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(io.LimitReader(in, maxRequest+1))
	if err != nil {
		return fmt.Errorf("render worker: reading the request: %w", err)
	}
	if len(data) > maxRequest {
		return fmt.Errorf("render worker: request is larger than %d bytes", maxRequest)
	}
	var req workerRequest
	if err := json.Unmarshal(data, &req); err != nil {
		return fmt.Errorf("render worker: request: %w", err)
	}
	if req.MemoryLimit > 0 {
		debug.SetMemoryLimit(req.MemoryLimit * 3 / 4)
		if err := limitMemory(req.MemoryLimit); err != nil {
			return fmt.Errorf("render worker: memory limit of %d bytes: %w", req.MemoryLimit, err)
		}
	}
	resp := serve(ctx, req)
	if err := json.NewEncoder(out).Encode(resp); err != nil {
		return fmt.Errorf("render worker: writing the result: %w", err)
	}
	return nil
}

func serve(ctx context.Context, req workerRequest) workerResponse {
	fail := func(err error) workerResponse {
		we := &workerError{Message: err.Error(), Inputs: inputsOf(err)}
		var le *LimitError
		if errors.As(err, &le) {
			we.Limit = le
		}
		return workerResponse{Err: we}
	}
	root, err := filepath.Abs(req.RepoRoot)
	if err != nil {
		return fail(fmt.Errorf("bundle %s: repository root: %w", req.BundleName, err))
	}
	data, err := readLimited(filepath.Join(root, filepath.FromSlash(req.BundleFile)), maxInputBytes)
	if err != nil {
		return fail(fmt.Errorf("bundle %s: %w", req.BundleName, err))
	}
	b, err := ParseBundle(req.BundleFile, data)
	if err != nil {
		return fail(err)
	}
	if b.Name != req.BundleName {
		return fail(fmt.Errorf("%s: names bundle %q, not %q", req.BundleFile, b.Name, req.BundleName))
	}
	o := Options{RepoRoot: root, Live: req.Live, Commit: req.Commit, AllowRemoteBases: req.AllowRemoteBases,
		AllowRemoteCharts: req.AllowRemoteCharts, ChartCache: req.ChartCache, ChartCredentials: req.ChartCredentials,
		MaxChartBytes: req.MaxChartBytes, KubeVersion: req.KubeVersion, APIVersions: req.APIVersions,
		MaxBytes: req.MaxBytes, MaxObjects: req.MaxObjects, Timeout: 24 * time.Hour} // the parent kills at the deadline
	rs, err := RenderColors(ctx, b, o, req.Colors...)
	if err != nil {
		return fail(err)
	}
	var resp workerResponse
	for _, r := range rs {
		wr := workerResult{Bundle: r.Bundle, Color: r.Color, Live: r.Live, Digest: r.Digest, Inputs: r.Inputs, Charts: r.Charts,
			Objects: maps(r.Objects), Twins: maps(r.Twins), Shared: maps(r.Shared)}
		if r.CheckJobs != nil {
			wr.CheckJobs = map[string]map[string]any{}
			for n, u := range r.CheckJobs {
				wr.CheckJobs[n] = u.Object
			}
		}
		resp.Results = append(resp.Results, wr)
	}
	return resp
}

func maps(objs []*unstructured.Unstructured) []map[string]any {
	if objs == nil {
		return nil
	}
	out := make([]map[string]any, len(objs))
	for i, u := range objs {
		out[i] = u.Object
	}
	return out
}

func objects(ms []map[string]any) []*unstructured.Unstructured {
	if ms == nil {
		return nil
	}
	out := make([]*unstructured.Unstructured, len(ms))
	for i, m := range ms {
		out[i] = &unstructured.Unstructured{Object: m}
	}
	return out
}

// cappedBuffer keeps the first max bytes written to it and counts the rest.
type cappedBuffer struct {
	bytes.Buffer
	max, over int64
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - int64(c.Len()); room < int64(len(p)) {
		c.over += int64(len(p)) - max(room, 0)
		if room > 0 {
			c.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return c.Buffer.Write(p)
}

// render runs RenderColors in a worker process (o's defaults filled in).
func (p *WorkerPool) render(ctx context.Context, b *Bundle, o Options, colors []string) ([]*Result, error) {
	req, err := json.Marshal(workerRequest{BundleFile: b.File, BundleName: b.Name, RepoRoot: o.RepoRoot, Live: o.Live,
		Commit: o.Commit, AllowRemoteBases: o.AllowRemoteBases, AllowRemoteCharts: o.AllowRemoteCharts, ChartCache: o.ChartCache,
		ChartCredentials: o.ChartCredentials, MaxChartBytes: o.MaxChartBytes, KubeVersion: o.KubeVersion, APIVersions: o.APIVersions,
		MaxBytes: o.MaxBytes, MaxObjects: o.MaxObjects,
		Colors: colors, MemoryLimit: p.o.MemoryLimit})
	if err != nil {
		return nil, fmt.Errorf("bundle %s: render request: %w", b.Name, err)
	}
	select {
	case p.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("bundle %s: waiting for a render worker: %w", b.Name, ctx.Err())
	}
	defer func() { <-p.sem }()
	if n := p.busy.Add(1); n > p.peak.Load() {
		p.peak.Store(n)
	}
	defer p.busy.Add(-1)

	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(rctx, p.o.Command[0], p.o.Command[1:]...)
	cmd.Stdin = bytes.NewReader(req)
	// The output holds every color's objects as JSON, a few times the YAML
	// that MaxBytes bounds.
	stdout := &cappedBuffer{max: 4*int64(len(colors)+1)*o.MaxBytes + 1<<20}
	stderr := &cappedBuffer{max: 16 << 10}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.WaitDelay = time.Second
	setWorkerAttrs(cmd)
	err = cmd.Run()
	switch {
	case ctx.Err() != nil:
		return nil, fmt.Errorf("bundle %s: render: %w", b.Name, ctx.Err())
	case errors.Is(rctx.Err(), context.DeadlineExceeded):
		return nil, &Error{Err: fmt.Errorf("bundle %s: %w", b.Name, timeoutError(b, o))}
	case err != nil && outOfMemory(stderr.String()):
		return nil, &Error{Err: fmt.Errorf("bundle %s: %w", b.Name, &LimitError{Limit: LimitMemory,
			Max: fmt.Sprintf("%d MiB", p.o.MemoryLimit>>20), File: b.File, Detail: "the render worker ran out of memory"})}
	case err != nil:
		return nil, fmt.Errorf("bundle %s: render worker %s: %w: %s", b.Name, p.o.Command[0], err, lastLines(stderr.String(), 5))
	case stdout.over > 0:
		return nil, fmt.Errorf("bundle %s: render worker %s: result is larger than %d bytes", b.Name, p.o.Command[0], stdout.max)
	}
	var resp workerResponse
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("bundle %s: render worker %s: result: %w", b.Name, p.o.Command[0], err)
	}
	if e := resp.Err; e != nil {
		var err error = errors.New(e.Message)
		if e.Limit != nil {
			err = &wrapped{msg: e.Message, err: e.Limit}
		}
		return nil, &Error{Err: err, Inputs: e.Inputs}
	}
	if len(resp.Results) != len(colors) {
		return nil, fmt.Errorf("bundle %s: render worker %s: %d results for %d colors", b.Name, p.o.Command[0], len(resp.Results), len(colors))
	}
	out := make([]*Result, len(resp.Results))
	for i, r := range resp.Results {
		res := &Result{Bundle: r.Bundle, Color: r.Color, Live: r.Live, Digest: r.Digest, Inputs: r.Inputs, Charts: r.Charts,
			Objects: objects(r.Objects), Twins: objects(r.Twins), Shared: objects(r.Shared)}
		if r.CheckJobs != nil {
			res.CheckJobs = map[string]*unstructured.Unstructured{}
			for n, m := range r.CheckJobs {
				res.CheckJobs[n] = &unstructured.Unstructured{Object: m}
			}
		}
		out[i] = res
	}
	return out, nil
}

// wrapped is an error message from a worker that still unwraps to the
// typed error it carried.
type wrapped struct {
	msg string
	err error
}

func (w *wrapped) Error() string { return w.msg }
func (w *wrapped) Unwrap() error { return w.err }

// outOfMemory says whether a worker's stderr reports that the Go runtime
// could not get memory (RLIMIT_DATA reached).
func outOfMemory(stderr string) bool {
	return strings.Contains(stderr, "out of memory") || strings.Contains(stderr, "cannot allocate memory") ||
		// A worker built with the race detector (the tests' binaries) runs
		// out in the detector's own allocator.
		strings.Contains(stderr, "ThreadSanitizer failed to allocate")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
