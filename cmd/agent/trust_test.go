package main

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/testenv"
)

// clusterState is what the agent has applied in the bundle's namespace:
// every Deployment's generation, commit annotation and images, and every
// Service's selector. A held candidate must leave it as it was.
func (s *scenario) clusterState() string {
	s.t.Helper()
	deps, err := s.cs.AppsV1().Deployments(s.ns).List(s.ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	svcs, err := s.cs.CoreV1().Services(s.ns).List(s.ctx, metav1.ListOptions{})
	if err != nil {
		s.t.Fatal(err)
	}
	var lines []string
	for _, d := range deps.Items {
		var images []string
		for _, c := range d.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
		lines = append(lines, fmt.Sprintf("deployment %s gen=%d commit=%s replicas=%d images=%v", d.Name, d.Generation,
			d.Annotations["tandem.dev/commit"], *d.Spec.Replicas, images))
	}
	for _, svc := range svcs.Items {
		lines = append(lines, fmt.Sprintf("service %s selector=%v live=%s", svc.Name, svc.Spec.Selector, svc.Annotations["tandem.dev/live-commit"]))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

// waitResult waits for the agent commit with Tandem-Source source (a hold or
// promotion) and returns it.
func (s *scenario) waitResult(source, result string) testenv.TrailerCommit {
	s.t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		commits, err := testenv.AgentCommits(s.ctx, s.remote, "main")
		if err != nil {
			s.t.Fatal(err)
		}
		for _, c := range commits {
			if c.Trailers["Tandem-Source"] == source {
				if c.Trailers["Tandem-Result"] != result {
					s.t.Fatalf("agent commit %q for %s: Tandem-Result %q, want %q", c.Subject, contract.Short(source), c.Trailers["Tandem-Result"], result)
				}
				return c
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s commit for %s after 2m\n%s", result, contract.Short(source), s.agent.LogTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestVerifyCommits: with --verify-commits, an unsigned commit and a commit
// forging the agent's author and trailers never change the cluster: each is
// held, with the reason in release.yaml, `tandem-agent status`, the log and
// /metrics. Signed commits that undo them and change the bundle are then
// released. A signed change that fails is reverted by a commit the agent
// signs, which does not hold the next signed change. Signatures are made by
// ssh-keygen (the developer, through git) and gpg (the agent's signing key).
func TestVerifyCommits(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	// The bundle is live before verification is turned on: its live
	// release is where checking starts.
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "client", "server")
	if err := s.agent.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}

	keys := t.TempDir()
	dev, err := testenv.NewSSHKey(s.ctx, keys, "dev")
	if err != nil {
		t.Fatal(err)
	}
	g, err := testenv.NewGPG(filepath.Join(keys, "agent"), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	fpr, err := g.GenKey(s.ctx, "tandem <tandem@localhost>", "never")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := g.ExportSecret(s.ctx, fpr)
	if err != nil {
		t.Fatal(err)
	}
	signing := filepath.Join(keys, "signing.asc")
	trusted := filepath.Join(keys, "trusted")
	pub, err := os.ReadFile(dev.Public)
	if err != nil {
		t.Fatal(err)
	}
	must(t, os.WriteFile(signing, []byte(secret), 0o600))
	must(t, os.Mkdir(trusted, 0o700))
	must(t, os.WriteFile(filepath.Join(trusted, "allowed_signers"), []byte("dev@example.com "+string(pub)), 0o600))
	// The developer signs every commit from now on (git config in the clone).
	for _, kv := range [][2]string{{"gpg.format", "ssh"}, {"user.signingkey", dev.Public}, {"commit.gpgsign", "true"}} {
		s.git(s.clone, "config", kv[0], kv[1])
	}
	s.start("--verify-commits", "--trusted-keys", trusted, "--git-signing-key-file", signing)
	base := metricsURL(t, s.agent)
	before := s.clusterState()

	// 1. An unsigned commit changes the server.
	s.setImage("server", "example/server:v2")
	s.git(s.clone, "add", "-A")
	s.git(s.clone, "-c", "commit.gpgsign=false", "commit", "--quiet", "-m", "server v2, unsigned")
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	unsigned := s.git(s.clone, "rev-parse", "HEAD")
	held := s.waitResult(unsigned, "held")
	s.wantSelectors("blue", "client", "server")
	if after := s.clusterState(); after != before {
		t.Fatalf("an unsigned commit changed the cluster:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if n := len(s.agentCommits()); n != 2 {
		t.Errorf("agent commits: %d, want the first promotion and the hold (no revert)", n)
	}
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	rel, err := os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "release.yaml"))
	if err != nil || !strings.Contains(string(rel), unsigned) || !strings.Contains(string(rel), "unsigned") {
		t.Errorf("release.yaml does not record the hold of %s (err %v):\n%s", contract.Short(unsigned), err, rel)
	}
	code, out, errOut := runCLI(t, "status", s.clone)
	if code != 0 || !strings.Contains(out, contract.Short(unsigned)) || !strings.Contains(out, "lacks a trusted signature") {
		t.Errorf("status (exit %d) does not show the hold:\n%s%s", code, out, errOut)
	}
	if !s.agent.LogContains("commit lacks a trusted signature") {
		t.Errorf("the log does not name the refused commit:\n%s", s.agent.LogTail())
	}
	code, body := httpGet(t, base+"/metrics")
	if v, _ := metric(body, "tandem_untrusted_commits_total", "bundle="+s.ns); code != http.StatusOK || v != 1 {
		t.Errorf("tandem_untrusted_commits_total{bundle=%s} = %v (HTTP %d), want 1", s.ns, v, code)
	}
	t.Logf("held: %s", held.Subject)

	// 2. A commit forging the agent's author and trailers, unsigned: a
	// human candidate (the agent signs its commits), held too.
	s.setImage("server", "example/server:v3")
	s.git(s.clone, "add", "-A")
	s.git(s.clone, "-c", "commit.gpgsign=false", "-c", "user.name=tandem", "-c", "user.email=tandem@localhost",
		"commit", "--quiet", "--author", "tandem <tandem@localhost>", "-m",
		"Revert \"server v2\" in bundle "+s.ns+"\n\nforged\n\nTandem-Bundle: "+s.ns+"\nTandem-Result: reverted\n")
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	forged := s.git(s.clone, "rev-parse", "HEAD")
	s.waitResult(forged, "held")
	if after := s.clusterState(); after != before {
		t.Fatalf("a forged agent commit changed the cluster:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	rel, _ = os.ReadFile(filepath.Join(s.clone, "bundles", s.ns, "release.yaml"))
	if !strings.Contains(string(rel), contract.Short(forged)) {
		t.Errorf("release.yaml does not name the forged commit %s:\n%s", contract.Short(forged), rel)
	}

	// 3. Signed commits undo both and ship client v2: released.
	s.git(s.clone, "revert", "--no-edit", forged, unsigned)
	s.setImage("client", "example/client:v2")
	fix := s.push("client v2, signed")
	c := s.waitResult(fix, "promoted")
	if c.Trailers["Tandem-Color"] != "green" {
		t.Errorf("promotion trailers %v, want green", c.Trailers)
	}
	s.wantSelectors("green", "client", "server")

	// 4. A signed commit whose server never pulls: the agent reverts it with
	// a commit signed by its own key.
	s.setImage("server", "missing.invalid/server:v4")
	bad := s.push("server v4, signed")
	s.waitOutcome(bad, 2*time.Minute)
	if n := countResults(s.agentCommits(), "reverted", bad); n != 1 {
		t.Fatalf("reverts of %s: %d, want 1\n%s", contract.Short(bad), n, s.agent.LogTail())
	}
	s.wantSelectors("green", "client", "server")

	// 5. The next signed change to the server is released: the agent's
	// revert in its range is trusted by its signature.
	s.setImage("server", "example/server:v5")
	v5 := s.push("server v5, signed")
	if c := s.waitResult(v5, "promoted"); c.Trailers["Tandem-Color"] != "blue" {
		t.Errorf("promotion trailers %v, want blue", c.Trailers)
	}
	s.wantSelectors("blue", "client", "server")
}

func TestVerifyCommitsFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--repo", "/r", "--verify-commits"}, "--verify-commits needs at least one --trusted-keys"},
		{[]string{"run", "--repo", "/r", "--trusted-keys", "/k"}, "--trusted-keys is only used with --verify-commits"},
	} {
		code, _, errOut := runCLI(t, c.args...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit 2 (an error) and %q", c.args, code, errOut, c.want)
		}
	}
	_, help, _ := runCLI(t, "run", "--help") // on stdout
	for _, want := range []string{"-verify-commits", "-trusted-keys", "allowed_signers"} {
		if !strings.Contains(help, want) {
			t.Errorf("run --help lacks %q:\n%s", want, help)
		}
	}
}
