package gitsync

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

var benchSeq int

// appendCommits adds n commits to main of the bare repository with git fast-import.
func appendCommits(b *testing.B, dir string, n int, first bool) {
	b.Helper()
	var s strings.Builder
	for i := 0; i < n; i++ {
		benchSeq++
		fmt.Fprintf(&s, "commit refs/heads/main\ncommitter b <b@x> %d +0000\ndata 2\nc\n", 1700000000+benchSeq)
		if i == 0 && !first {
			s.WriteString("from refs/heads/main^0\n")
		}
		content := fmt.Sprintf("v%d\n", benchSeq)
		fmt.Fprintf(&s, "M 644 inline f%d.txt\ndata %d\n%s\n", benchSeq%50, len(content), content)
	}
	cmd := exec.Command("git", "-C", dir, "fast-import", "--quiet", "--force")
	cmd.Stdin = strings.NewReader(s.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("fast-import: %v: %s", err, out)
	}
}

func benchRemote(b *testing.B) *testenv.Remote {
	rem, err := testenv.NewRemote(filepath.Join(b.TempDir(), "r.git"))
	if err != nil {
		b.Fatal(err)
	}
	appendCommits(b, rem.Path, 10000, true)
	return rem
}

func gitCLI(b *testing.B, args ...string) {
	if out, err := exec.Command("git", args...).CombinedOutput(); err != nil {
		b.Fatalf("git %v: %v: %s", args, err, out)
	}
}

// BenchmarkPollNoop measures a poll when nothing changed (a remote-head check).
func BenchmarkPollNoop(b *testing.B) {
	rem := benchRemote(b)
	ctx := context.Background()
	b.Run("gitsync", func(b *testing.B) {
		r, err := Open(ctx, Options{URL: rem.Path, CacheDir: filepath.Join(b.TempDir(), "c")})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		if _, err := r.Poll(ctx); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if p, err := r.Poll(ctx); err != nil || p.Fetched {
				b.Fatal(p, err)
			}
		}
	})
	b.Run("git-cli", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			gitCLI(b, "ls-remote", rem.Path, "refs/heads/main")
		}
	})
}

// BenchmarkFetch measures a poll that fetches k new commits on top of 10,000.
func BenchmarkFetch(b *testing.B) {
	ctx := context.Background()
	for _, k := range []int{1, 100} {
		b.Run(fmt.Sprintf("commits=%d", k), func(b *testing.B) {
			rem := benchRemote(b)
			b.Run("gitsync", func(b *testing.B) {
				r, err := Open(ctx, Options{URL: rem.Path, CacheDir: filepath.Join(b.TempDir(), "c")})
				if err != nil {
					b.Fatal(err)
				}
				defer r.Close()
				if _, err := r.Poll(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					appendCommits(b, rem.Path, k, false)
					b.StartTimer()
					if p, err := r.Poll(ctx); err != nil || !p.Fetched {
						b.Fatal(p, err)
					}
				}
			})
			b.Run("git-cli", func(b *testing.B) {
				clone := filepath.Join(b.TempDir(), "clone")
				gitCLI(b, "clone", "-q", "--bare", rem.Path, clone)
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					appendCommits(b, rem.Path, k, false)
					b.StartTimer()
					gitCLI(b, "-C", clone, "fetch", "-q", "origin", "+refs/heads/main:refs/heads/main")
				}
			})
		})
	}
}

// BenchmarkWritePush measures one Write, a promotion (one bundle's
// release.yaml), on a repository of 1,000 bundle directories and 1,000
// commits, pushed thin (the objects the write created) and with go-git's
// PushContext (which walks the history to find them). The two alternate on
// two copies of the remote, so both see the same load; full/thin is the
// same-run ratio of their times.
func BenchmarkWritePush(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	rem, err := testenv.NewRemote(filepath.Join(dir, "thin.git"))
	if err != nil {
		b.Fatal(err)
	}
	fleetHistory(b, rem.Path, 1000, 1000)
	copyPath := filepath.Join(dir, "full.git")
	gitCLI(b, "clone", "-q", "--bare", rem.Path, copyPath)
	repos := map[string]*Repo{}
	for name, url := range map[string]string{"thin": rem.Path, "full": copyPath} {
		r, err := Open(ctx, Options{URL: url, CacheDir: filepath.Join(dir, "cache-"+name)})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		r.fullPush = name == "full"
		if _, err := r.Poll(ctx); err != nil {
			b.Fatal(err)
		}
		repos[name] = r
	}
	took := map[string]time.Duration{}
	write := func(name string, i int) {
		p := fmt.Sprintf("bundles/b%04d/release.yaml", (i*37)%1000)
		start := time.Now()
		_, err := repos[name].Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
			return "promote", tr.WriteFile(p, []byte(fmt.Sprintf("live: green\nrelease: bench-%d\n", i)))
		})
		took[name] += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
	}
	// A first write flattens the tip's tree once per process; not measured.
	write("thin", 999)
	write("full", 999)
	clear(took)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		write("thin", i)
		write("full", i)
	}
	b.StopTimer()
	if repos["thin"].thinPushes != b.N+1 || repos["full"].thinPushes != 0 {
		b.Fatalf("thin pushes %d and %d, want %d and 0", repos["thin"].thinPushes, repos["full"].thinPushes, b.N+1)
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(b.N) }
	b.ReportMetric(ms(took["thin"]), "thin-ms/op")
	b.ReportMetric(ms(took["full"]), "full-ms/op")
	b.ReportMetric(float64(took["full"])/float64(took["thin"]), "full/thin")
}
