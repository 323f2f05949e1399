package image_test

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"errors"
	"io"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tandem-gitops/tandem/internal/image"
)

// smallBinaries builds a tiny static Go program for amd64 and arm64, the
// way make image builds the agent (CGO_ENABLED=0, GOARCH per platform).
func smallBinaries(t *testing.T) map[string]string {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte("package main\n\nfunc main() { println(\"tandem\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, arch := range []string{"amd64", "arm64"} {
		bin := filepath.Join(dir, arch, "agent")
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, src)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch, "GOFLAGS=")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build GOARCH=%s: %v\n%s", arch, err, b)
		}
		out[arch] = bin
	}
	return out
}

func caBundle(t *testing.T) string {
	t.Helper()
	const debian = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := os.Stat(debian); err != nil {
		t.Fatalf("%s: %v: install Debian's ca-certificates (apt-get install ca-certificates; .ci/run does)", debian, err)
	}
	return debian
}

// TestBuildPushPull builds the two-platform image, writes it as an OCI
// layout, pushes the layout's index to an in-memory registry and pulls each
// platform back by the pushed tag: user, entrypoint, platform, the binary
// (of the right architecture) and the CA bundle are there, and nothing else.
func TestBuildPushPull(t *testing.T) {
	bins := smallBinaries(t)
	ca := caBundle(t)
	idx, err := image.Build(image.Options{
		Binaries: []image.Binary{
			{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: bins["amd64"]},
			{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Path: bins["arm64"]},
		},
		CABundle: ca, Version: "0.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "image")
	digest, err := image.WriteLayout(dir, idx, "0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	// The same inputs give the same digest (no timestamps of the build).
	again, err := image.Build(image.Options{
		Binaries: []image.Binary{
			{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: bins["amd64"]},
			{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Path: bins["arm64"]},
		},
		CABundle: ca, Version: "0.1.0",
	})
	if err != nil {
		t.Fatal(err)
	}
	if d2, _ := again.Digest(); d2 != digest {
		t.Errorf("rebuild digest %s, first %s: the build is not reproducible", d2, digest)
	}

	fromLayout, err := image.ReadLayout(dir)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New())
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	ref, err := name.ParseReference(u.Host+"/tandem/tandem-agent:0.1.0", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(ref, fromLayout); err != nil {
		t.Fatalf("push: %v", err)
	}

	pulled, err := remote.Index(ref)
	if err != nil {
		t.Fatalf("pull: %v", err)
	}
	if d, _ := pulled.Digest(); d != digest {
		t.Errorf("pulled index %s, built %s", d, digest)
	}
	m, err := pulled.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Manifests) != 2 {
		t.Fatalf("index lists %d manifests, want 2", len(m.Manifests))
	}
	wantMachine := map[string]elf.Machine{"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64}
	for _, arch := range []string{"amd64", "arm64"} {
		t.Run(arch, func(t *testing.T) {
			img, err := remote.Image(ref, remote.WithPlatform(v1.Platform{OS: "linux", Architecture: arch}))
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			if cf.OS != "linux" || cf.Architecture != arch {
				t.Errorf("config platform %s/%s", cf.OS, cf.Architecture)
			}
			if cf.Config.User != "65532:65532" {
				t.Errorf("user %q, want 65532:65532", cf.Config.User)
			}
			if strings.Join(cf.Config.Entrypoint, " ") != "/usr/local/bin/tandem-agent" {
				t.Errorf("entrypoint %q", cf.Config.Entrypoint)
			}
			if v := cf.Config.Labels["org.opencontainers.image.version"]; v != "0.1.0" {
				t.Errorf("version label %q", v)
			}
			files := imageFiles(t, img)
			want := []string{"etc/ssl/certs/ca-certificates.crt", "usr/local/bin/tandem-agent"}
			var got []string
			for n, f := range files {
				if f.hdr.Typeflag == tar.TypeReg {
					got = append(got, n)
				}
				if f.hdr.Uid != 0 || f.hdr.Gid != 0 {
					t.Errorf("%s owned by %d:%d, want root (read-only to the image's user)", n, f.hdr.Uid, f.hdr.Gid)
				}
			}
			if strings.Join(sorted(got), ",") != strings.Join(want, ",") {
				t.Errorf("files %v, want exactly %v", sorted(got), want)
			}
			caData, _ := os.ReadFile(ca)
			if f := files["etc/ssl/certs/ca-certificates.crt"]; f == nil || !bytes.Equal(f.data, caData) {
				t.Errorf("CA bundle missing or not the Debian bundle")
			}
			bin := files["usr/local/bin/tandem-agent"]
			if bin == nil || bin.hdr.Mode&0o111 == 0 {
				t.Fatalf("agent binary missing or not executable")
			}
			ef, err := elf.NewFile(bytes.NewReader(bin.data))
			if err != nil {
				t.Fatal(err)
			}
			if ef.Machine != wantMachine[arch] {
				t.Errorf("binary for %s is %s", arch, ef.Machine)
			}
		})
	}
}

// A binary of the wrong architecture, or a missing CA bundle, is refused
// with an error that says what to fix.
func TestBuildRefusesWrongInputs(t *testing.T) {
	bins := smallBinaries(t)
	_, err := image.Build(image.Options{
		Binaries: []image.Binary{{Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Path: bins["amd64"]}},
		CABundle: caBundle(t),
	})
	if err == nil || !strings.Contains(err.Error(), "GOARCH=arm64") {
		t.Errorf("amd64 binary as arm64: err = %v", err)
	}
	_, err = image.Build(image.Options{
		Binaries: []image.Binary{{Platform: v1.Platform{OS: "linux", Architecture: "amd64"}, Path: bins["amd64"]}},
		CABundle: filepath.Join(t.TempDir(), "none.crt"),
	})
	if err == nil || !strings.Contains(err.Error(), "ca-certificates") {
		t.Errorf("missing CA bundle: err = %v", err)
	}
}

type tarFile struct {
	hdr  *tar.Header
	data []byte
}

func imageFiles(t *testing.T, img v1.Image) map[string]*tarFile {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*tarFile{}
	for _, l := range layers {
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		for {
			h, err := tr.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			data, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[strings.TrimSuffix(h.Name, "/")] = &tarFile{h, data}
		}
		rc.Close()
	}
	return out
}

func sorted(s []string) []string { slices.Sort(s); return s }
