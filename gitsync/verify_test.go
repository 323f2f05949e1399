package gitsync

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/testenv"
)

// keys are real keys made by gpg and ssh-keygen for the signature tests.
type keys struct {
	gpg, past          *testenv.GPG
	trusted, unknown   string // OpenPGP fingerprints
	expired, revoked   string
	rotated            string
	sshTrusted, sshBad *testenv.SSHKey
	dir                string
}

func newKeys(t *testing.T, ctx context.Context) *keys {
	t.Helper()
	k := &keys{dir: t.TempDir()}
	var err error
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	k.gpg, err = testenv.NewGPG(filepath.Join(k.dir, "now"), "")
	must(err)
	t.Cleanup(k.gpg.Close)
	// Keys made and used in 2020 that expired a day later.
	k.past, err = testenv.NewGPG(filepath.Join(k.dir, "past"), "20200101T000000!")
	must(err)
	t.Cleanup(k.past.Close)
	for _, x := range []struct {
		g   *testenv.GPG
		fpr *string
		uid string
		exp string
	}{
		{k.gpg, &k.trusted, "Trusted Dev <trusted@example.com>", "never"},
		{k.gpg, &k.unknown, "Stranger <stranger@example.com>", "never"},
		{k.gpg, &k.revoked, "Leaver <leaver@example.com>", "never"},
		{k.gpg, &k.rotated, "Newcomer <newcomer@example.com>", "never"},
		{k.past, &k.expired, "Old Dev <old@example.com>", "1d"},
	} {
		*x.fpr, err = x.g.GenKey(ctx, x.uid, x.exp)
		must(err)
	}
	k.sshTrusted, err = testenv.NewSSHKey(ctx, k.dir, "ssh-dev")
	must(err)
	k.sshBad, err = testenv.NewSSHKey(ctx, k.dir, "ssh-stranger")
	must(err)
	return k
}

// trustDir writes the trusted keys (OpenPGP keys of fprs from g, and the
// trusted SSH key as an allowed_signers line) into a fresh directory.
func (k *keys) trustDir(t *testing.T, ctx context.Context, fprs ...string) string {
	t.Helper()
	dir := t.TempDir()
	for i, f := range fprs {
		g := k.gpg
		if f == k.expired {
			g = k.past
		}
		pub, err := g.ExportPublic(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "pgp"+string(rune('a'+i))+".asc"), []byte(pub), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pub, err := os.ReadFile(k.sshTrusted.Public)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "allowed_signers"), []byte("dev@example.com namespaces=\"git\" "+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	// A mounted Secret's bookkeeping entries are ignored.
	if err := os.Mkdir(filepath.Join(dir, "..data"), 0o700); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sigRepo is a real repository whose commits are made by the git CLI,
// signed or not, and read through a Repo.
type sigRepo struct {
	t   *testing.T
	ctx context.Context
	dir string
	r   *Repo
}

func newSigRepo(t *testing.T, ctx context.Context) *sigRepo {
	t.Helper()
	s := &sigRepo{t: t, ctx: ctx, dir: filepath.Join(t.TempDir(), "work")}
	if _, err := testenv.Git(ctx, ".", "init", "--quiet", "-b", "main", s.dir); err != nil {
		t.Fatal(err)
	}
	s.r = open(t, s.dir)
	return s
}

func (s *sigRepo) git(args ...string) string {
	s.t.Helper()
	out, err := testenv.Git(s.ctx, s.dir, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// commit writes files and commits them with the git -c arguments sign
// (none: unsigned) and extra arguments of git commit; it returns the new commit.
func (s *sigRepo) commit(sign []string, files map[string]string, msg string, extra ...string) string {
	s.t.Helper()
	for p, c := range files {
		full := filepath.Join(s.dir, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			s.t.Fatal(err)
		}
	}
	s.git("add", "-A")
	s.git(append(append(append([]string{}, sign...), "commit", "--quiet", "--allow-empty", "-m", msg), extra...)...)
	return s.git("rev-parse", "HEAD")
}

func (s *sigRepo) tip() string {
	s.t.Helper()
	p, err := s.r.Poll(s.ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	return p.Tip
}

func inShop(p string) bool {
	return strings.HasPrefix(p, "bundles/shop/") && p != "bundles/shop/release.yaml"
}

func (s *sigRepo) unverified(from string, v *Verifier) []*Refusal {
	s.t.Helper()
	refs, err := s.r.Unverified(s.ctx, from, s.tip(), inShop, v, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	return refs
}

func wantRefused(t *testing.T, refs []*Refusal, commit, reason, signer string) {
	t.Helper()
	if len(refs) != 1 || refs[0].Commit != commit || !strings.Contains(refs[0].Reason, reason) || !strings.Contains(refs[0].Signer, signer) {
		t.Fatalf("refusals %v, want one for %s: %q by %q", refs, contract.Short(commit), reason, signer)
	}
}

// TestUnverifiedWithRealSignatures signs commits with gpg and ssh-keygen
// through `git commit -S` and checks what Unverified refuses.
func TestUnverifiedWithRealSignatures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	k := newKeys(t, ctx)
	byTrusted := k.gpg.SigningConfig(k.trusted)
	trust := k.trustDir(t, ctx, k.trusted, k.expired)
	v, err := NewVerifier(VerifyOptions{TrustedKeys: []string{trust}})
	if err != nil {
		t.Fatal(err)
	}
	// base is a repository whose bundle was released at a signed commit.
	base := func(t *testing.T) (*sigRepo, string) {
		s := newSigRepo(t, ctx)
		return s, s.commit(byTrusted, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "README": "hi\n"}, "add shop")
	}

	t.Run("signed by a trusted OpenPGP key", func(t *testing.T) {
		s, from := base(t)
		s.commit(byTrusted, map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		if refs := s.unverified(from, v); len(refs) != 0 {
			t.Fatalf("refused %v", refs)
		}
		sig, err := s.r.VerifyCommit(ctx, s.tip(), v)
		if err != nil || sig.Format != "openpgp" || !strings.Contains(sig.Identity, "trusted@example.com") || sig.Agent {
			t.Fatalf("VerifyCommit = %+v, %v", sig, err)
		}
	})
	t.Run("signed by a trusted SSH key", func(t *testing.T) {
		s, from := base(t)
		s.commit(k.sshTrusted.SigningConfig(), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		if refs := s.unverified(from, v); len(refs) != 0 {
			t.Fatalf("refused %v", refs)
		}
		sig, err := s.r.VerifyCommit(ctx, s.tip(), v)
		if err != nil || sig.Format != "ssh" || !strings.HasPrefix(sig.Key, "SHA256:") {
			t.Fatalf("VerifyCommit = %+v, %v", sig, err)
		}
	})
	t.Run("unsigned", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(nil, map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		s.commit(byTrusted, map[string]string{"bundles/shop/app/b.yaml": "b: 1\n"}, "b 1 on top, signed")
		wantRefused(t, s.unverified(from, v), c, "unsigned", "")
	})
	t.Run("unknown OpenPGP key", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(k.gpg.SigningConfig(k.unknown), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		wantRefused(t, s.unverified(from, v), c, "not trusted", "openpgp key")
	})
	t.Run("unknown SSH key", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(k.sshBad.SigningConfig(), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		wantRefused(t, s.unverified(from, v), c, "not trusted", "SHA256:")
	})
	t.Run("expired OpenPGP key", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(k.past.SigningConfig(k.expired), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		wantRefused(t, s.unverified(from, v), c, "expired", "old@example.com")
	})
	t.Run("revoked OpenPGP key", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(k.gpg.SigningConfig(k.revoked), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		if err := k.gpg.Revoke(ctx, k.revoked); err != nil {
			t.Fatal(err)
		}
		rv, err := NewVerifier(VerifyOptions{TrustedKeys: []string{k.trustDir(t, ctx, k.trusted, k.revoked)}})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, s.unverified(from, rv), c, "revoked", "leaver@example.com")
	})
	t.Run("signature over different content", func(t *testing.T) {
		s, from := base(t)
		s.commit(byTrusted, map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		// Keep the gpgsig header, change the message: the signature no
		// longer covers the commit.
		raw := s.git("cat-file", "commit", "HEAD")
		forged := strings.Replace(raw, "\n\na 2", "\n\na 2 (reviewed)", 1)
		if forged == raw {
			t.Fatalf("message not found in:\n%s", raw)
		}
		file := filepath.Join(t.TempDir(), "commit")
		if err := os.WriteFile(file, []byte(forged+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		c := s.git("hash-object", "-t", "commit", "-w", file)
		s.git("update-ref", "refs/heads/main", c)
		if !strings.Contains(s.git("cat-file", "commit", c), "gpgsig") {
			t.Fatal("the tampered commit lost its signature header")
		}
		wantRefused(t, s.unverified(from, v), c, "bad signature", "trusted@example.com")
	})
	t.Run("signed merge of an unsigned commit", func(t *testing.T) {
		s, from := base(t)
		s.git("checkout", "--quiet", "-b", "feature")
		c := s.commit(nil, map[string]string{"bundles/shop/app/a.yaml": "a: evil\n"}, "sneak")
		s.git("checkout", "--quiet", "main")
		s.commit(byTrusted, map[string]string{"bundles/shop/app/b.yaml": "b: 1\n"}, "b 1")
		s.git(append(append([]string{}, byTrusted...), "merge", "--quiet", "--no-ff", "-S", "-m", "merge feature", "feature")...)
		if _, err := s.r.VerifyCommit(ctx, s.tip(), v); err != nil {
			t.Fatalf("the merge itself is signed: %v", err)
		}
		wantRefused(t, s.unverified(from, v), c, "unsigned", "")
	})
	t.Run("unsigned change outside the bundle or undone needs no signature", func(t *testing.T) {
		s, from := base(t)
		s.commit(nil, map[string]string{"README": "notes\n", "bundles/shop/release.yaml": "x: 1\n"}, "docs")
		s.commit(nil, map[string]string{"bundles/shop/app/a.yaml": "a: evil\n"}, "sneak")
		s.commit(byTrusted, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n"}, "undo the sneak")
		if refs := s.unverified(from, v); len(refs) != 0 {
			t.Fatalf("refused %v", refs)
		}
	})
	t.Run("the whole history without a base", func(t *testing.T) {
		s := newSigRepo(t, ctx)
		c := s.commit(nil, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n"}, "unsigned start")
		s.commit(byTrusted, map[string]string{"bundles/shop/app/b.yaml": "b: 1\n"}, "b")
		wantRefused(t, s.unverified("", v), c, "unsigned", "")
	})
	t.Run("key file rotated while running", func(t *testing.T) {
		s, from := base(t)
		c := s.commit(k.gpg.SigningConfig(k.rotated), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
		file := filepath.Join(t.TempDir(), "trusted.asc")
		write := func(fpr string) {
			pub, err := k.gpg.ExportPublic(ctx, fpr)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(file, []byte(pub), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(k.trusted)
		rv, err := NewVerifier(VerifyOptions{TrustedKeys: []string{file}})
		if err != nil {
			t.Fatal(err)
		}
		wantRefused(t, s.unverified(from, rv), c, "not trusted", "")
		write(k.rotated)
		if refs := s.unverified(from, rv); len(refs) != 0 {
			t.Fatalf("after rotating the key file: refused %v", refs)
		}
		write(k.trusted)
		wantRefused(t, s.unverified(from, rv), c, "not trusted", "")
	})
}

// TestAgentCommitsAreRecognisedBySignature: with a signing key, the agent's
// commits carry its signature; a human commit copying its author and
// trailers does not.
func TestAgentCommitsAreRecognisedBySignature(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := testenv.NewGPG(t.TempDir(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	fpr, err := g.GenKey(ctx, "tandem <tandem@localhost>", "never")
	if err != nil {
		t.Fatal(err)
	}
	secret, err := g.ExportSecret(ctx, fpr)
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "signing.asc")
	if err := os.WriteFile(keyFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	rem, _ := newRemote(t)
	r, err := Open(ctx, Options{URL: rem.Path, Branch: "main", CacheDir: filepath.Join(t.TempDir(), "cache"), SigningKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) {
		return "tandem: promote shop to blue (abc)\n\nok\n\nTandem-Bundle: shop\nTandem-Result: promoted\n", tr.WriteFile("bundles/shop/release.yaml", []byte("x: 1\n"))
	})
	if err != nil {
		t.Fatal(err)
	}
	forged, err := rem.Commit(map[string]string{"bundles/shop/app/a.yaml": "a: evil\n"},
		"Revert \"x\" in bundle shop\n\nforged\n\nTandem-Bundle: shop\nTandem-Result: reverted\n")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifyOptions{AgentKeyFile: keyFile})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := r.VerifyCommit(ctx, w.Commit, v)
	if err != nil || !sig.Agent {
		t.Fatalf("the agent's own commit: %+v, %v", sig, err)
	}
	_, err = r.VerifyCommit(ctx, forged, v)
	var ref *Refusal
	if !errors.As(err, &ref) || ref.Reason != "unsigned" {
		t.Fatalf("forged agent commit: %v, want an unsigned refusal", err)
	}
}

// TestUnverifiedExemptsAgentCommitsWithoutSigningKey: without a signing key
// the caller's exempt rule (author and trailers) excuses the agent's
// commits; every other unsigned commit is still refused.
func TestUnverifiedExemptsAgentCommitsWithoutSigningKey(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, err := testenv.NewSSHKey(ctx, t.TempDir(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(VerifyOptions{TrustedKeys: []string{key.Public}})
	if err != nil {
		t.Fatal(err)
	}
	s := newSigRepo(t, ctx)
	from := s.commit(key.SigningConfig(), map[string]string{"bundles/shop/app/a.yaml": "a: 1\n"}, "start")
	s.commit(key.SigningConfig(), map[string]string{"bundles/shop/app/a.yaml": "a: 2\n"}, "a 2")
	s.commit(nil, map[string]string{"bundles/shop/app/a.yaml": "a: 1\n", "bundles/shop/app/b.yaml": "b: 1\n"},
		"Revert \"a 2\" in bundle shop\n\nwhy\n\nTandem-Bundle: shop\nTandem-Result: reverted\n", "--author", "tandem <tandem@localhost>")
	human := s.commit(nil, map[string]string{"bundles/shop/app/b.yaml": "b: 2\n"}, "b 2")
	exempt := func(c Commit) bool {
		return strings.HasPrefix(c.Author, "tandem <") && strings.Contains(c.Message, "\nTandem-Result: ")
	}
	refs, err := s.r.Unverified(ctx, from, s.tip(), inShop, v, exempt)
	if err != nil {
		t.Fatal(err)
	}
	wantRefused(t, refs, human, "unsigned", "")
}

func TestParseSSHLine(t *testing.T) {
	key, err := testenv.NewSSHKey(context.Background(), t.TempDir(), "dev")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(key.Public)
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(data))
	for _, c := range []struct{ line, name, err string }{
		{pub, "dev@example.com", ""},
		{"dev@acme.com " + pub, "dev@acme.com", ""},
		{"dev@acme.com,ops@acme.com namespaces=\"git\" " + pub, "dev@acme.com,ops@acme.com", ""},
		{"dev@acme.com valid-before=\"20200101\" " + pub, "", "valid-before"},
		{"dev@acme.com cert-authority " + pub, "", "cert-authority"},
		{"no key here", "", "no key found"},
	} {
		k, name, err := parseSSHLine(c.line)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%q: error %v, want one naming %q", c.line, err, c.err)
		case c.err == "" && (err != nil || k == nil || name != c.name):
			t.Errorf("%q: key %v name %q err %v, want name %q", c.line, k, name, err, c.name)
		}
	}
}

func TestVerifierRefusesBadKeyFiles(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.pub")
	if err := os.WriteFile(bad, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := testenv.NewSSHKey(context.Background(), dir, "dated")
	if err != nil {
		t.Fatal(err)
	}
	pub, err := os.ReadFile(key.Public)
	if err != nil {
		t.Fatal(err)
	}
	dated := filepath.Join(dir, "allowed_signers")
	if err := os.WriteFile(dated, []byte("dev@example.com valid-before=\"20200101\" "+string(pub)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		o    VerifyOptions
		want string
	}{
		{"missing file", VerifyOptions{TrustedKeys: []string{filepath.Join(dir, "nope")}}, "nope"},
		{"garbage", VerifyOptions{TrustedKeys: []string{bad}}, "bad.pub:1"},
		{"validity option", VerifyOptions{TrustedKeys: []string{dated}}, "valid-before"},
		{"no keys", VerifyOptions{}, "no trusted key files"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewVerifier(c.o)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewVerifier: %v, want an error naming %q", err, c.want)
			}
		})
	}
}
