package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// RequireTool returns an error saying how to install name (a Debian
// package) when it is not on PATH. Tests that sign commits fail with it;
// they never skip.
func RequireTool(name, debianPackage string) error {
	if _, err := exec.LookPath(name); err != nil {
		return fmt.Errorf("testenv: %s is not installed; install it with `apt-get install -y %s` (.ci/run does)", name, debianPackage)
	}
	return nil
}

// GPG is a throw-away GnuPG home for making OpenPGP keys and signatures
// with the real gpg.
type GPG struct {
	Home string
	// Program is a gpg wrapper for Git's gpg.program: it runs gpg with
	// this home (and, when FakeTime is set, at that time).
	Program string
}

// NewGPG makes a GnuPG home under dir. fakeTime, when not empty, is passed
// as gpg's --faked-system-time (for example "20200101T000000!"), so that
// keys and signatures are made in the past.
func NewGPG(dir, fakeTime string) (*GPG, error) {
	if err := RequireTool("gpg", "gnupg"); err != nil {
		return nil, err
	}
	home := filepath.Join(dir, "gnupg")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, err
	}
	extra := ""
	if fakeTime != "" {
		extra = " --faked-system-time " + fakeTime
	}
	prog := filepath.Join(dir, "gpg-wrapper")
	script := fmt.Sprintf("#!/bin/sh\nexec gpg --homedir %q --batch --pinentry-mode loopback --passphrase ''%s \"$@\"\n", home, extra)
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		return nil, err
	}
	return &GPG{Home: home, Program: prog}, nil
}

// Run runs gpg (through the wrapper) and returns its standard output.
func (g *GPG) Run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, g.Program, args...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("gpg %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// GenKey makes an ed25519 signing key for uid that expires at expire ("never",
// "1y", ...) and returns its fingerprint.
func (g *GPG) GenKey(ctx context.Context, uid, expire string) (string, error) {
	if _, err := g.Run(ctx, "--quick-gen-key", uid, "ed25519", "sign", expire); err != nil {
		return "", err
	}
	out, err := g.Run(ctx, "--with-colons", "--list-keys", uid)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Split(line, ":"); len(f) > 9 && f[0] == "fpr" {
			return f[9], nil
		}
	}
	return "", fmt.Errorf("gpg: no fingerprint for %s in:\n%s", uid, out)
}

// ExportPublic returns the armored public key of fpr.
func (g *GPG) ExportPublic(ctx context.Context, fpr string) (string, error) {
	return g.Run(ctx, "--armor", "--export", fpr)
}

// ExportSecret returns the armored, unencrypted private key of fpr.
func (g *GPG) ExportSecret(ctx context.Context, fpr string) (string, error) {
	return g.Run(ctx, "--armor", "--export-secret-keys", fpr)
}

// Revoke imports the revocation certificate gpg made with key fpr, so that
// ExportPublic afterwards returns the revoked key.
func (g *GPG) Revoke(ctx context.Context, fpr string) error {
	data, err := os.ReadFile(filepath.Join(g.Home, "openpgp-revocs.d", fpr+".rev"))
	if err != nil {
		return fmt.Errorf("gpg: revocation certificate of %s: %w", fpr, err)
	}
	// gpg guards the certificate against accidental import with a leading colon.
	cert := strings.Replace(string(data), ":-----BEGIN PGP PUBLIC KEY BLOCK-----", "-----BEGIN PGP PUBLIC KEY BLOCK-----", 1)
	file := filepath.Join(filepath.Dir(g.Home), fpr+".rev.asc")
	if err := os.WriteFile(file, []byte(cert), 0o600); err != nil {
		return err
	}
	_, err = g.Run(ctx, "--import", file)
	return err
}

// Close stops the gpg-agent this home started.
func (g *GPG) Close() {
	cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.Home)
	_ = cmd.Run()
}

// SigningConfig is the `git -c` arguments that sign commits with key.
func (g *GPG) SigningConfig(key string) []string {
	return []string{"-c", "gpg.format=openpgp", "-c", "gpg.program=" + g.Program, "-c", "user.signingkey=" + key, "-c", "commit.gpgsign=true"}
}

// SSHKey is an ed25519 key pair made with the real ssh-keygen.
type SSHKey struct {
	Private, Public string // file paths
}

// NewSSHKey makes an unencrypted ed25519 key pair at dir/name.
func NewSSHKey(ctx context.Context, dir, name string) (*SSHKey, error) {
	if err := RequireTool("ssh-keygen", "openssh-client"); err != nil {
		return nil, err
	}
	priv := filepath.Join(dir, name)
	out, err := exec.CommandContext(ctx, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name+"@example.com", "-f", priv).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ssh-keygen: %w: %s", err, out)
	}
	return &SSHKey{Private: priv, Public: priv + ".pub"}, nil
}

// SigningConfig is the `git -c` arguments that sign commits with the key
// (gpg.format ssh: ssh-keygen -Y sign in the "git" namespace).
func (k *SSHKey) SigningConfig() []string {
	return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + k.Public, "-c", "commit.gpgsign=true"}
}
