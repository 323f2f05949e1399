package gitsync

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/fsnotify/fsnotify"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrAuth means the remote refused the credentials (or none were given).
var ErrAuth = errors.New("gitsync: authentication failed")

// Auth names the credential files. Files are re-read when they change, so a
// rotated Secret needs no restart.
type Auth struct {
	SSHKeyFile, KnownHostsFile, Username, PasswordFile, TokenFile string
}

var scpLike = regexp.MustCompile(`^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9.-]+:[^/]?`)

type kind int

const (
	kindLocal kind = iota
	kindHTTP
	kindSSH
)

// urlKind classifies a remote URL, refusing schemes gitsync does not support:
// https, ssh, scp-style, file and local paths are accepted; plain http only for
// loopback hosts (tests and demos).
func urlKind(raw string) (kind, error) {
	if raw == "" {
		return 0, errors.New("git url: empty")
	}
	if strings.Contains(raw, "::") {
		helper, _, _ := strings.Cut(raw, "::")
		return 0, fmt.Errorf("git url %s::...: transport helpers are refused", redactRefused(helper))
	}
	if strings.HasPrefix(raw, "/") || strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../") {
		return kindLocal, nil
	}
	if u, err := url.Parse(raw); err == nil && u.Scheme != "" && strings.Contains(raw, "://") {
		switch u.Scheme {
		case "https":
			return kindHTTP, nil
		case "http":
			h := u.Hostname()
			if h == "localhost" || (net.ParseIP(h) != nil && net.ParseIP(h).IsLoopback()) {
				return kindHTTP, nil
			}
			return 0, fmt.Errorf("git url %s: plain http is only allowed for loopback hosts; use https", Redact(raw))
		case "ssh":
			return kindSSH, nil
		case "file":
			return kindLocal, nil
		default:
			return 0, fmt.Errorf("git url %s: scheme %q is refused (use https, ssh or a local path)", Redact(raw), u.Scheme)
		}
	}
	if scpLike.MatchString(raw) && !strings.Contains(raw, "://") {
		return kindSSH, nil
	}
	return 0, fmt.Errorf("git url %s: unrecognised form (use https://, ssh://, user@host:path or a local path)", redactRefused(raw))
}

// redactRefused shows a URL that could not be parsed: everything up to the
// last "@" may be credentials written in a form Redact does not recognise.
func redactRefused(raw string) string {
	if i := strings.LastIndex(raw, "@"); i >= 0 {
		return "***" + raw[i:]
	}
	if len(raw) > 40 {
		return raw[:12] + "..."
	}
	return raw
}

func checkURL(raw string) error { _, err := urlKind(raw); return err }

// LocalPath returns the directory of a local repository URL (a path or file://).
func LocalPath(raw string) (string, bool) {
	k, err := urlKind(raw)
	if err != nil || k != kindLocal {
		return "", false
	}
	if strings.HasPrefix(raw, "file://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "", false
		}
		return u.Path, true
	}
	p, err := filepath.Abs(raw)
	if err != nil {
		return "", false
	}
	return p, true
}

var userInfoRe = regexp.MustCompile(`([A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]*@`)

// Redact removes user-info (user names, passwords, tokens) from every URL in s.
func Redact(s string) string { return userInfoRe.ReplaceAllString(s, "${1}") }

type authSource struct {
	kind kind
	a    Auth
	user string // from an ssh URL

	mu      sync.Mutex
	cached  transport.AuthMethod
	secrets []string
	w       *fsnotify.Watcher
}

func newAuthSource(rawURL string, a Auth) (*authSource, error) {
	k, err := urlKind(rawURL)
	if err != nil {
		return nil, err
	}
	s := &authSource{kind: k, a: a, user: "git"}
	if k == kindSSH {
		if a.SSHKeyFile == "" {
			return nil, fmt.Errorf("git auth %s: ssh needs --git-ssh-key-file", Redact(rawURL))
		}
		if a.KnownHostsFile == "" {
			return nil, fmt.Errorf("git auth %s: ssh needs --git-known-hosts-file (no trust on first use)", Redact(rawURL))
		}
		if u, err := url.Parse(rawURL); err == nil && u.Scheme == "ssh" && u.User != nil {
			s.user = u.User.Username()
		} else if i := strings.Index(rawURL, "@"); i > 0 && !strings.Contains(rawURL, "://") {
			s.user = rawURL[:i]
		}
	}
	if k == kindHTTP && a.PasswordFile != "" && a.TokenFile != "" {
		return nil, errors.New("git auth: set a password file or a token file, not both")
	}
	if _, err := s.method(); err != nil {
		return nil, err
	}
	// Watch the credential files' directories: Secret volumes swap a symlink.
	if w, err := fsnotify.NewWatcher(); err == nil {
		s.w = w
		dirs := map[string]bool{}
		for _, f := range []string{a.SSHKeyFile, a.KnownHostsFile, a.PasswordFile, a.TokenFile} {
			if f != "" {
				dirs[filepath.Dir(f)] = true
			}
		}
		for d := range dirs {
			_ = w.Add(d)
		}
		go func() {
			for {
				select {
				case _, ok := <-w.Events:
					if !ok {
						return
					}
					s.invalidate()
				case _, ok := <-w.Errors:
					if !ok {
						return
					}
					s.invalidate()
				}
			}
		}()
	}
	return s, nil
}

func (s *authSource) invalidate() {
	s.mu.Lock()
	s.cached = nil
	s.mu.Unlock()
}

func (s *authSource) close() error {
	if s.w != nil {
		return s.w.Close()
	}
	return nil
}

// scrub replaces every known secret in msg.
func (s *authSource) scrub(msg string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sec := range s.secrets {
		if len(sec) >= 4 {
			msg = strings.ReplaceAll(msg, sec, "[redacted]")
		}
	}
	return msg
}

func readSecret(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("git credentials %s: %w", file, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// method returns the transport auth, re-reading files after a change.
func (s *authSource) method() (transport.AuthMethod, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cached != nil {
		return s.cached, nil
	}
	switch s.kind {
	case kindHTTP:
		var secret string
		var err error
		switch {
		case s.a.TokenFile != "":
			secret, err = readSecret(s.a.TokenFile)
		case s.a.PasswordFile != "":
			secret, err = readSecret(s.a.PasswordFile)
		default:
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		user := s.a.Username
		if user == "" {
			user = "x-access-token"
		}
		s.secrets = append(s.secrets, secret)
		s.cached = &githttp.BasicAuth{Username: user, Password: secret}
	case kindSSH:
		pk, err := gitssh.NewPublicKeysFromFile(s.user, s.a.SSHKeyFile, "")
		if err != nil {
			return nil, fmt.Errorf("git ssh key %s: %w", s.a.SSHKeyFile, err)
		}
		cb, err := knownhosts.New(s.a.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("git known_hosts %s: %w", s.a.KnownHostsFile, err)
		}
		pk.HostKeyCallback = func(host string, remote net.Addr, key ssh.PublicKey) error {
			if err := cb(host, remote, key); err != nil {
				var ke *knownhosts.KeyError
				if errors.As(err, &ke) && len(ke.Want) == 0 {
					return fmt.Errorf("host %s is not in known_hosts %s (add it with ssh-keyscan and verify the fingerprint)", host, s.a.KnownHostsFile)
				}
				if errors.As(err, &ke) {
					return fmt.Errorf("host key mismatch for %s: the key offered is not the one in known_hosts %s", host, s.a.KnownHostsFile)
				}
				return err
			}
			return nil
		}
		s.cached = pk
	default:
		return nil, nil
	}
	return s.cached, nil
}

func classifyAuth(wrapped, raw error) error {
	if errors.Is(raw, transport.ErrAuthenticationRequired) || errors.Is(raw, transport.ErrAuthorizationFailed) ||
		strings.Contains(raw.Error(), "unable to authenticate") {
		return fmt.Errorf("%w: %v", ErrAuth, wrapped)
	}
	return wrapped
}
