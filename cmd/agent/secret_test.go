package main

// Secrets, end to end: the real agent runs with a Git token, a webhook secret
// and an SSH key, all holding sentinel values, through every failure path we
// can cause (bad credentials, push rejected, unreachable remote, render error,
// health failure, bad webhook requests, SSH auth failure, unknown host key,
// unreadable key). Then the agent's log, /metrics, every commit on the remote
// (git log -p --all) and the cluster's events and objects are searched for the
// sentinels and the key material.

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/testenv"
)

// secrets are the sentinel values of one test run.
type secrets struct {
	token, badToken, hook string
	keyPEM                []byte   // the SSH private key file
	keyLines              []string // its base64 body lines: key material
	dir                   string
}

func newSecrets(t *testing.T) *secrets {
	t.Helper()
	r := make([]byte, 6)
	_, _ = rand.Read(r)
	id := hex.EncodeToString(r)
	s := &secrets{token: "SENTINEL-tok-" + id, badToken: "SENTINEL-badtok-" + id, hook: "SENTINEL-hook-" + id, dir: t.TempDir()}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	block, err := ssh.MarshalPrivateKey(priv, "SENTINEL-keycomment-"+id)
	must(t, err)
	s.keyPEM = pem.EncodeToMemory(block)
	for _, l := range strings.Split(string(s.keyPEM), "\n") {
		if len(l) >= 16 && !strings.HasPrefix(l, "-----") {
			s.keyLines = append(s.keyLines, l)
		}
	}
	return s
}

func (s *secrets) file(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(s.dir, name)
	must(t, os.WriteFile(p, data, 0o600))
	return p
}

// leaks returns each sentinel or key line found in data.
func (s *secrets) leaks(data []byte) []string {
	var found []string
	for _, needle := range append([]string{s.token, s.badToken, s.hook, "SENTINEL-keycomment", "PRIVATE KEY"}, s.keyLines...) {
		if bytes.Contains(data, []byte(needle)) {
			found = append(found, needle)
		}
	}
	return found
}

// flakyProxy forwards to a Git HTTP backend, or drops every connection while
// down (an unreachable remote).
type flakyProxy struct {
	down atomic.Bool
	url  string
}

func newFlakyProxy(t *testing.T, backend string) *flakyProxy {
	t.Helper()
	u, err := url.Parse(backend)
	must(t, err)
	rp := httputil.NewSingleHostReverseProxy(&url.URL{Scheme: u.Scheme, Host: u.Host})
	p := &flakyProxy{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	p.url = "http://" + ln.Addr().String() + u.Path
	return p
}

// waitLog waits until the agent's log contains want.
func (s *scenario) waitLog(want string) {
	s.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !s.agent.LogContains(want) {
		if time.Now().After(deadline) {
			s.t.Fatalf("no %q in the agent log:\n%s", want, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestSecretsNeverLeak drives the HTTPS-token agent through every failure
// path, then searches everything it wrote for the secrets.
func TestSecretsNeverLeak(t *testing.T) {
	sec := newSecrets(t)
	s := newScenario(t, "revert", "30s", app{"server", "example/server:v1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	s.ctx = ctx
	s.git(s.remote, "config", "http.receivepack", "true") // let git http-backend accept the agent's pushes
	backend, stop, err := (&testenv.Remote{Path: s.remote}).ServeHTTP(ctx, func(_, password string) bool { return password == sec.token })
	must(t, err)
	t.Cleanup(stop)
	proxy := newFlakyProxy(t, backend)
	tokenFile := sec.file(t, "token", []byte(sec.badToken+"\n"))
	hookFile := sec.file(t, "hook", []byte(sec.hook+"\n"))
	addr := freeAddr(t)
	s.start("--repo", proxy.url, "--git-token-file", tokenFile, "--webhook-secret-file", hookFile, "--metrics-addr", addr)

	// 1. Bad credentials: the remote refuses the token.
	s.waitLog("sync failed")
	// Rotate to the right token; the agent reloads it and promotes.
	must(t, os.WriteFile(tokenFile, []byte(sec.token+"\n"), 0o600))
	want(t, s.waitCommits(1)[0], "promoted")

	// 2. Render error: a symlink to the token file, read by a generator.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	must(t, os.Symlink(tokenFile, filepath.Join(s.clone, "bundles", s.ns, "app", "token.txt")))
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", "resources:\n- server.yaml\nsecretGenerator:\n- name: stolen\n  files:\n  - token.txt\n")
	s.push("steal the token")
	want(t, s.waitCommits(2)[0], "reverted")

	// 3. Health failure.
	s.setImage("server", "missing.invalid/server:v2")
	s.push("server v2 (missing image)")
	want(t, s.waitCommits(3)[0], "reverted")

	// 4. Push rejected: the flip happens, the promotion commit is declined
	// until the remote accepts pushes again.
	s.setImage("server", "example/server:v3")
	s.push("server v3")
	s.rejectPushes(true)
	s.waitLog("pre-receive hook declined")
	s.rejectPushes(false)
	want(t, s.waitCommits(4)[0], "promoted")

	// 5. Unreachable remote.
	proxy.down.Store(true)
	n := strings.Count(readFile(t, s.agent.Log), "sync failed")
	deadline := time.Now().Add(time.Minute)
	for strings.Count(readFile(t, s.agent.Log), "sync failed") < n+2 {
		if time.Now().After(deadline) {
			t.Fatalf("no sync failure while the remote is down:\n%s", s.agent.LogTail())
		}
		time.Sleep(200 * time.Millisecond)
	}
	proxy.down.Store(false)

	// 6. Bad webhook requests, and one good one.
	for _, hdr := range []map[string]string{nil, {"X-Gitlab-Token": sec.hook[:len(sec.hook)-1]}, {"X-Hub-Signature-256": "sha256=00"}, {"X-Gitlab-Token": sec.hook}} {
		req, err := http.NewRequest("POST", "http://"+addr+"/hooks/git", strings.NewReader(`{}`))
		must(t, err)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if l := sec.leaks(body); len(l) > 0 {
			t.Errorf("webhook response leaks %v", l)
		}
	}
	s.setImage("server", "example/server:v4")
	s.push("server v4")
	want(t, s.waitCommits(5)[0], "promoted")

	// Search everything.
	resp, err := http.Get("http://" + addr + "/metrics")
	must(t, err)
	metricsBody, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Contains(metricsBody, []byte("tandem_")) {
		t.Fatalf("no tandem metrics at /metrics:\n%.500s", metricsBody)
	}
	places := map[string][]byte{
		"agent log":                      []byte(readFile(t, s.agent.Log)),
		"/metrics":                       metricsBody,
		"git log -p --all of the remote": []byte(s.git(s.remote, "log", "-p", "--all", "--format=fuller")),
	}
	events, err := s.cs.CoreV1().Events("").List(ctx, metav1.ListOptions{})
	must(t, err)
	places[fmt.Sprintf("%d Kubernetes events", len(events.Items))] = mustJSON(t, events)
	for kind, list := range map[string]func() (any, error){
		"ConfigMaps":  func() (any, error) { return s.cs.CoreV1().ConfigMaps(s.ns).List(ctx, metav1.ListOptions{}) },
		"Secrets":     func() (any, error) { return s.cs.CoreV1().Secrets(s.ns).List(ctx, metav1.ListOptions{}) },
		"Services":    func() (any, error) { return s.cs.CoreV1().Services(s.ns).List(ctx, metav1.ListOptions{}) },
		"Deployments": func() (any, error) { return s.cs.AppsV1().Deployments(s.ns).List(ctx, metav1.ListOptions{}) },
		"Pods":        func() (any, error) { return s.cs.CoreV1().Pods(s.ns).List(ctx, metav1.ListOptions{}) },
	} {
		l, err := list()
		must(t, err)
		places[kind+" in "+s.ns] = mustJSON(t, l)
	}
	// The failure paths really ran (so the search means something).
	log := places["agent log"]
	for _, evidence := range []string{"sync failed", "pre-receive hook declined", "path resolves outside the repository root", "missing.invalid/server:v2"} {
		if !bytes.Contains(log, []byte(evidence)) {
			t.Errorf("the agent log has no %q: that failure path did not run", evidence)
		}
	}
	for where, data := range places {
		if l := sec.leaks(data); len(l) > 0 {
			t.Errorf("%s leaks %v", where, l)
		}
		t.Logf("searched %s (%d bytes): clean", where, len(data))
	}
}

// TestSecretsSSHKeyNeverLeaks runs the agent against SSH remotes that fail:
// the server refuses the key, the host key is not in known_hosts, the port is
// closed, and the key file is corrupt. The log never shows key material.
func TestSecretsSSHKeyNeverLeaks(t *testing.T) {
	sec := newSecrets(t)
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	must(t, err)
	_, otherPriv, err := ed25519.GenerateKey(rand.Reader)
	must(t, err)
	otherKey, err := ssh.NewSignerFromKey(otherPriv)
	must(t, err)
	// An SSH server that refuses every client key.
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) {
		return nil, fmt.Errorf("key not authorized")
	}}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				if _, _, _, err := ssh.NewServerConn(c, cfg); err != nil {
					c.Close()
				}
			}()
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	knownLine := func(k ssh.PublicKey) []byte {
		return []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(k)))
	}
	keyFile := sec.file(t, "id_ed25519", sec.keyPEM)
	known := sec.file(t, "known_hosts", knownLine(hostKey.PublicKey()))
	wrongKnown := sec.file(t, "known_hosts_wrong", knownLine(otherKey.PublicKey()))
	// A truncated key: the header, the first body line (key material) and the footer.
	corrupt := []byte("-----BEGIN OPENSSH PRIVATE KEY-----\n" + sec.keyLines[0] + "\n-----END OPENSSH PRIVATE KEY-----\n")
	corruptFile := sec.file(t, "id_corrupt", corrupt)
	closed := freeAddr(t)

	for _, tc := range []struct {
		name, url, key, known, want string
	}{
		{"key-refused", "ssh://git@" + ln.Addr().String() + "/repo.git", keyFile, known, "unable to authenticate"},
		{"unknown-host-key", "ssh://git@" + ln.Addr().String() + "/repo.git", keyFile, wrongKnown, "host key mismatch"},
		{"unreachable", "ssh://git@" + closed + "/repo.git", keyFile, known, "sync failed"},
		{"corrupt-key", "ssh://git@" + ln.Addr().String() + "/repo.git", corruptFile, known, "git ssh key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := runUntilLogged(t, sec, tc.url, tc.want, "--git-ssh-key-file", tc.key, "--git-known-hosts-file", tc.known)
			t.Logf("%s: %d bytes of log, clean; last line: %s", tc.name, len(log), lastLine(log))
		})
	}
}

// runUntilLogged runs the agent on url until its log shows want (or it
// exits, or 30s pass), stops it, and returns the log after checking that it
// holds want and leaks none of sec's secrets.
func runUntilLogged(t *testing.T, sec *secrets, url, want string, extra ...string) string {
	t.Helper()
	dir := t.TempDir()
	a, err := testenv.StartAgent(agentBin, append([]string{"run", "--repo", url, "--kubeconfig", env.Kubeconfig,
		"--interval", "300ms", "--metrics-addr", "", "--workdir", filepath.Join(dir, "work")}, extra...), filepath.Join(dir, "agent.log"))
	must(t, err)
	deadline := time.Now().Add(30 * time.Second)
	for !a.LogContains(want) {
		if exited, _ := a.Exited(); exited || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	_ = a.Stop(10 * time.Second)
	log := readFile(t, a.Log)
	if !strings.Contains(log, want) {
		t.Fatalf("the agent log has no %q:\n%s", want, log)
	}
	if l := sec.leaks([]byte(log)); len(l) > 0 {
		t.Fatalf("the agent log leaks %v:\n%s", l, log)
	}
	return log
}

func readFile(t testing.TB, p string) string {
	t.Helper()
	data, err := os.ReadFile(p)
	must(t, err)
	return string(data)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	data, err := json.Marshal(v)
	must(t, err)
	return data
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestSecretsInRepoURL: credentials written into --repo itself (a common
// mistake), or in --git-password-file, never reach the log, whether the
// remote is unreachable, refuses them, or the URL is refused outright.
func TestSecretsInRepoURL(t *testing.T) {
	sec := newSecrets(t)
	rem, err := testenv.NewRemote(filepath.Join(t.TempDir(), "remote.git"))
	must(t, err)
	_, err = rem.Seed(map[string]string{"README": "x\n"}, "seed")
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served, stop, err := rem.ServeHTTP(ctx, func(_, password string) bool { return false })
	must(t, err)
	defer stop()
	withCreds := func(u string) string { return strings.Replace(u, "://", "://git:"+sec.token+"@", 1) }
	passwordFile := sec.file(t, "password", []byte(sec.badToken+"\n"))
	for _, tc := range []struct {
		name, url, want string
		extra           []string
	}{
		{"unreachable", withCreds("http://" + freeAddr(t) + "/r.git"), "sync failed", nil},
		{"refused", withCreds(served), "authentication failed", nil},
		{"password-file-refused", served, "authentication failed", []string{"--git-username", "tandem", "--git-password-file", passwordFile}},
		{"bad-scheme", "ftp://git:" + sec.token + "@127.0.0.1/r.git", "scheme", nil},
		{"transport-helper", "ext::sh -c " + sec.token, "transport helpers are refused", nil},
		{"malformed-scheme", "https//git:" + sec.token + "@example.com/r.git", "unrecognised form", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log := runUntilLogged(t, sec, tc.url, tc.want, tc.extra...)
			t.Logf("%s: clean; %s", tc.name, lastLine(log))
		})
	}
}
