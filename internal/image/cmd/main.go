// Command image builds the tandem-agent OCI image from static binaries and
// pushes it, with no container engine (make image, make image-push):
//
//	go run ./internal/image/cmd build --out bin/image --version 0.1.0 \
//	    --binary linux/amd64=bin/linux_amd64/tandem-agent --binary linux/arm64=bin/linux_arm64/tandem-agent
//	go run ./internal/image/cmd push --layout bin/image registry.example.com/tandem/tandem-agent:0.1.0
//
// build writes an OCI image layout and prints the index digest (also written
// to <out>.digest); push copies that index, both platforms and their blobs,
// to a registry with the credentials of ~/.docker/config.json (or
// $DOCKER_CONFIG), as crane would, and prints the pushed reference by digest.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/tandem-gitops/tandem/internal/image"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type binaries []image.Binary

func (b *binaries) String() string { return fmt.Sprint(*b) }

func (b *binaries) Set(v string) error {
	plat, file, ok := strings.Cut(v, "=")
	osName, arch, ok2 := strings.Cut(plat, "/")
	if !ok || !ok2 || file == "" {
		return fmt.Errorf("%q: want os/arch=path, e.g. linux/arm64=bin/linux_arm64/tandem-agent", v)
	}
	*b = append(*b, image.Binary{Platform: v1.Platform{OS: osName, Architecture: arch}, Path: file})
	return nil
}

func run(args []string) error {
	if len(args) == 0 {
		return errors.New("usage: image build|push [flags]")
	}
	switch args[0] {
	case "build":
		fs := flag.NewFlagSet("build", flag.ContinueOnError)
		var bins binaries
		fs.Var(&bins, "binary", "os/arch=path of a static agent binary (repeat per platform)")
		out := fs.String("out", "bin/image", "directory of the OCI image layout to write")
		ca := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle to include (Debian's ca-certificates)")
		version := fs.String("version", "dev", "image version (label, annotation and ref name in the layout)")
		source := fs.String("source", "https://github.com/tandem-gitops/tandem", "org.opencontainers.image.source label")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		created := time.Unix(0, 0)
		if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
			sec, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return fmt.Errorf("SOURCE_DATE_EPOCH=%q: %w", s, err)
			}
			created = time.Unix(sec, 0)
		}
		idx, err := image.Build(image.Options{Binaries: bins, CABundle: *ca, Version: *version, Source: *source, Created: created})
		if err != nil {
			return err
		}
		d, err := image.WriteLayout(*out, idx, *version)
		if err != nil {
			return err
		}
		if err := os.WriteFile(strings.TrimSuffix(*out, "/")+".digest", []byte(d.String()+"\n"), 0o644); err != nil {
			return err
		}
		fmt.Printf("wrote OCI layout %s (%d platforms), index %s\n", *out, len(bins), d)
		return nil
	case "push":
		fs := flag.NewFlagSet("push", flag.ContinueOnError)
		dir := fs.String("layout", "bin/image", "OCI image layout written by build")
		insecure := fs.Bool("insecure", false, "allow plain HTTP to the registry")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("push: want one image reference, e.g. registry.example.com/tandem/tandem-agent:0.1.0")
		}
		var nopts []name.Option
		if *insecure {
			nopts = append(nopts, name.Insecure)
		}
		ref, err := name.ParseReference(fs.Arg(0), nopts...)
		if err != nil {
			return err
		}
		idx, err := image.ReadLayout(*dir)
		if err != nil {
			return err
		}
		if err := remote.WriteIndex(ref, idx, remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
			return err
		}
		d, err := idx.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("pushed %s@%s\n", ref.Context().Name(), d)
		return nil
	}
	return fmt.Errorf("unknown command %q: want build or push", args[0])
}
