package gitsync

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/testenv"
)

// A checkout made from the tip before it (rename, then only the changes) is
// exactly the whole checkout of the same commit: same files, contents,
// modes, symlinks and directories, through edits, new and emptied
// directories, an executable bit, a file turned into a directory and back,
// and a symlink added and removed (those last fall back to a whole checkout,
// which must still give the same result).
func TestCheckoutFromThePreviousTipEqualsAWholeCheckout(t *testing.T) {
	ctx := context.Background()
	rem, err := testenv.NewRemote(filepath.Join(t.TempDir(), "r.git"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"README": "hi\n"}
	for i := 0; i < 8; i++ {
		dir := fmt.Sprintf("bundles/b%d/", i)
		files[dir+"bundle.yaml"] = fmt.Sprintf("name: b%d\n", i)
		files[dir+"app/base/a.yaml"] = fmt.Sprintf("a: %d\n", i)
	}
	if _, err := rem.Commit(files, "eight bundles"); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(t.TempDir(), "work")
	gitOut(t, "", "clone", "-q", rem.Path, work)
	sh := func(script string) {
		t.Helper()
		if out, err := runIn(work, "sh", "-ec", script); err != nil {
			t.Fatalf("%s: %v\n%s", script, err, out)
		}
	}
	steps := []struct {
		name, script string
		incremental  bool // prev's directory moved (else a whole checkout beside it)
	}{
		{"a deep edit", "echo 'a: 33' > bundles/b3/app/base/a.yaml", true},
		{"a new directory chain", "mkdir -p bundles/b9/app/base && echo x > bundles/b9/app/base/a.yaml", true},
		{"a directory emptied", "git rm -q -r bundles/b5/app", true},
		{"an executable bit", "chmod +x bundles/b1/bundle.yaml", true},
		{"a file turned into a directory", "git rm -q bundles/b2/bundle.yaml && mkdir bundles/b2/bundle.yaml && echo y > bundles/b2/bundle.yaml/inner", true},
		{"and back", "git rm -q -r bundles/b2/bundle.yaml && echo 'name: b2' > bundles/b2/bundle.yaml", true}, // moved, then whole: a directory is in the file's way
		{"a symlink added", "ln -s ../b1 bundles/b4/link", false},
		{"a change beside the symlink", "echo 'a: 44' > bundles/b4/app/base/a.yaml", true},
		{"the symlink removed", "git rm -q bundles/b4/link", false},
		{"nothing but the readme", "echo again >> README", true},
	}
	r := open(t, rem.Path)
	root := t.TempDir()
	p, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prev, err := r.Checkout(ctx, p.Tip, filepath.Join(root, "tip0"))
	if err != nil {
		t.Fatal(err)
	}
	for i, s := range steps {
		sh(s.script + " && git add -A && git commit -q -m step && git push -q origin HEAD:main")
		p, err := r.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got, err := r.CheckoutFrom(ctx, prev, p.Tip, filepath.Join(root, fmt.Sprintf("tip%d", i+1)))
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		_, err = os.Lstat(prev.Dir)
		if moved := os.IsNotExist(err); moved != s.incremental {
			t.Fatalf("%s: incremental checkout %v, want %v", s.name, moved, s.incremental)
		}
		if err := os.RemoveAll(prev.Dir); err != nil { // what the agent's prune does
			t.Fatal(err)
		}
		want, err := r.Checkout(ctx, p.Tip, filepath.Join(t.TempDir(), "whole"))
		if err != nil {
			t.Fatal(err)
		}
		if g, w := listing(t, got.Dir), listing(t, want.Dir); g != w {
			t.Fatalf("%s: checkout from the previous tip differs from a whole checkout\n--- from previous\n%s\n--- whole\n%s", s.name, g, w)
		}
		if got.Commit != p.Tip || len(got.Skipped) != 0 {
			t.Fatalf("%s: snapshot %+v", s.name, got)
		}
		prev = got
	}
}

// listing describes every entry under dir: path, type, permission bits, and
// the content or link target.
func listing(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		fmt.Fprintf(&b, "%s %s", rel, fi.Mode())
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(p)
			fmt.Fprintf(&b, " -> %s", target)
		case fi.Mode().IsRegular():
			data, _ := os.ReadFile(p)
			fmt.Fprintf(&b, " %q", data)
		}
		b.WriteString("\n")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func runIn(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid")
	return cmd.CombinedOutput()
}
