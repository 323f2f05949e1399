package applier

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"github.com/tandem-gitops/tandem/contract"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// WaitOptions tunes WaitHealthy. Zero fields take the defaults of
// DefaultWaitOptions (ImagePullGrace's default is zero).
type WaitOptions struct {
	// Timeout bounds the whole wait (default 5m).
	Timeout time.Duration
	// ImagePullGrace is how long a container may wait in ErrImagePull or
	// ImagePullBackOff before the wait fails (default 0: at once).
	ImagePullGrace time.Duration
	// CrashLoopRestarts is the restart count from which a container in
	// CrashLoopBackOff fails the wait (default 3).
	CrashLoopRestarts int32
	// UnschedulableGrace is how long a pod may stay unschedulable (default 30s).
	UnschedulableGrace time.Duration
	// UnreachableGrace is how long the API server may be unreachable before
	// WaitHealthy gives up with a *TransientError (default 20s).
	UnreachableGrace time.Duration
}

// DefaultWaitOptions returns the defaults of WaitOptions.
func DefaultWaitOptions() WaitOptions {
	return WaitOptions{Timeout: 5 * time.Minute, CrashLoopRestarts: 3, UnschedulableGrace: 30 * time.Second, UnreachableGrace: 20 * time.Second}
}

func (o WaitOptions) withDefaults() WaitOptions {
	d := DefaultWaitOptions()
	if o.Timeout <= 0 {
		o.Timeout = d.Timeout
	}
	if o.CrashLoopRestarts <= 0 {
		o.CrashLoopRestarts = d.CrashLoopRestarts
	}
	if o.UnschedulableGrace <= 0 {
		o.UnschedulableGrace = d.UnschedulableGrace
	}
	if o.UnreachableGrace <= 0 {
		o.UnreachableGrace = d.UnreachableGrace
	}
	return o
}

// WorkloadHealth is the health of one workload.
type WorkloadHealth struct {
	Kind, Namespace, Name string
	// Status is the kstatus status (Current, InProgress, Failed, ...), or
	// NotFound.
	Status string
	// Ready and Desired count ready and desired pods (succeeded and wanted
	// completions for a Job).
	Ready, Desired int64
	// Message is kstatus' message.
	Message string
}

// Healthy reports whether the workload is Current (a Job: complete).
func (w WorkloadHealth) Healthy() bool { return w.Status == string(status.CurrentStatus) }

// Object names the workload: "Deployment shop/server-green".
func (w WorkloadHealth) Object() string { return refString(w.Kind, w.Namespace, w.Name) }

// Line is the workload's line for a commit body: "server-green: 2/2 ready"
// ("migrate-green: 1/1 complete" for a Job).
func (w WorkloadHealth) Line() string {
	word := "ready"
	if w.Kind == "Job" {
		word = "complete"
	}
	return fmt.Sprintf("%s: %d/%d %s", w.Name, w.Ready, w.Desired, word)
}

// HealthReport is the typed result of WaitHealthy.
type HealthReport struct {
	// Workloads in the order they were given.
	Workloads []WorkloadHealth
	// Duration is how long the wait took.
	Duration time.Duration
}

// Lines returns one Line per workload.
func (r HealthReport) Lines() []string {
	out := make([]string, len(r.Workloads))
	for i, w := range r.Workloads {
		out[i] = w.Line()
	}
	return out
}

// Summary joins the lines for a commit body: "client-green: 3/3 ready;
// server-green: 2/2 ready".
func (r HealthReport) Summary() string { return strings.Join(r.Lines(), "; ") }

// Healthy reports whether every workload is healthy.
func (r HealthReport) Healthy() bool {
	for _, w := range r.Workloads {
		if !w.Healthy() {
			return false
		}
	}
	return true
}

// workload is one object WaitHealthy waits for.
type workload struct {
	gvr     schema.GroupVersionResource
	kind    string
	ns      string
	name    string
	wantGen int64
}

func workloadGVR(u *unstructured.Unstructured) (schema.GroupVersionResource, bool) {
	switch gk := u.GroupVersionKind().GroupKind(); gk {
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}:
		return gvrDeployments, true
	case schema.GroupKind{Group: "apps", Kind: "StatefulSet"}:
		return gvrStatefulSets, true
	case schema.GroupKind{Group: "apps", Kind: "DaemonSet"}:
		return gvrDaemonSets, true
	case schema.GroupKind{Group: "batch", Kind: "Job"}:
		return gvrJobs, true
	}
	return schema.GroupVersionResource{}, false
}

// commonSelector is the bundle+color label selector shared by all objs, or
// "" when they do not share one.
func commonSelector(objs []*unstructured.Unstructured) string {
	var parts []string
	for _, key := range []string{contract.LabelBundle, contract.LabelColor} {
		v, ok := "", true
		for i, o := range objs {
			lv, has := o.GetLabels()[key]
			if !has || (i > 0 && lv != v) {
				ok = false
				break
			}
			v = lv
		}
		if ok && len(objs) > 0 {
			parts = append(parts, key+"="+v)
		}
	}
	return strings.Join(parts, ",")
}

// WaitHealthy waits until every workload among objs (Deployments,
// StatefulSets, DaemonSets; Jobs complete) is Current by kstatus rules, once
// its observedGeneration has reached the generation of the applied object.
// Other kinds are ignored. It watches the workloads and their pods (by the
// objects' bundle and color labels) and fails fast on pod signals that will
// not heal: ErrImagePull/ImagePullBackOff, CrashLoopBackOff past
// CrashLoopRestarts restarts, unschedulable past UnschedulableGrace.
//
// Errors: a *HealthError when the workloads failed or timed out; a
// *TransientError when the API server stayed unreachable; ctx's error when ctx
// ends. The report is filled in every case.
func (a *Applier) WaitHealthy(ctx context.Context, objs []*unstructured.Unstructured, o WaitOptions) (HealthReport, error) {
	w, err := a.WatchHealth(ctx, objs)
	if err != nil {
		return HealthReport{}, err
	}
	return w.Wait(ctx, objs, o)
}

// HealthWatch is a WaitHealthy whose watches started before the objects
// were applied. A wait that starts its watches after the apply sees pods
// that became Ready during the apply only once its lists return; started
// ahead, the watches are in sync when the apply lands and the verdict
// follows the pods at once.
type HealthWatch struct {
	a      *Applier
	srcs   []srcKey
	sel    string
	events chan sourceEvent
	stop   context.CancelFunc
}

// WatchHealth starts the watches WaitHealthy needs for objs (the rendered
// objects; they need not exist yet). They run until ctx ends, Wait returns
// or Stop is called.
func (a *Applier) WatchHealth(ctx context.Context, objs []*unstructured.Unstructured) (*HealthWatch, error) {
	h, err := newHealthWait(objs, DefaultWaitOptions())
	if err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &HealthWatch{a: a, srcs: h.srcs, sel: h.sel, events: make(chan sourceEvent, 64), stop: cancel}
	for i, k := range h.srcs {
		go watchSource(wctx, i, a.dyn.Resource(k.gvr).Namespace(k.ns), h.sel, w.events)
	}
	return w, nil
}

// Stop ends the watches.
func (w *HealthWatch) Stop() { w.stop() }

// Wait is WaitHealthy on the watches already running, for objs as applied
// (their generations); then it stops them. Objects other than those
// WatchHealth was given (other workloads or namespaces) are waited for
// with watches of their own.
func (w *HealthWatch) Wait(ctx context.Context, objs []*unstructured.Unstructured, o WaitOptions) (HealthReport, error) {
	defer w.Stop()
	h, err := newHealthWait(objs, o.withDefaults())
	if err != nil || len(h.wls) == 0 {
		return HealthReport{}, err
	}
	if h.sel != w.sel || !slices.Equal(h.srcs, w.srcs) {
		w.Stop()
		fresh, err := w.a.WatchHealth(ctx, objs)
		if err != nil {
			return HealthReport{}, err
		}
		return fresh.Wait(ctx, objs, o)
	}
	deadline := time.NewTimer(h.o.Timeout)
	defer deadline.Stop()
	tick := time.NewTicker(time.Second) // re-checks grace periods on cached state
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			rep, _, _ := h.evaluate(time.Now())
			return rep, fmt.Errorf("wait for health: %w", ctxErr(ctx))
		case <-deadline.C:
			return h.timedOut(time.Now())
		case ev := <-w.events:
			h.c.apply(ev, time.Now())
			w.a.reportOutage("wait for health", h.c, time.Now())
		case <-tick.C:
		}
		if rep, done, err := h.verdict(time.Now()); done {
			return rep, err
		}
	}
}

// srcKey is one watched source: a resource in a namespace.
type srcKey struct {
	gvr schema.GroupVersionResource
	ns  string
}

// healthWait is the state of one WaitHealthy: the workloads, the watched
// sources (one per resource and namespace, plus each namespace's pods) and
// their cached objects.
type healthWait struct {
	o        WaitOptions
	start    time.Time
	wls      []workload
	sel      string
	srcs     []srcKey
	srcIndex map[srcKey]int
	c        *cache
	// imagePullSince: when each pod was first seen failing to pull.
	imagePullSince map[string]time.Time
}

func newHealthWait(objs []*unstructured.Unstructured, o WaitOptions) (*healthWait, error) {
	h := &healthWait{o: o, start: time.Now(), srcIndex: map[srcKey]int{}, imagePullSince: map[string]time.Time{}}
	var wobjs []*unstructured.Unstructured
	for _, u := range objs {
		gvr, ok := workloadGVR(u)
		if !ok {
			continue
		}
		ns := u.GetNamespace()
		if ns == "" {
			return nil, fmt.Errorf("%s: namespace is required", objRef(u))
		}
		h.wls = append(h.wls, workload{gvr: gvr, kind: u.GetKind(), ns: ns, name: u.GetName(), wantGen: u.GetGeneration()})
		wobjs = append(wobjs, u)
	}
	h.sel = commonSelector(wobjs)
	for _, w := range h.wls {
		h.addSource(srcKey{w.gvr, w.ns})
		h.addSource(srcKey{gvrPods, w.ns})
	}
	h.c = newCache(len(h.srcs))
	return h, nil
}

func (h *healthWait) addSource(k srcKey) {
	if _, ok := h.srcIndex[k]; !ok {
		h.srcIndex[k] = len(h.srcs)
		h.srcs = append(h.srcs, k)
	}
}

// evaluate judges every workload from the cached objects.
func (h *healthWait) evaluate(now time.Time) (rep HealthReport, failed, notReady []Failure) {
	rep = HealthReport{Duration: now.Sub(h.start)}
	for _, w := range h.wls {
		live := h.c.objs[h.srcIndex[srcKey{w.gvr, w.ns}]][w.ns+"/"+w.name]
		pods, older := podsOf(h.c.objs[h.srcIndex[srcKey{gvrPods, w.ns}]], live)
		wh := readyByPods(w, workloadHealth(w, live), live, pods, older)
		rep.Workloads = append(rep.Workloads, wh)
		ref := wh.Object()
		if reason := failFast(pods, h.o, now, h.imagePullSince); reason != "" {
			failed = append(failed, Failure{Object: ref, Reason: reason})
			continue
		}
		if wh.Status == string(status.FailedStatus) {
			failed = append(failed, Failure{Object: ref, Reason: wh.Message})
			continue
		}
		if !wh.Healthy() {
			notReady = append(notReady, Failure{Object: ref, Reason: notReadyReason(wh, pods)})
		}
	}
	return rep, failed, notReady
}

// timedOut is the verdict at the deadline: transient when the API server
// did not answer, else a health failure naming what was not ready.
func (h *healthWait) timedOut(now time.Time) (HealthReport, error) {
	rep, failed, notReady := h.evaluate(now)
	if _, err := h.c.failing(now); err != nil || !h.c.allSynced() {
		if err == nil {
			err = errors.New("no answer from the api server")
		}
		return rep, &TransientError{Op: "wait for health", Err: err}
	}
	return rep, &HealthError{TimedOut: true, Failures: append(failed, notReady...), Report: rep}
}

// verdict judges the current state; done is false while the wait goes on.
func (h *healthWait) verdict(now time.Time) (rep HealthReport, done bool, err error) {
	if d, err := h.c.failing(now); err != nil {
		if !IsTransient(err) {
			rep, _, _ := h.evaluate(now)
			return rep, true, fmt.Errorf("wait for health: %w", err)
		}
		if d >= h.o.UnreachableGrace {
			rep, _, _ := h.evaluate(now)
			return rep, true, &TransientError{Op: "wait for health", Err: err}
		}
		return rep, false, nil
	}
	if !h.c.allSynced() {
		return rep, false, nil
	}
	rep, failed, notReady := h.evaluate(now)
	if len(failed) > 0 {
		return rep, true, &HealthError{Failures: failed, Report: rep}
	}
	return rep, len(notReady) == 0, nil
}

// workloadHealth computes the health of one workload from its live object.
func workloadHealth(w workload, live *unstructured.Unstructured) WorkloadHealth {
	wh := WorkloadHealth{Kind: w.kind, Namespace: w.ns, Name: w.name}
	if live == nil {
		wh.Status, wh.Message = "NotFound", "not found"
		return wh
	}
	obj := live.Object
	switch w.kind {
	case "Deployment", "StatefulSet":
		wh.Desired = nestedInt(obj, 1, "spec", "replicas")
		wh.Ready = nestedInt(obj, 0, "status", "readyReplicas")
	case "DaemonSet":
		wh.Desired = nestedInt(obj, 0, "status", "desiredNumberScheduled")
		wh.Ready = nestedInt(obj, 0, "status", "numberReady")
	case "Job":
		wh.Desired = nestedInt(obj, nestedInt(obj, 1, "spec", "parallelism"), "spec", "completions")
		wh.Ready = nestedInt(obj, 0, "status", "succeeded")
	}
	if live.GetGeneration() < w.wantGen {
		wh.Status, wh.Message = string(status.InProgressStatus), fmt.Sprintf("generation %d not yet seen", w.wantGen)
		return wh
	}
	res, err := status.Compute(live)
	if err != nil {
		wh.Status, wh.Message = string(status.UnknownStatus), err.Error()
		return wh
	}
	wh.Status, wh.Message = string(res.Status), res.Message
	if w.kind == "Job" && res.Status == status.CurrentStatus && !jobComplete(live) {
		wh.Status = string(status.InProgressStatus) // kstatus calls a running Job Current; we want it complete
	}
	return wh
}

func jobComplete(u *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == "Complete" && m["status"] == "True" {
			return true
		}
	}
	return false
}

func nestedInt(obj map[string]any, def int64, fields ...string) int64 {
	v, found, err := unstructured.NestedFieldNoCopy(obj, fields...)
	if !found || err != nil {
		return def
	}
	switch n := v.(type) {
	case int64:
		return n
	case float64:
		return int64(n)
	case int:
		return int64(n)
	}
	return def
}

// podsOf returns the pods (not terminating) that live's selector matches
// and that run its current template, sorted by name, and how many matching
// pods (not terminating) run an older one.
func podsOf(all map[string]*unstructured.Unstructured, live *unstructured.Unstructured) (pods []*corev1.Pod, older int) {
	if live == nil {
		return nil, 0
	}
	m, found, err := unstructured.NestedMap(live.Object, "spec", "selector")
	if !found || err != nil {
		return nil, 0
	}
	var ls metav1.LabelSelector
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(m, &ls); err != nil {
		return nil, 0
	}
	sel, err := metav1.LabelSelectorAsSelector(&ls)
	if err != nil || sel.Empty() {
		return nil, 0
	}
	current := currentTemplate(live)
	for _, u := range all {
		if u.GetDeletionTimestamp() != nil || !sel.Matches(labels.Set(u.GetLabels())) {
			continue
		}
		var p corev1.Pod
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
			continue
		}
		if !current(&p) {
			// A pod of an older template on its way out (a rollback
			// replaces a failing release): its failures are not this
			// release's.
			older++
			continue
		}
		pods = append(pods, &p)
	}
	sort.Slice(pods, func(i, j int) bool { return pods[i].Name < pods[j].Name })
	return pods, older
}

// currentTemplate tells pods of the workload's current pod template from
// older ones: a StatefulSet's pods by controller-revision-hash against
// status.updateRevision; others by the release digest tandem puts on every
// pod template (pods inherit it), which differs for any change of the
// release, images, env or config alike; a template without one (not
// rendered by tandem) by its images.
func currentTemplate(live *unstructured.Unstructured) func(*corev1.Pod) bool {
	if rev, _, _ := unstructured.NestedString(live.Object, "status", "updateRevision"); rev != "" && live.GetKind() == "StatefulSet" {
		return func(p *corev1.Pod) bool { return p.Labels[appsv1.ControllerRevisionHashLabelKey] == rev }
	}
	if d, _, _ := unstructured.NestedString(live.Object, "spec", "template", "metadata", "annotations", contract.AnnotationDigest); d != "" {
		return func(p *corev1.Pod) bool { return p.Annotations[contract.AnnotationDigest] == d }
	}
	want := templateImages(live)
	return func(p *corev1.Pod) bool { return want == "" || podImages(p) == want }
}

// templateImages lists the images of a workload's pod template ("" when it
// has none), in container order.
func templateImages(live *unstructured.Unstructured) string {
	cs, _, _ := unstructured.NestedSlice(live.Object, "spec", "template", "spec", "containers")
	var images []string
	for _, c := range cs {
		if m, ok := c.(map[string]any); ok {
			img, _ := m["image"].(string)
			images = append(images, img)
		}
	}
	return strings.Join(images, " ")
}

// podImages lists the images a pod's spec asks for, in container order.
func podImages(p *corev1.Pod) string {
	var images []string
	for _, c := range p.Spec.Containers {
		images = append(images, c.Image)
	}
	return strings.Join(images, " ")
}

// imagePullReasons are container waiting reasons that do not heal by waiting.
var imagePullReasons = map[string]bool{
	"ErrImagePull": true, "ImagePullBackOff": true, "InvalidImageName": true, "ErrImageNeverPull": true,
}

// failFast returns why pods will not become healthy on their own, or "".
// since remembers when each container was first seen failing to pull.
func failFast(pods []*corev1.Pod, o WaitOptions, now time.Time, since map[string]time.Time) string {
	for _, p := range pods {
		statuses := append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...)
		for _, cs := range statuses {
			wt := cs.State.Waiting
			if wt == nil {
				continue
			}
			if imagePullReasons[wt.Reason] {
				key := string(p.UID) + "/" + cs.Name
				if _, ok := since[key]; !ok {
					since[key] = now
				}
				if now.Sub(since[key]) >= o.ImagePullGrace {
					return fmt.Sprintf("pod %s container %s: %s (%s)", p.Name, cs.Name, wt.Reason, imageOf(p, cs))
				}
			}
			if wt.Reason == "CrashLoopBackOff" && cs.RestartCount >= o.CrashLoopRestarts {
				return fmt.Sprintf("pod %s container %s: CrashLoopBackOff after %d restarts (%s)", p.Name, cs.Name, cs.RestartCount, imageOf(p, cs))
			}
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				// Condition times are truncated to the second: count the
				// grace from the end of that second, so it is never cut short.
				from := c.LastTransitionTime.Add(time.Second)
				if !c.LastTransitionTime.IsZero() && now.Sub(from) >= o.UnschedulableGrace {
					return fmt.Sprintf("pod %s: unschedulable for %s: %s", p.Name, now.Sub(from).Round(time.Second), c.Message)
				}
			}
		}
	}
	return ""
}

// imageOf is the image of a container: from the pod spec (what was asked
// for), else from the status.
func imageOf(p *corev1.Pod, cs corev1.ContainerStatus) string {
	for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
		if c.Name == cs.Name {
			return c.Image
		}
	}
	return cs.Image
}

// notReadyReason explains a workload that is not healthy yet, naming a pod
// that is not ready when there is one.
func notReadyReason(wh WorkloadHealth, pods []*corev1.Pod) string {
	msg := fmt.Sprintf("not ready (%s: %s)", wh.Status, wh.Message)
	for _, p := range pods {
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Ready {
				continue
			}
			state := "waiting"
			switch {
			case cs.State.Running != nil:
				state = "running, not ready"
			case cs.State.Waiting != nil && cs.State.Waiting.Reason != "":
				state = cs.State.Waiting.Reason
			case cs.State.Terminated != nil:
				state = "terminated: " + cs.State.Terminated.Reason
			}
			return fmt.Sprintf("%s; pod %s container %s: %s (%s)", msg, p.Name, cs.Name, state, imageOf(p, cs))
		}
	}
	return msg
}
