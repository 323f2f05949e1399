package main

import (
	_ "github.com/fsnotify/fsnotify"
	_ "github.com/go-git/go-git/v5"
	_ "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	_ "github.com/prometheus/client_golang/prometheus/promhttp"
	_ "github.com/rs/zerolog"
	_ "golang.org/x/crypto/ssh"
	_ "k8s.io/client-go/dynamic"
	_ "k8s.io/client-go/tools/leaderelection"
	_ "k8s.io/client-go/restmapper"
	_ "sigs.k8s.io/cli-utils/pkg/kstatus/status"
	_ "sigs.k8s.io/kustomize/api/krusty"
	_ "sigs.k8s.io/yaml"
)

func main() {}
