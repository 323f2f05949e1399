package applier

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/tandem-gitops/tandem/contract"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
)

// benchObjects is a colored set of n ConfigMaps; every tenth one's data
// carries version, so changing version changes 10% of the set.
func benchObjects(ns string, n int, version string) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, n)
	for i := range out {
		v := "v0"
		if i%10 == 0 {
			v = version
		}
		out[i] = configMap(ns, fmt.Sprintf("cm-%04d-blue", i), "blue", map[string]any{"version": v, "payload": "0123456789abcdef"})
	}
	return out
}

// BenchmarkApply measures Apply (dry run + apply + inventory + prune check)
// of n objects: first apply into an empty namespace, a re-apply that changes
// nothing, and a re-apply that changes 10% of the objects. floor is a bare
// concurrent server-side apply of the same objects (no dry run, no
// inventory) with the same concurrency and rate limit: the best Apply could
// do. The metric objects/s is n per iteration.
// benchVersion makes every changed10 iteration's data new, across the
// repeated runs the testing package makes of one benchmark.
// benchOptions are the defaults; set QPS very high to see the server's own
// limit.
var benchOptions = Options{}

var benchVersion atomic.Int64

// requestCounter counts the requests that reach the API server, so the
// benchmark reports requests per object beside the throughput.
type requestCounter struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c requestCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}

func BenchmarkApply(b *testing.B) {
	for _, n := range []int{100, 500, 1000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			var requests atomic.Int64
			cfg := rest.CopyConfig(env.Config)
			cfg.WrapTransport = func(rt http.RoundTripper) http.RoundTripper { return requestCounter{rt, &requests} }
			a, err := New(cfg, benchOptions)
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			var start int64
			count := func(b *testing.B) {
				b.Helper()
				start = requests.Load()
				b.ResetTimer()
			}
			report := func(b *testing.B) {
				b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "objects/s")
				b.ReportMetric(float64(requests.Load()-start)/float64(n*b.N), "requests/object")
			}
			b.Run("first", func(b *testing.B) {
				count(b)
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns := env.Namespace(b)
					set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: benchObjects(ns, n, "v1")}
					b.StartTimer()
					if _, err := a.Apply(ctx, set); err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
			ns := env.Namespace(b)
			set := Set{Bundle: testBundle, Color: "blue", Namespace: ns, Objects: benchObjects(ns, n, "v1")}
			if _, err := a.Apply(ctx, set); err != nil {
				b.Fatal(err)
			}
			b.Run("unchanged", func(b *testing.B) {
				count(b)
				for i := 0; i < b.N; i++ {
					cs, err := a.Apply(ctx, set)
					if err != nil {
						b.Fatal(err)
					}
					if cs.Changed() {
						b.Fatalf("re-apply changed %s", cs)
					}
				}
				report(b)
			})
			b.Run("changed10", func(b *testing.B) {
				count(b)
				for i := 0; i < b.N; i++ {
					s := set
					s.Objects = benchObjects(ns, n, fmt.Sprintf("v%d", benchVersion.Add(1)+1))
					cs, err := a.Apply(ctx, s)
					if err != nil {
						b.Fatal(err)
					}
					if got := cs.Count(Configured); got != (n+9)/10 {
						b.Fatalf("configured %d, want %d: %s", got, (n+9)/10, cs)
					}
				}
				report(b)
			})
			b.Run("floor", func(b *testing.B) {
				count(b)
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					ns := env.Namespace(b)
					items := make([]*item, n)
					for j, o := range benchObjects(ns, n, "v1") {
						body, err := applyBody(o)
						if err != nil {
							b.Fatal(err)
						}
						items[j] = &item{obj: o, body: body, ri: a.dyn.Resource(gvrConfigMaps).Namespace(ns)}
					}
					b.StartTimer()
					err := a.each(ctx, items, func(ctx context.Context, it *item) error {
						_, err := it.ri.Patch(ctx, it.obj.GetName(), types.ApplyPatchType, it.body,
							metav1.PatchOptions{FieldManager: contract.FieldManagerFor(testBundle), Force: new(true)})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				report(b)
			})
		})
	}
}
