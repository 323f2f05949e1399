package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// BenchmarkPushToPromotion measures the time from `git push` to the agent's
// promotion commit for a 2-app bundle (file-watch trigger on a local remote,
// pods ready at once in the simulated cluster): p50 and p95 over 10
// pushes, and the p50 of each phase from the agent's own log; after each
// push, the same release applied bare (floorRelease), the control plane's
// floor, and the ratio of the p50s. It measures once per process (see
// measureOnce).
func BenchmarkPushToPromotion(b *testing.B) {
	measureOnce(b, func(b *testing.B) map[string]float64 {
		s := newScenario(b, "revert", "60s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
		s.start("--log-format", "json")
		s.waitCommits(1)
		floorNS := s.ns + "-floor"
		if _, err := s.cs.CoreV1().Namespaces().Create(s.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: floorNS}}, metav1.CreateOptions{}); err != nil {
			b.Fatal(err)
		}
		const runs = 10
		var total, floor []float64
		for i := 0; i < runs; i++ {
			tag := fmt.Sprintf("v%d", i+2)
			s.setImage("client", "example/client:"+tag)
			s.write("bundles/"+s.ns+"/app/server.yaml", appManifest(app{"server", "example/server:" + tag}))
			s.git(s.clone, "add", "-A")
			s.git(s.clone, "commit", "--quiet", "-m", tag)
			start := time.Now()
			s.git(s.clone, "push", "--quiet", "origin", "HEAD:main")
			s.waitCommits(i + 2)
			total = append(total, float64(time.Since(start).Milliseconds()))
			// The same release, bare, beside it: the control plane's floor.
			took := floorRelease(b, s.ctx, s.cs, floorNS, []app{{"client", "example/client:" + tag}, {"server", "example/server:" + tag}})
			floor = append(floor, float64(took.Milliseconds()))
		}
		m := map[string]float64{"p50-ms": percentile(total, 50), "p95-ms": percentile(total, 95),
			"floor-p50-ms": percentile(floor, 50), "floor-p95-ms": percentile(floor, 95),
			"floor-ratio": percentile(total, 50) / percentile(floor, 50)}
		for phase, ds := range phaseDurations(b, s.agent.Log) {
			m[phase+"-p50-ms"] = percentile(ds, 50)
		}
		return m
	})
}

// phaseDurations reads the agent's JSON log: phase → durations in ms.
func phaseDurations(b *testing.B, path string) map[string][]float64 {
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	out := map[string][]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var ev struct {
			Phase    string   `json:"phase"`
			Duration *float64 `json:"duration"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) == nil && ev.Phase != "" && ev.Duration != nil {
			out[ev.Phase] = append(out[ev.Phase], *ev.Duration)
		}
	}
	return out
}

func percentile(xs []float64, p int) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(i-1, 0)]
}
