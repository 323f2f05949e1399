package gitsync

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5/plumbing"

	"github.com/tandem-gitops/tandem/testenv"
)

func newRemote(t *testing.T) (*testenv.Remote, string) {
	t.Helper()
	rem, err := testenv.NewRemote(filepath.Join(t.TempDir(), "remote.git"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := rem.Seed(map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "README": "hi\n"}, "seed")
	if err != nil {
		t.Fatal(err)
	}
	return rem, c
}

func open(t *testing.T, url string) *Repo {
	t.Helper()
	r, err := Open(context.Background(), Options{URL: url, Branch: "main", CacheDir: filepath.Join(t.TempDir(), "cache")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestPollDetectsNewCommitsAndSkipsFetchWhenUnchanged(t *testing.T) {
	ctx := context.Background()
	rem, c1 := newRemote(t)
	r := open(t, rem.Path)
	p, err := r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tip != c1 || !p.Fetched {
		t.Fatalf("first poll = %+v, want tip %s fetched", p, c1)
	}
	for i := 0; i < 3; i++ {
		p, err = r.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Tip != c1 || p.Fetched {
			t.Fatalf("unchanged poll = %+v, want no fetch", p)
		}
	}
	if r.fetches != 1 {
		t.Fatalf("fetches = %d, want 1", r.fetches)
	}
	c2, err := rem.Commit(map[string]string{"bundles/shop/app/b.yaml": "b: 2\n"}, "add b\n\nTandem-Bundle: shop\nSigned-off-by: h <h@x>")
	if err != nil {
		t.Fatal(err)
	}
	p, err = r.Poll(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if p.Tip != c2 || !p.Fetched || r.fetches != 2 {
		t.Fatalf("poll after push = %+v fetches %d", p, r.fetches)
	}

	paths, err := r.ChangedPaths(ctx, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"bundles/shop/app/b.yaml"}; !reflect.DeepEqual(paths, want) {
		t.Fatalf("ChangedPaths = %v, want %v", paths, want)
	}
	cs, err := r.Commits(ctx, c1, c2)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Hash != c2 || cs[0].Subject != "add b" || !strings.Contains(cs[0].Message, "\nTandem-Bundle: shop") {
		t.Fatalf("Commits = %+v", cs)
	}

	dir := filepath.Join(t.TempDir(), "co")
	if err := os.WriteFile(filepath.Join(t.TempDir(), "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Checkout(ctx, c2, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "bundles/shop/app/b.yaml")); err != nil || string(b) != "b: 2\n" {
		t.Fatalf("checkout b.yaml = %q, %v", b, err)
	}
	if _, err := r.Checkout(ctx, c1, dir); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bundles/shop/app/b.yaml")); !os.IsNotExist(err) {
		t.Fatalf("checkout of older commit kept b.yaml: %v", err)
	}
}

func TestWriteRacingPusherKeepsBothCommits(t *testing.T) {
	ctx := context.Background()
	rem, c1 := newRemote(t)
	r := open(t, rem.Path)
	var calls int
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		calls++
		if calls == 1 {
			if tr.Tip() != c1 {
				t.Errorf("first tip %s, want %s", tr.Tip(), c1)
			}
			if _, err := rem.Commit(map[string]string{"human.txt": "mine\n"}, "human change"); err != nil {
				t.Error(err)
			}
		}
		if err := tr.WriteFile("bundles/shop/release.yaml", []byte("live: blue\n")); err != nil {
			return "", err
		}
		return "tandem: promote shop to blue\n\nTandem-Result: promoted\n", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 || w.Attempts != 2 {
		t.Fatalf("calls %d attempts %d, want 2 and 2", calls, w.Attempts)
	}
	head, _ := rem.Head()
	if head != w.Commit {
		t.Fatalf("remote head %s, want %s", head, w.Commit)
	}
	out, err := rem.Git("log", "--format=%s", "main")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Fields(strings.ReplaceAll(out, " ", "_")); len(got) != 3 || got[1] != "human_change" {
		t.Fatalf("log = %q", out)
	}
	files, _ := rem.Git("ls-tree", "-r", "--name-only", "main")
	if !strings.Contains(files, "human.txt") || !strings.Contains(files, "bundles/shop/release.yaml") || !strings.Contains(files, "README") {
		t.Fatalf("tree = %q", files)
	}
}

// TestConcurrentWritesDoNotCollide: two goroutines of one process writing at
// once take turns, so the second edits on top of the first's commit and
// neither push is rejected.
func TestConcurrentWritesDoNotCollide(t *testing.T) {
	ctx := context.Background()
	rem, _ := newRemote(t)
	r := open(t, rem.Path)
	write := func(file string, inEdit func()) (Written, string, error) {
		var tip string
		w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
			tip = tr.Tip()
			inEdit()
			return "tandem: " + file + "\n\nTandem-Result: promoted\n", tr.WriteFile(file, []byte("x\n"))
		})
		return w, tip, err
	}
	secondEditing := make(chan struct{})
	type out struct {
		w   Written
		tip string
		err error
	}
	second := make(chan out, 1)
	first, _, err := write("a/release.yaml", func() {
		go func() {
			var once sync.Once
			w, tip, err := write("b/release.yaml", func() { once.Do(func() { close(secondEditing) }) })
			second <- out{w, tip, err}
		}()
		select { // the second writer must not get to edit while the first does
		case <-secondEditing:
			t.Error("the second Write edited while the first was still editing")
		case <-time.After(300 * time.Millisecond):
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	s := <-second
	if s.err != nil {
		t.Fatal(s.err)
	}
	if first.Attempts != 1 || s.w.Attempts != 1 {
		t.Errorf("attempts %d and %d, want 1 and 1 (no push rejected)", first.Attempts, s.w.Attempts)
	}
	if s.tip != first.Commit {
		t.Errorf("the second Write edited tip %s, want the first's commit %s", s.tip, first.Commit)
	}
}

func TestWriteAbandonAndRestore(t *testing.T) {
	ctx := context.Background()
	rem, c1 := newRemote(t)
	r := open(t, rem.Path)
	if _, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": "a: 2\n", "bundles/shop/app/new.yaml": "n\n"}, "bad change"); err != nil {
		t.Fatal(err)
	}
	_, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) { return "", ErrAbandon })
	if !errors.Is(err, ErrAbandon) {
		t.Fatalf("err = %v, want ErrAbandon", err)
	}
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		if ch, err := tr.ChangedSince(c1, Paths{"bundles/shop/"}); err != nil || !ch {
			t.Errorf("ChangedSince before restore = %v, %v", ch, err)
		}
		restored, err := tr.Restore(Paths{"bundles/shop/"}, c1)
		if err != nil {
			return "", err
		}
		if strings.Join(restored, " ") != "bundles/shop/app/a.yaml bundles/shop/app/new.yaml" {
			t.Errorf("restored %v, want a.yaml and new.yaml", restored)
		}
		if ch, err := tr.ChangedSince(c1, Paths{"bundles/shop/"}); err != nil || ch {
			t.Errorf("ChangedSince after restore = %v, %v", ch, err)
		}
		return "Revert bad change", nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files, _ := rem.Git("ls-tree", "-r", "--name-only", w.Commit)
	content, _ := rem.Git("show", w.Commit+":bundles/shop/app/a.yaml")
	if strings.Contains(files, "new.yaml") || content != "a: 1\n" {
		t.Fatalf("after revert files %q a.yaml %q", files, content)
	}
}

func TestHookRejectedPushIsTyped(t *testing.T) {
	rem, _ := newRemote(t)
	if err := rem.RejectPushes("branch main is protected"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	_, err := r.Write(context.Background(), func(ctx context.Context, tr *Tree) (string, error) {
		return "x", tr.WriteFile("f", []byte("x"))
	})
	var pr *PushRejectedError
	if !errors.As(err, &pr) || errors.Is(err, ErrNonFastForward) {
		t.Fatalf("err = %v (%T), want *PushRejectedError", err, err)
	}
}

func TestURLPolicy(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://github.com/a/b.git", true},
		{"ssh://git@github.com/a/b.git", true},
		{"git@github.com:a/b.git", true},
		{"/srv/git/repo.git", true},
		{"file:///srv/git/repo.git", true},
		{"http://127.0.0.1:8080/repo.git", true},
		{"http://example.com/repo.git", false},
		{"git://example.com/repo.git", false},
		{"ext::sh -c touch% /tmp/pwned", false},
		{"ftp://example.com/repo", false},
		{"", false},
	} {
		if err := checkURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("checkURL(%q) = %v, want ok=%v", tc.url, err, tc.ok)
		}
	}
}

func TestSSHRequiresKnownHosts(t *testing.T) {
	key := filepath.Join(t.TempDir(), "id")
	_, err := Open(context.Background(), Options{URL: "ssh://git@127.0.0.1:1/r.git", CacheDir: t.TempDir(), Auth: Auth{SSHKeyFile: key}})
	if err == nil || !strings.Contains(err.Error(), "known-hosts") {
		t.Fatalf("err = %v, want known-hosts required", err)
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	const sentinel = "SENTINEL-tok-9f8e7d"
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte(sentinel+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "nope "+r.URL.String(), http.StatusInternalServerError)
	}))
	defer srv.Close()
	url := strings.Replace(srv.URL, "http://", "http://user:"+sentinel+"@", 1) + "/r.git"
	r, err := Open(context.Background(), Options{URL: url, CacheDir: t.TempDir(), Auth: Auth{TokenFile: tok}})
	if err != nil {
		if strings.Contains(err.Error(), sentinel) {
			t.Fatalf("open error leaks: %v", err)
		}
		t.Fatal(err)
	}
	defer r.Close()
	_, err1 := r.Poll(context.Background())
	_, err2 := r.Write(context.Background(), func(ctx context.Context, tr *Tree) (string, error) { return "m", nil })
	for _, err := range []error{err1, err2} {
		if err == nil {
			t.Fatal("expected an error")
		}
		if strings.Contains(err.Error(), sentinel) {
			t.Fatalf("error leaks the token: %v", err)
		}
	}
	if strings.Contains(Redact(url), sentinel) {
		t.Fatal("Redact leaks")
	}
}

func TestWebhook(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	body := `{"ref":"refs/heads/main"}`
	mac := hmac.New(sha256.New, []byte("s3cret"))
	mac.Write([]byte(body))
	good := "sha256=" + hex.EncodeToString(mac.Sum(nil))
	for _, tc := range []struct {
		name, method, body string
		hdr                map[string]string
		code               int
		wake               bool
	}{
		{"github ok", "POST", body, map[string]string{"X-Hub-Signature-256": good}, 202, true},
		{"gitlab ok", "POST", body, map[string]string{"X-Gitlab-Token": "s3cret"}, 202, true},
		{"github bad", "POST", body + " ", map[string]string{"X-Hub-Signature-256": good}, 401, false},
		{"gitlab bad", "POST", body, map[string]string{"X-Gitlab-Token": "nope"}, 401, false},
		{"missing", "POST", body, nil, 401, false},
		{"get", "GET", "", nil, 405, false},
		{"too large", "POST", strings.Repeat("x", MaxWebhookBody+1), map[string]string{"X-Gitlab-Token": "s3cret"}, 413, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var woke atomic.Bool
			h := NewWebhook(secret, func() { woke.Store(true) })
			req := httptest.NewRequest(tc.method, "/hooks/git", strings.NewReader(tc.body))
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tc.code || woke.Load() != tc.wake {
				t.Fatalf("code %d wake %v, want %d %v", rec.Code, woke.Load(), tc.code, tc.wake)
			}
		})
	}
}

func TestHTTPTokenRotation(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rem, c1 := newRemote(t)
	var current atomic.Value
	current.Store("old-token")
	url, stop, err := rem.ServeHTTP(ctx, func(u, p string) bool { return p == current.Load().(string) })
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tok := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tok, []byte("old-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := Open(ctx, Options{URL: url, CacheDir: filepath.Join(t.TempDir(), "c"), Auth: Auth{TokenFile: tok}})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if p, err := r.Poll(ctx); err != nil || p.Tip != c1 {
		t.Fatalf("poll = %+v, %v", p, err)
	}
	current.Store("new-token")
	if _, err := r.Poll(ctx); !errors.Is(err, ErrAuth) {
		t.Fatalf("poll with rotated server token = %v, want ErrAuth", err)
	}
	if err := os.WriteFile(tok, []byte("new-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for i := 0; i < 50; i++ {
		if _, lastErr = r.Poll(ctx); lastErr == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if lastErr != nil {
		t.Fatalf("poll after rotating the file: %v", lastErr)
	}
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		return "over http", tr.WriteFile("h.txt", []byte("h"))
	})
	if err != nil {
		t.Fatal(err)
	}
	if head, _ := rem.Head(); head != w.Commit {
		t.Fatalf("head %s want %s", head, w.Commit)
	}
}

func TestSignedCommitVerifies(t *testing.T) {
	ent, err := openpgp.NewEntity("tandem", "", "tandem@localhost", nil)
	if err != nil {
		t.Fatal(err)
	}
	var priv, pub bytes.Buffer
	aw, _ := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err := ent.SerializePrivate(aw, nil); err != nil {
		t.Fatal(err)
	}
	aw.Close()
	pw, _ := armor.Encode(&pub, openpgp.PublicKeyType, nil)
	if err := ent.Serialize(pw); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	keyFile := filepath.Join(t.TempDir(), "key.asc")
	if err := os.WriteFile(keyFile, priv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	rem, _ := newRemote(t)
	r, err := Open(context.Background(), Options{URL: rem.Path, CacheDir: filepath.Join(t.TempDir(), "c"), SigningKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.Write(context.Background(), func(ctx context.Context, tr *Tree) (string, error) {
		return "signed", tr.WriteFile("s", []byte("s"))
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := r.repo.CommitObject(plumbing.NewHash(w.Commit))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Verify(pub.String()); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
}

// A long-running agent fetches once per new tip; the cache must not grow a
// pack per fetch for ever (every object lookup walks every pack).
func TestPollCompactsPacks(t *testing.T) {
	ctx := context.Background()
	rem, _ := newRemote(t)
	r := open(t, rem.Path)
	var tip string
	for i := 0; i < MaxPacks+10; i++ {
		c, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": fmt.Sprintf("a: %d\n", i)}, fmt.Sprintf("change %d", i))
		if err != nil {
			t.Fatal(err)
		}
		p, err := r.Poll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if p.Tip != c {
			t.Fatalf("poll %d: tip %s, want %s", i, p.Tip, c)
		}
		tip = c
		if n := r.packs(); n > MaxPacks+1 {
			t.Fatalf("after %d fetches the cache holds %d packs, want at most %d", i+1, n, MaxPacks+1)
		}
	}
	// Everything is still readable after repacking.
	snap, err := r.Checkout(ctx, tip, filepath.Join(t.TempDir(), "co"))
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(snap.Dir, "bundles/shop/app/a.yaml"))
	if err != nil || string(data) != fmt.Sprintf("a: %d\n", MaxPacks+9) {
		t.Fatalf("a.yaml after repacking: %q %v", data, err)
	}
	if _, err := r.Commits(ctx, "", tip); err != nil {
		t.Fatal(err)
	}
}

// TestWriteAfterTheBranchWasRewound: the cache last pushed a commit that
// someone then dropped with a force push. A write of the same content must
// land on the rewound tip, not find "nothing to commit" on the stale one.
func TestWriteAfterTheBranchWasRewound(t *testing.T) {
	ctx := context.Background()
	rem, c1 := newRemote(t)
	if _, err := rem.Git("config", "receive.denyNonFastForwards", "false"); err != nil {
		t.Fatal(err)
	}
	r := open(t, rem.Path)
	write := func() Written {
		t.Helper()
		w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
			return "tandem: promote shop to green\n\nTandem-Result: promoted\n", tr.WriteFile("bundles/shop/release.yaml", []byte("live: green\n"))
		})
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	first := write()
	if _, err := rem.Git("update-ref", "refs/heads/main", c1, first.Commit); err != nil { // the force push
		t.Fatal(err)
	}
	again := write()
	head, _ := rem.Head()
	// (Written within the same second, it may be the very commit dropped.)
	if again.Commit == "" || head != again.Commit {
		t.Fatalf("after the rewind the write made %q, remote head %s (was rewound to %s): want the record back on the branch", again.Commit, head, c1)
	}
}
