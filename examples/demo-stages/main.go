// Command demo-stages is `make demo-stages`: staging, then prod, from one
// branch, on two real local control planes with one agent each.
//
// It starts two control planes (testenv), creates a Git remote holding
// examples/stages (a shared base, a staging and a prod bundle; prod lists
// staging in spec.after), runs one bin/tandem-agent per cluster
// (--bundles shop-staging, --bundles shop-prod) and plays:
//
//  1. first release: staging, then prod;
//  2. a base change (client and server v2): staging promotes it and soaks;
//     prod waits ("waiting for shop-staging"), then releases it;
//  3. a broken base change (a server image that does not exist): staging
//     reverts it; prod's API server never shows the broken image.
//
// It exits 0 when every step behaved, and leaves nothing running.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-gitops/tandem/testenv"
)

func main() {
	agentBin := flag.String("agent", "bin/tandem-agent", "the tandem-agent binary")
	example := flag.String("example", "examples/stages", "the repository layout to ship")
	keep := flag.Bool("keep", false, "keep the work directory (logs, remote) after the demo")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *agentBin, *example, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
}

type demo struct {
	agentBin      string
	remote, clone string
	prod          *kubernetes.Clientset
	prodAgent     *testenv.Agent
}

func run(ctx context.Context, agentBin, example string, keep bool) (err error) {
	if agentBin, err = filepath.Abs(agentBin); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tandem-demo-stages-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}
	step("starting two local control planes: staging and prod")
	var envs [2]*testenv.Env
	for i, name := range []string{"staging", "prod"} {
		start := time.Now()
		if envs[i], err = testenv.Start(ctx, testenv.Options{}); err != nil {
			return err
		}
		defer envs[i].Stop()
		fmt.Printf("%-8s ready in %s; kubeconfig %s\n", name, time.Since(start).Round(100*time.Millisecond), envs[i].Kubeconfig)
	}
	d := &demo{agentBin: agentBin, remote: filepath.Join(work, "remote.git"), clone: filepath.Join(work, "dev")}
	if d.prod, err = envs[1].Client(); err != nil {
		return err
	}
	step("creating a Git remote with examples/stages: apps/shop/base, bundles/shop-staging, bundles/shop-prod")
	if err := d.seed(ctx, example); err != nil {
		return err
	}
	step("starting one tandem-agent per cluster, on the same branch")
	for i, name := range []string{"shop-staging", "shop-prod"} {
		a, err := testenv.StartAgent(agentBin, []string{"run", "--repo", "file://" + d.remote, "--kubeconfig", envs[i].Kubeconfig,
			"--bundles", name, "--git-author", "tandem-" + strings.TrimPrefix(name, "shop-") + " <tandem@localhost>",
			"--interval", "1s", "--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(work, name)}, filepath.Join(work, name+".log"))
		if err != nil {
			return err
		}
		fmt.Printf("agent for %s on the %s cluster\n", name, []string{"staging", "prod"}[i])
		d.prodAgent = a
		defer func() {
			if err != nil {
				fmt.Fprintf(os.Stderr, "--- %s agent log\n%s\n", name, a.LogTail())
			}
			_ = a.Stop(10 * time.Second)
		}()
	}
	if err := d.play(ctx); err != nil {
		return err
	}
	step("done: every step behaved; stopping the agents and the control planes")
	return nil
}

// play pushes the demo's commits and checks what the agents made of them.
func (d *demo) play(ctx context.Context) error {
	step("1. first release: staging, then prod")
	head, _ := testenv.Git(ctx, d.clone, "rev-parse", "HEAD")
	if _, err := d.outcome(ctx, "shop-staging", "promoted", head); err != nil {
		return err
	}
	if _, err := d.outcome(ctx, "shop-prod", "promoted", head); err != nil {
		return err
	}
	d.log(ctx)

	step("2. a developer bumps client and server to v2 in the shared base")
	v2, err := d.setBase(ctx, "base: client and server v2", "newTag: v1", "newTag: v2")
	if err != nil {
		return err
	}
	if _, err := d.outcome(ctx, "shop-staging", "promoted", v2); err != nil {
		return err
	}
	d.status(ctx)
	soaked, err := d.outcome(ctx, "shop-staging", "soaked", v2)
	if err != nil {
		return err
	}
	prod, err := d.outcome(ctx, "shop-prod", "promoted", soaked)
	if err != nil {
		return err
	}
	fmt.Printf("prod's promotion %s released a tip that holds staging's soak record %s\n", short(prod), short(soaked))
	d.log(ctx)

	step("3. a developer pushes a server image that does not exist, in the shared base")
	watch, stop := d.watchProd(ctx)
	bad, err := d.setBase(ctx, "base: server v3", "- name: example/shop-server\n  newTag: v2", "- name: example/shop-server\n  newName: missing.invalid/shop-server\n  newTag: v3")
	if err != nil {
		return err
	}
	revert, err := d.outcomeFor(ctx, "shop-staging", func(tr map[string]string) bool {
		return tr["Tandem-Result"] == "reverted" && tr["Tandem-Reverts"] == bad
	})
	if err != nil {
		return err
	}
	// Watch prod's API server until prod's agent has passed over the revert.
	err = d.prodSynced(ctx, revert)
	stop()
	seen := <-watch
	if err != nil {
		return err
	}
	fmt.Printf("staging reverted %s in %s; prod's Deployments showed only: %s\n", bad[:7], revert[:7], strings.Join(seen, ", "))
	for _, img := range seen {
		if strings.Contains(img, "missing.invalid") {
			return fmt.Errorf("prod ran the broken image %s", img)
		}
	}
	d.log(ctx)
	return nil
}

// prodSynced waits until prod's agent logs a pass over commit.
func (d *demo) prodSynced(ctx context.Context, commit string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		data, _ := os.ReadFile(d.prodAgent.Log)
		for _, line := range strings.Split(string(data), "\n") {
			if strings.Contains(line, `"phase":"sync"`) && strings.Contains(line, `"commit":"`+commit[:7]+`"`) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prod's agent did not pass over %s: %w", commit[:7], ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// seed makes the bare remote and a developer clone holding example.
func (d *demo) seed(ctx context.Context, example string) error {
	if _, err := testenv.Git(ctx, ".", "init", "--quiet", "--bare", "-b", "main", d.remote); err != nil {
		return err
	}
	if _, err := testenv.Git(ctx, ".", "clone", "--quiet", d.remote, d.clone); err != nil {
		return err
	}
	if err := os.CopyFS(d.clone, os.DirFS(example)); err != nil {
		return fmt.Errorf("copy %s: %w", example, err)
	}
	return d.push(ctx, "the shop in staging and prod (v1)")
}

// setBase edits apps/shop/base/kustomization.yaml (old → new), commits and
// pushes, and returns the commit.
func (d *demo) setBase(ctx context.Context, msg, old, repl string) (string, error) {
	if _, err := testenv.Git(ctx, d.clone, "pull", "--quiet", "--rebase"); err != nil {
		return "", err
	}
	file := filepath.Join(d.clone, "apps", "shop", "base", "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	if !strings.Contains(string(data), old) {
		return "", fmt.Errorf("%s has no %q", file, old)
	}
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(data), old, repl)), 0o644); err != nil {
		return "", err
	}
	if err := d.push(ctx, msg); err != nil {
		return "", err
	}
	h, err := testenv.Git(ctx, d.clone, "rev-parse", "HEAD")
	if err == nil {
		fmt.Println("pushed", h[:7])
	}
	return h, err
}

func (d *demo) push(ctx context.Context, msg string) error {
	for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", msg}, {"push", "--quiet", "origin", "HEAD:main"}} {
		if _, err := testenv.Git(ctx, d.clone, args...); err != nil {
			return err
		}
	}
	return nil
}

// outcome waits for an agent commit of bundle with result whose source
// contains commit, and returns it.
func (d *demo) outcome(ctx context.Context, bundle, result, commit string) (string, error) {
	return d.outcomeFor(ctx, bundle, func(tr map[string]string) bool {
		if tr["Tandem-Result"] != result || tr["Tandem-Source"] == "" {
			return false
		}
		_, err := testenv.Git(ctx, d.remote, "merge-base", "--is-ancestor", commit, tr["Tandem-Source"])
		return err == nil
	})
}

// outcomeFor waits for an agent commit of bundle whose trailers match.
func (d *demo) outcomeFor(ctx context.Context, bundle string, match func(map[string]string) bool) (string, error) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		commits, err := testenv.AgentCommits(ctx, d.remote, "main")
		if err != nil {
			return "", err
		}
		for _, c := range commits {
			if c.Trailers["Tandem-Bundle"] == bundle && match(c.Trailers) {
				fmt.Printf("after %-5s %s\n", time.Since(start).Round(100*time.Millisecond), c.Subject)
				return c.Hash, nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for an outcome of %s: %w", bundle, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// watchProd records every image prod's Deployments show until stop.
func (d *demo) watchProd(ctx context.Context) (<-chan []string, func()) {
	ctx, cancel := context.WithCancel(ctx)
	out := make(chan []string, 1)
	go func() {
		seen := map[string]bool{}
		var list []string
		for ctx.Err() == nil {
			deps, err := d.prod.AppsV1().Deployments("shop-prod").List(ctx, metav1.ListOptions{})
			if err == nil {
				for _, dep := range deps.Items {
					for _, c := range dep.Spec.Template.Spec.Containers {
						if !seen[c.Image] {
							seen[c.Image] = true
							list = append(list, c.Image)
						}
					}
				}
			}
			select {
			case <-ctx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
		out <- list
	}()
	return out, cancel
}

// status prints `tandem-agent status` of a fresh pull, as a person would run it.
func (d *demo) status(ctx context.Context) {
	if _, err := testenv.Git(ctx, d.clone, "pull", "--quiet", "--rebase"); err != nil {
		return
	}
	out, _ := exec.CommandContext(ctx, d.agentBin, "status", d.clone).CombinedOutput()
	fmt.Printf("\ntandem-agent status (while staging soaks):\n%s\n", indent(string(out)))
}

// log prints the branch with each agent commit's result.
func (d *demo) log(ctx context.Context) {
	out, err := testenv.Git(ctx, d.remote, "log", "--format=%h %<(56,trunc)%s %(trailers:key=Tandem-Result,valueonly,separator=%x2C)", "main")
	if err == nil {
		fmt.Printf("\ngit log:\n%s\n", indent(out))
	}
}

func indent(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = "  " + l
		}
	}
	return strings.Join(lines, "\n")
}

func short(h string) string { return h[:7] }

func step(s string) { fmt.Printf("\n=== %s\n", s) }
