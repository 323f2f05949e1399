package main

import (
	"context"
	"flag"
	"fmt"
	"sort"

	"github.com/tandem-gitops/tandem/render"

	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
)

// chartConfig are the flags about helm charts, shared by run, render and
// diff.
type chartConfig struct {
	AllowRemote     bool
	CredentialsFile string
	Cache           string
	MaxBytes        int64
	KubeVersion     string // render only: run and diff ask the cluster
}

// register adds the chart flags to fs (withCache: --chart-cache too, whose
// default run fills in under its workdir).
func (c *chartConfig) register(fs *flag.FlagSet, withCache bool) {
	fs.BoolVar(&c.AllowRemote, "allow-remote-charts", false, "let kustomizations' helmCharts fetch charts from a Helm repository (https://) or an OCI registry (oci://), by exact version (off: only chart directories in the repository)")
	fs.StringVar(&c.CredentialsFile, "chart-credentials-file", "", "Docker-style config.json with \"auths\" by host (username and password, or auth) for chart repositories and registries; read at every fetch, never logged")
	fs.Int64Var(&c.MaxBytes, "chart-max-bytes", render.DefaultMaxChartBytes, "largest remote chart archive, in bytes (any chart is also refused past 64 MiB unpacked)")
	if withCache {
		fs.StringVar(&c.Cache, "chart-cache", "", "directory where remote chart archives are cached by digest and each chart version is pinned to the first digest seen (default: charts/ under --workdir)")
	}
}

// apply sets the chart options of o.
func (c *chartConfig) apply(o *render.Options) {
	o.AllowRemoteCharts = c.AllowRemote
	o.ChartCredentials = c.CredentialsFile
	o.ChartCache = c.Cache
	o.MaxChartBytes = c.MaxBytes
	if c.KubeVersion != "" {
		o.KubeVersion = c.KubeVersion
	}
}

// clusterCapabilities reads what charts see as .Capabilities from the
// cluster: its version and every group/version and group/version/Kind it
// serves (as helm install does). A partial discovery failure (an
// unavailable aggregated API) keeps what was found.
func clusterCapabilities(ctx context.Context, cfg *rest.Config) (kubeVersion string, apiVersions []string, err error) {
	cfg = rest.CopyConfig(cfg)
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return "", nil, fmt.Errorf("discovery: %w", err)
	}
	v, err := dc.ServerVersion()
	if err != nil {
		return "", nil, fmt.Errorf("discovery: server version: %w", err)
	}
	_, lists, err := dc.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return "", nil, fmt.Errorf("discovery: API versions: %w", err)
	}
	seen := map[string]bool{}
	for _, l := range lists {
		seen[l.GroupVersion] = true
		for _, r := range l.APIResources {
			seen[l.GroupVersion+"/"+r.Kind] = true
		}
	}
	for s := range seen {
		apiVersions = append(apiVersions, s)
	}
	sort.Strings(apiVersions)
	return v.GitVersion, apiVersions, ctx.Err()
}
