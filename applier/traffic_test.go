package applier

import (
	"context"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// deployColor applies the client/server bundle in color and waits until it
// is healthy.
func deployColor(t *testing.T, a *Applier, ns, color, version string) {
	t.Helper()
	ctx := testCtx(t, 2*time.Minute)
	cs, err := a.Apply(ctx, Set{Bundle: testBundle, Color: color, Namespace: ns,
		Objects: clientServer(ns, color, "example/client:"+version, "example/server:"+version)})
	if err != nil {
		t.Fatalf("Apply %s: %v", color, err)
	}
	if _, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute}); err != nil {
		t.Fatalf("WaitHealthy %s: %v", color, err)
	}
}

func twins(ns, color, commit string, apps ...string) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, app := range apps {
		out = append(out, twinOf(ns, app, color, commit))
	}
	return out
}

// endpointColors returns the colors of the pods svc's EndpointSlices list,
// one entry per endpoint, sorted.
func endpointColors(t *testing.T, a *Applier, ns, svc string) []string {
	t.Helper()
	ctx := testCtx(t, 30*time.Second)
	slices, err := a.cs.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: labelServiceName + "=" + svc})
	if err != nil {
		t.Fatal(err)
	}
	var colors []string
	for _, s := range slices.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil {
				colors = append(colors, "?")
				continue
			}
			p, err := a.cs.CoreV1().Pods(ns).Get(ctx, ep.TargetRef.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatalf("pod %s of %s: %v", ep.TargetRef.Name, svc, err)
			}
			colors = append(colors, p.Labels[contract.LabelColor])
		}
	}
	sort.Strings(colors)
	return colors
}

func twinSelectorColor(t *testing.T, a *Applier, ns, name string) (string, string) {
	t.Helper()
	s, err := a.cs.CoreV1().Services(ns).Get(testCtx(t, 30*time.Second), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("twin %s: %v", name, err)
	}
	return s.Spec.Selector[contract.LabelColor], s.Annotations[contract.AnnotationLiveCommit]
}

func TestFlipMovesEndpointsBetweenColors(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	deployColor(t, a, ns, "blue", "v1")
	deployColor(t, a, ns, "green", "v2")
	ctx := testCtx(t, 2*time.Minute)

	if err := a.Flip(ctx, twins(ns, "blue", "aaa111", "client", "server"), "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip blue: %v", err)
	}
	if got := strings.Join(endpointColors(t, a, ns, "server"), ","); got != "blue,blue" {
		t.Errorf("server endpoints %s after flip to blue, want blue,blue", got)
	}
	obs, err := a.Observe(ctx, ns, testBundle)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Live != "blue" || obs.Mixed || obs.LiveCommit != "aaa111" || len(obs.Twins) != 2 {
		t.Errorf("observed %+v, want live blue, commit aaa111, 2 twins", obs)
	}
	for _, c := range []string{"blue", "green"} {
		cs := obs.Colors[c]
		if !cs.Healthy || cs.Commit != "c0ffee" || cs.Digest != "sha256:abc" || cs.Replicas != 3 || cs.Ready != 3 || cs.Workloads != 2 {
			t.Errorf("color %s: %+v", c, cs)
		}
	}

	// The twins render with the old color; Flip sets the new one.
	start := time.Now()
	if err := a.Flip(ctx, twins(ns, "blue", "bbb222", "client", "server"), "green", FlipOptions{}); err != nil {
		t.Fatalf("Flip green: %v", err)
	}
	t.Logf("flip to green confirmed by EndpointSlices in %s", time.Since(start).Round(time.Millisecond))
	for svc, want := range map[string]string{"server": "green,green", "client": "green"} {
		if got := strings.Join(endpointColors(t, a, ns, svc), ","); got != want {
			t.Errorf("%s endpoints %s after flip to green, want %s", svc, got, want)
		}
	}
	obs, err = a.Observe(ctx, ns, testBundle)
	if err != nil {
		t.Fatal(err)
	}
	if obs.Live != "green" || obs.LiveCommit != "bbb222" {
		t.Errorf("observed %+v, want live green at bbb222", obs)
	}

	// A twin changed behind tandem's back shows as mixed.
	if _, err := a.cs.CoreV1().Services(ns).Patch(ctx, "client", types.MergePatchType,
		[]byte(`{"spec":{"selector":{"tandem.dev/color":"blue"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	obs, err = a.Observe(ctx, ns, testBundle)
	if err != nil {
		t.Fatal(err)
	}
	if !obs.Mixed || obs.Live != "" || obs.Twins["client"] != "blue" || obs.Twins["server"] != "green" {
		t.Errorf("observed %+v, want mixed twins (client blue, server green)", obs)
	}

	// Dropping a twin from the bundle prunes it on the next flip.
	if err := a.Flip(ctx, twins(ns, "green", "bbb222", "server"), "green", FlipOptions{}); err != nil {
		t.Fatalf("Flip without client: %v", err)
	}
	if exists(t, a, gvrServices, ns, "client") {
		t.Error("dropped twin client not pruned")
	}
	if !exists(t, a, gvrServices, ns, "client-green") || !exists(t, a, gvrServices, ns, "server") {
		t.Error("flip pruned more than the dropped twin")
	}
}

func TestFlipFailingHalfwayIsPutBack(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	deployColor(t, a, ns, "blue", "v1")
	deployColor(t, a, ns, "green", "v2")
	ctx := testCtx(t, 2*time.Minute)
	if err := a.Flip(ctx, twins(ns, "blue", "aaa111", "client"), "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip blue: %v", err)
	}
	// 5 Services exist; the quota admits one more. Each twin passes the dry
	// run alone, but creating both server and extra exceeds the quota.
	quota := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "services", Namespace: ns},
		Spec:       corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{corev1.ResourceServices: resource.MustParse("6")}},
	}
	if _, err := a.cs.CoreV1().ResourceQuotas(ns).Create(ctx, quota, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitQuotaUsed(t, a, ns, "services", 5)

	err := a.Flip(ctx, twins(ns, "blue", "bbb222", "client", "server", "extra"), "green", FlipOptions{})
	if err == nil {
		t.Fatal("Flip succeeded beyond the quota")
	}
	t.Logf("error: %v", err)
	// The twins are applied at once, so either new twin may be the one
	// the quota refuses.
	named := strings.Contains(err.Error(), "Service "+ns+"/extra: ") || strings.Contains(err.Error(), "Service "+ns+"/server: ")
	if !named || !strings.Contains(err.Error(), "put back") {
		t.Errorf("error %q should name the twin that failed and say the others were put back", err)
	}
	if c, commit := twinSelectorColor(t, a, ns, "client"); c != "blue" || commit != "aaa111" {
		t.Errorf("client twin selects %s at %s after the failed flip, want blue at aaa111", c, commit)
	}
	for _, name := range []string{"server", "extra"} {
		if exists(t, a, gvrServices, ns, name) {
			t.Errorf("%s twin created by the failed flip was not removed", name)
		}
	}
	if got := strings.Join(endpointColors(t, a, ns, "client"), ","); got != "blue" {
		t.Errorf("client endpoints %s, want blue", got)
	}

	// A twin the server rejects is caught by the dry run: nothing changes.
	bad := twins(ns, "blue", "ccc333", "client", "server")
	_ = unstructured.SetNestedSlice(bad[1].Object, []any{map[string]any{"port": int64(0)}}, "spec", "ports")
	err = a.Flip(ctx, bad, "green", FlipOptions{})
	if err == nil || !strings.Contains(err.Error(), "no twin changed") || !strings.Contains(err.Error(), "Service "+ns+"/server: ") {
		t.Fatalf("err = %v, want a dry-run failure naming the server twin", err)
	}
	if c, commit := twinSelectorColor(t, a, ns, "client"); c != "blue" || commit != "aaa111" {
		t.Errorf("client twin selects %s at %s after the rejected flip, want blue at aaa111", c, commit)
	}
}

func waitQuotaUsed(t *testing.T, a *Applier, ns, name string, want int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		q, err := a.cs.CoreV1().ResourceQuotas(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if used, ok := q.Status.Used[corev1.ResourceServices]; ok && used.Value() == want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("quota %s never reported %d services used", name, want)
}

func TestFlipRefusesEmptySelector(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	tw := twinOf(ns, "server", "blue", "aaa111")
	_ = unstructured.SetNestedStringMap(tw.Object, map[string]string{contract.LabelColor: "blue"}, "spec", "selector")
	err := a.Flip(testCtx(t, time.Minute), objs(tw), "green", FlipOptions{})
	if err == nil || !strings.Contains(err.Error(), "Service "+ns+"/server: refusing") {
		t.Fatalf("err = %v, want a refusal naming the twin", err)
	}
	if exists(t, a, gvrServices, ns, "server") {
		t.Error("a twin with an empty selector was created")
	}
}

func TestScaleColorDownAndUp(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	deployColor(t, a, ns, "green", "v1")
	ctx := testCtx(t, 2*time.Minute)

	if err := a.ScaleColor(ctx, ns, testBundle, "green", false); err != nil {
		t.Fatalf("scale down: %v", err)
	}
	d, err := a.cs.AppsV1().Deployments(ns).Get(ctx, "server-green", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if *d.Spec.Replicas != 0 || d.Annotations[contract.AnnotationReplicas] != "2" {
		t.Errorf("server-green replicas %d annotation %q, want 0 and \"2\"", *d.Spec.Replicas, d.Annotations[contract.AnnotationReplicas])
	}
	// Scaling down twice keeps the remembered replicas.
	if err := a.ScaleColor(ctx, ns, testBundle, "green", false); err != nil {
		t.Fatal(err)
	}
	obs, err := a.Observe(ctx, ns, testBundle)
	if err != nil {
		t.Fatal(err)
	}
	if g := obs.Colors["green"]; !g.ScaledDown || g.Replicas != 0 {
		t.Errorf("observed green %+v, want scaled down to 0", g)
	}

	if err := a.ScaleColor(ctx, ns, testBundle, "green", true); err != nil {
		t.Fatalf("scale up: %v", err)
	}
	cs, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "green", Namespace: ns,
		Objects: clientServer(ns, "green", "example/client:v1", "example/server:v1")})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute})
	if err != nil {
		t.Fatalf("WaitHealthy after scale up: %v", err)
	}
	if rep.Summary() != "client-green: 1/1 ready; server-green: 2/2 ready" {
		t.Errorf("summary %q", rep.Summary())
	}

	// Apply also brings a scaled-down color back.
	if err := a.ScaleColor(ctx, ns, testBundle, "green", false); err != nil {
		t.Fatal(err)
	}
	cs, err = a.Apply(ctx, Set{Bundle: testBundle, Color: "green", Namespace: ns,
		Objects: clientServer(ns, "green", "example/client:v1", "example/server:v1")})
	if err != nil {
		t.Fatal(err)
	}
	if cs.Count(Configured) != 2 {
		t.Errorf("re-apply after scale down: %v, want both Deployments configured", cs.Changes)
	}
	rep, err = a.WaitHealthy(ctx, cs.Objects, WaitOptions{Timeout: time.Minute})
	if err != nil || rep.Summary() != "client-green: 1/1 ready; server-green: 2/2 ready" {
		t.Errorf("after Apply of a scaled-down color: %v %q", err, rep.Summary())
	}
	d, err = a.cs.AppsV1().Deployments(ns).Get(ctx, "server-green", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Annotations[contract.AnnotationReplicas]; ok {
		t.Error("tandem.dev/replicas left behind after Apply")
	}
}

func TestFlipToUnreadyColorTimesOut(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	deployColor(t, a, ns, "blue", "v1")
	ctx := testCtx(t, 2*time.Minute)
	if _, err := a.Apply(ctx, Set{Bundle: testBundle, Color: "green", Namespace: ns,
		Objects: clientServer(ns, "green", "example/client:v2", "example/server:v2-unready")}); err != nil {
		t.Fatal(err)
	}
	short, err := New(env.Config, Options{EndpointsTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = short.Flip(ctx, twins(ns, "blue", "bbb222", "server"), "green", FlipOptions{})
	t.Logf("after %s: %v", time.Since(start).Round(time.Millisecond), err)
	if err == nil || !strings.Contains(err.Error(), "Service "+ns+"/server: ") || IsTransient(err) {
		t.Fatalf("err = %v, want a timeout naming the server twin", err)
	}
}

// A flip planned while the idle color is verified moves traffic when it is
// completed; a twin that changed in between (here: it now belongs to another
// bundle) is caught, because the plan's apply only lands on the object its
// dry run saw and the flip is then checked again from the start.
func TestFlipPlannedAhead(t *testing.T) {
	ns := env.Namespace(t)
	a := newApplier(t)
	deployColor(t, a, ns, "blue", "v1")
	deployColor(t, a, ns, "green", "v2")
	ctx := testCtx(t, 2*time.Minute)
	if err := a.Flip(ctx, twins(ns, "blue", "aaa111", "client", "server"), "blue", FlipOptions{}); err != nil {
		t.Fatalf("Flip blue: %v", err)
	}

	p, err := a.PlanFlip(ctx, twins(ns, "green", "bbb222", "client", "server"), "green", FlipOptions{})
	if err != nil {
		t.Fatalf("PlanFlip green: %v", err)
	}
	for _, name := range []string{"client", "server"} {
		if c, _ := twinSelectorColor(t, a, ns, name); c != "blue" {
			t.Fatalf("planning moved %s to %s", name, c)
		}
	}
	if err := a.FlipPlanned(ctx, p); err != nil {
		t.Fatalf("FlipPlanned green: %v", err)
	}
	for _, name := range []string{"client", "server"} {
		if c, commit := twinSelectorColor(t, a, ns, name); c != "green" || commit != "bbb222" {
			t.Errorf("%s selects %s at %s, want green at bbb222", name, c, commit)
		}
		got := endpointColors(t, a, ns, name)
		if len(got) == 0 || strings.Count(strings.Join(got, ","), "green") != len(got) {
			t.Errorf("%s endpoints %v, want green only", name, got)
		}
	}

	// Planned back to blue; then the server twin is relabelled to another
	// bundle before the plan completes.
	p, err = a.PlanFlip(ctx, twins(ns, "blue", "ccc333", "client", "server"), "blue", FlipOptions{})
	if err != nil {
		t.Fatalf("PlanFlip blue: %v", err)
	}
	if _, err := a.cs.CoreV1().Services(ns).Patch(ctx, "server", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+contract.LabelBundle+`":"other"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	err = a.FlipPlanned(ctx, p)
	if err == nil || !strings.Contains(err.Error(), "no twin changed") || !strings.Contains(err.Error(), "Service "+ns+"/server: ") {
		t.Fatalf("FlipPlanned after the server twin changed hands: %v, want the fresh dry run to refuse it", err)
	}
	for _, name := range []string{"client", "server"} {
		if c, commit := twinSelectorColor(t, a, ns, name); c != "green" || commit != "bbb222" {
			t.Errorf("%s selects %s at %s after the refused flip, want green at bbb222", name, c, commit)
		}
	}
}
