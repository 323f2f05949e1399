package render

import (
	"context"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets the test binary serve as its own render worker, as the
// agent's binary does with its hidden subcommand.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "render-worker" {
		if err := ServeWorker(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testPool(t testing.TB, o WorkerOptions) *WorkerPool {
	t.Helper()
	o.Command = []string{os.Args[0], "render-worker"}
	p, err := NewWorkerPool(o)
	must(t, err)
	return p
}

// pathologicalTree writes bundle "big" whose spec.path holds n one-line
// ConfigMaps in one file (57,600 of them make a file under the 4 MiB
// input limit), and bundle "small" beside it.
func pathologicalTree(t testing.TB, n int) (root string, big, small *Bundle) {
	root = t.TempDir()
	var sb strings.Builder
	for i := 0; i < n; i++ {
		fmt.Fprintf(&sb, "---\n{apiVersion: v1, kind: ConfigMap, metadata: {name: c%d}}\n", i)
	}
	writeFiles(t, root, map[string]string{
		"big/bundle.yaml":              strings.Replace(testBundle, "%s", "big", 1),
		"big/app/kustomization.yaml":   "resources:\n- cms.yaml\n",
		"big/app/cms.yaml":             sb.String(),
		"small/bundle.yaml":            strings.Replace(testBundle, "%s", "small", 1),
		"small/app/kustomization.yaml": "resources: [d.yaml]\n",
		"small/app/d.yaml":             deploy("example/d:v1"),
	})
	bs, err := Discover(root, ".")
	must(t, err)
	for _, b := range bs {
		switch b.Name {
		case "big":
			big = b
		case "small":
			small = b
		}
	}
	return root, big, small
}

func wantLimit(t *testing.T, err error, limit Limit, file string) {
	t.Helper()
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != limit || le.File != file {
		t.Fatalf("error %v, want a %s limit error on %s", err, limit, file)
	}
	if !strings.Contains(err.Error(), file) || !strings.Contains(err.Error(), string(limit)) {
		t.Fatalf("error %q does not name the file %s and the limit %s", err, file, limit)
	}
	t.Log(err)
}

// TestPathologicalFileRefused refuses 57,600 ConfigMaps in one file by
// counting its documents, in process and in a worker, before kustomize's
// quadratic resource map sees them.
func TestPathologicalFileRefused(t *testing.T) {
	root, big, _ := pathologicalTree(t, 57600)
	if fi, err := os.Stat(root + "/big/app/cms.yaml"); err != nil || fi.Size() >= maxInputBytes {
		t.Fatalf("test file: %v, %d bytes: want under %d", err, fi.Size(), maxInputBytes)
	}
	for name, w := range map[string]*WorkerPool{"in-process": nil, "worker": testPool(t, WorkerOptions{})} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := RenderColors(context.Background(), big, Options{RepoRoot: root, Workers: w}, "blue", "green")
			wantLimit(t, err, LimitObjects, "big/app/cms.yaml")
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("refused after %v", d)
			}
		})
	}
}

// TestRenderDeadline kills a worker stuck in kustomize at the deadline
// (the object limit raised so that the count does not refuse it first),
// while another bundle renders beside it.
func TestRenderDeadline(t *testing.T) {
	root, big, small := pathologicalTree(t, 57600)
	pool := testPool(t, WorkerOptions{Parallel: 2})
	const timeout = 3 * time.Second
	var wg sync.WaitGroup
	var bigErr error
	var bigTook time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		_, bigErr = Render(context.Background(), big, Options{RepoRoot: root, Color: "blue", Workers: pool, MaxObjects: 100000, Timeout: timeout})
		bigTook = time.Since(start)
	}()
	for pool.busy.Load() == 0 && bigErr == nil {
		time.Sleep(time.Millisecond) // poll: the big render has started its worker
	}
	res, err := Render(context.Background(), small, Options{RepoRoot: root, Color: "green", Workers: pool})
	must(t, err)
	if len(res.Objects) != 1 || res.Objects[0].GetName() != "d-green" {
		t.Fatalf("small bundle rendered %d objects", len(res.Objects))
	}
	wg.Wait()
	wantLimit(t, bigErr, LimitTime, "big/bundle.yaml")
	if bigTook > timeout+2*time.Second {
		t.Fatalf("the big render failed after %v, want its %v deadline and little more", bigTook, timeout)
	}
	t.Logf("big render stopped after %v", bigTook)
}

// TestWorkerMemoryBounded runs more big renders than the pool's places,
// each worker with a memory limit that a small bundle fits in (parsing
// 57,600 objects takes more than 256 MiB): at most Parallel run at once
// and each dies at its limit.
func TestWorkerMemoryBounded(t *testing.T) {
	root, big, small := pathologicalTree(t, 57600)
	pool := testPool(t, WorkerOptions{Parallel: 2, MemoryLimit: 192 << 20})
	if _, err := Render(context.Background(), small, Options{RepoRoot: root, Color: "blue", Workers: pool}); err != nil {
		t.Fatalf("small bundle in a 192 MiB worker: %v", err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = Render(context.Background(), big, Options{RepoRoot: root, Color: "blue", Workers: pool, MaxObjects: 100000, Timeout: time.Minute})
		}()
	}
	wg.Wait()
	for _, err := range errs {
		wantLimit(t, err, LimitMemory, "big/bundle.yaml")
	}
	if p := pool.peak.Load(); p > 2 {
		t.Fatalf("%d workers ran at once, want at most 2", p)
	}
}

// TestWorkerMatchesInProcess renders the same bundle in process and in a
// worker: the same objects, types included, and digest.
func TestWorkerMatchesInProcess(t *testing.T) {
	root, _, small := pathologicalTree(t, 1)
	o := Options{RepoRoot: root, Commit: "abc"}
	want, err := RenderColors(context.Background(), small, o, "blue", "green")
	must(t, err)
	o.Workers = testPool(t, WorkerOptions{})
	got, err := RenderColors(context.Background(), small, o, "blue", "green")
	must(t, err)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("worker rendered\n%+v\nin process\n%+v", got[0], want[0])
	}
}

// BenchmarkRenderWorker measures what a worker process adds to a render
// of a small bundle.
func BenchmarkRenderWorker(b *testing.B) {
	root, _, small := pathologicalTree(b, 1)
	for name, w := range map[string]*WorkerPool{"in-process": nil, "worker": testPool(b, WorkerOptions{})} {
		b.Run(name, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := Render(context.Background(), small, Options{RepoRoot: root, Color: "blue", Workers: w}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A worker serves one render after another: sequential renders start one
// process, and a worker killed at a deadline is replaced by a fresh one.
func TestWorkerIsReused(t *testing.T) {
	root, _, small := pathologicalTree(t, 1)
	p := testPool(t, WorkerOptions{})
	want := ""
	for i := range 5 {
		res, err := Render(context.Background(), small, Options{RepoRoot: root, Color: "blue", Workers: p})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = res.Digest
		} else if res.Digest != want {
			t.Fatalf("render %d: digest %s, want %s", i, res.Digest, want)
		}
	}
	if n := p.started.Load(); n != 1 {
		t.Errorf("5 sequential renders started %d workers, want 1", n)
	}
	p.mu.Lock()
	w := p.idle[0]
	p.mu.Unlock()
	w.kill() // it dies while idle
	if _, err := Render(context.Background(), small, Options{RepoRoot: root, Color: "blue", Workers: p}); err != nil {
		t.Fatalf("a render after the idle worker died: %v", err)
	}
	if n := p.started.Load(); n != 2 {
		t.Errorf("after the idle worker died, %d workers started, want 2", n)
	}
}
