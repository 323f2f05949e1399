// Command demo is `make demo`: it shows tandem on a real local control plane.
//
// It starts the control plane (testenv), creates a Git remote holding
// examples/shop under bundles/shop, runs bin/tandem-agent against both, and
// walks through four steps, printing the stable Services' selectors and the
// agent's commits after each:
//
//  1. first deploy: v1 goes live on blue;
//  2. a commit bumps client and server to v2: verified on green, promoted;
//  3. a commit whose server image does not exist: the agent reverts it,
//     traffic stays on green, and blue (which the bad candidate displaced)
//     is restored to v1 as a warm standby; the agent's Kubernetes Events in
//     namespace shop tell the story and name the failing app;
//  4. a human `git revert` of the v2 commit: the agent flips back to the
//     warm blue at once, without a cold start.
//
// It exits 0 when every step behaved, and leaves nothing running.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-gitops/tandem/testenv"
)

func main() {
	agentBin := flag.String("agent", "bin/tandem-agent", "the tandem-agent binary")
	example := flag.String("example", "examples/shop", "the bundle to ship")
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
	env    *testenv.Env
	cs     *kubernetes.Clientset
	remote string // bare repository
	clone  string // the developer's clone
	agent  *testenv.Agent
}

func run(ctx context.Context, agentBin, example string, keep bool) (err error) {
	agentBin, err = filepath.Abs(agentBin)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Println("work directory:", work)
	} else {
		defer os.RemoveAll(work)
	}

	step("starting a local control plane (etcd, kube-apiserver, controllers, scheduler, kwok)")
	start := time.Now()
	env, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		return err
	}
	defer env.Stop()
	fmt.Printf("ready in %s; kubeconfig %s\n", time.Since(start).Round(100*time.Millisecond), env.Kubeconfig)
	cs, err := env.Client()
	if err != nil {
		return err
	}
	d := &demo{env: env, cs: cs, remote: filepath.Join(work, "remote.git"), clone: filepath.Join(work, "dev")}

	step("creating a Git remote with examples/shop as bundles/shop")
	if err := d.seed(ctx, example); err != nil {
		return err
	}

	step("starting tandem-agent")
	d.agent, err = testenv.StartAgent(agentBin, []string{"run",
		"--repo", "file://" + d.remote, "--branch", "main",
		"--kubeconfig", env.Kubeconfig,
		"--interval", "1s", "--metrics-addr", "127.0.0.1:0",
		"--workdir", filepath.Join(work, "agent"),
		"--log-format", "console",
	}, filepath.Join(work, "agent.log"))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			fmt.Fprintln(os.Stderr, d.agent.LogTail())
		}
		_ = d.agent.Stop(10 * time.Second)
	}()

	if err := d.play(ctx); err != nil {
		return err
	}
	step("done: every step behaved; stopping the agent and the control plane")
	return nil
}

// play runs the demo's commits and checks what the agent made of each.
func (d *demo) play(ctx context.Context) error {
	step("1. first deploy: v1 goes live on blue")
	if err := d.expect(ctx, 1, "promoted", "blue"); err != nil {
		return err
	}

	step("2. a developer bumps client and server to v2 in one commit")
	v2, err := d.commit(ctx, "bump client and server to v2", map[string]string{"v1": "v2"})
	if err != nil {
		return err
	}
	fmt.Println("pushed", v2[:7])
	if err := d.expect(ctx, 2, "promoted", "green"); err != nil {
		return err
	}

	step("3. a developer pushes a server image that does not exist")
	bad, err := d.commit(ctx, "bump server to v3", map[string]string{
		"- name: example/shop-server\n  newTag: v2": "- name: example/shop-server\n  newName: missing.invalid/shop-server\n  newTag: v3",
	})
	if err != nil {
		return err
	}
	fmt.Println("pushed", bad[:7])
	if err := d.expect(ctx, 3, "reverted", "green"); err != nil {
		return err
	}
	if err := d.events(ctx, "Reverted", "server-blue"); err != nil {
		return err
	}

	step("4. client and server v3 in one commit: both become Ready, but the end-to-end check fails")
	fmt.Println("(the simulated kubelet fails a Job whose image tag ends in -fail: here, the e2e")
	fmt.Println(" Job's calls through client-blue to server-blue failing on a broken API change)")
	v3, err := d.commit(ctx, "client and server v3 (new orders API)", map[string]string{
		"- name: example/shop-client\n  newTag: v2": "- name: example/shop-client\n  newTag: v3",
		"- name: example/shop-server\n  newTag: v2": "- name: example/shop-server\n  newTag: v3",
		"- name: example/shop-e2e\n  newTag: v2":    "- name: example/shop-e2e\n  newTag: v3-fail",
	})
	if err != nil {
		return err
	}
	fmt.Println("pushed", v3[:7])
	if err := d.expect(ctx, 4, "reverted", "green"); err != nil {
		return err
	}
	if err := d.checkEvidence(ctx, "e2e=failed"); err != nil {
		return err
	}

	step("5. a developer rolls back v2 with git revert: blue still runs v1, warm")
	if _, err := testenv.Git(ctx, d.clone, "pull", "--quiet", "--rebase"); err != nil {
		return err
	}
	if _, err := testenv.Git(ctx, d.clone, "revert", "--no-edit", v2); err != nil {
		return err
	}
	if _, err := testenv.Git(ctx, d.clone, "push", "--quiet", "origin", "main"); err != nil {
		return err
	}
	if err := d.expect(ctx, 5, "promoted", "blue"); err != nil {
		return err
	}
	if !d.agent.LogContains("warm flip-back") {
		return fmt.Errorf("step 5: the agent did not flip back to the warm blue at once")
	}
	return nil
}

// checkEvidence prints the check evidence of the newest agent commit and
// fails unless it carries the trailer Tandem-Check: want.
func (d *demo) checkEvidence(ctx context.Context, want string) error {
	body, err := testenv.Git(ctx, d.remote, "log", "-1", "--format=%B", "main")
	if err != nil {
		return err
	}
	fmt.Println("\nwhat the revert says of the check:")
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, "check ") || strings.HasPrefix(line, "Tandem-Check:") {
			fmt.Println("  " + strings.TrimSpace(line))
		}
	}
	if !strings.Contains(body, "Tandem-Check: "+want) {
		return fmt.Errorf("the revert does not carry Tandem-Check: %s:\n%s", want, body)
	}
	return nil
}

// seed makes the bare remote and a developer clone with the example bundle.
func (d *demo) seed(ctx context.Context, example string) error {
	if _, err := testenv.Git(ctx, ".", "init", "--quiet", "--bare", "-b", "main", d.remote); err != nil {
		return err
	}
	if _, err := testenv.Git(ctx, ".", "clone", "--quiet", d.remote, d.clone); err != nil {
		return err
	}
	dst := filepath.Join(d.clone, "bundles", "shop")
	if err := os.CopyFS(dst, os.DirFS(example)); err != nil {
		return fmt.Errorf("copy %s: %w", example, err)
	}
	for _, args := range [][]string{{"add", "-A"}, {"commit", "--quiet", "-m", "add the shop bundle (v1)"}, {"push", "--quiet", "origin", "HEAD:main"}} {
		if _, err := testenv.Git(ctx, d.clone, args...); err != nil {
			return err
		}
	}
	return nil
}

// commit edits bundles/shop/app/kustomization.yaml (old → new text), commits
// and pushes as a developer would, and returns the commit.
func (d *demo) commit(ctx context.Context, msg string, edits map[string]string) (string, error) {
	if _, err := testenv.Git(ctx, d.clone, "pull", "--quiet", "--rebase"); err != nil {
		return "", err
	}
	file := filepath.Join(d.clone, "bundles", "shop", "app", "kustomization.yaml")
	data, err := os.ReadFile(file)
	if err != nil {
		return "", err
	}
	text := string(data)
	for old, repl := range edits {
		if !strings.Contains(text, old) {
			return "", fmt.Errorf("%s has no %q", file, old)
		}
		text = strings.ReplaceAll(text, old, repl)
	}
	if err := os.WriteFile(file, []byte(text), 0o644); err != nil {
		return "", err
	}
	for _, args := range [][]string{{"commit", "--quiet", "-am", msg}, {"push", "--quiet", "origin", "main"}} {
		if _, err := testenv.Git(ctx, d.clone, args...); err != nil {
			return "", err
		}
	}
	return testenv.Git(ctx, d.clone, "rev-parse", "HEAD")
}

// expect waits for the n-th agent commit, checks its result and that the
// stable Services select color, then prints the selectors and the trail.
func (d *demo) expect(ctx context.Context, n int, result, color string) error {
	start := time.Now()
	commits, err := testenv.WaitAgentCommits(ctx, d.remote, "main", n, 3*time.Minute)
	if err != nil {
		return err
	}
	got := commits[0]
	fmt.Printf("agent commit after %s: %s\n", time.Since(start).Round(100*time.Millisecond), got.Subject)
	if got.Trailers["Tandem-Result"] != result {
		return fmt.Errorf("agent commit %s: Tandem-Result %q, want %q", got.Hash[:7], got.Trailers["Tandem-Result"], result)
	}
	selectors, err := d.selectors(ctx)
	if err != nil {
		return err
	}
	fmt.Println("\nstable Services:")
	names := make([]string, 0, len(selectors))
	for name := range selectors {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Printf("  shop/%-8s selects tandem.dev/color=%s\n", name, selectors[name])
		if selectors[name] != color {
			return fmt.Errorf("Service shop/%s selects %q, want %q", name, selectors[name], color)
		}
	}
	if len(names) == 0 {
		return errors.New("no stable Services in namespace shop")
	}
	log, err := testenv.Git(ctx, d.remote, "log", "--format=%h %<(52,trunc)%s %(trailers:key=Tandem-Result,valueonly,separator=%x2C)", "main")
	if err != nil {
		return err
	}
	fmt.Println("\ngit log:")
	for _, line := range strings.Split(log, "\n") {
		fmt.Println("  " + line)
	}
	return nil
}

// events waits for the agent's Event with reason in namespace shop, checks
// that its message names app, and prints the agent's events there, as
// `kubectl -n shop get events --field-selector source=tandem-agent` would.
func (d *demo) events(ctx context.Context, reason, app string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		list, err := d.cs.CoreV1().Events("shop").List(ctx, metav1.ListOptions{FieldSelector: "source=tandem-agent"})
		if err != nil {
			return err
		}
		for _, e := range list.Items {
			if e.Reason != reason {
				continue
			}
			if !strings.Contains(e.Message, app) {
				return fmt.Errorf("event %s does not name %s: %q", reason, app, e.Message)
			}
			fmt.Println("\nkubectl -n shop get events --field-selector source=tandem-agent:")
			// client-go names an Event <object>.<hex UnixNano of its creation>:
			// finer than its timestamps, which have seconds only.
			at := func(e corev1.Event) string { return fmt.Sprintf("%16s", e.Name[strings.LastIndex(e.Name, ".")+1:]) }
			sort.SliceStable(list.Items, func(i, j int) bool { return at(list.Items[i]) < at(list.Items[j]) })
			for _, e := range list.Items {
				fmt.Printf("  %-7s  %-18s  configmap/%s  %s\n", e.Type, e.Reason, e.InvolvedObject.Name, e.Message)
			}
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no %s event in namespace shop: %w", reason, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// selectors returns each stable twin's selected color.
func (d *demo) selectors(ctx context.Context) (map[string]string, error) {
	list, err := d.cs.CoreV1().Services("shop").List(ctx, metav1.ListOptions{LabelSelector: "tandem.dev/bundle=shop,!tandem.dev/color"})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range list.Items {
		out[s.Name] = s.Spec.Selector["tandem.dev/color"]
	}
	return out, nil
}

func step(s string) { fmt.Printf("\n=== %s\n", s) }
