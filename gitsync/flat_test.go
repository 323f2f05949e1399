package gitsync

import (
	"context"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"

	"github.com/tandem-gitops/tandem/testenv"
)

// A write rebuilds only the directories it changes, and the tree it pushes
// is the one git itself makes for the same change: the same root tree hash
// as `git write-tree` in a clone, and a fsck-clean remote.
func TestWriteTreeEqualsGitsOwn(t *testing.T) {
	ctx := context.Background()
	rem, _ := newRemote(t)
	files := map[string]string{}
	for i := 0; i < 30; i++ {
		dir := fmt.Sprintf("bundles/b%02d/", i)
		files[dir+"bundle.yaml"] = fmt.Sprintf("name: b%02d\n", i)
		files[dir+"app/kustomization.yaml"] = "resources: [a.yaml]\n"
		files[dir+"app/a.yaml"] = fmt.Sprintf("a: %d\n", i)
	}
	files["bin/run.sh"] = "#!/bin/sh\n"
	if _, err := rem.Commit(files, "thirty bundles"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	edits := map[string]string{
		"bundles/b07/release.yaml":     "live: blue\n",  // a new file beside others
		"bundles/b07/app/a.yaml":       "a: 70\n",       // a changed file two levels down
		"bundles/new/deep/x/file.yaml": "fresh: true\n", // a new directory chain
		"README":                       "hi again\n",    // a root file
	}
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		for p, c := range edits {
			if err := tr.WriteFile(p, []byte(c)); err != nil {
				return "", err
			}
		}
		return "tandem: edits", nil
	})
	if err != nil {
		t.Fatal(err)
	}

	clone := filepath.Join(t.TempDir(), "clone")
	gitOut(t, "", "clone", "--quiet", rem.Path, clone)
	gitOut(t, clone, "checkout", "--quiet", w.Commit+"~1")
	for p, c := range edits {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(clone, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(clone, p), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	gitOut(t, clone, "add", "-A")
	want := gitOut(t, clone, "write-tree")
	if got := gitOut(t, clone, "rev-parse", w.Commit+"^{tree}"); got != want {
		t.Fatalf("the agent's tree %s, git's tree for the same change %s", got, want)
	}
	if got := gitOut(t, clone, "rev-parse", w.Commit+":bundles/b08"); got != gitOut(t, clone, "rev-parse", w.Commit+"~1:bundles/b08") {
		t.Errorf("an untouched bundle's tree changed: %s", got)
	}
	// The tree the write left in the cache for its commit is the one a walk finds.
	kept := r.flats.get(w.Commit)
	r.flats = flatCache{}
	walked, err := r.flatTree(w.Commit)
	if err != nil {
		t.Fatal(err)
	}
	if kept == nil || !maps.Equal(kept.files, walked.files) || !maps.Equal(kept.dirs, walked.dirs) {
		t.Fatalf("the write cached a tree for %s that differs from its walk:\n%+v\n%+v", w.Commit, kept, walked)
	}
	if out, err := rem.Git("fsck", "--strict", "--no-progress"); err != nil {
		t.Fatalf("git fsck on the remote: %v\n%s", err, out)
	}
}

func gitOut(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// A tip's tree is flattened from the tree before it where subtrees did not
// change: whatever the change (a deep edit, a new or removed directory, a
// tree restored to an older state, a symlink), the flattened tree is exactly
// what `git ls-tree -r -t` lists for that commit.
func TestFlatTreeFromThePreviousTipEqualsGitsListing(t *testing.T) {
	rem, _ := newRemote(t)
	files := map[string]string{"README": "hi\n"}
	for i := 0; i < 12; i++ {
		dir := fmt.Sprintf("bundles/b%02d/", i)
		files[dir+"bundle.yaml"] = fmt.Sprintf("name: b%02d\n", i)
		files[dir+"app/base/kustomization.yaml"] = "resources: [a.yaml]\n"
		files[dir+"app/base/a.yaml"] = fmt.Sprintf("a: %d\n", i)
	}
	first, err := rem.Commit(files, "twelve bundles")
	if err != nil {
		t.Fatal(err)
	}
	type step struct {
		name   string
		change func() (string, error)
	}
	steps := []step{
		{"a file three levels down", func() (string, error) {
			return rem.Commit(map[string]string{"bundles/b03/app/base/a.yaml": "a: 33\n"}, "deep edit")
		}},
		{"a new directory chain", func() (string, error) {
			return rem.Commit(map[string]string{"bundles/b12/app/base/a.yaml": "a: 12\n", "bundles/b12/bundle.yaml": "name: b12\n"}, "new bundle")
		}},
		{"a removed directory", func() (string, error) {
			return rem.Remove([]string{"bundles/b05/app/base/a.yaml", "bundles/b05/app/base/kustomization.yaml"}, "drop b05's app")
		}},
		{"a file restored to its first content", func() (string, error) {
			return rem.Commit(map[string]string{"bundles/b03/app/base/a.yaml": "a: 3\n"}, "restore")
		}},
		{"a root file only", func() (string, error) {
			return rem.Commit(map[string]string{"README": "hi again\n"}, "readme")
		}},
	}
	r := open(t, rem.Path)
	check := func(name, commit string) {
		t.Helper()
		got, err := r.flatTree(commit)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want := &flatTree{files: map[string]entry{}, dirs: map[string]plumbing.Hash{"": plumbing.NewHash(gitOut(t, rem.Path, "rev-parse", commit+"^{tree}"))}}
		for _, line := range strings.Split(gitOut(t, rem.Path, "ls-tree", "-r", "-t", "--full-tree", commit), "\n") {
			meta, p, _ := strings.Cut(line, "\t")
			f := strings.Fields(meta) // mode type hash
			if f[1] == "tree" {
				want.dirs[p] = plumbing.NewHash(f[2])
				continue
			}
			mode, err := filemode.New(f[0])
			if err != nil {
				t.Fatal(err)
			}
			want.files[p] = entry{mode, plumbing.NewHash(f[2])}
		}
		if !maps.Equal(got.files, want.files) || !maps.Equal(got.dirs, want.dirs) {
			t.Fatalf("%s: flattened %d files, %d dirs; git lists %d files, %d dirs\ngot  %v\nwant %v", name, len(got.files), len(got.dirs), len(want.files), len(want.dirs), got, want)
		}
	}
	if err := r.fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	check("first commit", first)
	for _, s := range steps {
		c, err := s.change()
		if err != nil {
			t.Fatal(err)
		}
		if err := r.fetch(context.Background()); err != nil {
			t.Fatal(err)
		}
		check(s.name, c)
	}
	// Back to the first commit, flattened from the newest tip.
	r.flats.mu.Lock()
	delete(r.flats.trees, first)
	r.flats.mu.Unlock()
	check("the first commit again, from the newest", first)
}

// BenchmarkFlatNewTip flattens a new tip of a repository of 1,000 bundles
// that changes one file of one bundle: from the tip before it (cached), as a
// sync does, and from nothing (every tree object read), as before.
func BenchmarkFlatNewTip(b *testing.B) {
	rem, err := testenv.NewRemote(filepath.Join(b.TempDir(), "r.git"))
	if err != nil {
		b.Fatal(err)
	}
	files := map[string]string{"README": "hi\n"}
	for i := 0; i < 1000; i++ {
		dir := fmt.Sprintf("bundles/b%04d/", i)
		for _, f := range []string{"bundle.yaml", "release.yaml", "app/kustomization.yaml", "app/client.yaml", "app/server.yaml", "base/x.yaml"} {
			files[dir+f] = fmt.Sprintf("%s of %d\n", f, i)
		}
	}
	prev, err := rem.Commit(files, "1,000 bundles")
	if err != nil {
		b.Fatal(err)
	}
	tip, err := rem.Commit(map[string]string{"bundles/b0500/app/client.yaml": "changed\n"}, "one bundle")
	if err != nil {
		b.Fatal(err)
	}
	r, err := Open(context.Background(), Options{URL: rem.Path, Branch: "main", CacheDir: filepath.Join(b.TempDir(), "cache")})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := r.Poll(context.Background()); err != nil {
		b.Fatal(err)
	}
	for _, from := range []string{"previous-tip", "nothing"} {
		b.Run("from="+from, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				r.flats = flatCache{}
				if from == "previous-tip" {
					if _, err := r.flatTree(prev); err != nil {
						b.Fatal(err)
					}
				}
				b.StartTimer()
				if _, err := r.flatTree(tip); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
