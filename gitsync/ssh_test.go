package gitsync

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// sshServer serves git-upload-pack/git-receive-pack for repositories under
// root on 127.0.0.1, with the given host key, accepting any client key.
func sshServer(t *testing.T, hostKey ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(ssh.ConnMetadata, ssh.PublicKey) (*ssh.Permissions, error) { return nil, nil }}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				_, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					c.Close()
					return
				}
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					ch, creqs, err := nc.Accept()
					if err != nil {
						continue
					}
					go func() {
						defer ch.Close()
						for req := range creqs {
							if req.Type != "exec" || len(req.Payload) < 4 {
								req.Reply(false, nil)
								continue
							}
							cmdline := string(req.Payload[4:])
							prog, arg, _ := strings.Cut(cmdline, " ")
							if prog != "git-upload-pack" && prog != "git-receive-pack" {
								req.Reply(false, nil)
								continue
							}
							req.Reply(true, nil)
							cmd := exec.Command(prog, strings.Trim(arg, "'"))
							cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
							status := uint32(0)
							if err := cmd.Run(); err != nil {
								status = 1
							}
							ch.SendRequest("exit-status", false, ssh.Marshal(struct{ S uint32 }{status}))
							return
						}
					}()
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func newSigner(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(blk)
}

func TestSSHHostKeyChecking(t *testing.T) {
	rem, c1 := newRemote(t)
	host, _ := newSigner(t)
	other, _ := newSigner(t)
	_, clientPEM := newSigner(t)
	addr := sshServer(t, host)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id")
	if err := os.WriteFile(keyFile, clientPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name string, pub ssh.PublicKey, hostname string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(knownhosts.Line([]string{knownhosts.Normalize(hostname)}, pub)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("kh-good", host.PublicKey(), addr)
	wrong := write("kh-wrong", other.PublicKey(), addr)
	unknown := write("kh-unknown", host.PublicKey(), "example.com:22")
	url := "ssh://git@" + addr + rem.Path

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name, kh, wantErr string
	}{
		{"mismatch", wrong, "host key mismatch"},
		{"unknown host", unknown, "not in known_hosts"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := Open(ctx, Options{URL: url, CacheDir: filepath.Join(t.TempDir(), "c"), Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: tc.kh}})
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			_, err = r.Poll(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	t.Run("good", func(t *testing.T) {
		r, err := Open(ctx, Options{URL: url, CacheDir: filepath.Join(t.TempDir(), "c"), Auth: Auth{SSHKeyFile: keyFile, KnownHostsFile: good}})
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		p, err := r.Poll(ctx)
		if err != nil || p.Tip != c1 {
			t.Fatalf("poll = %+v, %v", p, err)
		}
		w, err := r.Write(ctx, func(ctx context.Context, tr *Tree) (string, error) { return "ssh", tr.WriteFile("s", []byte("s")) })
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := rem.Head(); h != w.Commit {
			t.Fatalf("head %s want %s", h, w.Commit)
		}
	})
}

func TestWatchLocalWakesOnPush(t *testing.T) {
	rem, _ := newRemote(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	woke := make(chan struct{}, 100)
	errc := make(chan error, 1)
	go func() { errc <- WatchLocal(ctx, rem.Path, func() { woke <- struct{}{} }) }()
	time.Sleep(200 * time.Millisecond)
	if _, err := rem.Commit(map[string]string{"w": "w"}, "w"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-woke:
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up after a push")
	}
}
