package fleet

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/tandem-gitops/tandem/gitsync"
	"github.com/tandem-gitops/tandem/internal/yamlguard"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
)

// ReleaseFile is the agent's record in each bundle directory.
const ReleaseFile = "release.yaml"

// ReleasePath is the path of b's release.yaml in the repository.
func ReleasePath(b *render.Bundle) string {
	return path.Join(strings.TrimSuffix(b.Dir, "/"), ReleaseFile)
}

// Inputs are the files a bundle's release depends on: its directory and
// every file its render read elsewhere (bases, components, patches). Its
// release.yaml is the agent's own record and never an input.
type Inputs struct {
	dir, release string
	read         gitsync.Paths
}

// InputsOf are b's inputs, given what its render read.
func InputsOf(b *render.Bundle, read gitsync.Paths) Inputs {
	return Inputs{dir: strings.TrimSuffix(b.Dir, "/") + "/", release: ReleasePath(b), read: read}
}

// Match reports whether p is an input (release.yaml is not).
func (in Inputs) Match(p string) bool {
	return p != in.release && (gitsync.Paths{in.dir}.Match(p) || in.read.Match(p))
}

// Paths are the inputs as gitsync.Paths (the bundle directory first; it
// includes release.yaml, which callers exclude by name).
func (in Inputs) Paths() gitsync.Paths {
	return append(gitsync.Paths{in.dir}, in.read...)
}

// Release is the release.yaml file of a bundle.
func (in Inputs) Release() string { return in.release }

// MaxReleaseBytes bounds release.yaml; the agent's own stays far below.
const MaxReleaseBytes = 1 << 20

// ReadRelease parses b's release.yaml in the checkout dir; nil when there is
// none. It vets the file first (VetRelease), so no caller can skip that.
func ReadRelease(dir string, b *render.Bundle) (*promote.Release, error) {
	if err := VetRelease(dir, b); err != nil {
		return nil, err
	}
	file := ReleasePath(b)
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	rel, err := promote.ParseRelease(file, data, b.Spec.Colors)
	if err == nil && rel.Bundle != b.Name {
		return nil, fmt.Errorf("%s: bundle: %q is not this bundle (%q)", file, rel.Bundle, b.Name)
	}
	return rel, err
}

// VetRelease refuses a release.yaml that is not a plain file of the
// checkout: a symlink (to /dev/zero, a credential file, anything outside
// the repository), a directory, an oversized file or several YAML
// documents. Without this check it would be read unbounded.
func VetRelease(dir string, b *render.Bundle) error {
	file := ReleasePath(b)
	fi, err := os.Lstat(filepath.Join(dir, filepath.FromSlash(file)))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: must be a regular file, not %s", file, fi.Mode().Type())
	}
	if fi.Size() > MaxReleaseBytes {
		return fmt.Errorf("%s: file is %d bytes, larger than the %d byte limit", file, fi.Size(), MaxReleaseBytes)
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(file)))
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	if err := yamlguard.Check(data); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}

// LiveCommit is the commit b's release.yaml in dir says is live ("": none).
func LiveCommit(dir string, b *render.Bundle) (string, error) {
	rel, err := ReadRelease(dir, b)
	if err != nil || rel == nil || rel.Live == "" {
		return "", err
	}
	return rel.Colors[rel.Live].Commit, nil
}
