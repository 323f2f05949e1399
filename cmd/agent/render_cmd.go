package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/tandem-gitops/tandem/render"
)

// renderCmd is `tandem-agent render <bundle dir> --color C [--live C]`: it
// prints exactly what the agent would apply for color C (shared objects,
// colored objects and stable twins selecting the live color), like
// `kustomize build`. Bad input is a one-line error and exit status 1.
func renderCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-agent render", flag.ContinueOnError)
	color := fs.String("color", "", "color to render (default: the bundle's first color)")
	live := fs.String("live", "", "color the stable twins select (default: --color)")
	commit := fs.String("commit", "", "source commit to record in tandem.dev/commit")
	remote := fs.Bool("allow-remote-bases", false, "let kustomizations load remote bases")
	var charts chartConfig
	charts.register(fs, true)
	fs.StringVar(&charts.KubeVersion, "kube-version", "", "Kubernetes version charts see in .Capabilities (default: the Helm SDK's default)")
	const usage = "usage: tandem-agent render <bundle dir> [--color C] [--live C] [--commit SHA] [--allow-remote-bases] [--allow-remote-charts] [--chart-credentials-file F] [--chart-cache DIR] [--kube-version V]"
	positional, err := parseCommand(fs, usage, args, stdout, stderr)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		fmt.Fprintf(stderr, "%s\n", usage)
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
	res, err := render.Render(ctx, b, o)
	if err != nil {
		return err
	}
	// Check Jobs last: they are created per check run, not applied.
	return render.WriteYAML(stdout, res.Shared, res.Objects, res.Twins, render.SortedCheckJobs(res.CheckJobs))
}
