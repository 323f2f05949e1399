package notify

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandem-gitops/tandem/testenv"
)

// Against a local forge of each provider, backed by a real repository: open
// a request from a branch, find it again, comment, merge it (a real merge
// commit), and close another; every request is checked by the forge.
func TestPullsAgainstEachForge(t *testing.T) {
	for _, kind := range []string{GitHub, GitLab, Gitea} {
		t.Run(kind, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			rem, err := testenv.NewRemote(filepath.Join(t.TempDir(), "shop.git"))
			if err != nil {
				t.Fatal(err)
			}
			seed, err := rem.Seed(map[string]string{"app.yaml": "v: 2\n"}, "seed")
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range []string{"tandem/revert/a", "tandem/revert/b"} {
				if _, err := rem.Git("branch", b, seed); err != nil {
					t.Fatal(err)
				}
			}
			// The revert branch holds a real change: the merge brings it to main.
			fix := filepath.Join(t.TempDir(), "fix")
			for _, args := range [][]string{{"clone", "-q", "-b", "tandem/revert/a", rem.Path, fix}} {
				if _, err := (&testenv.Remote{}).Git(args...); err != nil {
					t.Fatal(err)
				}
			}
			if err := os.WriteFile(filepath.Join(fix, "app.yaml"), []byte("v: 1\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{{"-C", fix, "commit", "-qam", "Revert v2"}, {"-C", fix, "push", "-q", "origin", "tandem/revert/a"}} {
				if _, err := (&testenv.Remote{}).Git(args...); err != nil {
					t.Fatal(err)
				}
			}
			repo := "acme/shop"
			f, err := testenv.StartForge(ctx, kind, rem, repo, "s3cret")
			if err != nil {
				t.Fatal(err)
			}
			tok := filepath.Join(t.TempDir(), "token")
			if err := os.WriteFile(tok, []byte("s3cret\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			p, err := NewPulls(StatusOptions{Provider: kind, BaseURL: f.URL, Repo: repo, TokenFile: tok})
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := p.Find(ctx, "tandem/revert/a", "main"); ok || err != nil {
				t.Fatalf("Find before Open = %v, %v", ok, err)
			}
			pr, err := p.Open(ctx, "tandem/revert/a", "main", "Revert \"v2\" in bundle shop", "evidence: client-green ImagePullBackOff")
			if err != nil {
				t.Fatal(err)
			}
			if pr.Number != 1 || pr.State != PullOpen || pr.URL != f.Link(1) {
				t.Fatalf("Open = %+v", pr)
			}
			if n, err := NumberOf(pr.URL); n != 1 || err != nil {
				t.Fatalf("NumberOf(%s) = %d, %v", pr.URL, n, err)
			}
			got, ok, err := p.Find(ctx, "tandem/revert/a", "main")
			if err != nil || !ok || got.Number != 1 {
				t.Fatalf("Find = %+v %v %v", got, ok, err)
			}
			if err := p.Comment(ctx, 1, "merging"); err != nil {
				t.Fatal(err)
			}
			if err := p.Merge(ctx, 1); err != nil {
				t.Fatal(err)
			}
			if got, err := p.Get(ctx, 1); err != nil || got.State != PullMerged {
				t.Fatalf("Get after merge = %+v, %v", got, err)
			}
			content, _ := rem.Git("show", "main:app.yaml")
			parents, _ := rem.Git("log", "-1", "--format=%P", "main")
			if content != "v: 1\n" || len(strings.Fields(parents)) != 2 {
				t.Fatalf("after the merge main has app.yaml %q and parents %q", content, parents)
			}
			second, err := p.Open(ctx, "tandem/revert/b", "main", "Revert b", "b")
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Close(ctx, second.Number); err != nil {
				t.Fatal(err)
			}
			if got, _ := p.Get(ctx, second.Number); got.State != PullClosed {
				t.Fatalf("Get after close = %+v", got)
			}
			if errs := f.Errors(); len(errs) > 0 {
				t.Fatalf("the forge refused requests: %v", errs)
			}
			// A wrong token is a 401 that no retry fixes, and the token is never in the error.
			if err := os.WriteFile(tok, []byte("wrong\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err = p.Get(ctx, 1)
			var he *HTTPError
			if !errors.As(err, &he) || he.StatusCode != 401 || Retryable(err) || strings.Contains(err.Error(), "wrong") {
				t.Fatalf("Get with a wrong token = %v", err)
			}
		})
	}
}

func TestNumberOf(t *testing.T) {
	for link, want := range map[string]int{
		"https://github.com/acme/shop/pull/7":              7,
		"https://gitlab.com/acme/shop/-/merge_requests/12": 12,
		"https://gitea.example.com/acme/shop/pulls/3/":     3,
		"https://github.com/acme/shop/pull/x":              0,
	} {
		n, err := NumberOf(link)
		if n != want || (want == 0) != (err != nil) {
			t.Errorf("NumberOf(%s) = %d, %v; want %d", link, n, err, want)
		}
	}
}
