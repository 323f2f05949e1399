package gitsync

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/tandem-gitops/tandem/testenv"
)

// fleetHistory makes main of the bare repository dir a fleet of bundles
// directories (bundle.yaml, app/kustomization.yaml, app/a.yaml each), then
// adds commits promotions, each writing one bundle's release.yaml, with git
// fast-import.
func fleetHistory(tb testing.TB, dir string, bundles, commits int) {
	tb.Helper()
	var s strings.Builder
	file := func(p, c string) { fmt.Fprintf(&s, "M 644 inline %s\ndata %d\n%s\n", p, len(c), c) }
	s.WriteString("commit refs/heads/main\ncommitter f <f@x> 1700000000 +0000\ndata 5\nfleet\n")
	for i := 0; i < bundles; i++ {
		d := fmt.Sprintf("bundles/b%04d/", i)
		file(d+"bundle.yaml", fmt.Sprintf("name: b%04d\n", i))
		file(d+"app/kustomization.yaml", "resources: [a.yaml]\n")
		file(d+"app/a.yaml", fmt.Sprintf("a: %d\n", i))
	}
	for i := 0; i < commits; i++ {
		fmt.Fprintf(&s, "commit refs/heads/main\ncommitter f <f@x> %d +0000\ndata 7\npromote\n", 1700000001+i)
		file(fmt.Sprintf("bundles/b%04d/release.yaml", i%bundles), fmt.Sprintf("live: blue\nrelease: %d\n", i))
	}
	cmd := exec.Command("git", "-C", dir, "fast-import", "--quiet")
	cmd.Stdin = strings.NewReader(s.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("fast-import: %v: %s", err, out)
	}
}

// checkRemote asserts what a user of the remote sees after a write: a
// repository git fsck finds whole, main at commit, and a clone that checks
// out exactly want (path -> content).
func checkRemote(t *testing.T, rem *testenv.Remote, commit string, want map[string]string) {
	t.Helper()
	if out, err := rem.Git("fsck", "--strict", "--no-progress"); err != nil {
		t.Fatalf("git fsck on the remote after %s: %v\n%s", commit, err, out)
	}
	if got, err := rem.Git("rev-parse", "main"); err != nil || strings.TrimSpace(got) != commit {
		t.Fatalf("remote main = %q (%v), want the written commit %s", got, err, commit)
	}
	clone := filepath.Join(t.TempDir(), "clone")
	gitOut(t, "", "clone", "--quiet", rem.Path, clone)
	got := map[string]string{}
	err := filepath.WalkDir(clone, func(p string, d fs.DirEntry, err error) error {
		switch {
		case err != nil:
			return err
		case d.IsDir() && d.Name() == ".git":
			return filepath.SkipDir
		case d.IsDir():
			return nil
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(clone, p)
		got[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Fatalf("a clone of %s checks out\n%v\nwant\n%v", commit, got, want)
	}
}

// Every write pushes only what it created, and the remote stays whole
// through the writes that could trip a thin push: new directories, deleted
// directories, content and trees equal to older commits', and objects the
// local store holds from a push the remote refused.
func TestThinPushKeepsRemoteWhole(t *testing.T) {
	ctx := context.Background()
	rem, seed := newRemote(t)
	if _, err := rem.Git("config", "receive.fsckObjects", "true"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	want := map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "README": "hi\n"}
	b1 := map[string]string{"bundles/b1/bundle.yaml": "name: b1\n", "bundles/b1/app/x.yaml": "x: 1\n", "bundles/b1/app/deep/y.yaml": "y: 1\n"}
	type step struct {
		name   string
		write  map[string]string
		remove Paths // restored from seed, which lacks them
		reject bool  // the remote refuses this push
	}
	pushes := 0
	for _, s := range []step{
		{name: "new directories", write: b1},
		{name: "change a file", write: map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}},
		{name: "restore old content", write: map[string]string{"bundles/shop/app/a.yaml": "a: 1\n"}},
		{name: "delete a file, its directory stays", remove: Paths{"bundles/b1/app/deep/y.yaml"}},
		{name: "delete a directory", remove: Paths{"bundles/b1/"}},
		{name: "re-create trees of an older commit", write: b1},
		{name: "refused push leaves objects in the cache", reject: true,
			write: map[string]string{"bundles/b2/release.yaml": "live: green\n", "bundles/b1/app/x.yaml": "x: 2\n"}},
		{name: "same objects again, now accepted",
			write: map[string]string{"bundles/b2/release.yaml": "live: green\n", "bundles/b1/app/x.yaml": "x: 2\n"}},
		{name: "a new file and a deleted directory at once",
			write: map[string]string{"bundles/b3/app/z.yaml": "z: 1\n"}, remove: Paths{"bundles/b2/"}},
		{name: "the tree of the first write again",
			write: map[string]string{"bundles/b1/app/x.yaml": "x: 1\n", "bundles/b1/app/deep/y.yaml": "y: 1\n"}, remove: Paths{"bundles/b3/"}},
	} {
		if s.reject {
			if err := rem.RejectPushes("frozen"); err != nil {
				t.Fatal(err)
			}
		}
		w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
			for p, c := range s.write {
				if err := tr.WriteFile(p, []byte(c)); err != nil {
					return "", err
				}
			}
			if len(s.remove) > 0 {
				if _, err := tr.Restore(s.remove, seed); err != nil {
					return "", err
				}
			}
			return s.name, nil
		})
		if s.reject {
			var pr *PushRejectedError
			if !errors.As(err, &pr) {
				t.Fatalf("%s: err = %v, want *PushRejectedError", s.name, err)
			}
			if err := rem.AllowPushes(); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		pushes++
		maps.Copy(want, s.write)
		maps.DeleteFunc(want, func(p, _ string) bool { return s.remove.Match(p) })
		checkRemote(t, rem, w.Commit, want)
		if r.thinPushes != pushes {
			t.Fatalf("%s: %d of %d writes pushed thin", s.name, r.thinPushes, pushes)
		}
	}
}

// A write onto a long history sends the objects it created and nothing
// else: the remote, unpacking what it receives into loose objects, gains
// exactly the commit, the rebuilt trees and the changed blobs.
func TestThinPushSendsOnlyNewObjects(t *testing.T) {
	ctx := context.Background()
	rem, err := testenv.NewRemote(filepath.Join(t.TempDir(), "remote.git"))
	if err != nil {
		t.Fatal(err)
	}
	fleetHistory(t, rem.Path, 100, 500)
	if _, err := rem.Git("config", "receive.unpackLimit", "1000000"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	before := looseObjects(t, rem)
	old, _ := rem.Head()
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		if err := tr.WriteFile("bundles/b0042/release.yaml", []byte("live: green\n")); err != nil {
			return "", err
		}
		return "promote b0042", tr.WriteFile("bundles/b0042/app/v2/b.yaml", []byte("b: 2\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	// The commit; the trees /, bundles, b0042, b0042/app, b0042/app/v2;
	// the blobs release.yaml and b.yaml.
	const created = 1 + 5 + 2
	if r.thinPushes != 1 || r.thinSent != created {
		t.Fatalf("thin pushes %d sending %d objects, want 1 sending %d", r.thinPushes, r.thinSent, created)
	}
	if got := looseObjects(t, rem) - before; got != created {
		t.Fatalf("the remote gained %d objects, want the %d the write created", got, created)
	}
	// git's own count of what the commit needs beyond its parent.
	out, err := rem.Git("rev-list", "--objects", w.Commit, "--not", old)
	if n := len(strings.Split(strings.TrimSpace(out), "\n")); err != nil || n != created {
		t.Fatalf("git rev-list --objects %s --not %s: %d objects (%v), want %d:\n%s", w.Commit, old, n, err, created, out)
	}
	if out, err := rem.Git("fsck", "--strict", "--no-progress"); err != nil {
		t.Fatalf("git fsck on the remote: %v\n%s", err, out)
	}
}

func looseObjects(t *testing.T, rem *testenv.Remote) int {
	t.Helper()
	out, err := rem.Git("count-objects", "-v")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "count: "); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("git count-objects -v printed no count:\n%s", out)
	return 0
}

// The fallback, go-git's PushContext, still pushes a write whole.
func TestFullPushFallback(t *testing.T) {
	rem, _ := newRemote(t)
	r := open(t, rem.Path)
	r.fullPush = true
	w, err := r.Write(context.Background(), func(ctx context.Context, tr *Tree) (string, error) {
		return "full", tr.WriteFile("bundles/new/release.yaml", []byte("live: blue\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	checkRemote(t, rem, w.Commit, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "README": "hi\n", "bundles/new/release.yaml": "live: blue\n"})
	if r.thinPushes != 0 {
		t.Fatalf("%d thin pushes with fullPush set", r.thinPushes)
	}
}

// Over smart HTTP (git http-backend) a write pushes thin, and a push the
// server refuses the credentials of is ErrAuth, as before.
func TestThinPushOverHTTP(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rem, _ := newRemote(t)
	var token atomic.Value
	token.Store("good")
	url, stop, err := rem.ServeHTTP(ctx, func(u, p string) bool { return p == token.Load().(string) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("good\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, Options{URL: url, CacheDir: filepath.Join(t.TempDir(), "c"), Auth: Auth{TokenFile: tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	edit := func(ctx context.Context, tr *Tree) (string, error) {
		return "over http", tr.WriteFile("bundles/h/release.yaml", []byte("live: blue\n"))
	}
	token.Store("rotated")
	if _, err := r.Write(ctx, edit); !errors.Is(err, ErrAuth) {
		t.Fatalf("push with refused credentials = %v, want ErrAuth", err)
	}
	token.Store("good")
	w, err := r.Write(ctx, edit)
	if err != nil {
		t.Fatal(err)
	}
	if r.thinPushes != 1 {
		t.Fatalf("thin pushes %d, want 1", r.thinPushes)
	}
	checkRemote(t, rem, w.Commit, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "README": "hi\n", "bundles/h/release.yaml": "live: blue\n"})
}
