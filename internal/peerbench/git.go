package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// dev is a developer's clone of a remote: it commits and pushes like a person.
type dev struct {
	remote string // the bare repository
	dir    string
}

func newDev(ctx context.Context, remote *testenv.Remote, dir string) (*dev, error) {
	if _, err := testenv.Git(ctx, ".", "clone", "--quiet", remote.Path, dir); err != nil {
		return nil, err
	}
	return &dev{remote: remote.Path, dir: dir}, nil
}

// commit pulls (the agent commits too), writes files (path → content) and commits them.
func (d *dev) commit(ctx context.Context, files map[string]string, msg string) error {
	if _, err := testenv.Git(ctx, d.dir, "pull", "--quiet", "--rebase", "origin", "main"); err != nil && !strings.Contains(err.Error(), "couldn't find remote ref") {
		return err
	}
	for p, content := range files {
		full := filepath.Join(d.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	if _, err := testenv.Git(ctx, d.dir, "add", "-A"); err != nil {
		return err
	}
	_, err := testenv.Git(ctx, d.dir, "commit", "--quiet", "-m", msg)
	return err
}

// push pushes main and returns the pushed commit and when the push started.
func (d *dev) push(ctx context.Context) (string, time.Time, error) {
	sha, err := testenv.Git(ctx, d.dir, "rev-parse", "HEAD")
	if err != nil {
		return "", time.Time{}, err
	}
	start := time.Now()
	_, err = testenv.Git(ctx, d.dir, "push", "--quiet", "origin", "HEAD:main")
	return sha, start, err
}

// head reads the remote's main, from the loose ref file when there is one
// (cheap enough to poll every few milliseconds).
func head(ctx context.Context, remote string) (string, error) {
	if b, err := os.ReadFile(filepath.Join(remote, "refs", "heads", "main")); err == nil {
		return strings.TrimSpace(string(b)), nil
	}
	return testenv.Git(ctx, remote, "rev-parse", "refs/heads/main")
}

// waitAgentCommit waits until the remote's main moves past after to a
// commit with a Tandem-Result trailer; it returns that commit and when the
// move was seen. Commits by others in between are skipped.
func waitAgentCommit(ctx context.Context, remote, after string, timeout time.Duration) (testenv.TrailerCommit, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last := after
	for {
		h, err := head(ctx, remote)
		if err == nil && h != last {
			seen := time.Now()
			last = h
			commits, err := testenv.AgentCommits(ctx, remote, h)
			if err == nil && len(commits) > 0 && commits[0].Hash == h {
				return commits[0], seen, nil
			}
		}
		select {
		case <-ctx.Done():
			return testenv.TrailerCommit{}, time.Time{}, fmt.Errorf("waiting for an agent commit after %.8s on %s: %w", after, remote, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}
