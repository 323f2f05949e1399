package gitsync

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// silentServer accepts connections and never answers (reads and discards).
func silentServer(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return l.Addr().String()
}

// TestPollTimesOutOnSilentServer: a Git server that accepts the connection
// and never answers fails the poll at NetworkTimeout, though the caller's
// context has no deadline.
func TestPollTimesOutOnSilentServer(t *testing.T) {
	addr := silentServer(t)
	for _, url := range []string{"http://" + addr + "/repo.git"} {
		t.Run(strings.SplitN(url, ":", 2)[0], func(t *testing.T) {
			r, err := Open(context.Background(), Options{URL: url, Branch: "main", CacheDir: t.TempDir(), NetworkTimeout: time.Second})
			if err != nil {
				t.Fatalf("Open(%s): %v", url, err)
			}
			defer r.Close()
			start := time.Now()
			_, err = r.Poll(context.Background())
			took := time.Since(start)
			if err == nil || !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "NetworkTimeout") {
				t.Fatalf("poll: %v, want a NetworkTimeout error", err)
			}
			if took > 5*time.Second {
				t.Fatalf("poll failed after %v, want about the 1s NetworkTimeout", took)
			}
			t.Logf("%v after %v", err, took)
		})
	}
}
