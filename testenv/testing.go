package testenv

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// RunTests starts one Env for a test package, hands it to set, runs the tests
// and stops the Env. Use it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(testenv.RunTests(m, func(e *testenv.Env) { env = e })) }
//
// A control plane that cannot start fails the package with the reason (for a
// missing binary: run `make testenv`); tests are never skipped silently.
func RunTests(m *testing.M, set func(*Env)) int {
	start := time.Now()
	env, err := Start(context.Background(), Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: cannot start the test control plane:", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "testenv: control plane up in %s (%s)\n", time.Since(start).Round(10*time.Millisecond), env.Config.Host)
	set(env)
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: stop:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

var nsSeq atomic.Int64

// Namespace creates a namespace unique to the test and deletes it when the
// test ends. It returns the namespace's name.
func (e *Env) Namespace(t testing.TB) string {
	t.Helper()
	cs, err := kubernetes.NewForConfig(e.Config)
	if err != nil {
		t.Fatalf("testenv: client: %v", err)
	}
	name := strings.ToLower(t.Name())
	name = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '-'
	}, name)
	if len(name) > 40 {
		name = name[:40]
	}
	name = fmt.Sprintf("%s-%d", strings.Trim(name, "-"), nsSeq.Add(1))
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatalf("testenv: create namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		_ = cs.CoreV1().Namespaces().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	return name
}
