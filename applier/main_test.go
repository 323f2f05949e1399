package applier

import (
	"context"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/tandem-gitops/tandem/testenv"
)

// env is the package's one control plane.
var env *testenv.Env

func TestMain(m *testing.M) {
	os.Exit(testenv.RunTests(m, func(e *testenv.Env) { env = e }))
}

const testBundle = "shop"

func newApplier(tb testing.TB) *Applier {
	tb.Helper()
	a, err := New(env.Config, Options{})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

// applierThrough is an Applier whose requests go through the transport
// wrap returns around the real one.
func applierThrough(tb testing.TB, wrap func(http.RoundTripper) http.RoundTripper) *Applier {
	tb.Helper()
	cfg := rest.CopyConfig(env.Config)
	cfg.WrapTransport = wrap
	a, err := New(cfg, Options{})
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	return a
}

func testCtx(tb testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return ctx
}

func colorLabels(app, color string) map[string]any {
	return map[string]any{"app": app, contract.LabelBundle: testBundle, contract.LabelColor: color}
}

// deployment builds the Deployment <app>-<color> as render would.
func deployment(ns, app, color, image string, replicas int64) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apps/v1",
		"kind":       "Deployment",
		"metadata": map[string]any{
			"name": app + "-" + color, "namespace": ns, "labels": colorLabels(app, color),
			"annotations": map[string]any{contract.AnnotationCommit: "c0ffee", contract.AnnotationDigest: "sha256:abc"},
		},
		"spec": map[string]any{
			"replicas": replicas,
			"selector": map[string]any{"matchLabels": colorLabels(app, color)},
			"template": map[string]any{
				"metadata": map[string]any{"labels": colorLabels(app, color)},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": app, "image": image,
					"ports": []any{map[string]any{"containerPort": int64(8080)}},
				}}},
			},
		},
	}}
}

// service builds the colored Service <app>-<color>.
func service(ns, app, color string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata": map[string]any{
			"name": app + "-" + color, "namespace": ns, "labels": colorLabels(app, color),
			"annotations": map[string]any{contract.AnnotationCommit: "c0ffee", contract.AnnotationDigest: "sha256:abc"},
		},
		"spec": map[string]any{
			"selector": colorLabels(app, color),
			"ports":    []any{map[string]any{"port": int64(8080), "targetPort": int64(8080)}},
		},
	}}
}

// twinOf builds the stable twin of app, selecting color, as render would.
func twinOf(ns, app, color, commit string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1",
		"kind":       "Service",
		"metadata": map[string]any{
			"name": app, "namespace": ns,
			"labels":      map[string]any{"app": app, contract.LabelBundle: testBundle},
			"annotations": map[string]any{contract.AnnotationLiveCommit: commit},
		},
		"spec": map[string]any{
			"selector": colorLabels(app, color),
			"ports":    []any{map[string]any{"port": int64(8080), "targetPort": int64(8080)}},
		},
	}}
}

// clientServer is the test bundle: client and server Deployments and Services.
func clientServer(ns, color, clientImage, serverImage string) []*unstructured.Unstructured {
	return []*unstructured.Unstructured{
		deployment(ns, "client", color, clientImage, 1), service(ns, "client", color),
		deployment(ns, "server", color, serverImage, 2), service(ns, "server", color),
	}
}

func configMap(ns, name, color string, data map[string]any) *unstructured.Unstructured {
	l := map[string]any{contract.LabelBundle: testBundle}
	if color != "" {
		l[contract.LabelColor] = color
	}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": l},
		"data":     data,
	}}
}

// exists reports whether the object exists in the cluster.
func exists(tb testing.TB, a *Applier, gvr schema.GroupVersionResource, ns, name string) bool {
	tb.Helper()
	_, err := a.dyn.Resource(gvr).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		tb.Fatalf("get %s %s/%s: %v", gvr.Resource, ns, name, err)
	}
	return true
}

func deleteNow() metav1.DeleteOptions {
	bg := metav1.DeletePropagationBackground
	return metav1.DeleteOptions{PropagationPolicy: &bg}
}

func createOpts() metav1.CreateOptions { return metav1.CreateOptions{} }

// userConfigMap is a ConfigMap a person made: no tandem labels, no tandem manager.
func userConfigMap(ns, name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Data:       map[string]string{"owner": "someone else"},
	}
}

func objs(us ...*unstructured.Unstructured) []*unstructured.Unstructured { return us }

// jobObject builds a colored Job that runs image once.
func jobObject(ns, name, image string) *unstructured.Unstructured {
	l := map[string]any{contract.LabelBundle: testBundle, contract.LabelColor: "green"}
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "batch/v1", "kind": "Job",
		"metadata": map[string]any{"name": name, "namespace": ns, "labels": l},
		"spec": map[string]any{"template": map[string]any{
			"metadata": map[string]any{"labels": l},
			"spec": map[string]any{"restartPolicy": "Never", "containers": []any{
				map[string]any{"name": "job", "image": image},
			}},
		}},
	}}
}

// unstructuredInt reads an int field of the object named name in items.
func unstructuredInt(items []unstructured.Unstructured, name string, fields ...string) (int64, bool, error) {
	for _, u := range items {
		if u.GetName() == name {
			return unstructured.NestedInt64(u.Object, fields...)
		}
	}
	return 0, false, nil
}
