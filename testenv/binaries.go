package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Versions of the control-plane binaries, pinned in testenv/tools/go.mod.
// The cache directory is keyed by them, so a version change rebuilds.
const (
	KubernetesVersion = "v1.37.2"
	EtcdVersion       = "v3.7.0"
	KwokVersion       = "v0.8.0"
)

// CacheKey names the binary cache directory for the pinned versions.
const CacheKey = "k8s-" + KubernetesVersion + "_etcd-" + EtcdVersion + "_kwok-" + KwokVersion

// BinDir is where `make testenv` puts the control-plane binaries:
// $TANDEM_TESTENV_BIN if set, else <user cache dir>/tandem/testenv/<CacheKey>/bin.
func BinDir() string {
	if d := os.Getenv("TANDEM_TESTENV_BIN"); d != "" {
		return d
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	return filepath.Join(cache, "tandem", "testenv", CacheKey, "bin")
}

// checkBinaries reports every missing binary with the command that builds them.
func checkBinaries(dir string) error {
	var missing []string
	for _, c := range []Component{Etcd, APIServer, ControllerManager, Scheduler, Kwok} {
		fi, err := os.Stat(filepath.Join(dir, string(c)))
		if err != nil || fi.IsDir() || fi.Mode()&0o111 == 0 {
			missing = append(missing, string(c))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("testenv: missing control-plane binaries in %s: %s; run `make testenv` to build them", dir, strings.Join(missing, ", "))
	}
	return nil
}
