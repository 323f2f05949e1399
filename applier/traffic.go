package applier

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
)

// twinsInventory is the inventory color of a bundle's stable twins.
const twinsInventory = "twins"

// labelServiceName is the label EndpointSlices carry for their Service.
const labelServiceName = "kubernetes.io/service-name"

// preconditioned is the twin's apply body that only applies to the object
// the dry run saw: its resourceVersion is the apply's precondition.
func (t *twin) preconditioned() []byte {
	var m map[string]any
	if err := json.Unmarshal(t.body, &m); err != nil {
		return t.body
	}
	if err := unstructured.SetNestedField(m, t.prev.GetResourceVersion(), "metadata", "resourceVersion"); err != nil {
		return t.body
	}
	body, err := json.Marshal(m)
	if err != nil {
		return t.body
	}
	return body
}

// twin is one stable twin on its way through Flip.
type twin struct {
	obj  *unstructured.Unstructured // as applied: selector with the new color
	sel  map[string]string
	prev *unstructured.Unstructured // live before the flip; nil if it did not exist
	body []byte
}

// FlipOptions configures one Flip.
type FlipOptions struct {
	// Adopt lets Flip take over a Service of a twin's name that exists and
	// that no bundle owns (made with kubectl, Helm or another tool: the
	// Service an app had before it moved under tandem). Without it such a
	// Service is refused before any twin changes.
	Adopt bool
}

// Flip points every stable twin of a bundle at color in one pass: each twin
// is server-side applied (field manager "tandem/<bundle>/traffic",
// contract.TrafficFieldManagerFor) with its selector
// plus tandem.dev/color=<color> and its tandem.dev/live-commit annotation.
// Missing twins are created. All twins are dry-run first; if an apply still
// fails, the twins changed so far are put back (previous selector; created
// ones deleted) and the error is returned. Then Flip waits, watch-driven,
// until each twin's EndpointSlices list exactly the ready pods of color that
// its selector matches, and nothing else (Options.EndpointsTimeout, or ctx's
// deadline); a twin without any ready endpoint does not count as switched.
// The twins are recorded in the inventory
// tandem-inventory-<bundle>-twins; twins of an earlier Flip that are no
// longer given are pruned. A twin whose selector would hold nothing but the
// color is refused. All twins must share one namespace and bundle label. A
// twin that exists and belongs to another bundle (its tandem.dev/bundle
// label), or that no bundle owns unless o.Adopt, is refused before any twin
// changes. A twin an earlier release
// applied with the shared manager "tandem/traffic" is handed over to the
// bundle's own.
// When the EndpointSlices do not converge in time the twins stay on color
// and the error names each twin and what it still lists.
func (a *Applier) Flip(ctx context.Context, twins []*unstructured.Unstructured, color string, o FlipOptions) error {
	p, err := a.PlanFlip(ctx, twins, color, o)
	if err != nil {
		return err
	}
	return a.flip(ctx, p, false)
}

// FlipPlan is a Flip checked ahead of time: its twins prepared and
// dry-run, and the twins' inventory read. PlanFlip makes one while the idle
// color is still being verified, so that FlipPlanned moves traffic with one
// round of requests once it is healthy.
type FlipPlan struct {
	ns, bundle, color, manager string
	o                          FlipOptions
	ts                         []*twin
	refs, old                  []ObjectRef
}

// PlanFlip does everything of Flip that comes before the first twin changes:
// it prepares every twin, dry-runs them all and reads the inventory, at once.
// Its errors are Flip's: a refused twin, or the API server's.
func (a *Applier) PlanFlip(ctx context.Context, twins []*unstructured.Unstructured, color string, o FlipOptions) (*FlipPlan, error) {
	if color == "" {
		return nil, errors.New("flip: color is empty")
	}
	if len(twins) == 0 {
		return &FlipPlan{color: color}, nil
	}
	ns, bundle := twins[0].GetNamespace(), twins[0].GetLabels()[contract.LabelBundle]
	if ns == "" || bundle == "" {
		return nil, fmt.Errorf("flip: %s: twins need a namespace and the %s label", objRef(twins[0]), contract.LabelBundle)
	}
	p := &FlipPlan{ns: ns, bundle: bundle, color: color, manager: contract.TrafficFieldManagerFor(bundle), o: o}
	for _, in := range twins {
		t, err := prepareTwin(in, color)
		if err != nil {
			return nil, fmt.Errorf("flip to %s: %w", color, err)
		}
		if t.obj.GetNamespace() != ns || t.obj.GetLabels()[contract.LabelBundle] != bundle {
			return nil, fmt.Errorf("flip to %s: %s: all twins must be in namespace %s with %s=%s", color, objRef(t.obj), ns, contract.LabelBundle, bundle)
		}
		p.ts = append(p.ts, t)
		p.refs = append(p.refs, refOf(t.obj))
	}
	svc := a.dyn.Resource(gvrServices).Namespace(ns)

	// Dry run every twin and read the inventory, all at once: these
	// requests are independent, and traffic waits on them.
	var invErr error
	var wg sync.WaitGroup
	wg.Go(func() { p.old, invErr = a.readInventory(ctx, ns, bundle, twinsInventory) })
	dry := make([]dryRun, len(p.ts))
	for i, t := range p.ts {
		wg.Go(func() { dry[i] = dryRunTwin(ctx, svc, t, bundle, p.manager, o.Adopt) })
	}
	wg.Wait()
	var bad []string
	for i, t := range p.ts {
		switch d := dry[i]; {
		case d.err != nil:
			return nil, fmt.Errorf("flip to %s: %s: %w", color, objRef(t.obj), d.err)
		case d.refused != "":
			bad = append(bad, fmt.Sprintf("%s: %s", objRef(t.obj), d.refused))
		}
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("flip to %s: dry run failed, no twin changed: %s", color, strings.Join(bad, "; "))
	}
	if invErr != nil {
		return nil, fmt.Errorf("flip to %s: %w", color, invErr)
	}
	return p, nil
}

// FlipPlanned completes a Flip from a plan PlanFlip made earlier. Each twin
// is applied only if it is still the object the dry run saw (its
// resourceVersion is the apply's precondition). When one changed since, the
// twins changed are put back and the Flip is done again from the start, dry
// run included, so a plan never moves traffic on a stale check. A plan that
// creates a twin (a first release) is done again from the start at once.
func (a *Applier) FlipPlanned(ctx context.Context, p *FlipPlan) error {
	if !p.creates() {
		err := a.flip(ctx, p, true)
		if !errors.Is(err, errStalePlan) {
			return err
		}
	}
	fresh, err := a.PlanFlip(ctx, planTwins(p), p.color, p.o)
	if err != nil {
		return err
	}
	return a.flip(ctx, fresh, false)
}

// creates reports whether the plan creates a twin: a create has no
// resourceVersion to hold it to the dry run, so such a plan is done again.
func (p *FlipPlan) creates() bool {
	for _, t := range p.ts {
		if t.prev == nil {
			return true
		}
	}
	return false
}

// errStalePlan: a twin changed between PlanFlip and FlipPlanned.
var errStalePlan = errors.New("a twin changed since the flip was planned")

// planTwins are the twins a plan was made from.
func planTwins(p *FlipPlan) []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(p.ts))
	for i, t := range p.ts {
		out[i] = t.obj
	}
	return out
}

// flip moves traffic as p says: the inventory first when it lacks a twin,
// then every twin at once, then the EndpointSlices and the inventory's
// prune. With precondition, each apply carries the resourceVersion the plan
// saw (or must create), and a stale plan is errStalePlan after put-back.
func (a *Applier) flip(ctx context.Context, p *FlipPlan, precondition bool) error {
	if len(p.ts) == 0 {
		return nil
	}
	// Record the new twins before creating any, so a crash cannot orphan them
	// (already recorded when the inventory lists them all).
	if union := unionRefs(p.old, p.refs); len(union) > len(p.old) || len(p.old) == 0 {
		if err := a.writeInventory(ctx, p.ns, p.bundle, twinsInventory, union); err != nil {
			return fmt.Errorf("flip to %s: %w", p.color, err)
		}
	}
	svc := a.dyn.Resource(gvrServices).Namespace(p.ns)
	if err := a.switchTwins(ctx, svc, p.ts, p.manager, precondition); err != nil {
		if errors.Is(err, errStalePlan) {
			return err
		}
		return fmt.Errorf("flip to %s: %w", p.color, err)
	}
	if err := a.waitEndpoints(ctx, p.ns, p.ts, p.color); err != nil {
		return fmt.Errorf("flip to %s: %w", p.color, err)
	}
	if _, failures, err := a.syncInventory(ctx, p.ns, p.bundle, twinsInventory, "", p.refs); err != nil {
		return fmt.Errorf("flip to %s: %w", p.color, err)
	} else if len(failures) > 0 {
		return fmt.Errorf("flip to %s: pruning old twins: %v", p.color, failures)
	}
	return nil
}

// prepareTwin copies in as the object Flip applies: a Service whose selector
// gains tandem.dev/color=<color>.
func prepareTwin(in *unstructured.Unstructured, color string) (*twin, error) {
	u := in.DeepCopy()
	if u.GroupVersionKind().Group != "" || u.GetKind() != "Service" {
		return nil, fmt.Errorf("%s: a stable twin must be a Service", objRef(u))
	}
	sel, _, err := unstructured.NestedStringMap(u.Object, "spec", "selector")
	if err != nil {
		return nil, fmt.Errorf("%s: spec.selector: %w", objRef(u), err)
	}
	delete(sel, contract.LabelColor)
	if len(sel) == 0 {
		return nil, fmt.Errorf("%s: refusing a twin whose selector would only be the color (it would select every pod of %s)", objRef(u), color)
	}
	sel[contract.LabelColor] = color
	if err := unstructured.SetNestedStringMap(u.Object, sel, "spec", "selector"); err != nil {
		return nil, err
	}
	body, err := applyBody(u)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", objRef(u), err)
	}
	return &twin{obj: u, sel: sel, body: body}, nil
}

// dryRun is one twin's dry run: err when retrying may help (the API server
// or ctx), refused when the twin cannot be applied as it is.
type dryRun struct {
	err     error
	refused string
}

// dryRunTwin reads the live twin into t.prev, checks that the bundle may
// claim it, and server-side applies it as a dry run.
func dryRunTwin(ctx context.Context, svc dynamic.ResourceInterface, t *twin, bundle, manager string, adopt bool) dryRun {
	live, err := svc.Get(ctx, t.obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
	case err != nil:
		return dryRun{err: err}
	default:
		t.prev = live
		if why := claimRefusal(live, bundle, adopt); why != "" {
			return dryRun{refused: why}
		}
	}
	_, err = svc.Patch(ctx, t.obj.GetName(), types.ApplyPatchType, t.body, metav1.PatchOptions{
		FieldManager: manager, Force: new(true), DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		if IsTransient(err) || ctx.Err() != nil {
			return dryRun{err: fmt.Errorf("dry run: %w", err)}
		}
		return dryRun{refused: err.Error()}
	}
	return dryRun{}
}

func unionRefs(a, b []ObjectRef) []ObjectRef {
	seen := map[string]bool{}
	var out []ObjectRef
	for _, r := range append(append([]ObjectRef{}, a...), b...) {
		if !seen[r.key()] {
			seen[r.key()] = true
			out = append(out, r)
		}
	}
	return out
}

// switchTwins applies every twin at once (traffic moves when the last one
// lands, so one round trip rather than one per twin). When any apply fails,
// every twin that did change is put back, and the error says how many.
func (a *Applier) switchTwins(ctx context.Context, svc dynamic.ResourceInterface, ts []*twin, manager string, precondition bool) error {
	errs := make([]error, len(ts))
	changed := make([]bool, len(ts))
	stale := make([]bool, len(ts))
	var wg sync.WaitGroup
	for i, t := range ts {
		wg.Go(func() {
			body, opts := t.body, metav1.PatchOptions{FieldManager: manager, Force: new(true)}
			if precondition {
				body = t.preconditioned()
			}
			out, err := svc.Patch(ctx, t.obj.GetName(), types.ApplyPatchType, body, opts)
			if err == nil {
				changed[i] = true
				_, err = dropLegacy(ctx, svc, out, contract.LegacyTrafficFieldManager, manager)
			}
			if err != nil {
				// A stale plan: the twin changed since the dry run.
				stale[i] = precondition && apierrors.IsConflict(err)
				errs[i] = fmt.Errorf("%s: %w", objRef(t.obj), err)
			}
		})
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		return nil
	}
	if slices.Contains(stale, true) {
		err = fmt.Errorf("%w: %w", errStalePlan, err)
	}
	var back []*twin
	for i, t := range ts {
		if changed[i] {
			back = append(back, t)
		}
	}
	if rerr := a.putBack(context.WithoutCancel(ctx), back); rerr != nil {
		return errors.Join(err, fmt.Errorf("putting twins back: %w", rerr))
	}
	return fmt.Errorf("%w (the %d twins changed were put back)", err, len(back))
}

// putBack restores twins to what they were before the flip: the previous
// selector and live-commit annotation, or no twin at all.
func (a *Applier) putBack(ctx context.Context, ts []*twin) error {
	svc := a.dyn.Resource(gvrServices)
	var errs []error
	for i := len(ts) - 1; i >= 0; i-- {
		t := ts[i]
		ri := svc.Namespace(t.obj.GetNamespace())
		if t.prev == nil {
			bg := metav1.DeletePropagationBackground
			err := ri.Delete(ctx, t.obj.GetName(), metav1.DeleteOptions{PropagationPolicy: &bg})
			if err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("%s: %w", objRef(t.obj), err))
			}
			continue
		}
		u := t.obj.DeepCopy()
		prevSel, _, _ := unstructured.NestedStringMap(t.prev.Object, "spec", "selector")
		if err := unstructured.SetNestedStringMap(u.Object, prevSel, "spec", "selector"); err != nil {
			errs = append(errs, err)
			continue
		}
		ann := u.GetAnnotations()
		if v, ok := t.prev.GetAnnotations()[contract.AnnotationLiveCommit]; ok {
			if ann == nil {
				ann = map[string]string{}
			}
			ann[contract.AnnotationLiveCommit] = v
		} else {
			delete(ann, contract.AnnotationLiveCommit)
		}
		u.SetAnnotations(ann)
		body, err := applyBody(u)
		if err == nil {
			manager := contract.TrafficFieldManagerFor(u.GetLabels()[contract.LabelBundle])
			_, err = ri.Patch(ctx, u.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{FieldManager: manager, Force: new(true)})
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", objRef(u), err))
		}
	}
	return errors.Join(errs...)
}

// waitEndpoints waits until every twin's EndpointSlices list exactly the
// ready pods of color its selector matches.
func (a *Applier) waitEndpoints(ctx context.Context, ns string, ts []*twin, color string) error {
	timeout := a.opts.EndpointsTimeout
	names := make([]string, len(ts))
	for i, t := range ts {
		names[i] = t.obj.GetName()
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	events := make(chan sourceEvent, 64)
	podSel := contract.LabelColor + "=" + color
	go watchSource(wctx, 0, a.dyn.Resource(gvrEndpointSlices).Namespace(ns), labelServiceName+" in ("+strings.Join(names, ",")+")", events)
	go watchSource(wctx, 1, a.dyn.Resource(gvrPods).Namespace(ns), podSel, events)
	c := newCache(2)
	start := time.Now()
	var pending []string
	for {
		select {
		case <-wctx.Done():
			if ctx.Err() != nil {
				return fmt.Errorf("waiting for EndpointSlices: %w", ctxErr(ctx))
			}
			if _, err := c.failing(time.Now()); err != nil {
				return &TransientError{Op: "wait for EndpointSlices", Err: err}
			}
			return fmt.Errorf("EndpointSlices not switched to %s after %s: %s", color, time.Since(start).Round(time.Second), strings.Join(pending, "; "))
		case ev := <-events:
			c.apply(ev, time.Now())
			a.reportOutage("wait for EndpointSlices", c, time.Now())
		}
		if !c.allSynced() {
			continue
		}
		if _, err := c.failing(time.Now()); err != nil {
			continue
		}
		pending = pending[:0]
		for _, t := range ts {
			if why := endpointsPending(t, c.objs[0], c.objs[1]); why != "" {
				pending = append(pending, objRef(t.obj)+": "+why)
			}
		}
		if len(pending) == 0 {
			return nil
		}
	}
}

// endpointsPending says why t's EndpointSlices do not yet list exactly the
// ready pods of the new color its selector matches ("" when they do).
func endpointsPending(t *twin, slices, colorPods map[string]*unstructured.Unstructured) string {
	sel := labels.SelectorFromSet(t.sel)
	want := map[string]bool{}
	matching := map[string]bool{}
	for _, u := range colorPods {
		if !sel.Matches(labels.Set(u.GetLabels())) || u.GetDeletionTimestamp() != nil {
			continue
		}
		matching[u.GetName()] = true
		var p corev1.Pod
		if runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p) == nil && podReady(&p) {
			want[u.GetName()] = true
		}
	}
	got := map[string]bool{}
	for _, u := range slices {
		if u.GetLabels()[labelServiceName] != t.obj.GetName() {
			continue
		}
		var es discoveryv1.EndpointSlice
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &es); err != nil {
			return "unreadable EndpointSlice " + u.GetName()
		}
		for _, ep := range es.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" {
				continue
			}
			if !matching[ep.TargetRef.Name] {
				return "still lists pod " + ep.TargetRef.Name
			}
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				got[ep.TargetRef.Name] = true
			}
		}
	}
	for p := range want {
		if !got[p] {
			return "does not list ready pod " + p + " yet"
		}
	}
	if len(got) == 0 {
		return fmt.Sprintf("no ready endpoint of %s (%d matching pods)", t.sel[contract.LabelColor], len(matching))
	}
	return ""
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
