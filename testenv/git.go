package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
)

// Remote is a bare Git repository used as the "server" side in tests and the
// demo. Force pushes and branch deletions are refused by its configuration.
type Remote struct {
	// Path is the bare repository's directory (usable as a local Git URL).
	Path string
}

// gitEnv is a fixed author/committer identity so helper commits are
// reproducible where the caller also fixes their content.
var gitEnv = []string{
	"GIT_AUTHOR_NAME=human", "GIT_AUTHOR_EMAIL=human@example.com",
	"GIT_COMMITTER_NAME=human", "GIT_COMMITTER_EMAIL=human@example.com",
	"GIT_CONFIG_NOSYSTEM=1", "GIT_TERMINAL_PROMPT=0",
}

// NewRemote creates a bare repository with branch main in dir (created if
// missing), with receive.denyNonFastForwards and receive.denyDeletes set.
func NewRemote(dir string) (*Remote, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("remote %s: %w", dir, err)
	}
	r := &Remote{Path: dir}
	for _, args := range [][]string{
		{"init", "--bare", "-q", "-b", "main", dir},
		{"-C", dir, "config", "receive.denyNonFastForwards", "true"},
		{"-C", dir, "config", "receive.denyDeletes", "true"},
		{"-C", dir, "config", "http.receivepack", "true"},
	} {
		if _, err := runGit("", args...); err != nil {
			return nil, fmt.Errorf("remote %s: %w", dir, err)
		}
	}
	return r, nil
}

// Seed commits files (path -> content, slash-separated paths) on branch main
// and pushes it; it is Commit under another name for readability in tests.
func (r *Remote) Seed(files map[string]string, message string) (string, error) {
	return r.Commit(files, message)
}

// Commit simulates a human writer: it clones main (if it exists) into a temp
// directory, writes files (an empty content with a path ending in "!" is not
// special; use Remove for deletions), commits with message and pushes without
// force. It returns the new commit hash.
func (r *Remote) Commit(files map[string]string, message string) (string, error) {
	return r.change(files, nil, message)
}

// Remove deletes paths on main in one commit and pushes it.
func (r *Remote) Remove(paths []string, message string) (string, error) {
	return r.change(nil, paths, message)
}

func (r *Remote) change(files map[string]string, remove []string, message string) (string, error) {
	tmp, err := os.MkdirTemp("", "testenv-clone-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if _, err := runGit("", "clone", "-q", r.Path, tmp); err != nil {
		return "", fmt.Errorf("remote %s: clone: %w", r.Path, err)
	}
	if _, err := runGit(tmp, "checkout", "-q", "-B", "main"); err != nil {
		return "", err
	}
	names := make([]string, 0, len(files))
	for p := range files {
		names = append(names, p)
	}
	sort.Strings(names)
	for _, p := range names {
		full := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(files[p]), 0o644); err != nil {
			return "", err
		}
	}
	for _, p := range remove {
		if _, err := runGit(tmp, "rm", "-r", "-q", "--", p); err != nil {
			return "", err
		}
	}
	if _, err := runGit(tmp, "add", "-A"); err != nil {
		return "", err
	}
	if _, err := runGit(tmp, "commit", "-q", "--allow-empty", "-m", message); err != nil {
		return "", err
	}
	if _, err := runGit(tmp, "push", "-q", "origin", "main:refs/heads/main"); err != nil {
		return "", fmt.Errorf("remote %s: push: %w", r.Path, err)
	}
	out, err := runGit(tmp, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// Head returns the commit main points at.
func (r *Remote) Head() (string, error) {
	out, err := runGit(r.Path, "rev-parse", "refs/heads/main")
	return strings.TrimSpace(out), err
}

// Git runs the git CLI in the bare repository and returns its stdout.
func (r *Remote) Git(args ...string) (string, error) { return runGit(r.Path, args...) }

// RejectPushes installs a pre-receive hook that declines every push with
// reason on stderr, as a protected-branch server would.
func (r *Remote) RejectPushes(reason string) error {
	hook := filepath.Join(r.Path, "hooks", "pre-receive")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return err
	}
	script := "#!/bin/sh\necho " + shellQuote(reason) + " >&2\nexit 1\n"
	return os.WriteFile(hook, []byte(script), 0o755)
}

// GH006 is the message GitHub's pre-receive check gives a push to a
// protected branch; ProtectBranch's hook says the same.
const GH006 = "GH006: Protected branch update failed for refs/heads/%s.\nerror: Changes must be made through a pull request."

// ProtectBranch installs a pre-receive hook that refuses every update of
// branch (and only of branch) with GitHub's GH006 wording, as a protected
// branch on GitHub does; other branches are accepted. Only pushes over
// HTTP (ServeHTTP, where the agent pushes) are refused: a local push to the
// bare repository (a test's "person") passes, as an admin's bypass would. The server side stays
// real: a git http-backend in front of this repository (ServeHTTP) relays the
// hook's lines on the push's side channel, as GitHub does.
func (r *Remote) ProtectBranch(branch string) error {
	hook := filepath.Join(r.Path, "hooks", "pre-receive")
	if err := os.MkdirAll(filepath.Dir(hook), 0o755); err != nil {
		return err
	}
	ref := "refs/heads/" + branch
	script := "#!/bin/sh\n[ -z \"$GATEWAY_INTERFACE\" ] && exit 0 # a local push: an admin's bypass\nrc=0\nwhile read old new ref; do\n  if [ \"$ref\" = " + shellQuote(ref) + " ]; then\n" +
		"    echo " + shellQuote("error: "+fmt.Sprintf(GH006, branch)) + " >&2\n    rc=1\n  fi\ndone\nexit $rc\n"
	return os.WriteFile(hook, []byte(script), 0o755)
}

// AllowPushes removes the hook installed by RejectPushes.
func (r *Remote) AllowPushes() error {
	err := os.Remove(filepath.Join(r.Path, "hooks", "pre-receive"))
	if os.IsNotExist(err) {
		return nil
	}
	return err
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

func runGit(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	if dir != "" {
		cmd.Dir = dir
	}
	cmd.Env = append(os.Environ(), gitEnv...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// ServeHTTP serves the repository over smart HTTP (git http-backend behind
// net/http/cgi) on a free 127.0.0.1 port until ctx ends or stop is called.
// When check is not nil, requests without basic-auth credentials it accepts
// get 401. url is http://127.0.0.1:PORT/<base name of Path>.
func (r *Remote) ServeHTTP(ctx context.Context, check func(user, password string) bool) (url string, stop func(), err error) {
	gitBin, err := exec.LookPath("git")
	if err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(r.Path)
	if err != nil {
		return "", nil, err
	}
	backend := &cgi.Handler{
		Path: gitBin,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(abs), "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1"},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if check != nil {
			u, p, ok := req.BasicAuth()
			if !ok || !check(u, p) {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, req)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go func() { _ = srv.Serve(ln) }()
	done := make(chan struct{})
	var once bool
	stop = func() {
		if !once {
			once = true
			close(done)
			_ = srv.Close()
		}
	}
	go func() {
		select {
		case <-ctx.Done():
			_ = srv.Close()
		case <-done:
		}
	}()
	return "http://" + ln.Addr().String() + "/" + filepath.Base(abs), stop, nil
}
