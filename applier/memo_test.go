package applier

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// requestLog records the method and path (with the dry-run flag) of every
// request that reaches the API server.
type requestLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []string
}

func (l *requestLog) RoundTrip(r *http.Request) (*http.Response, error) {
	line := r.Method + " " + r.URL.Path
	if strings.Contains(r.URL.RawQuery, "dryRun") {
		line += " (dry run)"
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, line)
	l.mu.Unlock()
	return l.next.RoundTrip(r)
}

// take returns the requests logged since the last take.
func (l *requestLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.reqs
	l.reqs = nil
	return out
}

// writes are the requests of reqs that are not reads (GET, LIST).
func writes(reqs []string) []string {
	var out []string
	for _, r := range reqs {
		if !strings.HasPrefix(r, http.MethodGet+" ") {
			out = append(out, r)
		}
	}
	return out
}

// A re-apply of objects nobody touched since the last apply sends neither
// dry runs nor applies; an object edited, or claimed by another bundle, in
// between takes the full path again: the edit is reverted, the claim
// refused with nothing applied.
func TestReapplyOfUntouchedObjectsSendsNoWrites(t *testing.T) {
	ns := env.Namespace(t)
	log := &requestLog{}
	a := applierThrough(t, func(rt http.RoundTripper) http.RoundTripper { log.next = rt; return log })
	ctx := testCtx(t, 2*time.Minute)
	objs := func(v string) []*unstructured.Unstructured {
		var out []*unstructured.Unstructured
		for _, n := range []string{"a-blue", "b-blue", "c-blue"} {
			out = append(out, configMap(ns, n, "blue", map[string]any{"v": v}))
		}
		return out
	}
	set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: objs("1")}
	if _, err := a.Apply(ctx, set); err != nil {
		t.Fatal(err)
	}
	log.take()

	cs, err := a.Apply(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	if w := writes(log.take()); cs.Changed() || cs.Count(Unchanged) != 3 || len(w) != 0 {
		t.Errorf("re-apply of untouched objects: %s; writes sent: %q; want 3 unchanged and no writes", cs, w)
	}

	// Someone edits b-blue by hand: the next apply dry-runs and applies it
	// again, and only it, and its data is back.
	cms := a.dyn.Resource(gvrConfigMaps).Namespace(ns)
	if _, err := cms.Patch(ctx, "b-blue", types.MergePatchType, []byte(`{"data":{"v":"edited"}}`),
		metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	log.take()
	cs, err = a.Apply(ctx, set)
	if err != nil {
		t.Fatal(err)
	}
	w := writes(log.take())
	if got := actions(cs)["ConfigMap "+ns+"/b-blue"]; got != Configured || cs.Count(Configured) != 1 {
		t.Errorf("after an edit of b-blue: %s (b-blue %s), want b-blue configured and the rest unchanged", cs, got)
	}
	onlyB := len(w) >= 2 && strings.HasSuffix(w[0], "/b-blue (dry run)")
	for _, r := range w[min(1, len(w)):] {
		onlyB = onlyB && strings.HasSuffix(r, "/b-blue") // the apply (again with force on a conflict)
	}
	if !onlyB {
		t.Errorf("after an edit of b-blue the writes were %q, want b-blue's dry run, then its apply", w)
	}
	if v := dataV(t, a, ns, "b-blue"); v != "1" {
		t.Errorf("b-blue data.v = %q after the re-apply, want the edit reverted to %q", v, "1")
	}

	// An invalid new object beside a changed a-blue and untouched b-blue
	// and c-blue: nothing is applied.
	bad := configMap(ns, "d-blue", "blue", map[string]any{"v": map[string]any{"not": "a string"}})
	withBad := set
	withBad.Objects = append(objs("1"), bad)
	withBad.Objects[0] = configMap(ns, "a-blue", "blue", map[string]any{"v": "2"})
	if _, err := a.Apply(ctx, withBad); err == nil || !strings.Contains(err.Error(), "ConfigMap "+ns+"/d-blue: ") {
		t.Fatalf("apply with an invalid d-blue: err = %v, want d-blue named", err)
	}
	if v := dataV(t, a, ns, "a-blue"); v != "1" {
		t.Errorf("a-blue data.v = %q after the refused apply, want %q (nothing applied)", v, "1")
	}

	// Another bundle takes c-blue: the same set is refused, although a-blue
	// and b-blue are untouched.
	if _, err := cms.Patch(ctx, "c-blue", types.MergePatchType,
		[]byte(`{"metadata":{"labels":{"`+contract.LabelBundle+`":"other"}}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Apply(ctx, set); err == nil || !strings.Contains(err.Error(), "ConfigMap "+ns+"/c-blue: belongs to bundle other") {
		t.Fatalf("apply with c-blue claimed by bundle other: err = %v, want c-blue refused", err)
	}
}

// dataV is data.v of the ConfigMap ns/name.
func dataV(tb testing.TB, a *Applier, ns, name string) string {
	tb.Helper()
	live, err := a.dyn.Resource(gvrConfigMaps).Namespace(ns).Get(testCtx(tb, time.Minute), name, metav1.GetOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	v, _, _ := unstructured.NestedString(live.Object, "data", "v")
	return v
}
