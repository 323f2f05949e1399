package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/tandem-gitops/tandem/testenv"
)

// Flux's intervals as `flux bootstrap` sets them: the GitRepository is
// polled every minute, Kustomizations reconcile every 10 minutes (and at
// once on a new source revision). The Kustomization timeout is set to one
// minute (its default is the interval).
const (
	fluxSourceInterval = "1m"
	fluxKsInterval     = "10m"
	fluxKsTimeout      = "1m"
)

// startFlux starts source-controller and kustomize-controller watching only
// namespace ns (RUNTIME_NAMESPACE, --watch-all-namespaces=false).
func (b *bench) startFlux(ctx context.Context, ns string) ([]*proc, error) {
	var addrs []string
	for i := 0; i < 5; i++ {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		addrs = append(addrs, a)
	}
	srcBin, err := b.peerBin("source-controller")
	if err != nil {
		return nil, err
	}
	ksBin, err := b.peerBin("kustomize-controller")
	if err != nil {
		return nil, err
	}
	storage := filepath.Join(b.work, "flux-storage-"+ns)
	if err := os.MkdirAll(storage, 0o755); err != nil {
		return nil, err
	}
	env := []string{"KUBECONFIG=" + b.env.Kubeconfig, "RUNTIME_NAMESPACE=" + ns}
	src, err := b.start("source-controller-"+ns, srcBin, []string{
		"--watch-all-namespaces=false", "--enable-leader-election=false",
		"--storage-path", storage,
		"--storage-addr", addrs[0], "--storage-adv-addr", addrs[0],
		"--metrics-addr", addrs[1], "--health-addr", addrs[2]}, env)
	if err != nil {
		return nil, err
	}
	ks, err := b.start("kustomize-controller-"+ns, ksBin, []string{
		"--watch-all-namespaces=false", "--enable-leader-election=false",
		"--metrics-addr", addrs[3], "--health-addr", addrs[4]}, env)
	if err != nil {
		return nil, err
	}
	procs := []*proc{src, ks}
	for i, p := range procs {
		if err := waitHTTP(ctx, p, "http://"+addrs[2+2*i]+"/readyz", 2*time.Minute); err != nil {
			return nil, err
		}
	}
	return procs, nil
}

// ksAt holds when every named Kustomization has applied a revision ending in
// sha and is Ready (ready true) or has failed on it (ready false).
func ksAt(names []string, sha string, ready bool) func(objects) bool {
	return func(objs objects) bool {
		for _, n := range names {
			o, ok := objs[n]
			if !ok {
				return false
			}
			status, _ := condition(o, "Ready")
			field := "lastAppliedRevision"
			want := "True"
			if !ready {
				field, want = "lastAttemptedRevision", "False"
			}
			rev, _, _ := unstructured.NestedString(o.Object, "status", field)
			if status != want || !strings.HasSuffix(rev, sha) {
				return false
			}
		}
		return true
	}
}

// poke asks source-controller to fetch now, as Flux's webhook receiver does.
func (b *bench) poke(ctx context.Context, ns string) error {
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, time.Now().Format(time.RFC3339Nano))
	_, err := b.k.dyn.Resource(gitRepoGVR).Namespace(ns).Patch(ctx, "repo", types.MergePatchType, []byte(patch), metav1.PatchOptions{})
	if err != nil {
		return fmt.Errorf("GitRepository %s/repo: poke: %w", ns, err)
	}
	return nil
}

// fluxSetup makes a remote served over http with the given directories, a
// GitRepository on it and one Kustomization per directory (name → path,
// applied into namespace target(name)), and waits until all are Ready.
func (b *bench) fluxSetup(ctx context.Context, ns string, files map[string]string, ks []string, target func(string) string) (*dev, error) {
	remote, err := testenv.NewRemote(filepath.Join(b.work, ns+".git"))
	if err != nil {
		return nil, err
	}
	d, err := newDev(ctx, remote, filepath.Join(b.work, ns+"-dev"))
	if err != nil {
		return nil, err
	}
	if err := d.commit(ctx, files, "add apps"); err != nil {
		return nil, err
	}
	sha, _, err := d.push(ctx)
	if err != nil {
		return nil, err
	}
	url, stop, err := remote.ServeHTTP(ctx, nil)
	if err != nil {
		return nil, err
	}
	b.stops = append(b.stops, stop)
	var objs strings.Builder
	objs.WriteString(namespace(ns) + "---\n")
	seen := map[string]bool{}
	for _, n := range ks {
		if t := target(n); !seen[t] {
			seen[t] = true
			objs.WriteString(namespace(t) + "---\n")
		}
	}
	objs.WriteString(gitRepository(ns, url, fluxSourceInterval))
	for _, n := range ks {
		objs.WriteString("---\n" + fluxKustomization(ns, n, "./apps/"+n, target(n), fluxKsInterval, fluxKsTimeout))
	}
	if err := b.k.apply(ctx, "Flux objects in "+ns, []byte(objs.String())); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	if _, err := b.k.until(wctx, ksGVR, ns, "", ksAt(ks, sha, true)); err != nil {
		return nil, fmt.Errorf("Kustomizations in %s never Ready at %.8s: %w", ns, sha, err)
	}
	return d, nil
}

// flux measures Flux: push → Kustomization Ready at the new revision with a
// poke right after the push and at its default interval, and failure
// detection for a never-pulling and a crash-looping image, next to Argo
// Rollouts' failures (both wait on timers, so they run at once).
func (b *bench) flux(ctx context.Context) error {
	const ns = "flux"
	procs, err := b.startFlux(ctx, ns)
	if err != nil {
		return err
	}
	files := fluxApp("apps/shop", shopApps("v1"), 2)
	for _, c := range []string{"pull", "crash"} {
		for p, s := range fluxApp("apps/"+c, [][2]string{{"app", "example/app:v1"}}, 2) {
			files[p] = s
		}
	}
	d, err := b.fluxSetup(ctx, ns, files, []string{"shop", "pull", "crash"}, func(n string) string { return "flux-" + n })
	if err != nil {
		return fmt.Errorf("%w\n%s\n%s", err, procs[0].logTail(), procs[1].logTail())
	}
	poked := latency{Who: "Flux", How: "GitRepository poked (reconcile.fluxcd.io/requestedAt, what its webhook receiver does) right after the push", To: "Kustomization Ready at the new revision"}
	for i := 0; i < b.cfg.Runs; i++ {
		took, err := b.fluxRound(ctx, d, ns, fmt.Sprintf("p%d", i), 0)
		if err != nil {
			return err
		}
		poked.add(took)
	}
	fail := make(chan error, 1)
	if b.cfg.Only == nil || b.cfg.Only["rollouts"] { // the rollouts step set them up
		go func() { fail <- b.rolloutFailures(ctx) }()
	} else {
		fail <- nil
	}
	ferr := b.fluxFailures(ctx, d, ns)
	if err := <-fail; err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	slow := latency{Who: "Flux", How: "no poke: GitRepository polled every " + fluxSourceInterval + " (push at a random moment)", To: "Kustomization Ready at the new revision"}
	for i := 0; i < b.cfg.SlowRuns; i++ {
		wait := time.Duration(rand.Int64N(int64(time.Minute)))
		took, err := b.fluxRound(ctx, d, ns, fmt.Sprintf("s%d", i), wait)
		if err != nil {
			return err
		}
		slow.add(took)
	}
	b.res.Live = append(b.res.Live, poked, slow)
	return nil
}

// fluxRound releases tag for the shop apps and times push → Ready at the
// new revision. Without a poke (wait > 0) the push comes wait after the
// previous round, so it lands at a random point of the poll interval.
func (b *bench) fluxRound(ctx context.Context, d *dev, ns, tag string, wait time.Duration) (time.Duration, error) {
	if err := d.commit(ctx, fluxApp("apps/shop", shopApps(tag), 2), "release "+tag); err != nil {
		return 0, err
	}
	if wait > 0 {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
	}
	sha, err := testenv.Git(ctx, d.dir, "rev-parse", "HEAD")
	if err != nil {
		return 0, err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	w := b.k.start(wctx, ksGVR, ns, "", ksAt([]string{"shop"}, sha, true))
	_, t0, err := d.push(ctx)
	if err != nil {
		return 0, err
	}
	if wait == 0 {
		if err := b.poke(ctx, ns); err != nil {
			return 0, err
		}
	}
	at, err := w.wait()
	if err != nil {
		return 0, fmt.Errorf("release %s: %w", tag, err)
	}
	return at.Sub(t0), nil
}

// fluxFailures pushes a never-pulling image for Kustomization pull and a
// crash-looping one for crash in one commit, pokes, and times each until
// Ready=False at that revision.
func (b *bench) fluxFailures(ctx context.Context, d *dev, ns string) error {
	cases := failureCases("app")
	names := []string{"pull", "crash"}
	files := map[string]string{}
	for i, c := range cases {
		for p, s := range fluxApp("apps/"+names[i], [][2]string{{"app", c.image}}, 2) {
			files[p] = s
		}
	}
	if err := d.commit(ctx, files, "release broken images"); err != nil {
		return err
	}
	sha, err := testenv.Git(ctx, d.dir, "rev-parse", "HEAD")
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	var ws []*waiter
	for _, n := range names {
		ws = append(ws, b.k.start(wctx, ksGVR, ns, "", ksAt([]string{n}, sha, false)))
	}
	_, t0, err := d.push(ctx)
	if err != nil {
		return err
	}
	if err := b.poke(ctx, ns); err != nil {
		return err
	}
	for i, n := range names {
		at, err := ws[i].wait()
		if err != nil {
			return fmt.Errorf("Kustomization %s never failed at %.8s: %w", n, sha, err)
		}
		b.res.Failures = append(b.res.Failures, failure{Who: "Flux", Case: cases[i].name, Took: at.Sub(t0),
			Outcome: "Ready=False at its timeout (" + fluxKsTimeout + "); nothing rolled back, the new spec stays applied"})
	}
	return nil
}
