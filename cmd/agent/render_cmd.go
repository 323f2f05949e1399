package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/tandem-gitops/tandem/render"
)

// renderCmd is `tandem-agent render <bundle dir> --color C [--live C]`: it
// prints exactly what the agent would apply for color C (shared objects,
// colored objects and stable twins selecting the live color), like
// `kustomize build`. Bad input is a one-line error and exit status 1.
func renderCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-agent render", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: tandem-agent render <bundle dir> --color C [--live C] [--commit SHA] [--allow-remote-bases] [--allow-remote-charts] [--chart-credentials-file F] [--chart-cache DIR] [--kube-version V]")
		fs.PrintDefaults()
	}
	color := fs.String("color", "", "color to render (default: the bundle's first color)")
	live := fs.String("live", "", "color the stable twins select (default: --color)")
	commit := fs.String("commit", "", "source commit to record in tandem.dev/commit")
	remote := fs.Bool("allow-remote-bases", false, "let kustomizations load remote bases")
	var charts chartConfig
	charts.register(fs, true)
	fs.StringVar(&charts.KubeVersion, "kube-version", "", "Kubernetes version charts see in .Capabilities (default: the Helm SDK's default)")
	positional, err := parseInterleaved(fs, args)
	if err != nil {
		return errUsage
	}
	if len(positional) != 1 {
		fs.Usage()
		return errUsage
	}
	root, b, err := render.LoadBundleDir(positional[0])
	if err != nil {
		return err
	}
	if *color == "" {
		*color = b.Spec.Colors[0]
	}
	o := render.Options{RepoRoot: root, Color: *color, Live: *live, Commit: *commit, AllowRemoteBases: *remote}
	charts.apply(&o)
	res, err := render.Render(context.Background(), b, o)
	if err != nil {
		return err
	}
	// Check Jobs last: they are created per check run, not applied.
	return render.WriteYAML(stdout, res.Shared, res.Objects, res.Twins, render.SortedCheckJobs(res.CheckJobs))
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
