package gitsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

func sign(key, body string) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(body))
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// hostileWebhooks are requests an attacker on the network could send to
// POST /hooks/git. None may wake the agent; none may echo the secret.
var hostileWebhooks = []struct {
	name, method, body string
	hdr                map[string]string
	code               int
	chunked            bool
}{
	{"unsigned", "POST", `{"ref":"refs/heads/main"}`, nil, 401, false},
	{"sha1-only", "POST", `{}`, map[string]string{"X-Hub-Signature": "sha1=0123456789abcdef0123456789abcdef01234567"}, 401, false},
	{"wrong-prefix", "POST", `{}`, map[string]string{"X-Hub-Signature-256": strings.Replace(sign("s3cret", `{}`), "sha256=", "sha1=", 1)}, 401, false},
	{"no-prefix", "POST", `{}`, map[string]string{"X-Hub-Signature-256": strings.TrimPrefix(sign("s3cret", `{}`), "sha256=")}, 401, false},
	{"not-hex", "POST", `{}`, map[string]string{"X-Hub-Signature-256": "sha256=zzzz"}, 401, false},
	{"empty-signature", "POST", `{}`, map[string]string{"X-Hub-Signature-256": "sha256="}, 401, false},
	{"truncated-signature", "POST", `{}`, map[string]string{"X-Hub-Signature-256": sign("s3cret", `{}`)[:40]}, 401, false},
	{"wrong-key", "POST", `{}`, map[string]string{"X-Hub-Signature-256": sign("guess", `{}`)}, 401, false},
	{"body-tampered", "POST", `{"ref":"refs/heads/evil"}`, map[string]string{"X-Hub-Signature-256": sign("s3cret", `{"ref":"refs/heads/main"}`)}, 401, false},
	{"bad-hmac-good-gitlab", "POST", `{}`, map[string]string{"X-Hub-Signature-256": sign("guess", `{}`), "X-Gitlab-Token": "s3cret"}, 401, false},
	{"gitlab-prefix", "POST", `{}`, map[string]string{"X-Gitlab-Token": "s3cre"}, 401, false},
	{"gitlab-padded", "POST", `{}`, map[string]string{"X-Gitlab-Token": "s3cret "}, 401, false},
	{"oversized-signed", "POST", strings.Repeat("x", MaxWebhookBody+1), map[string]string{"X-Hub-Signature-256": sign("s3cret", strings.Repeat("x", MaxWebhookBody+1))}, 413, false},
	{"oversized-chunked", "POST", strings.Repeat("{", 4*MaxWebhookBody), map[string]string{"X-Gitlab-Token": "s3cret"}, 413, true},
	{"put", "PUT", `{}`, map[string]string{"X-Gitlab-Token": "s3cret"}, 405, false},
}

// TestHostileWebhook sends each hostile request: the answer is the expected
// refusal, the agent is not woken, and the response never holds the secret.
func TestHostileWebhook(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range hostileWebhooks {
		t.Run(tc.name, func(t *testing.T) {
			var woke atomic.Bool
			h := NewWebhook(secret, func() { woke.Store(true) })
			var body io.Reader = strings.NewReader(tc.body)
			if tc.chunked {
				body = io.MultiReader(body) // unknown length: no Content-Length
			}
			req := httptest.NewRequest(tc.method, "/hooks/git", body)
			if tc.chunked {
				req.ContentLength = -1
			}
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || woke.Load() {
				t.Fatalf("code %d wake %v, want %d and no wake-up", rec.Code, woke.Load(), tc.code)
			}
			if strings.Contains(rec.Body.String(), "s3cret") {
				t.Fatalf("response echoes the secret: %q", rec.Body.String())
			}
		})
	}
}

// TestHostileWebhookSecretFile: an empty (whitespace) secret refuses even a
// request signed with the empty key; a missing secret file refuses all.
func TestHostileWebhookSecretFile(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte(" \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, file string
		hdr        map[string]string
		code       int
	}{
		{"empty-secret-hmac", empty, map[string]string{"X-Hub-Signature-256": sign("", `{}`)}, 401},
		{"empty-secret-gitlab", empty, map[string]string{"X-Gitlab-Token": " "}, 401},
		{"missing-secret-file", filepath.Join(dir, "nope"), map[string]string{"X-Gitlab-Token": "x"}, 500},
		{"unconfigured", "", map[string]string{"X-Gitlab-Token": "x"}, 401},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var woke atomic.Bool
			req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(`{}`))
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			NewWebhook(tc.file, func() { woke.Store(true) }).ServeHTTP(rec, req)
			if rec.Code != tc.code || woke.Load() {
				t.Fatalf("code %d wake %v, want %d and no wake-up", rec.Code, woke.Load(), tc.code)
			}
			if strings.Contains(rec.Body.String(), dir) {
				t.Fatalf("response names the secret file: %q", rec.Body.String())
			}
		})
	}
}

// FuzzWebhook: for any body and headers the handler never panics, and it
// wakes the agent exactly when the request carries a valid GitHub HMAC or,
// without a GitHub header, the exact GitLab token.
func FuzzWebhook(f *testing.F) {
	secret := filepath.Join(f.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	f.Add(`{}`, sign("s3cret", `{}`), "")
	f.Add(`{}`, "", "s3cret")
	f.Add(`{"a":1}`, "sha256=00", "s3cret")
	f.Add("", "sha256=", "")
	f.Fuzz(func(t *testing.T, body, hub, gitlab string) {
		var woke atomic.Bool
		req := httptest.NewRequest("POST", "/hooks/git", strings.NewReader(body))
		req.Header = http.Header{}
		if hub != "" {
			req.Header["X-Hub-Signature-256"] = []string{hub}
		}
		if gitlab != "" {
			req.Header["X-Gitlab-Token"] = []string{gitlab}
		}
		rec := httptest.NewRecorder()
		NewWebhook(secret, func() { woke.Store(true) }).ServeHTTP(rec, req)
		hexSig, hasPrefix := strings.CutPrefix(hub, "sha256=")
		valid := hasPrefix && strings.EqualFold(hexSig, strings.TrimPrefix(sign("s3cret", body), "sha256=")) || (hub == "" && gitlab == "s3cret")
		if woke.Load() != valid || (rec.Code == http.StatusAccepted) != valid {
			t.Fatalf("hub %q gitlab %q: code %d woke %v, want valid=%v", hub, gitlab, rec.Code, woke.Load(), valid)
		}
		if strings.Contains(rec.Body.String(), "s3cret") {
			t.Fatalf("response echoes the secret")
		}
	})
}

// TestHostileTrees checks out commits whose trees were crafted by hand (git
// mktree accepts them; git fsck and Git hosts would not): nothing is written
// outside the checkout and the error (or the skipped entry) names the path.
func TestHostileTrees(t *testing.T) {
	for _, tc := range []struct {
		name string
		tree func(g func(stdin string, args ...string) string, outside string) string
		want string
	}{
		{"symlink-then-file-through-it", func(g func(string, ...string) string, outside string) string {
			link := g(outside, "hash-object", "-w", "--stdin")
			evil := g("pwned\n", "hash-object", "-w", "--stdin")
			sub := g("100644 blob "+evil+"\tevil\n", "mktree")
			return g("120000 blob "+link+"\ta\n040000 tree "+sub+"\ta\n", "mktree")
		}, `path "a/evil" goes through the symlink "a"`},
		{"symlink-then-file-same-name", func(g func(string, ...string) string, outside string) string {
			link := g(outside+"/evil", "hash-object", "-w", "--stdin")
			evil := g("pwned\n", "hash-object", "-w", "--stdin")
			return g("120000 blob "+link+"\tx\n100644 blob "+evil+"\tx\n", "mktree")
		}, `path "x" appears twice in the tree`},
		{"dotdot-directory", func(g func(string, ...string) string, outside string) string {
			evil := g("pwned\n", "hash-object", "-w", "--stdin")
			sub := g("100644 blob "+evil+"\tevil\n", "mktree")
			return g("040000 tree "+sub+"\t..\n", "mktree")
		}, `invalid path ".."`},
		{"dotgit-directory", func(g func(string, ...string) string, outside string) string {
			evil := g("#!/bin/sh\ntouch "+outside+"/evil\n", "hash-object", "-w", "--stdin")
			hooks := g("100755 blob "+evil+"\tpost-checkout\n", "mktree")
			sub := g("040000 tree "+hooks+"\thooks\n", "mktree")
			return g("040000 tree "+sub+"\t.git\n", "mktree")
		}, `invalid path component: ".git"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			rem, seed := newRemote(t)
			outside := t.TempDir()
			g := func(stdin string, args ...string) string {
				t.Helper()
				cmd := exec.Command("git", args...)
				cmd.Dir = rem.Path
				cmd.Stdin = strings.NewReader(stdin)
				out, err := cmd.CombinedOutput()
				if err != nil {
					t.Fatalf("git %v: %v\n%s", args, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			commit := g("", "commit-tree", tc.tree(g, outside), "-p", seed, "-m", "hostile tree")
			g("", "update-ref", "refs/heads/main", commit)
			r := open(t, rem.Path)
			p, err := r.Poll(ctx)
			if err != nil {
				t.Fatal(err)
			}
			snap, err := r.Checkout(ctx, p.Tip, filepath.Join(t.TempDir(), "co"))
			if entries, _ := os.ReadDir(outside); len(entries) != 0 {
				t.Fatalf("the checkout wrote %s outside its directory (err %v)", entries[0].Name(), err)
			}
			// Entries go-git can read are skipped one by one (the rest of
			// the tree is checked out); a tree go-git refuses fails whole.
			got := fmt.Sprint(err)
			if err == nil {
				var skipped []string
				for _, sp := range snap.Skipped {
					skipped = append(skipped, sp.Error())
				}
				got = strings.Join(skipped, "; ")
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("Checkout: err %v, skipped %q; want mention of %q", err, got, tc.want)
			}
		})
	}
}

// TestRefusedURLNeverEchoesCredentials: a URL gitsync refuses is shown in the
// error without anything that may be a credential.
func TestRefusedURLNeverEchoesCredentials(t *testing.T) {
	const tok = "SENTINEL-url-5e1f"
	for _, u := range []string{
		"ext::sh -c " + tok,
		"https//git:" + tok + "@example.com/r.git",
		"ftp://git:" + tok + "@example.com/r.git",
		"http://git:" + tok + "@example.com/r.git",
	} {
		err := checkURL(u)
		if err == nil {
			t.Errorf("%q accepted", u)
			continue
		}
		if strings.Contains(err.Error(), tok) {
			t.Errorf("error for a refused URL leaks the credential: %v", err)
		}
	}
}
