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
	"sync"
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
	o       WorkerOptions
	sem     chan struct{}
	busy    atomic.Int32 // workers running (tests read peak)
	peak    atomic.Int32
	started atomic.Int32 // worker processes started

	mu   sync.Mutex
	idle []*worker // started workers waiting for a render
}

// worker is one long-lived worker process: it serves renders one after
// another, so a render pays no process start; it is killed at a render's
// deadline, on any error, and after workerIdle without work.
type worker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *limitedReader
	dec    *json.Decoder
	stderr *lockedBuffer
	done   chan struct{} // closed when the process exited
	idle   *time.Timer   // kills it when it waits too long
}

// workerIdle is how long a worker waits for its next render before it
// exits, giving its memory back.
const workerIdle = 2 * time.Minute

// start starts a worker process.
func (p *WorkerPool) start() (*worker, error) {
	cmd := exec.Command(p.o.Command[0], p.o.Command[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, stdin: stdin, stderr: &lockedBuffer{b: cappedBuffer{max: 16 << 10}}, done: make(chan struct{})}
	cmd.Stderr = w.stderr
	setWorkerAttrs(cmd)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p.started.Add(1)
	go func() {
		_ = cmd.Wait()
		close(w.done)
	}()
	w.out = &limitedReader{r: stdout}
	w.dec = json.NewDecoder(w.out)
	return w, nil
}

// kill ends w and waits for it.
func (w *worker) kill() {
	_ = w.cmd.Process.Kill()
	<-w.done
}

// take returns an idle worker, or starts one.
func (p *WorkerPool) take() (*worker, error) {
	p.mu.Lock()
	for len(p.idle) > 0 {
		w := p.idle[len(p.idle)-1]
		p.idle = p.idle[:len(p.idle)-1]
		if w.idle.Stop() {
			p.mu.Unlock()
			return w, nil
		}
		// its idle timer fired: it is being killed
	}
	p.mu.Unlock()
	return p.start()
}

// put keeps w for the next render, for workerIdle at most.
func (p *WorkerPool) put(w *worker) {
	p.mu.Lock()
	defer p.mu.Unlock()
	w.idle = time.AfterFunc(workerIdle, func() {
		p.mu.Lock()
		for i, x := range p.idle {
			if x == w {
				p.idle = append(p.idle[:i], p.idle[i+1:]...)
				break
			}
		}
		p.mu.Unlock()
		_ = w.stdin.Close() // it exits at the end of its input
		select {
		case <-w.done:
		case <-time.After(5 * time.Second):
			w.kill()
		}
	})
	p.idle = append(p.idle, w)
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

// ServeWorker is a render worker's main: it reads requests from in, one
// JSON document each, renders each in this process and writes its result
// to out, until in ends. It limits its own memory as the first request
// says, so it must run in a process of its own. The error is for the
// worker's exit status; a failed render is a result, not an error.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	lim := &limitedReader{r: in}
	dec := json.NewDecoder(lim)
	enc := json.NewEncoder(out)
	limited := false
	for {
		lim.left = maxRequest
		var req workerRequest
		if err := dec.Decode(&req); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("render worker: request: %w", err)
		}
		if req.MemoryLimit > 0 && !limited {
			limited = true
			debug.SetMemoryLimit(req.MemoryLimit * 3 / 4)
			if err := limitMemory(req.MemoryLimit); err != nil {
				return fmt.Errorf("render worker: memory limit of %d bytes: %w", req.MemoryLimit, err)
			}
		}
		if err := enc.Encode(serve(ctx, req)); err != nil {
			return fmt.Errorf("render worker: writing the result: %w", err)
		}
		debug.FreeOSMemory() // an idle worker holds little
	}
}

// limitedReader reads at most left bytes until left is set again: one
// request, or one result.
type limitedReader struct {
	r    io.Reader
	left int64
}

func (l *limitedReader) Read(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errTooLarge
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.r.Read(p)
	l.left -= int64(n)
	return n, err
}

// errTooLarge: a request or result over its bound.
var errTooLarge = errors.New("larger than its bound")

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

	resp, err := p.exchange(ctx, b, o, req, int64(len(colors)))
	if err != nil {
		return nil, err
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

// lockedBuffer is a cappedBuffer that the process's stderr copier and a
// render may use at once.
type lockedBuffer struct {
	mu sync.Mutex
	b  cappedBuffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Reset empties the buffer.
func (l *lockedBuffer) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b.Reset()
	l.b.over = 0
}

// exchange sends req to a worker and reads its result within o.Timeout. A
// worker that fails in any way is killed (and not reused); one that had
// died while idle is replaced once.
func (p *WorkerPool) exchange(ctx context.Context, b *Bundle, o Options, req []byte, colors int64) (workerResponse, error) {
	rctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var resp workerResponse
	for attempt := 0; ; attempt++ {
		w, err := p.take()
		if err != nil {
			return resp, fmt.Errorf("bundle %s: start a render worker %s: %w", b.Name, p.o.Command[0], err)
		}
		w.stderr.Reset()
		// The result holds every color's objects as JSON, a few times the
		// YAML that MaxBytes bounds.
		max := 4*(colors+1)*o.MaxBytes + 1<<20
		got := make(chan error, 1)
		go func() {
			if _, err := w.stdin.Write(append(req, '\n')); err != nil {
				got <- err
				return
			}
			w.out.left = max
			got <- w.dec.Decode(&resp)
		}()
		select {
		case err = <-got:
		case <-rctx.Done():
			w.kill()
			<-got
			if ctx.Err() != nil {
				return resp, fmt.Errorf("bundle %s: render: %w", b.Name, ctx.Err())
			}
			return resp, &Error{Err: fmt.Errorf("bundle %s: %w", b.Name, timeoutError(b, o))}
		}
		if err == nil {
			p.put(w)
			return resp, nil
		}
		w.kill()
		stderr := w.stderr.String()
		switch {
		case outOfMemory(stderr):
			return resp, &Error{Err: fmt.Errorf("bundle %s: %w", b.Name, &LimitError{Limit: LimitMemory,
				Max: fmt.Sprintf("%d MiB", p.o.MemoryLimit>>20), File: b.File, Detail: "the render worker ran out of memory"})}
		case errors.Is(err, errTooLarge):
			return resp, fmt.Errorf("bundle %s: render worker %s: result is larger than %d bytes", b.Name, p.o.Command[0], max)
		case attempt == 0 && stderr == "":
			continue // it had died while idle: a fresh one
		}
		return resp, fmt.Errorf("bundle %s: render worker %s: %w: %s", b.Name, p.o.Command[0], err, lastLines(stderr, 5))
	}
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
