package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/tandem-gitops/tandem/applier"
	"github.com/tandem-gitops/tandem/render"
)

// exitError ends a command with a given exit status; err, when set, is
// printed first.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// errDiffers is diff's exit status 1: applying would change something.
var errDiffers = &exitError{code: 1}

// diffCmd is `tandem-agent diff <bundle dir> --kubeconfig K`: what applying
// the bundle's render for the idle color (and its shared objects) would
// change in the live cluster. Each object is dry-run with server-side apply
// as the agent applies it; the command only reads and dry-runs, it never
// writes. Exit status: 0 nothing would change, 1 something would, 2 error.
func diffCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("tandem-agent diff", flag.ContinueOnError)
	var kube kubeFlags
	kube.register(fs)
	color := fs.String("color", "", "color to diff (default: the idle color, the one the stable Services do not select)")
	commit := fs.String("commit", "", "commit to record in tandem.dev/commit (default: the one the color runs, so only content changes show)")
	remote := fs.Bool("allow-remote-bases", false, "let kustomizations load remote bases")
	var charts chartConfig
	charts.register(fs, true)
	const usage = "usage: tandem-agent diff <bundle dir> [--kubeconfig FILE] [--context NAME] [--color C] [--commit SHA] [--allow-remote-bases] [--allow-remote-charts] [--chart-credentials-file F] [--chart-cache DIR]\n" +
		"exit status: 0 nothing would change, 1 something would, 2 error"
	positional, err := parseCommand(fs, usage, args, stdout, stderr)
	if err != nil {
		return err
	}
	if len(positional) != 1 {
		fmt.Fprintln(stderr, usage)
		return errUsage
	}
	fail := func(err error) error { return &exitError{code: 2, err: err} }
	root, b, err := render.LoadBundleDir(positional[0])
	if err != nil {
		return fail(err)
	}
	cfg, err := kube.restConfig()
	if err != nil {
		return fail(err)
	}
	ap, err := applier.New(cfg, applier.Options{})
	if err != nil {
		return fail(err)
	}
	obs, err := ap.Observe(ctx, b.Spec.Namespace, b.Name)
	if err != nil {
		return fail(fmt.Errorf("bundle %s: observe cluster: %w", b.Name, err))
	}
	if *color == "" {
		*color = idleColor(b.Spec.Colors, obs.Live)
	} else if *color != b.Spec.Colors[0] && *color != b.Spec.Colors[1] {
		return fail(fmt.Errorf("--color %q: bundle %s has colors %s and %s", *color, b.Name, b.Spec.Colors[0], b.Spec.Colors[1]))
	}
	if *commit == "" {
		*commit = obs.Colors[*color].Commit
	}
	o := render.Options{RepoRoot: root, Color: *color, Live: obs.Live, Commit: *commit, AllowRemoteBases: *remote}
	charts.apply(&o)
	if o.KubeVersion, o.APIVersions, err = clusterCapabilities(ctx, cfg); err != nil {
		return fail(err)
	}
	res, err := render.Render(ctx, b, o)
	if err != nil {
		return fail(err)
	}
	var total applier.Diff
	for _, set := range []applier.Set{
		{Bundle: b.Name, Namespace: b.Spec.Namespace, Objects: res.Shared, Adopt: b.Spec.Adopt},
		{Bundle: b.Name, Color: *color, Namespace: b.Spec.Namespace, Objects: res.Objects, Adopt: b.Spec.Adopt},
	} {
		if set.Color == "" && len(set.Objects) == 0 {
			continue
		}
		d, err := ap.Diff(ctx, set)
		if err != nil {
			return fail(fmt.Errorf("bundle %s: %w", b.Name, err))
		}
		total.Objects = append(total.Objects, d.Objects...)
	}
	for _, od := range total.Objects {
		if od.Action == applier.Unchanged {
			continue
		}
		if err := writeObjectDiff(stdout, od); err != nil {
			return fail(err)
		}
	}
	live := obs.Live
	if live == "" {
		live = "none"
	}
	fmt.Fprintf(stdout, "bundle %s, color %s (live: %s): %d created, %d changed, %d pruned, %d unchanged\n", b.Name, *color, live,
		total.Count(applier.Created), total.Count(applier.Configured), total.Count(applier.Pruned), total.Count(applier.Unchanged))
	if total.Changed() {
		return errDiffers
	}
	return nil
}

// idleColor is the color the stable Services do not select (the first
// color when nothing is live).
func idleColor(colors [2]string, live string) string {
	if live == colors[0] {
		return colors[1]
	}
	return colors[0]
}

// writeObjectDiff prints one object's change as a unified diff of its
// sanitised YAML, live against after the apply.
func writeObjectDiff(w io.Writer, od applier.ObjectDiff) error {
	before, err := toYAML(od.Live)
	if err != nil {
		return err
	}
	after, err := toYAML(od.Merged)
	if err != nil {
		return err
	}
	what := map[applier.Action]string{applier.Created: "created", applier.Configured: "changed", applier.Pruned: "pruned"}[od.Action]
	fmt.Fprintf(w, "=== %s: %s\n", od.Object, what)
	return difflib.WriteUnifiedDiff(w, difflib.UnifiedDiff{
		A: difflib.SplitLines(before), B: difflib.SplitLines(after),
		FromFile: "live/" + od.Object.String(), ToFile: "after/" + od.Object.String(), Context: 3,
	})
}

func toYAML(u *unstructured.Unstructured) (string, error) {
	if u == nil {
		return "", nil
	}
	data, err := yaml.Marshal(u.Object)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", u.GetKind(), u.GetName(), err)
	}
	return string(data), nil
}

// exitCode turns a command's error into its exit status, printing it
// unless it is only a status.
func exitCode(err error, stderr io.Writer) (int, bool) {
	var ee *exitError
	if !errors.As(err, &ee) {
		return 0, false
	}
	if ee.err != nil {
		fmt.Fprintln(stderr, "tandem-agent:", ee.err)
	}
	return ee.code, true
}
