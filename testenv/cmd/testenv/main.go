// Command testenv starts tandem's local control plane for people and the demo.
//
//	go run ./testenv/cmd/testenv up
//
// prints the path of a kubeconfig and keeps the cluster (etcd, kube-apiserver,
// kube-controller-manager, kube-scheduler and kwok with one simulated node)
// running until Ctrl-C or SIGTERM, then stops every process and removes its
// files. Build the binaries first with `make testenv`.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: testenv up [--dir DIR] [--kubeconfig-out FILE]\n\n"+
			"Starts a local Kubernetes control plane with simulated nodes and prints the\n"+
			"kubeconfig path. Ctrl-C stops it and leaves nothing running.\n\n")
		flag.PrintDefaults()
	}
	dir := flag.String("dir", "", "keep the cluster's data and logs here (default: a temp dir, removed on exit)")
	out := flag.String("kubeconfig-out", "", "also copy the kubeconfig to this path")
	if len(os.Args) < 2 || os.Args[1] != "up" {
		flag.Usage()
		os.Exit(2)
	}
	_ = flag.CommandLine.Parse(os.Args[2:])
	if flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	start := time.Now()
	env, err := testenv.Start(ctx, testenv.Options{Dir: *dir})
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
	kubeconfig := env.Kubeconfig
	if *out != "" {
		data, err := os.ReadFile(env.Kubeconfig)
		if err == nil {
			err = os.WriteFile(*out, data, 0o600)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "testenv:", err)
			_ = env.Stop()
			os.Exit(1)
		}
		kubeconfig = *out
	}
	fmt.Fprintf(os.Stderr, "control plane ready in %s; Ctrl-C to stop\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Println(kubeconfig)
	<-ctx.Done()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		os.Exit(1)
	}
}
