package main

import (
	"context"
	"path/filepath"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/tandem-gitops/tandem/contract"
	"github.com/tandem-gitops/tandem/promote"
	"github.com/tandem-gitops/tandem/render"
	"github.com/tandem-gitops/tandem/testenv"
)

// fidelity checks tandem's promise for bundle ns once the agent settled on
// the tip of main: the stable Services select the color the tip's
// release.yaml calls live; that color's workloads carry the digest the tip
// renders, on their pod templates too; and every running pod of them is of
// that template. It checks nothing before a first promotion, or when the
// bundle's newest outcome is a hold (the tip then keeps the failing change,
// by the bundle's policy). The e2e, crash and race tests run it after
// every step that waits for the agent.
func (s *scenario) fidelity(ns string) {
	s.t.Helper()
	file := "bundles/" + ns + "/release.yaml"
	data, err := testenv.Git(s.ctx, s.remote, "show", "main:"+file)
	if err != nil {
		return // no release.yaml yet
	}
	rel, err := promote.ParseRelease(file, []byte(data), [2]string{"blue", "green"})
	if err != nil {
		s.t.Fatalf("fidelity: %v", err)
	}
	if commits := s.bundleCommits(ns); rel.Live == "" || len(commits) == 0 || commits[0].Trailers["Tandem-Result"] == "held" {
		return
	}
	tip := s.git(s.remote, "rev-parse", "main")
	dir := filepath.Join(s.t.TempDir(), "tip")
	s.git(".", "clone", "--quiet", "--branch", "main", s.remote, dir)
	disc, err := render.DiscoverAll(dir, ".")
	if err != nil {
		s.t.Fatalf("fidelity: discover the tip: %v", err)
	}
	var res *render.Result
	for _, b := range disc.Bundles {
		if b.Name == ns {
			o := s.renderOpts
			o.RepoRoot, o.Color, o.Commit = dir, rel.Live, tip
			if res, err = render.Render(s.ctx, b, o); err != nil {
				s.t.Fatalf("fidelity: the tip %s does not render bundle %s: %v", contract.Short(tip), ns, err)
			}
		}
	}
	if res == nil {
		s.t.Fatalf("fidelity: bundle %s is not at the tip %s", ns, contract.Short(tip))
	}
	for name, color := range s.selectorsIn(ns) {
		if color != rel.Live {
			s.t.Fatalf("fidelity: stable Service %s/%s selects %q; the tip's release.yaml says %q", ns, name, color, rel.Live)
		}
	}
	for _, u := range res.Objects {
		if u.GetKind() == "Deployment" {
			s.fidelityOf(ns, u.GetName(), res.Digest, tip)
		}
	}
}

// fidelityOf checks one live Deployment against the tip's digest.
func (s *scenario) fidelityOf(ns, name, digest, tip string) {
	s.t.Helper()
	d, err := s.cs.AppsV1().Deployments(ns).Get(s.ctx, name, metav1.GetOptions{})
	if err != nil {
		s.t.Fatalf("fidelity: live Deployment %s/%s: %v", ns, name, err)
	}
	if got := d.Annotations[contract.AnnotationDigest]; got != digest {
		s.t.Fatalf("fidelity: Deployment %s/%s runs digest %s; the tip %s renders %s", ns, name, got, contract.Short(tip), digest)
	}
	if got := d.Spec.Template.Annotations[contract.AnnotationDigest]; got != digest {
		s.t.Fatalf("fidelity: Deployment %s/%s's pod template has digest %q, want %s", ns, name, got, digest)
	}
	pods, err := s.cs.CoreV1().Pods(ns).List(s.ctx, metav1.ListOptions{LabelSelector: labels.Set(d.Spec.Selector.MatchLabels).String()})
	if err != nil {
		s.t.Fatalf("fidelity: pods of %s/%s: %v", ns, name, err)
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil && p.Annotations[contract.AnnotationDigest] != digest {
			s.t.Fatalf("fidelity: pod %s/%s of Deployment %s runs an older template (digest %q, want %s)", ns, p.Name, name, p.Annotations[contract.AnnotationDigest], digest)
		}
	}
}

// livePods lists the running pods of the live color's Deployment app.
func (s *scenario) livePods(ns, app, color string) []corev1.Pod {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	pods, err := s.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + app + "," + contract.LabelColor + "=" + color})
	if err != nil {
		s.t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}
