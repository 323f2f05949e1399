package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// --help is on stdout, printed once, exit 0, for every subcommand.
func TestHelpIsOnStdoutOnce(t *testing.T) {
	for _, sub := range []string{"run", "render", "status", "diff"} {
		code, out, errOut := runCLI(t, sub, "--help")
		if code != 0 || errOut != "" || strings.Count(out, "usage: tandem-agent "+sub) != 1 || !strings.Contains(out, "-") {
			t.Errorf("%s --help: exit %d, stdout %q, stderr %q: want the usage once on stdout, exit 0", sub, code, out, errOut)
		}
	}
	code, _, errOut := runCLI(t, "status", "--no-such-flag", ".")
	if code != 2 || !strings.Contains(errOut, "no-such-flag") || strings.Count(errOut, "usage: tandem-agent status") != 1 {
		t.Errorf("a bad flag: exit %d, stderr %q: want exit 2, the error and the usage once on stderr", code, errOut)
	}
}

// status lists every bundle, a broken one with its error, as a table and
// as JSON; a broken bundle is exit status 2.
func TestStatusListsBrokenBundlesAndSpeaksJSON(t *testing.T) {
	repo := t.TempDir()
	if err := os.CopyFS(filepath.Join(repo, "bundles", "shop"), os.DirFS("../../examples/shop")); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(repo, "bundles", "cart", "bundle.yaml")
	if err := os.MkdirAll(filepath.Dir(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(broken, []byte("apiVersion: tandem.dev/v1alpha1\nkind: Bundle\nmetadata: {name: cart}\nspec: {namespace: cart, colours: [a, b]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runGit(repo, "init", "--quiet", "-b", "main"); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	code, out, errOut := runCLI(t, "status", repo)
	if code != 2 || !strings.Contains(out, "shop") || !strings.Contains(out, "bundles/cart/bundle.yaml") || !strings.Contains(out, "colours") {
		t.Errorf("status with a broken bundle: exit %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	code, out, _ = runCLI(t, "status", repo, "-o", "json")
	var rep statusReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("status -o json is not JSON: %v\n%s", err, out)
	}
	got := map[string]bundleStatus{}
	for _, b := range rep.Bundles {
		got[b.File] = b
	}
	if code != 2 || got["bundles/shop/bundle.yaml"].Name != "shop" || got["bundles/shop/bundle.yaml"].Error != "" ||
		!strings.Contains(got["bundles/cart/bundle.yaml"].Error, "colours") {
		t.Errorf("status -o json: exit %d, %+v", code, rep)
	}
	if code, out, _ := runCLI(t, "status", repo, "-o", "yaml"); code != 2 || !strings.Contains(out, "file: bundles/cart/bundle.yaml") {
		t.Errorf("status -o yaml: exit %d\n%s", code, out)
	}
}

// Two agents never share a work directory: the default is keyed by
// repository and branch under the user's cache directory, and a directory
// in use is refused, naming the agent that holds it.
func TestWorkDirIsPerAgentAndLocked(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	a := &config{Repo: "https://git.example.com/shop.git", Branch: "main"}
	b := &config{Repo: "https://git.example.com/shop.git", Branch: "staging"}
	da, unlockA, err := a.workDir()
	if err != nil {
		t.Fatal(err)
	}
	db, unlockB, err := b.workDir()
	if err != nil {
		t.Fatal(err)
	}
	defer unlockB()
	if da == db || !strings.HasPrefix(da, os.Getenv("XDG_CACHE_HOME")) {
		t.Errorf("work dirs %s and %s: want two directories under the cache directory", da, db)
	}
	if _, _, err := a.workDir(); err == nil || !strings.Contains(err.Error(), "in use by another agent (pid ") {
		t.Errorf("a second agent on the same work dir: %v", err)
	}
	unlockA()
	_, unlock, err := a.workDir()
	if err != nil {
		t.Errorf("the work dir after the first agent let go: %v", err)
	} else {
		unlock()
	}
	file := filepath.Join(t.TempDir(), "stray")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &config{WorkDir: file}
	if _, _, err := c.workDir(); err == nil || !strings.Contains(err.Error(), "work directory "+file+" (--workdir)") {
		t.Errorf("a stray file as the work dir: %v", err)
	}
}

// The cluster subcommands follow client-go's loading rules: $KUBECONFIG,
// and --context picks a context of it.
func TestKubeconfigLoadingRulesAndContext(t *testing.T) {
	data, err := os.ReadFile(env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(cfg, data, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBECONFIG", cfg)
	dir := filepath.Join(t.TempDir(), "bundles", "shop")
	if err := os.CopyFS(dir, os.DirFS("../../examples/shop")); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	code := run(context.Background(), []string{"diff", dir}, &out, &errOut)
	if code == 2 || strings.Contains(errOut.String(), "in-cluster") {
		t.Errorf("diff with $KUBECONFIG: exit %d, stderr %q: want it to reach the cluster", code, errOut.String())
	}
	errOut.Reset()
	code = run(context.Background(), []string{"diff", dir, "--context", "no-such-context"}, &out, &errOut)
	if code != 2 || !strings.Contains(errOut.String(), "no-such-context") {
		t.Errorf("diff --context no-such-context: exit %d, stderr %q", code, errOut.String())
	}
}

// runGit runs git in dir.
func runGit(dir string, args ...string) ([]byte, error) {
	return exec.Command("git", append([]string{"-C", dir}, args...)...).CombinedOutput()
}
