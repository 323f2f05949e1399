package gitsync

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/testenv"
)

// serveProtected serves a seeded remote over smart HTTP (git http-backend)
// with main protected by a GH006-style pre-receive hook.
func serveProtected(t *testing.T) (*testenv.Remote, string, string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rem, seed := newRemote(t)
	if err := rem.ProtectBranch("main"); err != nil {
		t.Fatal(err)
	}
	url, stop, err := rem.ServeHTTP(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return rem, url, seed
}

// A push to a protected branch is a *PushRejectedError that says so, with
// the remote's own words; nothing reaches the branch, and a retry on a new
// tip is not attempted (it cannot help).
func TestProtectedBranchPushIsRefusedAndTyped(t *testing.T) {
	rem, url, seed := serveProtected(t)
	for _, full := range []bool{false, true} {
		r := open(t, url)
		r.fullPush = full
		if _, err := r.Poll(context.Background()); err != nil {
			t.Fatal(err)
		}
		fetches := r.fetches
		_, err := r.Write(context.Background(), func(ctx context.Context, tr *Tree) (string, error) {
			return "tandem: promote", tr.WriteFile("bundles/shop/release.yaml", []byte("live: blue\n"))
		})
		var pr *PushRejectedError
		if !errors.As(err, &pr) || errors.Is(err, ErrNonFastForward) {
			t.Fatalf("full=%v: err = %v (%T), want *PushRejectedError", full, err, err)
		}
		if !pr.Protected() || pr.Branch != "main" || !strings.Contains(pr.Remote, "GH006") || !strings.Contains(pr.Remote, "pull request") {
			t.Errorf("full=%v: refusal %+v: want Protected, branch main and the remote's GH006 text", full, pr)
		}
		if r.fetches != fetches {
			t.Errorf("full=%v: a refused push was retried (%d fetches after it)", full, r.fetches-fetches)
		}
		if head, _ := rem.Head(); head != seed {
			t.Fatalf("full=%v: main moved to %s", full, head)
		}
	}
}

// Other branches of a protected repository take the agent's writes: its
// status branch (created by the first write) and a pull request's branch
// (pushed once, found again after a crash).
func TestStatusAndProposalBranchesBesideAProtectedMain(t *testing.T) {
	rem, url, seed := serveProtected(t)
	ctx := context.Background()
	st, err := Open(ctx, Options{URL: url, Branch: "tandem/status/main", CacheDir: filepath.Join(t.TempDir(), "status"), CreateBranch: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := st.Poll(ctx); !errors.Is(err, ErrBranchNotFound) {
		t.Fatalf("poll of a missing status branch = %v, want ErrBranchNotFound", err)
	}
	var commits []string
	for _, live := range []string{"blue", "green"} {
		w, err := st.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
			return "tandem: promote shop to " + live, tr.WriteFile("bundles/shop/release.yaml", []byte("live: "+live+"\n"))
		})
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, w.Commit)
	}
	log, _ := rem.Git("log", "--format=%H %P", "tandem/status/main")
	lines := strings.Split(strings.TrimSpace(log), "\n")
	if len(lines) != 2 || lines[0] != commits[1]+" "+commits[0] || lines[1] != commits[0] {
		t.Fatalf("status branch history:\n%s\nwant %s on the root commit %s", log, commits[1], commits[0])
	}
	if files, _ := rem.Git("ls-tree", "-r", "--name-only", commits[1]); files != "bundles/shop/release.yaml\n" {
		t.Fatalf("status branch files %q: want release.yaml alone", files)
	}
	if head, _ := rem.Head(); head != seed {
		t.Fatalf("main moved to %s", head)
	}

	r := open(t, url)
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	edit := func(ctx context.Context, tr *Tree) (string, error) {
		return "Revert bad change", tr.WriteFile("bundles/shop/app/a.yaml", []byte("a: 0\n"))
	}
	w, err := r.PushNewBranch(ctx, "tandem/revert/shop/abc", seed, edit)
	if err != nil || w.Existed {
		t.Fatalf("PushNewBranch = %+v, %v", w, err)
	}
	parent, _ := rem.Git("rev-parse", w.Commit+"^")
	if strings.TrimSpace(parent) != seed {
		t.Fatalf("the proposal's parent is %s, want the tracked tip %s", parent, seed)
	}
	again, err := r.PushNewBranch(ctx, "tandem/revert/shop/abc", seed, edit)
	if err != nil || !again.Existed || again.Commit != w.Commit {
		t.Fatalf("second PushNewBranch = %+v, %v; want the existing branch at %s", again, err, w.Commit)
	}
	head, ok, err := r.BranchHead(ctx, "tandem/revert/shop/abc")
	if err != nil || !ok || head != w.Commit {
		t.Fatalf("BranchHead = %s %v %v", head, ok, err)
	}
	if _, ok, err := r.BranchHead(ctx, "tandem/revert/none"); ok || err != nil {
		t.Fatalf("BranchHead of a missing branch = %v %v", ok, err)
	}
	if _, err := r.PushNewBranch(ctx, "main", seed, edit); err == nil {
		t.Fatal("PushNewBranch to the tracked branch succeeded")
	}
}
