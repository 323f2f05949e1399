package render

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// benchTree writes a bundle with n objects (half Deployments, half Services).
func benchTree(b *testing.B, n int) (string, *Bundle) {
	root := b.TempDir()
	var res []string
	files := map[string]string{"b/bundle.yaml": strings.Replace(testBundle, "%s", "b", 1)}
	for i := 0; i < n/2; i++ {
		name := fmt.Sprintf("app%d", i)
		files["b/app/"+name+".yaml"] = strings.ReplaceAll(deploy("example/"+name+":v1"), "name: d", "name: "+name) +
			"---\napiVersion: v1\nkind: Service\nmetadata:\n  name: " + name + "\nspec:\n  selector: {app: d}\n  ports:\n  - port: 80\n"
		res = append(res, "- "+name+".yaml")
	}
	files["b/app/kustomization.yaml"] = "resources:\n" + strings.Join(res, "\n") + "\n"
	writeFiles(b, root, files)
	bs, err := Discover(root, ".")
	if err != nil {
		b.Fatal(err)
	}
	return root, bs[0]
}

// cpuTime is the user+sys CPU time of this process (RUSAGE_SELF) or of its
// waited-for children (RUSAGE_CHILDREN).
func cpuTime(b *testing.B, who int) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(who, &ru); err != nil {
		b.Fatalf("getrusage: %v", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per op since start as "cpu-ms": on a
// shared machine it moves less than wall time.
func reportCPU(b *testing.B, who int, start time.Duration) {
	b.ReportMetric(float64(cpuTime(b, who)-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms")
}

// BenchmarkRender measures Render and, for comparison, the kustomize CLI
// named by $KUSTOMIZE on the same tree (run through `make bench`), in wall
// time (ns/op) and CPU time (cpu-ms).
func BenchmarkRender(b *testing.B) {
	for _, n := range []int{10, 100, 500, 2000} {
		b.Run(fmt.Sprintf("objects=%d", n), func(b *testing.B) {
			root, bundle := benchTree(b, n)
			start := cpuTime(b, syscall.RUSAGE_SELF)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := Render(context.Background(), bundle, Options{RepoRoot: root, Color: "blue"}); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, syscall.RUSAGE_SELF, start)
		})
		b.Run(fmt.Sprintf("kustomize-cli/objects=%d", n), func(b *testing.B) {
			bin := os.Getenv("KUSTOMIZE")
			if bin == "" {
				b.Fatal("KUSTOMIZE is not set: run this benchmark through `make bench`, which builds kustomize v5.8.2 and sets it")
			}
			root, _ := benchTree(b, n)
			start := cpuTime(b, syscall.RUSAGE_CHILDREN)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if out, err := exec.Command(bin, "build", filepath.Join(root, "b", "app")).CombinedOutput(); err != nil {
					b.Fatalf("kustomize build: %v: %s", err, out)
				}
			}
			b.StopTimer()
			reportCPU(b, syscall.RUSAGE_CHILDREN, start)
		})
	}
}
