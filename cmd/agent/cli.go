package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Exit codes of every subcommand.
const (
	codeOK     = 0 // all good, or nothing to change
	codeChange = 1 // Git and the cluster disagree, or a change is pending
	codeError  = 2 // an error: bad flags, bad input, a failure
)

// errHelp is --help: the usage went to stdout, exit 0.
var errHelp = errors.New("help")

// parseCommand parses a subcommand's flags and positional arguments, in
// any order. --help prints the usage to stdout (errHelp); a bad flag prints
// the error and the usage to stderr (errUsage). usage is the first line.
func parseCommand(fs *flag.FlagSet, usage string, args []string, stdout, stderr io.Writer) ([]string, error) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	printUsage := func(w io.Writer) {
		fmt.Fprintln(w, usage)
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
	positional, err := parseInterleaved(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		printUsage(stdout)
		return nil, errHelp
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		printUsage(stderr)
		return nil, errUsage
	}
	return positional, nil
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("render dir --color green" and "render --color green dir").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for len(args) > 0 {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		if args[0] == "--" {
			positional = append(positional, args[1:]...)
			break
		}
		if strings.HasPrefix(args[0], "-") {
			return nil, errors.New("unexpected flag " + args[0])
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	return positional, nil
}

// kubeFlags are the cluster flags every subcommand that reads the cluster
// takes, with client-go's loading rules behind them.
type kubeFlags struct {
	kubeconfig, context string
}

// register adds --kubeconfig and --context to fs.
func (k *kubeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&k.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config, else the in-cluster configuration)")
	fs.StringVar(&k.context, "context", "", "kubeconfig context to use (default: the current context)")
}

// set reports whether either flag was given.
func (k kubeFlags) set() bool { return k.kubeconfig != "" || k.context != "" }

// restConfig loads the cluster configuration by client-go's rules:
// --kubeconfig, else $KUBECONFIG, else ~/.kube/config, else in-cluster.
func (k kubeFlags) restConfig() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules,
		&clientcmd.ConfigOverrides{CurrentContext: k.context}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes configuration: %w", err)
	}
	cfg.UserAgent = "tandem-agent/" + version
	return cfg, nil
}
