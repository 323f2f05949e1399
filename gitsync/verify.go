package gitsync

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	pgperrors "github.com/ProtonMail/go-crypto/openpgp/errors"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/hiddeco/sshsig"
	"golang.org/x/crypto/ssh"
)

// SSHNamespace is the sshsig namespace Git signs commits in (gpg.format ssh).
const SSHNamespace = "git"

// VerifyOptions configure NewVerifier.
type VerifyOptions struct {
	// TrustedKeys are files or directories (every file not starting with a
	// dot, as a mounted Secret lays them out) of public keys: armored
	// OpenPGP public keys, or SSH public keys one per line in
	// authorized_keys or allowed_signers form.
	TrustedKeys []string
	// AgentKeyFile is the agent's armored OpenPGP private key (the signing
	// key of its commits). A valid signature by it marks a commit as the
	// agent's; it is optional.
	AgentKeyFile string
}

// Verifier checks commit signatures against trusted keys read from files.
// The files are read again when one of them changes (name, size or
// modification time), so a rotated Secret needs no restart.
type Verifier struct {
	opts  VerifyOptions
	mu    sync.Mutex
	stamp string
	keys  keyring
}

type keyring struct {
	pgp   openpgp.EntityList // trusted keys and the agent's
	agent map[string]bool    // fingerprints of the agent's keys
	ssh   map[string]sshKey  // by SHA256 fingerprint
}

type sshKey struct {
	key  ssh.PublicKey
	name string // comment or principals
}

// NewVerifier reads the key files once, so that a missing or unreadable file
// is an error at start-up.
func NewVerifier(o VerifyOptions) (*Verifier, error) {
	if len(o.TrustedKeys) == 0 && o.AgentKeyFile == "" {
		return nil, errors.New("verify commits: no trusted key files")
	}
	v := &Verifier{opts: o}
	if err := v.reload(); err != nil {
		return nil, err
	}
	return v, nil
}

// Signer is who made a valid signature.
type Signer struct {
	Format   string // "openpgp" or "ssh"
	Key      string // OpenPGP fingerprint or SSH SHA256 fingerprint
	Identity string // the key's user id, comment or principals
	Agent    bool   // the agent's own signing key
}

func (s Signer) String() string {
	if s.Identity == "" {
		return s.Format + " key " + s.Key
	}
	return fmt.Sprintf("%s key %s (%s)", s.Format, s.Key, s.Identity)
}

// Refusal is a commit whose signature does not make it trusted. It is an
// error so that callers can return it as one.
type Refusal struct {
	Commit, Subject string
	// Reason says why: unsigned, a key that is not trusted, an expired or
	// revoked key, a signature that does not match the commit.
	Reason string
	// Signer names the key that signed it ("" when unsigned or unknown).
	Signer string
}

func (r *Refusal) Error() string {
	s := fmt.Sprintf("commit %s %q: %s", contract.Short(r.Commit), r.Subject, r.Reason)
	if r.Signer != "" {
		s += " (" + r.Signer + ")"
	}
	return s
}

// filesStamp lists every key file with its size and modification time.
func (v *Verifier) files() ([]string, string, error) {
	var files []string
	for _, p := range v.opts.TrustedKeys {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, "", fmt.Errorf("trusted keys %s: %w", p, err)
		}
		if !fi.IsDir() {
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, "", fmt.Errorf("trusted keys %s: %w", p, err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				continue // ..data and friends of a mounted Secret
			}
			f := filepath.Join(p, e.Name())
			if fi, err := os.Stat(f); err == nil && fi.Mode().IsRegular() {
				files = append(files, f)
			}
		}
	}
	all := files
	if v.opts.AgentKeyFile != "" {
		all = append(append([]string(nil), files...), v.opts.AgentKeyFile)
	}
	var b strings.Builder
	for _, f := range all {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, "", fmt.Errorf("trusted keys %s: %w", f, err)
		}
		fmt.Fprintf(&b, "%s\x00%d\x00%d\n", f, fi.Size(), fi.ModTime().UnixNano())
	}
	return files, b.String(), nil
}

// reload re-reads the key files when they changed since the last read.
func (v *Verifier) reload() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	files, stamp, err := v.files()
	if err != nil {
		return err
	}
	if stamp == v.stamp {
		return nil
	}
	kr := keyring{agent: map[string]bool{}, ssh: map[string]sshKey{}}
	for _, f := range files {
		if err := kr.load(f); err != nil {
			return err
		}
	}
	if f := v.opts.AgentKeyFile; f != "" {
		ent, err := loadSigningKey(f)
		if err != nil {
			return err
		}
		kr.pgp = append(kr.pgp, ent)
		kr.agent[string(ent.PrimaryKey.Fingerprint)] = true
	}
	v.keys, v.stamp = kr, stamp
	return nil
}

// load adds the keys of one file: an armored OpenPGP key block, or SSH
// public keys one per line.
func (kr *keyring) load(file string) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("trusted keys %s: %w", file, err)
	}
	if bytes.Contains(data, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----")) {
		list, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(data))
		if err != nil {
			return fmt.Errorf("trusted keys %s: %w", file, err)
		}
		for _, e := range list {
			if e.PrivateKey != nil {
				return fmt.Errorf("trusted keys %s: holds a private key; give the public key only", file)
			}
		}
		kr.pgp = append(kr.pgp, list...)
		return nil
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	n, line := 0, 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		key, name, err := parseSSHLine(text)
		if err != nil {
			return fmt.Errorf("trusted keys %s:%d: not an SSH public key or armored OpenPGP key: %w", file, line, err)
		}
		kr.ssh[ssh.FingerprintSHA256(key)] = sshKey{key: key, name: name}
		n++
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("trusted keys %s: %w", file, err)
	}
	if n == 0 {
		return fmt.Errorf("trusted keys %s: no key found", file)
	}
	return nil
}

// parseSSHLine reads an authorized_keys line ("type key [comment]") or an
// allowed_signers line ("principals [options] type key [comment]").
// Options that would limit a key (validity dates, certificate authorities)
// are refused rather than ignored; namespaces= is accepted (Git's is checked).
func parseSSHLine(line string) (ssh.PublicKey, string, error) {
	first, rest, _ := strings.Cut(line, " ")
	if isKeyType(first) {
		key, comment, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		return key, comment, err
	}
	key, _, opts, _, err := ssh.ParseAuthorizedKey([]byte(strings.TrimSpace(rest)))
	if err != nil {
		return nil, "", err
	}
	for _, o := range opts {
		if k, _, _ := strings.Cut(o, "="); !strings.EqualFold(k, "namespaces") {
			return nil, "", fmt.Errorf("option %q is not supported (only namespaces=)", k)
		}
	}
	return key, first, nil
}

// isKeyType reports whether s names an SSH public key algorithm.
func isKeyType(s string) bool {
	for _, p := range []string{"ssh-", "ecdsa-", "sk-"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// check verifies c's signature: the Signer when it is valid and made by a
// trusted key now (not expired, not revoked), a *Refusal otherwise.
func (v *Verifier) check(c *object.Commit) (Signer, error) {
	v.mu.Lock()
	kr := v.keys
	v.mu.Unlock()
	subject, _, _ := strings.Cut(c.Message, "\n")
	refuse := func(reason, signer string) (Signer, error) {
		return Signer{}, &Refusal{Commit: c.Hash.String(), Subject: subject, Reason: reason, Signer: signer}
	}
	sig := strings.TrimSpace(c.PGPSignature)
	if sig == "" {
		return refuse("unsigned", "")
	}
	if strings.Count(sig, "-----BEGIN ") > 1 {
		return refuse("several signatures on one commit", "")
	}
	payload := &plumbing.MemoryObject{}
	if err := c.EncodeWithoutSignature(payload); err != nil {
		return Signer{}, fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	rd, err := payload.Reader()
	if err != nil {
		return Signer{}, fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	defer rd.Close()
	switch {
	case strings.HasPrefix(sig, "-----BEGIN PGP SIGNATURE-----"):
		ent, err := openpgp.CheckArmoredDetachedSignature(kr.pgp, rd, strings.NewReader(sig), nil)
		who := pgpName(kr.pgp, ent, sig)
		switch {
		case err == nil:
			s := Signer{Format: "openpgp", Key: fmt.Sprintf("%X", ent.PrimaryKey.Fingerprint), Identity: pgpIdentity(ent)}
			s.Agent = kr.agent[string(ent.PrimaryKey.Fingerprint)]
			return s, nil
		case errors.Is(err, pgperrors.ErrUnknownIssuer):
			return refuse("signed by a key that is not trusted", who)
		case errors.Is(err, pgperrors.ErrKeyExpired):
			return refuse("signed by an expired key", who)
		case errors.Is(err, pgperrors.ErrKeyRevoked):
			return refuse("signed by a revoked key", who)
		case errors.Is(err, pgperrors.ErrSignatureExpired):
			return refuse("the signature has expired", who)
		default:
			return refuse("bad signature: "+err.Error(), who)
		}
	case strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----"):
		s, err := sshsig.Unarmor([]byte(sig))
		if err != nil {
			return refuse("bad signature: "+err.Error(), "")
		}
		fp := ssh.FingerprintSHA256(s.PublicKey)
		who := "ssh key " + fp
		k, ok := kr.ssh[fp]
		if !ok {
			return refuse("signed by a key that is not trusted", who)
		}
		if k.name != "" {
			who += " (" + k.name + ")"
		}
		if err := sshsig.Verify(rd, s, k.key, s.HashAlgorithm, SSHNamespace); err != nil {
			return refuse("bad signature: "+err.Error(), who)
		}
		return Signer{Format: "ssh", Key: fp, Identity: k.name}, nil
	}
	return refuse("unsupported signature format (OpenPGP and SSH are supported)", "")
}

// pgpName names the signer of an OpenPGP signature: the entity when the
// library found it or the keyring holds the issuer, else the issuer key id
// the signature carries.
func pgpName(kr openpgp.EntityList, ent *openpgp.Entity, sig string) string {
	if ent != nil {
		s := "openpgp key " + fmt.Sprintf("%X", ent.PrimaryKey.Fingerprint)
		if id := pgpIdentity(ent); id != "" {
			s += " (" + id + ")"
		}
		return s
	}
	blk, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return ""
	}
	p, err := packet.Read(blk.Body)
	if err != nil {
		return ""
	}
	if s, ok := p.(*packet.Signature); ok {
		if s.IssuerKeyId != nil {
			if ks := kr.KeysById(*s.IssuerKeyId); len(ks) > 0 {
				return pgpName(nil, ks[0].Entity, "")
			}
		}
		switch {
		case len(s.IssuerFingerprint) > 0:
			return fmt.Sprintf("openpgp key %X", s.IssuerFingerprint)
		case s.IssuerKeyId != nil:
			return fmt.Sprintf("openpgp key id %016X", *s.IssuerKeyId)
		}
	}
	return ""
}

func pgpIdentity(ent *openpgp.Entity) string {
	if ent == nil {
		return ""
	}
	if _, id := ent.PrimarySelfSignature(); id != nil {
		return id.Name
	}
	names := make([]string, 0, len(ent.Identities))
	for n := range ent.Identities {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		return names[0]
	}
	return ""
}

// VerifyCommit checks the signature of commit: the Signer when a trusted
// key (or the agent's) made it, a *Refusal when not.
func (r *Repo) VerifyCommit(ctx context.Context, commit string, v *Verifier) (Signer, error) {
	if err := v.reload(); err != nil {
		return Signer{}, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	c, err := r.commit(commit)
	if err != nil {
		return Signer{}, err
	}
	return v.check(c)
}

// Unverified lists the commits in (from, to] that need a trusted signature
// and lack one, newest first. A commit needs one when it changes an input:
// a path for which touches is true, whose content differs between from and
// to (a change that a later commit undid is not deployed, so it needs
// none). Every commit of the range counts, including those reached through
// merges; a merge itself changes a path when its content differs from that
// in every parent. exempt, when set, excuses commits (the agent's own, when
// it has no signing key). An empty from, or one missing from the
// repository, checks the whole history of to.
func (r *Repo) Unverified(ctx context.Context, from, to string, touches func(path string) bool, v *Verifier, exempt func(Commit) bool) ([]*Refusal, error) {
	if err := v.reload(); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if from != "" && !r.has(plumbing.NewHash(from)) {
		from = ""
	}
	changed, err := r.changed(from, to)
	if err != nil {
		return nil, err
	}
	var inputs []string
	for _, p := range changed {
		if touches(p) {
			inputs = append(inputs, p)
		}
	}
	if len(inputs) == 0 {
		return nil, nil
	}
	stop := map[plumbing.Hash]bool{}
	if from != "" {
		fc, err := r.commit(from)
		if err != nil {
			return nil, err
		}
		err = object.NewCommitPreorderIter(fc, nil, nil).ForEach(func(c *object.Commit) error {
			stop[c.Hash] = true
			return ctx.Err()
		})
		if err != nil {
			return nil, fmt.Errorf("commits %s..%s: %w", contract.Short(from), contract.Short(to), err)
		}
	}
	tc, err := r.commit(to)
	if err != nil {
		return nil, err
	}
	var out []*Refusal
	err = object.NewCommitIterCTime(tc, stop, nil).ForEach(func(c *object.Commit) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if stop[c.Hash] {
			return nil
		}
		changes, err := changesAny(c, inputs)
		if err != nil || !changes {
			return err
		}
		if exempt != nil && exempt(commitOf(c)) {
			return nil
		}
		_, err = v.check(c)
		var ref *Refusal
		switch {
		case errors.As(err, &ref):
			out = append(out, ref)
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("commits %s..%s: %w", contract.Short(from), contract.Short(to), err)
	}
	return out, nil
}

// changesAny reports whether c gives any of paths a content (or absence)
// that differs from every parent's.
func changesAny(c *object.Commit, paths []string) (bool, error) {
	tree, err := c.Tree()
	if err != nil {
		return false, fmt.Errorf("commit %s: %w", c.Hash, err)
	}
	var parents []*object.Tree
	for _, h := range c.ParentHashes {
		pc, err := c.Parent(len(parents))
		if err != nil {
			return false, fmt.Errorf("commit %s: parent %s: %w", c.Hash, h, err)
		}
		pt, err := pc.Tree()
		if err != nil {
			return false, fmt.Errorf("commit %s: %w", pc.Hash, err)
		}
		parents = append(parents, pt)
	}
	for _, p := range paths {
		mine, err := entryAt(tree, p)
		if err != nil {
			return false, err
		}
		differs := true
		for _, pt := range parents {
			theirs, err := entryAt(pt, p)
			if err != nil {
				return false, err
			}
			if theirs == mine {
				differs = false
				break
			}
		}
		if differs && (len(parents) > 0 || mine != (entry{})) {
			return true, nil
		}
	}
	return false, nil
}

// entryAt is p's entry in t; the zero entry when t has no such path.
func entryAt(t *object.Tree, p string) (entry, error) {
	e, err := t.FindEntry(p)
	switch {
	case errors.Is(err, object.ErrEntryNotFound), errors.Is(err, object.ErrDirectoryNotFound):
		return entry{}, nil
	case err != nil:
		return entry{}, fmt.Errorf("tree %s: %s: %w", t.Hash, p, err)
	}
	return entry{e.Mode, e.Hash}, nil
}
