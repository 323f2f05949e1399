package applier

import (
	"context"
	"fmt"
	"sort"

	"github.com/tandem-gitops/tandem/contract"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

// ColorState is what runs in one color of a bundle.
type ColorState struct {
	// Commit and Digest are the tandem.dev/commit and tandem.dev/digest
	// annotations of the color's workloads; "" unless all agree (Consistent).
	Commit, Digest string
	Consistent     bool
	// Workloads counts Deployments, StatefulSets and DaemonSets.
	Workloads int
	// Replicas and Ready sum desired and ready pods.
	Replicas, Ready int64
	// ScaledDown is true when ScaleColor scaled every scalable workload to zero.
	ScaledDown bool
	// Healthy is true when every workload is Current by kstatus (a color
	// scaled to zero is Current: check Replicas).
	Healthy bool
}

// Observed is what the cluster says about a bundle.
type Observed struct {
	// Live is the color every stable twin selects; "" when there are no twins
	// or they disagree (Mixed).
	Live  string
	Mixed bool
	// Twins maps each stable twin's name to the color it selects.
	Twins map[string]string
	// LiveCommit is the twins' tandem.dev/live-commit when all agree.
	LiveCommit string
	// Colors holds the state of each color found on the bundle's workloads.
	Colors map[string]ColorState
}

// Observe reads the bundle's stable twins (its twins inventory, and Services
// with the bundle label managed by "tandem/<bundle>/traffic", or by the
// shared "tandem/traffic" of earlier releases and without a color label)
// and its workloads per color.
func (a *Applier) Observe(ctx context.Context, namespace, bundle string) (Observed, error) {
	obs := Observed{Twins: map[string]string{}, Colors: map[string]ColorState{}}
	if err := a.observeTwins(ctx, namespace, bundle, &obs); err != nil {
		return obs, err
	}
	return obs, a.observeColors(ctx, namespace, bundle, &obs)
}

// observeTwins reads which color the stable twins select.
func (a *Applier) observeTwins(ctx context.Context, namespace, bundle string, obs *Observed) error {
	svc := a.dyn.Resource(gvrServices).Namespace(namespace)
	twins := map[string]*unstructured.Unstructured{}
	inv, err := a.readInventory(ctx, namespace, bundle, twinsInventory)
	if err != nil {
		return fmt.Errorf("observe %s: %w", bundle, err)
	}
	for _, r := range inv {
		u, err := svc.Get(ctx, r.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("observe %s: Service %s/%s: %w", bundle, namespace, r.Name, err)
		}
		twins[u.GetName()] = u
	}
	list, err := svc.List(ctx, metav1.ListOptions{LabelSelector: contract.LabelBundle + "=" + bundle})
	if err != nil {
		return fmt.Errorf("observe %s: list Services: %w", bundle, err)
	}
	for i := range list.Items {
		u := &list.Items[i]
		_, colored := u.GetLabels()[contract.LabelColor]
		for _, m := range u.GetManagedFields() {
			if m.Manager == contract.TrafficFieldManagerFor(bundle) || (m.Manager == contract.LegacyTrafficFieldManager && !colored) {
				twins[u.GetName()] = u
			}
		}
	}
	colors, commits := map[string]bool{}, map[string]bool{}
	for name, u := range twins {
		sel, _, _ := unstructured.NestedStringMap(u.Object, "spec", "selector")
		obs.Twins[name] = sel[contract.LabelColor]
		colors[sel[contract.LabelColor]] = true
		commits[u.GetAnnotations()[contract.AnnotationLiveCommit]] = true
	}
	if len(colors) == 1 {
		for c := range colors {
			obs.Live = c
		}
	}
	obs.Mixed = len(colors) > 1
	if len(commits) == 1 {
		for c := range commits {
			obs.LiveCommit = c
		}
	}
	return nil
}

// observeColors reads what each color's workloads run and their health.
func (a *Applier) observeColors(ctx context.Context, namespace, bundle string, obs *Observed) error {
	type acc struct {
		cs               ColorState
		commits, digests map[string]bool
		scalable, scaled int
		allCurrent       bool
	}
	accs := map[string]*acc{}
	for _, gvr := range []schema.GroupVersionResource{gvrDeployments, gvrStatefulSets, gvrDaemonSets} {
		l, err := a.dyn.Resource(gvr).Namespace(namespace).List(ctx, metav1.ListOptions{LabelSelector: contract.LabelBundle + "=" + bundle + "," + contract.LabelColor})
		if err != nil {
			return fmt.Errorf("observe %s: list %s: %w", bundle, gvr.Resource, err)
		}
		for i := range l.Items {
			u := &l.Items[i]
			color := u.GetLabels()[contract.LabelColor]
			ac := accs[color]
			if ac == nil {
				ac = &acc{commits: map[string]bool{}, digests: map[string]bool{}, allCurrent: true}
				accs[color] = ac
			}
			ac.cs.Workloads++
			ac.commits[u.GetAnnotations()[contract.AnnotationCommit]] = true
			ac.digests[u.GetAnnotations()[contract.AnnotationDigest]] = true
			wh := workloadHealth(workload{gvr: gvr, kind: u.GetKind(), ns: namespace, name: u.GetName()}, u)
			ac.cs.Replicas += wh.Desired
			ac.cs.Ready += wh.Ready
			if wh.Status != string(status.CurrentStatus) {
				ac.allCurrent = false
			}
			if isScalable(u) {
				ac.scalable++
				if _, ok := scaledFrom(u); ok {
					ac.scaled++
				}
			}
		}
	}
	for color, ac := range accs {
		cs := ac.cs
		cs.Healthy = ac.allCurrent
		cs.ScaledDown = ac.scalable > 0 && ac.scaled == ac.scalable
		cs.Consistent = len(ac.commits) == 1 && len(ac.digests) == 1
		if cs.Consistent {
			cs.Commit, cs.Digest = only(ac.commits), only(ac.digests)
		}
		obs.Colors[color] = cs
	}
	return nil
}

func only(m map[string]bool) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys[0]
}
