package testenv

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Agent is a tandem-agent process started for an end-to-end test or the demo.
type Agent struct {
	// Log is the path of the agent's combined output.
	Log string
	p   *process
}

// StartAgent runs bin with args in its own process group, output to logPath.
func StartAgent(bin string, args []string, logPath string) (*Agent, error) {
	p, err := startProcess(bin, args, logPath)
	if err != nil {
		return nil, fmt.Errorf("testenv: start agent: %w", err)
	}
	return &Agent{Log: logPath, p: p}, nil
}

// Stop sends SIGTERM and waits for a graceful exit (SIGKILL after grace).
func (a *Agent) Stop(grace time.Duration) error { return a.p.stop(grace) }

// Kill ends the agent at once with SIGKILL, as a crash would.
func (a *Agent) Kill() {
	_ = syscall.Kill(-a.p.cmd.Process.Pid, syscall.SIGKILL)
	<-a.p.done
}

// Exited reports whether the agent has exited, and how.
func (a *Agent) Exited() (bool, error) {
	select {
	case <-a.p.done:
		return true, a.p.waitErr
	default:
		return false, nil
	}
}

// PID is the agent's process id (for reading /proc/<pid>/status in benchmarks).
func (a *Agent) PID() int { return a.p.cmd.Process.Pid }

// LogTail returns the end of the agent's log.
func (a *Agent) LogTail() string { return a.p.logTail() }

// LogContains reports whether the agent's log has a line containing s.
func (a *Agent) LogContains(s string) bool {
	data, err := os.ReadFile(a.Log)
	return err == nil && bytes.Contains(data, []byte(s))
}

// Git runs the git CLI in dir and returns its trimmed output.
func Git(ctx context.Context, dir string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_AUTHOR_NAME=Dev", "GIT_AUTHOR_EMAIL=dev@example.com",
		"GIT_COMMITTER_NAME=Dev", "GIT_COMMITTER_EMAIL=dev@example.com",
		"GIT_TERMINAL_PROMPT=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s (in %s): %w: %s", strings.Join(args, " "), dir, err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// TrailerCommit is one commit of a branch with its Tandem-* trailers.
type TrailerCommit struct {
	Hash, Subject string
	Trailers      map[string]string
}

// AgentCommits lists the commits of ref in repo (a bare repository or a
// clone) that carry a Tandem-Result trailer, newest first.
func AgentCommits(ctx context.Context, repo, ref string) ([]TrailerCommit, error) {
	out, err := Git(ctx, repo, "log", "--format=%H%x1f%s%x1f%(trailers:only,unfold)%x1e", ref)
	if err != nil {
		return nil, err
	}
	var commits []TrailerCommit
	for _, rec := range strings.Split(out, "\x1e") {
		f := strings.SplitN(strings.TrimSpace(rec), "\x1f", 3)
		if len(f) < 3 {
			continue
		}
		c := TrailerCommit{Hash: f[0], Subject: f[1], Trailers: map[string]string{}}
		sc := bufio.NewScanner(strings.NewReader(f[2]))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ": "); ok {
				c.Trailers[k] = v
			}
		}
		if c.Trailers["Tandem-Result"] != "" {
			commits = append(commits, c)
		}
	}
	return commits, nil
}

// WaitAgentCommits waits until ref has at least n agent commits and returns them.
func WaitAgentCommits(ctx context.Context, repo, ref string, n int, timeout time.Duration) ([]TrailerCommit, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		commits, err := AgentCommits(ctx, repo, ref)
		if err == nil && len(commits) >= n {
			return commits, nil
		}
		select {
		case <-ctx.Done():
			return commits, fmt.Errorf("waiting for %d agent commits on %s (have %d): %w", n, ref, len(commits), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
