package main

// Stage tests: two real control planes (the package's, as "staging", and a
// second one started here, as "prod"), one bare remote, and one agent per
// cluster releasing its own bundle (--bundles). Prod's Deployments are
// watched on prod's API server for the whole test.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/testenv"
)

// TestStages shares one second control plane across its subtests.
func TestStages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	prod, err := testenv.Start(ctx, testenv.Options{})
	if err != nil {
		t.Fatalf("cannot start the second (prod) control plane: %v", err)
	}
	t.Cleanup(func() { _ = prod.Stop() })
	t.Run("Pipeline", func(t *testing.T) { testPipeline(t, prod) })
	t.Run("Approval", func(t *testing.T) { testApproval(t, prod) })
	t.Run("BadAfterIsRefused", testBadAfter)
	t.Run("CrashDuringUpstreamSoak", func(t *testing.T) { testCrash(t, prod) })
	t.Run("GitOutageWhileWaiting", func(t *testing.T) { testGitOutage(t, prod) })
}

// stageBundleYAML is a bundle.yaml of a bundle in its own namespace.
func stageBundleYAML(name, extra string) string {
	return fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata:
  name: %[1]s
spec:
  namespace: %[1]s
  shared: shared
  healthTimeout: 60s
  scaleDownAfter: never
%[2]s`, name, extra)
}

// stageRepo is a remote and a developer's clone, with no agent yet.
func stageRepo(t *testing.T) *scenario {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	work := t.TempDir()
	s := &scenario{t: t, ctx: ctx, work: work, remote: filepath.Join(work, "remote.git"), clone: filepath.Join(work, "dev")}
	s.ns = uniqueName(t)
	s.git(".", "init", "--quiet", "--bare", "-b", "main", s.remote)
	s.git(s.remote, "config", "receive.denyNonFastForwards", "true")
	s.git(".", "clone", "--quiet", s.remote, s.clone)
	return s
}

// addStageBundle writes bundles/<name> whose app is the shared base plus
// an overlay ConfigMap.
func (s *scenario) addStageBundle(name, extra, setting string) {
	s.write("bundles/"+name+"/bundle.yaml", stageBundleYAML(name, extra))
	s.write("bundles/"+name+"/shared/kustomization.yaml", "resources:\n- namespace.yaml\n")
	s.write("bundles/"+name+"/shared/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
	s.setOverlay(name, setting)
}

// setOverlay sets the bundle's own (overlay-only) setting.
func (s *scenario) setOverlay(name, setting string) {
	s.write("bundles/"+name+"/app/kustomization.yaml", "resources:\n- ../../../apps/shop/base\nconfigMapGenerator:\n- name: settings\n  literals: [env="+setting+"]\n")
}

// setBase sets the shared base's server image.
func (s *scenario) setBase(image string) {
	s.write("apps/shop/base/kustomization.yaml", "resources:\n- server.yaml\n")
	s.write("apps/shop/base/server.yaml", appManifest(app{"server", image}))
}

// startAgent runs an agent for the bundles matching pattern against the
// cluster of kubeconfig, as author.
func (s *scenario) startAgent(kubeconfig, pattern, author string, extra ...string) *scenario {
	s.t.Helper()
	a := *s
	args := append([]string{"run", "--repo", "file://" + s.remote, "--kubeconfig", kubeconfig, "--interval", "500ms",
		"--metrics-addr", "127.0.0.1:0", "--workdir", filepath.Join(s.work, "agent-"+pattern), "--bundles", pattern,
		"--git-author", author}, extra...)
	ag, err := testenv.StartAgent(agentBin, args, filepath.Join(s.work, "agent-"+pattern+".log"))
	if err != nil {
		s.t.Fatal(err)
	}
	a.agent = ag
	s.t.Cleanup(func() {
		_ = ag.Stop(10 * time.Second)
		if s.t.Failed() {
			s.t.Logf("agent %s log:\n%s", pattern, ag.LogTail())
		}
	})
	return &a
}

// outcome waits until the branch has an agent commit of bundle with result
// matching ok, and returns it.
func (s *scenario) outcome(bundle, result string, ok func(testenv.TrailerCommit) bool) testenv.TrailerCommit {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		for _, c := range s.bundleCommits(bundle) {
			if c.Trailers["Tandem-Result"] == result && ok(c) {
				return c
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("no %s commit of bundle %s after 3m\n%s", result, bundle, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// after matches an agent commit whose Tandem-Source has commit as an ancestor.
func (s *scenario) after(commit string) func(testenv.TrailerCommit) bool {
	return func(c testenv.TrailerCommit) bool {
		src := c.Trailers["Tandem-Source"]
		_, err := testenv.Git(s.ctx, s.remote, "merge-base", "--is-ancestor", commit, src)
		return src != "" && err == nil
	}
}

// imageWatch records every image any Deployment in ns on cs ever had,
// from a watch on the API server, until the test ends.
func imageWatch(t *testing.T, cs kubernetes.Interface, ns string) func() []string {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	seen := map[string]bool{}
	record := func(d *appsv1.Deployment) {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range d.Spec.Template.Spec.Containers {
			seen[c.Image] = true
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		rv := ""
		for ctx.Err() == nil {
			if rv == "" {
				l, err := cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{})
				if err != nil {
					time.Sleep(100 * time.Millisecond)
					continue
				}
				for i := range l.Items {
					record(&l.Items[i])
				}
				rv = l.ResourceVersion
			}
			w, err := cs.AppsV1().Deployments(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
			if err != nil {
				rv = ""
				continue
			}
			for ev := range w.ResultChan() {
				if d, ok := ev.Object.(*appsv1.Deployment); ok {
					record(d)
					rv = d.ResourceVersion
				} else if ev.Type == watch.Error {
					rv = ""
				}
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		var out []string
		for img := range seen {
			out = append(out, img)
		}
		slices.Sort(out)
		return out
	}
}

// gateWait matches the agent's "waiting for <on>" event whose detail holds detail.
func gateWait(on, detail string) func(logEvent) bool {
	return func(e logEvent) bool {
		return e.str("phase") == "gate" && e.str("on") == on && strings.Contains(e.str("detail"), detail)
	}
}

// testPipeline: staging then prod, from one branch, one agent per cluster.
func testPipeline(t *testing.T, prodEnv *testenv.Env) {
	s := stageRepo(t)
	stg, prd := s.ns+"-stg", s.ns+"-prd"
	s.setBase("example/server:v1")
	s.addStageBundle(stg, "  soak: 3s\n", "staging")
	s.addStageBundle(prd, "  after: ["+stg+"]\n", "prod")
	v1 := s.push("shop in staging and prod, server v1")
	prodCS, err := kubernetes.NewForConfig(prodEnv.Config)
	if err != nil {
		t.Fatal(err)
	}
	images := imageWatch(t, prodCS, prd)
	staging := s.startAgent(env.Kubeconfig, stg, "tandem-staging <staging@tandem.invalid>")
	prod := s.startAgent(prodEnv.Kubeconfig, prd, "tandem-prod <prod@tandem.invalid>")

	// 1. First release: staging, then prod (staging's first release has
	// nothing to soak against).
	staging.outcome(stg, "promoted", s.after(v1))
	prod.outcome(prd, "promoted", s.after(v1))

	// 2. A base change: prod waits while staging verifies and soaks, and
	// releases it only from a tip that records staging's soak.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setBase("example/server:v2")
	v2 := s.push("base: server v2")
	staging.outcome(stg, "promoted", s.after(v2))
	soaked := staging.outcome(stg, "soaked", s.after(v2))
	released := prod.outcome(prd, "promoted", s.after(v2))
	if _, err := testenv.Git(s.ctx, s.remote, "merge-base", "--is-ancestor", soaked.Hash, released.Trailers["Tandem-Source"]); err != nil {
		t.Fatalf("prod released %s, which does not contain staging's soak record %s", contract.Short(released.Trailers["Tandem-Source"]), contract.Short(soaked.Hash))
	}
	prod.waitEvent("prod waiting for staging's soak", 10*time.Second, gateWait(stg, "is soaking"))

	// 3. A broken base change: staging reverts it; prod never runs it.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setBase("missing.invalid/server:v3")
	v3 := s.push("base: server v3 (does not exist)")
	revert := staging.outcome(stg, "reverted", func(c testenv.TrailerCommit) bool { return c.Trailers["Tandem-Reverts"] == v3 })
	prod.waitEvent("prod's pass over the revert", time.Minute, func(e logEvent) bool {
		return e.str("phase") == "sync" && e.str("commit") == contract.Short(revert.Hash)
	})

	// 4. A prod-only overlay change needs no upstream.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	before := len(s.bundleCommits(stg))
	s.setOverlay(prd, "prod-2")
	overlay := s.push("prod: env=prod-2")
	prod.outcome(prd, "promoted", func(c testenv.TrailerCommit) bool { return c.Trailers["Tandem-Source"] == overlay })
	if n := len(s.bundleCommits(stg)); n != before {
		t.Errorf("staging wrote %d commits for a prod-only change", n-before)
	}

	// 5. Newest wins while waiting: v4, at once replaced by v5.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setBase("example/server:v4")
	s.push("base: server v4")
	s.setBase("example/server:v5")
	v5 := s.push("base: server v5")
	prod.outcome(prd, "promoted", s.after(v5))

	got := images()
	want := []string{"example/server:v1", "example/server:v2", "example/server:v5"}
	if !slices.Equal(got, want) {
		t.Fatalf("prod's API server showed the images %v, want only %v", got, want)
	}
	if c := s.bundleCommits(prd); c[0].Trailers["Tandem-Result"] != "promoted" {
		t.Fatalf("prod's newest outcome %v", c[0])
	}
}

// testApproval: spec.approval: required waits for a person's approval; one
// written by the agent's own author does not count.
func testApproval(t *testing.T, prodEnv *testenv.Env) {
	s := stageRepo(t)
	name := s.ns + "-apv"
	s.setBase("example/server:v1")
	s.addStageBundle(name, "  approval: required\n", "prod")
	change := s.push("shop: server v1, needs approval")
	ag := s.startAgent(prodEnv.Kubeconfig, name, "tandem <tandem@localhost>")
	ag.waitEvent("waiting for approval", time.Minute, gateWait("approval", "Tandem-Approve: "+name+" "+contract.Short(change)))

	trailer := "Tandem-Approve: " + name + " " + change
	s.git(s.clone, "commit", "--quiet", "--allow-empty", "--author", "tandem <tandem@localhost>", "-m", "approve (forged as the agent)", "--trailer", trailer)
	forged := s.git(s.clone, "rev-parse", "HEAD")
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	ag.waitEvent("the forged approval ignored", time.Minute, func(e logEvent) bool {
		return e.str("phase") == "gate" && e.str("approval") == contract.Short(forged) && strings.Contains(e.str("message"), "agent's own author")
	})
	if c := s.bundleCommits(name); len(c) != 0 {
		t.Fatalf("released without a person's approval: %v", c)
	}

	s.git(s.clone, "commit", "--quiet", "--allow-empty", "-m", "approve", "--trailer", trailer)
	approval := s.git(s.clone, "rev-parse", "HEAD")
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	ag.outcome(name, "promoted", func(c testenv.TrailerCommit) bool { return c.Trailers["Tandem-Source"] == approval })
}

// testBadAfter: a cycle in spec.after and an unknown upstream are refused
// with the file and field named; the other bundle is released.
func testBadAfter(t *testing.T) {
	s := stageRepo(t)
	a, b, c, d := s.ns+"-a", s.ns+"-b", s.ns+"-c", s.ns+"-d"
	s.setBase("example/server:v1")
	s.addStageBundle(a, "  after: ["+b+"]\n", "a")
	s.addStageBundle(b, "  after: ["+a+"]\n", "b")
	s.addStageBundle(c, "  after: [nope]\n", "c")
	s.addStageBundle(d, "", "d")
	s.push("four bundles, three with a bad spec.after")
	ag := s.startAgent(env.Kubeconfig, "*", "tandem <tandem@localhost>")
	ag.outcome(d, "promoted", func(testenv.TrailerCommit) bool { return true })
	for file, msg := range map[string]string{
		"bundles/" + a + "/bundle.yaml": "bundles/" + a + "/bundle.yaml: spec.after: a cycle (each bundle comes after the next): " + a + " → " + b + " → " + a,
		"bundles/" + b + "/bundle.yaml": "bundles/" + b + "/bundle.yaml: spec.after: a cycle",
		"bundles/" + c + "/bundle.yaml": "bundles/" + c + "/bundle.yaml: spec.after[0]: no bundle named \"nope\" in the repository",
	} {
		ag.waitEvent("refusal of "+file, time.Minute, func(e logEvent) bool {
			return e.str("file") == file && strings.Contains(e.str("error"), msg)
		})
	}
	for _, n := range []string{a, b, c} {
		if got := s.bundleCommits(n); len(got) != 0 {
			t.Errorf("bundle %s with a bad spec.after has outcomes %v", n, got)
		}
	}
}

// testCrash: both agents are killed while staging soaks a change (and may
// be pushing), then restarted. Staging finishes or resumes the soak and
// records it; prod releases the change once; no commit is lost.
func testCrash(t *testing.T, prodEnv *testenv.Env) {
	s := stageRepo(t)
	stg, prd := s.ns+"-stg", s.ns+"-prd"
	s.setBase("example/server:v1")
	s.addStageBundle(stg, "  soak: 4s\n", "staging")
	s.addStageBundle(prd, "  after: ["+stg+"]\n", "prod")
	v1 := s.push("shop in staging and prod, server v1")
	start := func() (*scenario, *scenario) {
		return s.startAgent(env.Kubeconfig, stg, "tandem-staging <staging@tandem.invalid>"),
			s.startAgent(prodEnv.Kubeconfig, prd, "tandem-prod <prod@tandem.invalid>")
	}
	staging, prod := start()
	prod.outcome(prd, "promoted", s.after(v1))

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setBase("example/server:v2")
	v2 := s.push("base: server v2")
	staging.outcome(stg, "promoted", s.after(v2))
	staging.agent.Kill()
	prod.agent.Kill()
	staging, prod = start()
	staging.outcome(stg, "soaked", s.after(v2))
	prod.outcome(prd, "promoted", s.after(v2))

	count := func(bundle, result string) int {
		n := 0
		for _, c := range s.bundleCommits(bundle) {
			if c.Trailers["Tandem-Result"] == result && s.after(v2)(c) {
				n++
			}
		}
		return n
	}
	if n, m, k := count(stg, "promoted"), count(stg, "soaked"), count(prd, "promoted"); n != 1 || m != 1 || k != 1 {
		t.Errorf("after v2: staging promoted %d times and recorded %d soaks, prod promoted %d times; want 1 each", n, m, k)
	}
	if h := s.humanCommits(); len(h) != 2 {
		t.Errorf("human commits %v, want the two pushed", h)
	}
}

// testGitOutage: prod's Git remote goes away while prod waits for
// staging's soak. Staging records the soak meanwhile; prod, failing to
// poll, starts nothing; once Git is back, prod releases the change.
func testGitOutage(t *testing.T, prodEnv *testenv.Env) {
	s := stageRepo(t)
	stg, prd := s.ns+"-stg", s.ns+"-prd"
	s.setBase("example/server:v1")
	s.addStageBundle(stg, "  soak: 3s\n", "staging")
	s.addStageBundle(prd, "  after: ["+stg+"]\n", "prod")
	v1 := s.push("shop in staging and prod, server v1")
	view := filepath.Join(s.work, "prod-view.git") // prod's way to the remote
	must(t, os.Symlink(s.remote, view))
	staging := s.startAgent(env.Kubeconfig, stg, "tandem-staging <staging@tandem.invalid>")
	prod := s.startAgent(prodEnv.Kubeconfig, prd, "tandem-prod <prod@tandem.invalid>", "--repo", "file://"+view)
	prod.outcome(prd, "promoted", s.after(v1))
	prodCS, err := kubernetes.NewForConfig(prodEnv.Config)
	must(t, err)
	images := imageWatch(t, prodCS, prd)

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.setBase("example/server:v2")
	v2 := s.push("base: server v2")
	staging.outcome(stg, "promoted", s.after(v2))
	must(t, os.Remove(view)) // the outage
	failures := func() int {
		n := 0
		for _, e := range prod.events() {
			if e.str("phase") == "sync" && e.str("error") != "" {
				n++
			}
		}
		return n
	}
	soaked := staging.outcome(stg, "soaked", s.after(v2))
	seen := failures()
	deadline := time.Now().Add(2 * time.Minute)
	for failures() < seen+2 {
		if time.Now().After(deadline) {
			t.Fatalf("prod's agent did not fail to poll twice more during the outage\n%s", prod.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := images(); !slices.Equal(got, []string{"example/server:v1"}) {
		t.Fatalf("during the outage prod's API server showed %v, want only v1", got)
	}
	must(t, os.Symlink(s.remote, view))
	released := prod.outcome(prd, "promoted", s.after(v2))
	if _, err := testenv.Git(s.ctx, s.remote, "merge-base", "--is-ancestor", soaked.Hash, released.Trailers["Tandem-Source"]); err != nil {
		t.Fatalf("prod released %s, which does not hold staging's soak record %s", contract.Short(released.Trailers["Tandem-Source"]), contract.Short(soaked.Hash))
	}
}
