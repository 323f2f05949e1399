package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `tandem-agent: moves bundles of apps blue/green as one release, from Git.

Usage:
  tandem-agent run [flags]                        watch a repository and promote its bundles
  tandem-agent render <bundle dir> --color C      print what would be applied for color C
  tandem-agent status <repo dir>                  print each bundle's live color and last results
  tandem-agent diff <bundle dir> --kubeconfig K   show what applying the idle color would change (exit 1 if anything)
  tandem-agent version                            print the version

Run "tandem-agent <command> --help" for a command's flags.

Exit status: 0 all good (or nothing to change), 1 Git and the cluster
disagree (status) or applying would change something (diff), 2 an error.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// errUsage marks an error already explained by a usage message.
var errUsage = errors.New("usage")

// run dispatches a subcommand and returns the process exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return codeError
	}
	var err error
	switch args[0] {
	case "run":
		err = runAgent(ctx, args[1:], stdout, stderr)
	case "render":
		err = renderCmd(ctx, args[1:], stdout, stderr)
	case "status":
		err = statusCmd(ctx, args[1:], stdout, stderr)
	case "diff":
		err = diffCmd(ctx, args[1:], stdout, stderr)
	case "render-worker": // hidden: one render for the agent's worker pool (render.ServeWorker)
		err = renderWorkerCmd(ctx, os.Stdin, os.Stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, "tandem-agent", version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "tandem-agent: unknown command %q\n\n%s", args[0], usage)
		return codeError
	}
	if code, ok := exitCode(err, stderr); ok {
		return code
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
		return codeOK
	case errors.Is(err, errUsage):
		return codeError
	default:
		fmt.Fprintln(stderr, "tandem-agent:", err)
		return codeError
	}
}
