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
