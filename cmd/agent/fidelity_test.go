package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/testenv"
)

// Release fidelity: what serves traffic is what the tip of the branch
// says, for every kind of change (issue 14). Each test also runs the
// fidelity check through waitCommits.

// configApp is a Deployment that reads a ConfigMap through envFrom.
func configApp(setting string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  GREETING: %q
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: server
spec:
  replicas: 2
  selector:
    matchLabels: {app: server}
  template:
    metadata:
      labels: {app: server}
    spec:
      containers:
      - name: server
        image: example/server:v1
        envFrom:
        - configMapRef: {name: settings}
---
apiVersion: v1
kind: Service
metadata:
  name: server
spec:
  selector: {app: server}
  ports:
  - port: 8080
`, setting)
}

// TestConfigOnlyReleaseStartsNewPods: two config-only commits in a row; the
// second lands on the color still warm from the first deploy, with an
// unchanged pod template but for the release. Its pods are all new.
func TestConfigOnlyReleaseStartsNewPods(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	dir := "bundles/" + s.ns + "/app/"
	s.write(dir+"server.yaml", configApp("hello"))
	s.push("server reads its greeting from a ConfigMap")
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")
	s.wantSelectors("blue", "server")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write(dir+"server.yaml", configApp("bonjour"))
	s.push("greeting: bonjour")
	want(t, s.waitCommits(2)[0], "promoted")
	s.wantSelectors("green", "server")

	// blue is warm (scaleDownAfter: never) and runs the same pod template
	// as this release but for the ConfigMap it reads.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write(dir+"server.yaml", configApp("hallo"))
	pushed := time.Now().Add(-time.Second).Truncate(time.Second) // creationTimestamp has whole seconds
	s.push("greeting: hallo")
	want(t, s.waitCommits(3)[0], "promoted")
	s.wantSelectors("blue", "server")
	pods := s.livePods(s.ns, "server", "blue")
	if len(pods) != 2 {
		t.Fatalf("%d running pods of server-blue, want 2", len(pods))
	}
	for _, p := range pods {
		if p.CreationTimestamp.Time.Before(pushed) {
			t.Errorf("pod %s started at %s, before the config change was pushed (%s): it runs the old config",
				p.Name, p.CreationTimestamp.Time.Format(time.RFC3339), pushed.Format(time.RFC3339))
		}
	}
	cm, err := s.cs.CoreV1().ConfigMaps(s.ns).Get(s.ctx, "settings-blue", metav1.GetOptions{})
	if err != nil || cm.Data["GREETING"] != "hallo" {
		t.Fatalf("ConfigMap settings-blue: %v %v", cm.Data, err)
	}
}

// baseScenario is a bundle whose app is a base outside the bundle
// directory, as kustomize users lay repositories out.
func baseScenario(t *testing.T) *scenario {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	s.write("apps/"+s.ns+"/base/kustomization.yaml", "resources:\n- server.yaml\n")
	s.write("apps/"+s.ns+"/base/server.yaml", appManifest(app{"server", "example/server:v1"}))
	s.write("bundles/"+s.ns+"/app/kustomization.yaml", "resources:\n- ../../../apps/"+s.ns+"/base\n")
	s.git(s.clone, "rm", "--quiet", "bundles/"+s.ns+"/app/server.yaml")
	s.push("the server comes from a shared base")
	return s
}

// TestBaseChangeIsACandidate: a commit that changes only a base outside the
// bundle directory is released; when such a change fails, the revert
// restores the base, so the tip renders the live release again.
func TestBaseChangeIsACandidate(t *testing.T) {
	s := baseScenario(t)
	base := "apps/" + s.ns + "/base/server.yaml"
	s.start()
	want(t, s.waitCommits(1)[0], "promoted")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.write(base, appManifest(app{"server", "example/server:v2"}))
	v2 := s.push("base: server v2")
	c := s.waitCommits(2)[0]
	want(t, c, "promoted")
	if c.Trailers["Tandem-Source"] != v2 {
		t.Fatalf("promoted %s, want the base change %s", c.Trailers["Tandem-Source"], v2)
	}
	s.wantSelectors("green", "server")

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	good := s.read(base)
	s.write(base, appManifest(app{"server", "missing.invalid/server:v3"}))
	s.push("base: server v3 (does not exist)")
	c = s.waitCommits(3)[0]
	want(t, c, "reverted")
	s.wantSelectors("green", "server")
	if got := s.git(s.remote, "show", "main:"+base); got != strings.TrimSpace(good) {
		t.Fatalf("after the revert the tip's %s is\n%s\nwant the promoted\n%s", base, got, good)
	}
	body := s.git(s.remote, "log", "-1", "--format=%B", c.Hash)
	if !strings.Contains(body, "Restored:\n  "+base) {
		t.Errorf("the revert does not list the base it restored:\n%s", body)
	}
}

// TestBrokenBundleHoldsUpNoOther: one push puts a typo into one bundle's
// bundle.yaml and bumps another bundle. The other is promoted; the broken
// one fails on its own (reverted, naming the field), and nothing of it moves.
func TestBrokenBundleHoldsUpNoOther(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	other := s.ns + "-b"
	s.addBundle(other, app{"server", "example/server:v1"})
	s.push("add bundle " + other)
	s.start("--root", "bundles")
	s.waitBundle(s.ns, "promoted", 1)
	s.waitBundle(other, "promoted", 1)

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	spec := s.read("bundles/" + s.ns + "/bundle.yaml")
	s.write("bundles/"+s.ns+"/bundle.yaml", strings.Replace(spec, "onFailure:", "onFaliure:", 1))
	s.write("bundles/"+other+"/app/server.yaml", appManifest(app{"server", "example/server:v2"}))
	push := s.push("typo in one bundle, v2 in the other")

	c := s.waitBundle(other, "promoted", 2)
	if c.Trailers["Tandem-Source"] != push {
		t.Errorf("%s promoted %s, want %s", other, c.Trailers["Tandem-Source"], push)
	}
	if got := s.selectorsIn(other)["server"]; got != "green" {
		t.Errorf("%s serves from %q, want green", other, got)
	}
	r := s.waitBundle(s.ns, "reverted", 2)
	body := s.git(s.remote, "log", "-1", "--format=%B", r.Hash)
	if !strings.Contains(body, "onFaliure") || !strings.Contains(body, "bundle.yaml") {
		t.Errorf("the revert does not name the file and field:\n%s", body)
	}
	if got := s.selectorsIn(s.ns)["server"]; got != "blue" {
		t.Errorf("the broken bundle's traffic moved to %q", got)
	}
	s.fidelity(s.ns)
	s.fidelity(other)
}

// waitBundle waits until bundle has n agent commits and returns the newest,
// which must have result.
func (s *scenario) waitBundle(bundle, result string, n int) (c testenv.TrailerCommit) {
	s.t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		if cs := s.bundleCommits(bundle); len(cs) >= n {
			if got := cs[0].Trailers["Tandem-Result"]; got != result {
				s.t.Fatalf("bundle %s: newest outcome %q (%s), want %s\n%s", bundle, got, cs[0].Subject, result, s.agent.LogTail())
			}
			return cs[0]
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("bundle %s: fewer than %d agent commits after 3m\n%s", bundle, n, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRemovedBundleIsPruned: a bundle whose directory leaves the branch has
// every object labelled with it deleted (its namespace stays); a tip with
// no bundle at all prunes nothing; a bundle moved under the same name keeps
// its objects and its traffic.
func TestRemovedBundleIsPruned(t *testing.T) {
	s := newScenario(t, "revert", "60s", app{"server", "example/server:v1"})
	gone := s.ns + "-gone"
	s.addBundle(gone, app{"server", "example/server:v1"})
	s.push("add bundle " + gone)
	s.start("--root", "bundles")
	s.waitBundle(s.ns, "promoted", 1)
	s.waitBundle(gone, "promoted", 1)
	guard := s.guardSelectors(s.ns)

	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.git(s.clone, "rm", "-r", "--quiet", "bundles/"+gone)
	s.push("remove bundle " + gone)
	s.waitEvent("prune of "+gone, time.Minute, func(e logEvent) bool {
		return e.str("phase") == "prune" && e.str("bundle") == gone && strings.Contains(e.str("message"), "deleted")
	})
	if left := s.labelled(gone); len(left) > 0 {
		t.Fatalf("objects of the removed bundle remain: %v", left)
	}
	if _, err := s.cs.CoreV1().Namespaces().Get(s.ctx, gone, metav1.GetOptions{}); err != nil {
		t.Errorf("the removed bundle's namespace was deleted: %v", err)
	}

	// Every bundle gone at once looks like a broken checkout: prune nothing.
	s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	s.git(s.clone, "rm", "-r", "--quiet", "bundles")
	s.write("README.md", "all bundles moved away\n")
	s.push("remove every bundle")
	s.waitEvent("the empty-tip guard", time.Minute, func(e logEvent) bool {
		return e.str("phase") == "prune" && strings.Contains(e.str("message"), "no bundles at all")
	})
	if left := s.labelled(s.ns); len(left) == 0 {
		t.Fatal("an empty tip pruned the remaining bundle")
	}

	// The bundle comes back in another directory under the same name.
	s.git(s.clone, "revert", "--no-edit", "HEAD")
	s.git(s.clone, "mv", "bundles/"+s.ns, "bundles/moved-"+s.ns)
	s.git(s.clone, "commit", "--quiet", "-m", "move the bundle")
	s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
	moved := s.git(s.clone, "rev-parse", "HEAD")
	s.waitEvent("the moved bundle seen as no release", time.Minute, phaseOf("idle", moved, true))
	if _, empty := guard(); len(empty) > 0 {
		t.Errorf("a stable Service selected no color: %v", empty)
	}
	s.wantSelectors("blue", "server")
	if len(s.labelled(s.ns)) == 0 {
		t.Fatal("the moved bundle's objects were deleted")
	}
}

// labelled lists the Deployments, Services and ConfigMaps labelled with bundle.
func (s *scenario) labelled(bundle string) []string {
	s.t.Helper()
	sel := metav1.ListOptions{LabelSelector: contract.LabelBundle + "=" + bundle}
	var out []string
	ds, err := s.cs.AppsV1().Deployments("").List(s.ctx, sel)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, d := range ds.Items {
		out = append(out, "Deployment "+d.Namespace+"/"+d.Name)
	}
	svcs, err := s.cs.CoreV1().Services("").List(s.ctx, sel)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, v := range svcs.Items {
		out = append(out, "Service "+v.Namespace+"/"+v.Name)
	}
	cms, err := s.cs.CoreV1().ConfigMaps("").List(s.ctx, sel)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, c := range cms.Items {
		out = append(out, "ConfigMap "+c.Namespace+"/"+c.Name)
	}
	return out
}
