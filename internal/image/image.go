// Package image builds the tandem-agent container image without a container
// engine: one OCI image per platform, each a single layer holding the static
// agent binary and a CA bundle, gathered in a multi-platform index that is
// written as an OCI image layout and pushed to a registry with
// go-containerregistry.
//
// The image holds nothing else: no shell, no package manager, no passwd file.
// It runs as 65532:65532 (the chart's pod securityContext says the same), so a
// process escaping the agent owns no file in it.
package image

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// BinaryPath is the agent binary in the image, and its entrypoint.
	BinaryPath = "/usr/local/bin/tandem-agent"
	// CAPath is the CA bundle in the image: the first file Go's crypto/x509
	// reads on Linux, so no SSL_CERT_FILE is needed.
	CAPath = "/etc/ssl/certs/ca-certificates.crt"
	// User is the image's user and group: the conventional "nonroot" ID.
	User = "65532:65532"
)

// Binary is the agent binary built for one platform.
type Binary struct {
	Platform v1.Platform // OS linux, Architecture amd64 or arm64
	Path     string
}

// Options describe the image.
type Options struct {
	Binaries []Binary
	// CABundle is a PEM file of trusted CA certificates, copied to CAPath.
	CABundle string
	// Version goes into the org.opencontainers.image.version label and annotation.
	Version string
	// Source is the org.opencontainers.image.source label (the repository URL); optional.
	Source string
	// Created is the time written into configs, annotations and file headers;
	// zero means the Unix epoch, so the same inputs always give the same digest.
	Created time.Time
}

// elfMachines are the ELF machines of the architectures the image supports.
var elfMachines = map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}

// Build returns the multi-platform index of the agent image.
func Build(o Options) (v1.ImageIndex, error) {
	if len(o.Binaries) == 0 {
		return nil, errors.New("image: no binaries")
	}
	ca, err := os.ReadFile(o.CABundle)
	if err != nil {
		return nil, fmt.Errorf("image: CA bundle: %w (on Debian: apt-get install ca-certificates)", err)
	}
	if !bytes.Contains(ca, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, fmt.Errorf("image: CA bundle %s holds no PEM certificate", o.CABundle)
	}
	created := o.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	created = created.UTC()
	labels := map[string]string{
		"org.opencontainers.image.title":   "tandem-agent",
		"org.opencontainers.image.version": o.Version,
		"org.opencontainers.image.created": created.Format(time.RFC3339),
	}
	if o.Source != "" {
		labels["org.opencontainers.image.source"] = o.Source
	}
	var idx v1.ImageIndex = empty.Index
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, b := range o.Binaries {
		p := b.Platform
		key := p.OS + "/" + p.Architecture
		if seen[key] {
			return nil, fmt.Errorf("image: two binaries for %s", key)
		}
		seen[key] = true
		bin, err := checkBinary(b)
		if err != nil {
			return nil, err
		}
		layer, err := fileLayer(created, []file{{CAPath, 0o644, ca}, {BinaryPath, 0o755, bin}})
		if err != nil {
			return nil, err
		}
		img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
		if err != nil {
			return nil, err
		}
		img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
		cf, err := img.ConfigFile()
		if err != nil {
			return nil, err
		}
		cf = cf.DeepCopy()
		cf.OS, cf.Architecture, cf.Variant = p.OS, p.Architecture, p.Variant
		cf.Created = v1.Time{Time: created}
		cf.Author = "tandem"
		cf.Config = v1.Config{
			User:       User,
			Entrypoint: []string{BinaryPath},
			Cmd:        []string{"run"},
			Env:        []string{"PATH=/usr/local/bin"},
			WorkingDir: "/",
			Labels:     labels,
		}
		cf.History = []v1.History{{Created: v1.Time{Time: created}, CreatedBy: "tandem internal/image: " + path.Base(BinaryPath) + " and CA bundle", Comment: key}}
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			return nil, err
		}
		pl := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &pl}})
	}
	return mutate.Annotations(idx, map[string]string{
		"org.opencontainers.image.version": o.Version,
		"org.opencontainers.image.created": created.Format(time.RFC3339),
	}).(v1.ImageIndex), nil
}

// checkBinary reads b and refuses it unless it is a static ELF executable of
// b's architecture: a binary built for the wrong GOARCH, or with cgo (it
// would need a dynamic loader the image does not have), fails here rather
// than with "exec format error" or "no such file" in a pod.
func checkBinary(b Binary) ([]byte, error) {
	if b.Platform.OS != "linux" {
		return nil, fmt.Errorf("image: %s: OS %q: only linux", b.Path, b.Platform.OS)
	}
	want, ok := elfMachines[b.Platform.Architecture]
	if !ok {
		return nil, fmt.Errorf("image: %s: architecture %q: only amd64 and arm64", b.Path, b.Platform.Architecture)
	}
	data, err := os.ReadFile(b.Path)
	if err != nil {
		return nil, fmt.Errorf("image: binary: %w", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("image: %s is not an ELF binary: %w", b.Path, err)
	}
	defer f.Close()
	if f.Machine != want {
		return nil, fmt.Errorf("image: %s is built for %s, not %s (GOARCH=%s)", b.Path, f.Machine, want, b.Platform.Architecture)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("image: %s is dynamically linked; build it with CGO_ENABLED=0", b.Path)
		}
	}
	return data, nil
}

type file struct {
	name string
	mode int64
	data []byte
}

// fileLayer is an uncompressed tar of files (owned by root, so the image's
// user cannot change them) and their parent directories, compressed by
// go-containerregistry into a gzip layer.
func fileLayer(mtime time.Time, files []file) (v1.Layer, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	var mkdirs func(d string) error
	mkdirs = func(d string) error {
		if d == "/" || d == "." || dirs[d] {
			return nil
		}
		if err := mkdirs(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d[1:] + "/", Mode: 0o755, ModTime: mtime, Format: tar.FormatPAX})
	}
	for _, f := range files {
		if err := mkdirs(path.Dir(f.name)); err != nil {
			return nil, err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.name[1:], Mode: f.mode, Size: int64(len(f.data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	data := buf.Bytes()
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil },
		tarball.WithMediaType(types.OCILayer))
}

// WriteLayout writes idx as the only entry of a new OCI image layout in dir
// (replacing what was there), named refName (the
// org.opencontainers.image.ref.name annotation, e.g. the tag), and returns
// the index digest.
func WriteLayout(dir string, idx v1.ImageIndex, refName string) (v1.Hash, error) {
	if err := os.RemoveAll(dir); err != nil {
		return v1.Hash{}, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return v1.Hash{}, err
	}
	var opts []layout.Option
	if refName != "" {
		opts = append(opts, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": refName}))
	}
	if err := p.AppendIndex(idx, opts...); err != nil {
		return v1.Hash{}, err
	}
	return idx.Digest()
}

// ReadLayout returns the one index of the OCI image layout in dir (as
// WriteLayout writes it).
func ReadLayout(dir string) (v1.ImageIndex, error) {
	top, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("image layout %s: %w (run make image first)", dir, err)
	}
	m, err := top.IndexManifest()
	if err != nil {
		return nil, err
	}
	if len(m.Manifests) != 1 || !m.Manifests[0].MediaType.IsIndex() {
		return nil, fmt.Errorf("image layout %s: want exactly one image index in index.json, found %d entries", dir, len(m.Manifests))
	}
	return top.ImageIndex(m.Manifests[0].Digest)
}
