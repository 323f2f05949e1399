#!/usr/bin/env bash
# build-peers.sh DEST: build the peer controllers that `make bench-peers` measures
# tandem against, from their Go module zips on the module proxy, into DEST
# (a cache directory keyed by the versions below; a finished build leaves
# DEST/.complete and is not redone). Nothing of the peers is kept in this
# repository: the module proxy is the only source.
#
# The builds are CPU heavy (each binary is ~170-200 MB, 2-6 minutes on 2
# cores): they run under nice -n 19 with go build -p 1.
set -euo pipefail

FLUX_VERSION=${FLUX_VERSION:-v1.9.6}
FLUX_ARTIFACT_VERSION=${FLUX_ARTIFACT_VERSION:-v0.18.1} # the proxy refuses v0.18.2 and v0.18.3
ROLLOUTS_VERSION=${ROLLOUTS_VERSION:-v1.10.2}
ROLLOUTS_TOOLCHAIN=${ROLLOUTS_TOOLCHAIN:-go1.27.3} # its go.mod asks for Go 1.26.10

dest=${1:?usage: build-peers.sh DEST}
want="flux-$FLUX_VERSION artifact-$FLUX_ARTIFACT_VERSION rollouts-$ROLLOUTS_VERSION toolchain-$ROLLOUTS_TOOLCHAIN"
if [ "$(cat "$dest/.complete" 2>/dev/null)" = "$want" ]; then
	echo "peer controllers up to date in $dest"
	exit 0
fi
mkdir -p "$dest"
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT

# moddir MODULE@VERSION [TOOLCHAIN]: download the module from the proxy and
# print its directory in the module cache. A module whose go line is newer
# than the local Go needs the toolchain it asks for, or go refuses it.
moddir() {
	local dir
	dir=$(GOFLAGS= GOTOOLCHAIN=${2:-local} go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
	[ -n "$dir" ] || { echo "build-peers.sh: go mod download $1 gave no directory" >&2; exit 1; }
	echo "$dir"
}

# unpack MODULE@VERSION NAME [TOOLCHAIN]: copy the module's source into
# $work/NAME (writable, so go.mod can be edited) and print that path.
unpack() {
	local dir
	dir=$(moddir "$1" "${3:-}")
	cp -r "$dir" "$work/$2"
	chmod -R u+w "$work/$2"
	echo "$work/$2"
}

build() { # build DIR OUT PKG [go build flags...]
	local dir=$1 out=$2 pkg=$3
	shift 3
	echo "building $out from $(basename "$dir") (nice -n 19, -p 1; a few minutes)"
	(cd "$dir" && nice -n 19 go build -p 1 -trimpath -ldflags '-s -w' "$@" -o "$dest/$out" "$pkg")
}

# Flux: the zips have no ./api folder; require the published api module
# instead of the replace, then let go fetch the dependencies (GOFLAGS=-mod=mod).
for c in source-controller kustomize-controller; do
	if [ ! -x "$dest/$c" ]; then
		d=$(unpack "github.com/fluxcd/$c@$FLUX_VERSION" "$c")
		(cd "$d" && go mod edit -dropreplace "github.com/fluxcd/$c/api" \
			-require "github.com/fluxcd/$c/api@$FLUX_VERSION")
		if [ "$c" = source-controller ]; then
			(cd "$d" && go mod edit -require "github.com/fluxcd/pkg/artifact@$FLUX_ARTIFACT_VERSION")
		fi
		GOFLAGS=-mod=mod GOTOOLCHAIN=local build "$d" "$c" .
	fi
	mkdir -p "$dest/crds/$c"
	d=$(moddir "github.com/fluxcd/$c@$FLUX_VERSION")
	cp "$d"/config/crd/bases/*.yaml "$dest/crds/$c/"
done

# Argo Rollouts: go install is refused (replace directives); build from the
# zip with the toolchain its go.mod asks for (fetched from the proxy).
if [ ! -x "$dest/rollouts-controller" ]; then
	d=$(unpack "github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION" argo-rollouts "$ROLLOUTS_TOOLCHAIN")
	GOFLAGS=-mod=mod GOTOOLCHAIN=$ROLLOUTS_TOOLCHAIN build "$d" rollouts-controller ./cmd/rollouts-controller
fi
mkdir -p "$dest/crds/argo-rollouts"
d=$(moddir "github.com/argoproj/argo-rollouts@$ROLLOUTS_VERSION" "$ROLLOUTS_TOOLCHAIN")
cp "$d"/manifests/crds/*-crd.yaml "$dest/crds/argo-rollouts/" # not its kustomization.yaml

echo "$want" > "$dest/.complete"
echo "peer controllers built into $dest"
