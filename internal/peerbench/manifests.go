package main

import (
	"fmt"
	"strings"

	"github.com/tandem-gitops/tandem/testenv"
)

// deployment is an app as tandem and Flux deploy it: a Deployment of
// replicas pods running image, and its Service (the tests' manifest).
func deployment(name, image string, replicas int) string {
	return testenv.AppManifest(name, image, replicas)
}

// kustomization lists resources.
func kustomization(resources ...string) string {
	return "resources:\n- " + strings.Join(resources, "\n- ") + "\n"
}

// tandemBundle is the files of a tandem bundle named name under root,
// in its own namespace, with one file per app (name → image).
func tandemBundle(root, name string, apps [][2]string, replicas int) map[string]string {
	dir := root + "/" + name + "/"
	files := map[string]string{
		dir + "bundle.yaml": fmt.Sprintf(`apiVersion: tandem.dev/v1alpha1
kind: Bundle
metadata:
  name: %[1]s
spec:
  namespace: %[1]s
  shared: shared
  healthTimeout: 3m
  scaleDownAfter: never
  onFailure: revert
`, name),
		dir + "shared/kustomization.yaml": kustomization("namespace.yaml"),
		dir + "shared/namespace.yaml":     "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n",
	}
	var res []string
	for _, a := range apps {
		files[dir+"app/"+a[0]+".yaml"] = deployment(a[0], a[1], replicas)
		res = append(res, a[0]+".yaml")
	}
	files[dir+"app/kustomization.yaml"] = kustomization(res...)
	return files
}

// fluxApp is the files of a plain kustomize directory for Flux.
func fluxApp(dir string, apps [][2]string, replicas int) map[string]string {
	files := map[string]string{}
	var res []string
	for _, a := range apps {
		files[dir+"/"+a[0]+".yaml"] = deployment(a[0], a[1], replicas)
		res = append(res, a[0]+".yaml")
	}
	files[dir+"/kustomization.yaml"] = kustomization(res...)
	return files
}

// namespace is a Namespace object.
func namespace(name string) string {
	return "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: " + name + "\n"
}

// gitRepository is Flux's source for url, polled every interval.
func gitRepository(ns, url, interval string) string {
	return fmt.Sprintf(`apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: repo
  namespace: %s
spec:
  interval: %s
  url: %s
  ref: {branch: main}
`, ns, interval, url)
}

// fluxKustomization applies path of the GitRepository into target and waits
// up to timeout for its objects to be healthy (wait: true).
func fluxKustomization(ns, name, path, target, interval, timeout string) string {
	return fmt.Sprintf(`apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: %s
  namespace: %s
spec:
  interval: %s
  timeout: %s
  path: %s
  prune: true
  wait: true
  targetNamespace: %s
  sourceRef: {kind: GitRepository, name: repo}
`, name, ns, interval, timeout, path, target)
}

// rollout is an Argo Rollouts blue-green Rollout switching its active Service:
// new pods come up beside the old, and the Service is switched once they are
// available (autoPromotionEnabled, the default). deadline > 0 sets
// progressDeadlineSeconds with progressDeadlineAbort.
func rollout(ns, name, image string, replicas, deadline int) string {
	extra := ""
	if deadline > 0 {
		extra = fmt.Sprintf("  progressDeadlineSeconds: %d\n  progressDeadlineAbort: true\n", deadline)
	}
	return fmt.Sprintf(`apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: %[4]d
  revisionHistoryLimit: 2
%[5]s  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      containers:
      - name: %[2]s
        image: %[3]s
  strategy:
    blueGreen:
      activeService: %[2]s
`, ns, name, image, replicas, extra)
}

// rolloutService is a Rollout's active Service, applied once before the
// Rollout (the controller owns its selector's pod-template-hash afterwards).
func rolloutService(ns, name string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Service
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  selector: {app: %[2]s}
  ports:
  - port: 8080
`, ns, name)
}
