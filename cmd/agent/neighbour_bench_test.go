package main

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkSlowNeighbour measures what a bundle that is slow to render
// costs the other bundles of a commit: the time from `git push` to the
// promotion commit of a 1-app bundle, p50 over the runs, when each commit
// changes only that bundle ("alone") and when it also changes a bundle of
// 2,000 ConfigMaps in the same commit ("beside-slow"), whose render takes
// seconds. The slow bundle's own push to promotion is reported too.
func BenchmarkSlowNeighbour(b *testing.B) {
	measureOnce(b, func(b *testing.B) map[string]float64 {
		s := newScenario(b, "revert", "60s", app{"server", "example/server:v1"})
		slow := s.ns + "-slow"
		s.addBundle(slow)
		s.write("bundles/"+slow+"/app/kustomization.yaml", "resources:\n- cms.yaml\n")
		s.write("bundles/"+slow+"/app/cms.yaml", configMaps(2000, "v1"))
		s.push("a slow bundle")
		s.start("--root", "bundles", "--render-timeout", "5m")
		s.waitCommits(2)
		const runs = 5
		var alone, beside, slowTook []float64
		for i := range 2 * runs {
			withSlow := i%2 == 1
			tag := fmt.Sprintf("v%d", i+2)
			s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
			s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:" + tag}))
			if withSlow {
				s.write("bundles/"+slow+"/app/cms.yaml", configMaps(2000, tag))
			}
			s.git(s.clone, "add", "-A")
			s.git(s.clone, "commit", "--quiet", "-m", tag)
			start := time.Now()
			s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
			pushed := s.git(s.clone, "rev-parse", "HEAD")
			var normalAt, slowAt time.Duration
			for normalAt == 0 || (withSlow && slowAt == 0) {
				for _, c := range s.bundleCommits(s.ns) {
					if c.Trailers["Tandem-Source"] == pushed && normalAt == 0 {
						normalAt = time.Since(start)
					}
				}
				for _, c := range s.bundleCommits(slow) {
					if c.Trailers["Tandem-Source"] == pushed && withSlow && slowAt == 0 {
						slowAt = time.Since(start)
					}
				}
				if time.Since(start) > 5*time.Minute {
					b.Fatalf("%s not promoted within 5 minutes", tag)
				}
				time.Sleep(20 * time.Millisecond)
			}
			if withSlow {
				beside = append(beside, float64(normalAt.Milliseconds()))
				slowTook = append(slowTook, float64(slowAt.Milliseconds()))
			} else {
				alone = append(alone, float64(normalAt.Milliseconds()))
			}
		}
		return map[string]float64{"alone-p50-ms": percentile(alone, 50), "beside-slow-p50-ms": percentile(beside, 50),
			"slow-p50-ms": percentile(slowTook, 50), "ratio": percentile(beside, 50) / percentile(alone, 50)}
	})
}
