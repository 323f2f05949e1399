# tandem — make help lists the targets.
#
# Everything this Makefile needs comes from the Go module proxy (control-plane
# binaries, staticcheck, kustomize, helm) or Debian's packages (git; gnupg and
# openssh-client for the signed-commit tests). It never
# rewrites go.mod or go.sum: builds run with -mod=readonly.

SHELL        := /bin/bash
GO           ?= go
GOFLAGS      := -mod=readonly -buildvcs=false
export GOFLAGS

# Control-plane binaries for testenv, built from testenv/tools (a separate Go
# module) and cached outside the source tree, keyed by version. testenv reads
# TANDEM_TESTENV_BIN; the versions below match testenv/binaries.go.
TESTENV_KEY  := k8s-v1.37.2_etcd-v3.7.0_kwok-v0.8.0
CACHE_DIR    ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tandem
TESTENV_BIN  ?= $(CACHE_DIR)/testenv/$(TESTENV_KEY)/bin
export TANDEM_TESTENV_BIN := $(TESTENV_BIN)

# Pinned tools (Go module proxy).
STATICCHECK_VERSION := v0.8.2
KUSTOMIZE_VERSION   := v5.8.2
HELM_VERSION        := v3.22.0
TOOLS_BIN    := $(CACHE_DIR)/tools
STATICCHECK  := $(TOOLS_BIN)/staticcheck-$(STATICCHECK_VERSION)
KUSTOMIZE    := $(TOOLS_BIN)/kustomize-$(KUSTOMIZE_VERSION)
HELM         := $(TOOLS_BIN)/helm-$(HELM_VERSION)

VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -s -w -X main.version=$(VERSION)
TEST_TIMEOUT ?= 40m

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: build
build: ## Build the static agent binary bin/tandem-agent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/tandem-agent ./cmd/agent

.PHONY: testenv
testenv: ## Build the control-plane binaries (cached by version and tools go.sum)
	@want=$$(cat testenv/tools/go.mod testenv/tools/go.sum | sha256sum | cut -c1-16); \
	if [ "$$(cat $(TESTENV_BIN)/.complete 2>/dev/null)" = "$$want" ]; then \
		echo "control-plane binaries up to date in $(TESTENV_BIN)"; exit 0; fi; \
	echo "building control-plane binaries into $(TESTENV_BIN) (cold: about 12 minutes on 2 cores)"; \
	mkdir -p $(TESTENV_BIN) && cd testenv/tools && \
	$(GO) build -trimpath -ldflags '-s -w' -o $(TESTENV_BIN)/ \
		k8s.io/kubernetes/cmd/kube-apiserver \
		k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler \
		sigs.k8s.io/kwok/cmd/kwok && \
	$(GO) build -trimpath -ldflags '-s -w' -o $(TESTENV_BIN)/etcd go.etcd.io/etcd/server/v3 && \
	echo "$$want" > $(TESTENV_BIN)/.complete

.PHONY: test
test: testenv $(HELM) ## Run every test (-race), against a real control plane and real Git, then fuzz-smoke
	TANDEM_HELM=$(HELM) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...
	$(MAKE) --no-print-directory fuzz-smoke

# Go fuzz targets, as package:target. `make test` runs each for FUZZ_SMOKE
# (about 40 s in all, plus a one-time instrumented build); `make fuzz` runs
# each for FUZZTIME. New crashers land in <pkg>/testdata/fuzz/<target>/ and
# then run as regression cases in every plain `go test`.
FUZZ_TARGETS := ./render:FuzzParseBundle ./render:FuzzRenderKustomization ./promote:FuzzParseRelease ./promote:FuzzParseTrailers \
                ./gitsync:FuzzWebhook ./gitsync:FuzzTrustedKeys ./internal/redact:FuzzText
FUZZ_SMOKE   ?= 5s
FUZZTIME     ?= 1m
# Minimising each new interesting input may take the default 60 s, during
# which a target runs nothing new (FuzzWebhook sat at 0 execs/s for 55 s).
FUZZ_FLAGS   ?= -fuzzminimizetime 5s

.PHONY: fuzz-smoke
fuzz-smoke: ## Run every fuzz target briefly (FUZZ_SMOKE each, default 5s); part of make test
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZ_SMOKE)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZ_SMOKE) $(FUZZ_FLAGS) $$pkg; done

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 1m): bundle.yaml, kustomizations, release.yaml, trailers, webhook, trusted keys, redaction
	@set -e; for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) $(FUZZ_FLAGS) $$pkg; done

.PHONY: lint
lint: $(STATICCHECK) ## go vet, gofmt check and staticcheck
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(STATICCHECK) ./...

.PHONY: schema
schema: ## Regenerate docs/bundle.schema.json from the bundle.yaml Go types (go generate ./render)
	$(GO) generate ./render

.PHONY: fmt
fmt: ## Format the Go code
	gofmt -w $$(git ls-files '*.go')

$(STATICCHECK):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN)/.staticcheck GOFLAGS= $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS_BIN)/.staticcheck/staticcheck $@

$(KUSTOMIZE):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN)/.kustomize GOFLAGS= $(GO) install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)
	mv $(TOOLS_BIN)/.kustomize/kustomize $@

$(HELM):
	@mkdir -p $(TOOLS_BIN)
	GOBIN=$(TOOLS_BIN)/.helm GOFLAGS= $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS_BIN)/.helm/helm $@

.PHONY: clean
clean: ## Remove build output (not the binary caches)
	rm -rf bin

.PHONY: demo
demo: build testenv ## Run the agent on a local control plane: promote, auto-revert, roll back (examples/shop)
	$(GO) run ./examples/demo --agent bin/tandem-agent

.PHONY: demo-stages
demo-stages: build testenv ## Two control planes, two agents, one branch: a change goes live in staging, then prod; a broken one never reaches prod (examples/stages)
	$(GO) run ./examples/demo-stages --agent bin/tandem-agent

BENCH_PKGS ?= ./render/ ./gitsync/ ./applier/ ./cmd/agent/
# How long the idle agent is sampled per fleet size (the report shows it);
# make bench takes about 10 minutes on 2 shared cores with a minute, plus
# the 1,000-bundle fleet and its floor: 30-60 minutes on 2 busy cores
# (make bench BENCH_FLEET_SIZES=1,10,100 leaves it out).
BENCH_IDLE_WINDOW ?= 60s
BENCH_FLEET_SIZES ?= 1,10,100,1000
.PHONY: bench
bench: testenv $(KUSTOMIZE) $(HELM) ## Run every benchmark and regenerate docs/benchmarks.md (about 1 h on 2 cores; 10 min without 1,000 bundles)
	@set -o pipefail; start=$$(date +%s); \
	KUSTOMIZE=$(KUSTOMIZE) TANDEM_HELM=$(HELM) TANDEM_BENCH_IDLE_WINDOW=$(BENCH_IDLE_WINDOW) TANDEM_BENCH_FLEET_SIZES=$(BENCH_FLEET_SIZES) \
		$(GO) test -run '^$$' -bench . -benchtime 3x -count 1 -timeout 120m $(BENCH_PKGS) | tee bench.out; \
	$(GO) run ./internal/benchreport -o docs/benchmarks.md -elapsed $$(( $$(date +%s) - start ))s < bench.out
	@echo "wrote docs/benchmarks.md"

# Peers that make bench-peers measures tandem against (issue 19): Flux and
# Argo Rollouts, built by internal/peerbench/build-peers.sh from their module
# zips on the Go module proxy (nothing of theirs is kept in this repository)
# and cached outside the tree, keyed by version. Flux v1.10.x does not build
# here (the proxy refuses many of its dependencies).
FLUX_VERSION       := v1.9.6
ROLLOUTS_VERSION   := v1.10.2
ROLLOUTS_TOOLCHAIN := go1.27.3
PEERS_BIN          ?= $(CACHE_DIR)/peers/flux-$(FLUX_VERSION)_rollouts-$(ROLLOUTS_VERSION)
PEERS_SIZES        ?= 1,10,100
PEERS_IDLE_WINDOW  ?= 30s
PEERS_RUNS         ?= 5

.PHONY: peers
peers: ## Build Flux and Argo Rollouts for bench-peers from the Go module proxy (cached; cold: 15-30 min on 2 busy cores)
	FLUX_VERSION=$(FLUX_VERSION) ROLLOUTS_VERSION=$(ROLLOUTS_VERSION) ROLLOUTS_TOOLCHAIN=$(ROLLOUTS_TOOLCHAIN) \
		bash internal/peerbench/build-peers.sh $(PEERS_BIN)

.PHONY: bench-peers
bench-peers: build testenv peers ## Measure tandem beside Flux and Argo Rollouts; update their tables in docs/benchmarks.md (not part of make test)
	$(GO) run ./internal/peerbench -peers $(PEERS_BIN) -agent bin/tandem-agent -o docs/benchmarks.md \
		-runs $(PEERS_RUNS) -sizes $(PEERS_SIZES) -idle-window $(PEERS_IDLE_WINDOW) \
		-toolchains "Flux source-controller and kustomize-controller $(FLUX_VERSION) (built with $$($(GO) env GOVERSION)), Argo Rollouts $(ROLLOUTS_VERSION) (built with $(ROLLOUTS_TOOLCHAIN), which its go.mod needs)"
	@echo "updated docs/benchmarks.md"

# The container image, built without a container engine by internal/image
# (go-containerregistry): one static binary per platform, the CA bundle of
# Debian's ca-certificates, user 65532, entrypoint the agent; written as an OCI
# image layout in bin/image and its index digest in bin/image.digest. Its tag
# is the chart's appVersion, which is the chart's default image.tag.
IMAGE_PLATFORMS ?= linux/amd64 linux/arm64
APP_VERSION  := $(shell sed -n 's/^appVersion: *"\{0,1\}\([^"]*\)"\{0,1\}$$/\1/p' charts/agent/Chart.yaml)
IMAGE_REPO   ?= ghcr.io/tandem-gitops/tandem-agent
IMAGE        ?= $(IMAGE_REPO):$(APP_VERSION)

.PHONY: image
image: ## Build the multi-arch OCI image into bin/image (no Docker needed); prints its index digest
	@set -e; bins=(); for p in $(IMAGE_PLATFORMS); do arch=$${p#*/}; \
		echo "build $$p"; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
			-o bin/linux_$$arch/tandem-agent ./cmd/agent; \
		bins+=(--binary $$p=bin/linux_$$arch/tandem-agent); done; \
	$(GO) run ./internal/image/cmd build --out bin/image --version $(APP_VERSION) "$${bins[@]}"

.PHONY: image-push
image-push: image ## Push bin/image to IMAGE (default ghcr.io/tandem-gitops/tandem-agent:<appVersion>); credentials from ~/.docker/config.json
	$(GO) run ./internal/image/cmd push --layout bin/image $(if $(IMAGE_INSECURE),--insecure) $(IMAGE)
