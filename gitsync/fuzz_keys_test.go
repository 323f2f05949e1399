package gitsync

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzTrustedKeys feeds --trusted-keys file contents to the keyring
// parser: no panic, every error names the file, and a file it accepts
// adds at least one key.
func FuzzTrustedKeys(f *testing.F) {
	f.Add("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice\n")
	f.Add("alice@example.com namespaces=\"git\" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl\n")
	f.Add("alice valid-before=2020 ssh-ed25519 AAAA\n# comment\n\n")
	f.Add("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----\n")
	f.Fuzz(func(t *testing.T, data string) {
		file := filepath.Join(t.TempDir(), "keys")
		if err := os.WriteFile(file, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		kr := keyring{agent: map[string]bool{}, ssh: map[string]sshKey{}}
		err := kr.load(file)
		if err != nil {
			if !strings.Contains(err.Error(), file) {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		if len(kr.ssh)+len(kr.pgp) == 0 {
			t.Fatalf("accepted %q with no key", data)
		}
	})
}
