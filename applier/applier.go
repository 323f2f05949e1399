package applier

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/util/flowcontrol"
)

// ScaleFieldManager records ScaleColor's replica changes.
const ScaleFieldManager = "tandem/scale"

// Defaults for Options. DefaultQPS and DefaultBurst come from BenchmarkApply
// (apply_bench_test.go) on the 2-core testenv control plane: the API server
// there serves about 650-750 server-side applies per second; a client limit
// of QPS 500 held the bare-apply floor at ~510/s and Apply (two requests per
// object) at ~270-300 objects/s. At QPS 1000 / Burst 2000 the server, not the
// client, is the limit (bare-apply floor ~640-710/s; Apply of 100-1000
// new ConfigMaps ~335-365 objects/s: a dry run and an apply each; a re-apply
// sends requests only for objects written since, memo.go), and a bundle of
// up to ~1000 objects fits in the burst.
const (
	DefaultQPS              = 1000
	DefaultBurst            = 2000
	DefaultConcurrency      = 16
	DefaultEndpointsTimeout = 2 * time.Minute
)

// Options configures an Applier. The zero value is valid: New fills defaults.
type Options struct {
	// QPS and Burst are the client-side rate limit shared by every request
	// the Applier makes (defaults DefaultQPS, DefaultBurst).
	QPS   float32
	Burst int
	// Concurrency bounds the number of objects applied at once (default
	// DefaultConcurrency).
	Concurrency int
	// EndpointsTimeout bounds Flip's wait for EndpointSlices when ctx has no
	// earlier deadline (default DefaultEndpointsTimeout).
	EndpointsTimeout time.Duration
	// OnUnreachable, when set, is called once each time a wait (WaitHealthy,
	// Flip's wait for EndpointSlices) starts to meet an unreachable API
	// server, with what was being done and the error. The wait rides a short
	// outage out (WaitOptions.UnreachableGrace) without returning an error;
	// this lets the caller report the outage all the same.
	OnUnreachable func(op string, err error)
}

func (o *Options) defaults() error {
	if o.QPS < 0 || o.Burst < 0 || o.Concurrency < 0 || o.EndpointsTimeout < 0 {
		return errors.New("applier: options must not be negative")
	}
	if o.QPS == 0 {
		o.QPS = DefaultQPS
	}
	if o.Burst == 0 {
		o.Burst = DefaultBurst
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.EndpointsTimeout == 0 {
		o.EndpointsTimeout = DefaultEndpointsTimeout
	}
	return nil
}

// Applier applies object sets to one cluster, waits for their health and
// moves traffic between colors. It is safe for concurrent use.
type Applier struct {
	opts   Options
	dyn    dynamic.Interface
	cs     kubernetes.Interface
	meta   metadata.Interface // dry runs of new objects: only their metadata comes back, as protobuf
	mapper *restmapper.DeferredDiscoveryRESTMapper
	memo   appliedMemo
}

// New builds an Applier for cfg. One HTTP client and one rate limiter are
// shared by the dynamic client, the typed clientset and discovery.
func New(cfg *rest.Config, o Options) (*Applier, error) {
	if cfg == nil {
		return nil, errors.New("applier: rest config is nil")
	}
	if err := o.defaults(); err != nil {
		return nil, err
	}
	c := rest.CopyConfig(cfg)
	c.QPS = o.QPS
	c.Burst = o.Burst
	c.RateLimiter = flowcontrol.NewTokenBucketRateLimiter(o.QPS, o.Burst)
	if c.UserAgent == "" {
		c.UserAgent = "tandem-agent"
	}
	hc, err := rest.HTTPClientFor(c)
	if err != nil {
		return nil, fmt.Errorf("applier: http client: %w", err)
	}
	dyn, err := dynamic.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("applier: dynamic client: %w", err)
	}
	cs, err := kubernetes.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("applier: clientset: %w", err)
	}
	mc, err := metadata.NewForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("applier: metadata client: %w", err)
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(c, hc)
	if err != nil {
		return nil, fmt.Errorf("applier: discovery client: %w", err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
	return &Applier{opts: o, dyn: dyn, cs: cs, meta: mc, mapper: mapper}, nil
}

// mapping resolves gvk, resetting the discovery cache once when the kind is
// unknown (a CRD applied a moment ago).
func (a *Applier) mapping(gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err != nil && meta.IsNoMatchError(err) {
		a.mapper.Reset()
		m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	}
	return m, err
}

// resourceFor returns the dynamic client for obj, filling obj's namespace
// with ns when the kind is namespaced and obj has none, and clearing it when
// the kind is cluster-scoped.
func (a *Applier) resourceFor(obj *unstructured.Unstructured, ns string) (dynamic.ResourceInterface, error) {
	m, err := a.mapping(obj.GroupVersionKind())
	if err != nil {
		return nil, err
	}
	if m.Scope.Name() == meta.RESTScopeNameRoot {
		obj.SetNamespace("")
		return a.dyn.Resource(m.Resource), nil
	}
	if obj.GetNamespace() == "" {
		obj.SetNamespace(ns)
	}
	if obj.GetNamespace() == "" {
		return nil, errors.New("namespaced object without a namespace")
	}
	return a.dyn.Resource(m.Resource).Namespace(obj.GetNamespace()), nil
}

var (
	gvrDeployments    = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrStatefulSets   = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "statefulsets"}
	gvrDaemonSets     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "daemonsets"}
	gvrJobs           = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	gvrPods           = schema.GroupVersionResource{Version: "v1", Resource: "pods"}
	gvrServices       = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrConfigMaps     = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrEndpointSlices = schema.GroupVersionResource{Group: "discovery.k8s.io", Version: "v1", Resource: "endpointslices"}
	gvrCRDs           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// refString names an object the way every error and report line does:
// "Deployment shop/server-green" or "Namespace shop".
func refString(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

func objRef(u *unstructured.Unstructured) string {
	return refString(u.GetKind(), u.GetNamespace(), u.GetName())
}

func ctxErr(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	return ctx.Err()
}
