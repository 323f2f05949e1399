package main

// Races: five human writers push to the tracked branch as fast as they can
// while the agent promotes and reverts several bundles on the same branch.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/contract"

	"github.com/tandem-gitops/tandem/testenv"
)

const (
	raceWriters = 5
	raceRounds  = 5
	// maxWriteAttempts is gitsync's default cap on fetch-edit-push attempts
	// of one write; the agent's commits must land within it.
	maxWriteAttempts = 8
	// writerPause is the least pause of a writer between two pushes: a very
	// busy team, not a storm. Measured with the -race agent on a loaded
	// 2-core machine: at 2-4s per writer the agent needed at most 3-4
	// attempts; at 1-3s, up to 7 of the 8; at 0.3-1.5s (about five pushes a
	// second in all) its writes lost every race for minutes, as each
	// fetch-edit-push attempt of the agent is slower than a git CLI writer's.
	writerPause = 2 * time.Second
	// writerMin is the least number of commits each writer pushes.
	writerMin = 6
)

// TestRaceWritersWhileReleasing: three bundles share one branch and one
// agent; in each of five rounds one human commit changes all three (some
// to an image that does not exist), so the agent promotes some and reverts
// others at the same moment, while five writers push unrelated commits
// every 2-4s each (about 1.7 pushes a second in all; see writerPause).
// Every writer commit survives, every ref update the remote accepted was a
// fast-forward (it refuses anything else), each bundle gets exactly one
// outcome commit per round, and every agent commit landed within
// maxWriteAttempts attempts of one write.
func TestRaceWritersWhileReleasing(t *testing.T) {
	s := newScenario(t, "revert", "30s", app{"server", "example/server:v1"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	s.ctx = ctx
	// Keep a reflog on the remote to check every update it accepted.
	s.git(s.remote, "config", "core.logAllRefUpdates", "always")
	bundles := []string{s.ns, s.ns + "-b", s.ns + "-c"}
	for _, b := range bundles[1:] {
		s.addBundle(b, app{"server", "example/server:v1"})
	}
	first := s.push("add bundles " + strings.Join(bundles[1:], ", "))
	ledgers := map[string]*ledger{}
	for _, b := range bundles {
		ledgers[b] = newLedger()
		ledgers[b].candidate(first, "promoted")
	}
	var guards []func() (int, []string)
	for _, b := range bundles {
		guards = append(guards, s.guardSelectors(b))
	}
	s.start("--root", "bundles")
	for _, b := range bundles {
		s.waitBundleOutcome(b, first, 2*time.Minute)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	pushed := make([][]string, raceWriters)
	errs := make([]error, raceWriters)
	for w := range raceWriters {
		clone := filepath.Join(s.work, fmt.Sprintf("writer%d", w))
		s.git(".", "clone", "--quiet", s.remote, clone)
		wg.Add(1)
		go func() {
			defer wg.Done()
			pushed[w], errs[w] = writer(ctx, clone, w, stop)
		}()
	}

	var humans []string
	for r := 1; r <= raceRounds; r++ {
		s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
		want := map[string]string{}
		for i, b := range bundles {
			image, result := fmt.Sprintf("example/server:r%d", r), "promoted"
			if (r+i)%3 == 0 {
				image, result = fmt.Sprintf("missing.invalid/server:r%d", r), "reverted"
			}
			s.write("bundles/"+b+"/app/server.yaml", appManifest(app{"server", image}))
			want[b] = result
		}
		cand := s.pushHard(fmt.Sprintf("round %d: all bundles", r))
		humans = append(humans, cand)
		for _, b := range bundles {
			ledgers[b].candidate(cand, want[b])
		}
		for _, b := range bundles {
			s.waitBundleOutcome(b, cand, 3*time.Minute)
		}
		for _, b := range bundles {
			s.invariantsIn(b, ledgers[b], "server")
		}
		t.Logf("round %d settled: %v", r, want)
	}
	close(stop)
	wg.Wait()
	s.settledAt("after the writers stopped") // a duplicate outcome would need a candidate
	total := 0
	for w := range raceWriters {
		if errs[w] != nil {
			t.Errorf("writer %d: %v", w, errs[w])
		}
		total += len(pushed[w])
		for _, h := range pushed[w] {
			if _, err := testenv.Git(ctx, s.remote, "merge-base", "--is-ancestor", h, "main"); err != nil {
				t.Errorf("writer %d's commit %s is not on the branch", w, contract.Short(h))
			}
		}
	}
	for _, b := range bundles {
		s.invariantsIn(b, ledgers[b], "server")
		if n := len(s.bundleCommits(b)); n != raceRounds+1 {
			t.Errorf("bundle %s: %d agent commits, want %d (one per release)", b, n, raceRounds+1)
		}
	}
	for _, h := range humans {
		if _, err := testenv.Git(ctx, s.remote, "merge-base", "--is-ancestor", h, "main"); err != nil {
			t.Errorf("round commit %s is not on the branch", contract.Short(h))
		}
	}
	updates := s.checkFastForwards()
	for _, guard := range guards {
		if _, empty := guard(); len(empty) > 0 {
			t.Errorf("a stable Service selected no color at some moment: %v", empty)
		}
	}

	// The agent's commits: bounded attempts, no write that gave up.
	attempts := map[int]int{}
	maxSeen := 0
	for _, e := range s.events() {
		if e.str("phase") != "commit" {
			continue
		}
		if e.str("error") != "" {
			t.Errorf("a write gave up after %d attempts and was retried: %v", maxWriteAttempts, e)
			continue
		}
		n, _ := e["attempts"].(float64)
		if n < 1 || n > maxWriteAttempts {
			t.Errorf("commit event with attempts %v, want 1..%d: %v", e["attempts"], maxWriteAttempts, e)
		}
		attempts[int(n)]++
		maxSeen = max(maxSeen, int(n))
	}
	var hist []string
	for n, c := range attempts {
		hist = append(hist, fmt.Sprintf("%d attempt(s): %d", n, c))
	}
	sort.Strings(hist)
	t.Logf("%d writers pushed %d commits, all on the branch; %d round commits; %d agent commits across %d bundles; %d ref updates on the remote, all fast-forwards; agent write attempts: %s (max %d, cap %d)",
		raceWriters, total, len(humans), len(s.agentCommits()), len(bundles), updates, strings.Join(hist, ", "), maxSeen, maxWriteAttempts)

}

// writer pushes a commit under notes/ every 2-4s until stop (and at least
// writerMin), pulling (rebase) when its push is refused; it returns the
// commits it pushed.
func writer(ctx context.Context, clone string, w int, stop <-chan struct{}) ([]string, error) {
	var pushed []string
	for i := 0; ; i++ {
		select {
		case <-stop:
			if len(pushed) >= writerMin {
				return pushed, nil
			}
			<-time.After(writerPause) // a writer pushes writerMin commits at least
		case <-time.After(writerPause + time.Duration((i*379+w*211)%2000)*time.Millisecond):
		}
		p := filepath.Join(clone, "notes", fmt.Sprintf("w%d-%03d.txt", w, i))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return pushed, err
		}
		if err := os.WriteFile(p, []byte(fmt.Sprintf("writer %d note %d\n", w, i)), 0o644); err != nil {
			return pushed, err
		}
		if _, err := testenv.Git(ctx, clone, "add", "-A"); err != nil {
			return pushed, err
		}
		if _, err := testenv.Git(ctx, clone, "commit", "--quiet", "-m", fmt.Sprintf("writer %d note %d", w, i)); err != nil {
			return pushed, err
		}
		for try := 0; ; try++ {
			_, err := testenv.Git(ctx, clone, "push", "--quiet", "origin", "HEAD:main")
			if err == nil {
				break
			}
			if try == 100 {
				return pushed, fmt.Errorf("push refused 100 times: %w", err)
			}
			if _, err := testenv.Git(ctx, clone, "pull", "--quiet", "--rebase", "origin", "main"); err != nil {
				return pushed, err
			}
		}
		h, err := testenv.Git(ctx, clone, "rev-parse", "HEAD")
		if err != nil {
			return pushed, err
		}
		pushed = append(pushed, h)
	}
}

// pushHard is push with enough retries to win against busy writers.
func (s *scenario) pushHard(msg string) string {
	s.t.Helper()
	s.git(s.clone, "add", "-A")
	s.git(s.clone, "commit", "--quiet", "-m", msg)
	for i := 0; ; i++ {
		_, err := testenv.Git(s.ctx, s.clone, "push", "--quiet", "origin", "HEAD:main")
		if err == nil {
			break
		}
		if i == 100 {
			s.t.Fatal(err)
		}
		s.git(s.clone, "pull", "--quiet", "--rebase", "origin", "main")
	}
	return s.git(s.clone, "rev-parse", "HEAD")
}

// addBundle writes another bundle, named and namespaced name, next to the
// scenario's (not committed).
func (s *scenario) addBundle(name string, apps ...app) {
	s.t.Helper()
	spec := strings.ReplaceAll(s.read("bundles/"+s.ns+"/bundle.yaml"), s.ns, name)
	s.write("bundles/"+name+"/bundle.yaml", spec)
	s.write("bundles/"+name+"/shared/kustomization.yaml", "resources:\n- namespace.yaml\n")
	s.write("bundles/"+name+"/shared/namespace.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+name+"\n")
	var res []string
	for _, a := range apps {
		res = append(res, "- "+a.name+".yaml")
		s.write("bundles/"+name+"/app/"+a.name+".yaml", appManifest(a))
	}
	s.write("bundles/"+name+"/app/kustomization.yaml", "resources:\n"+strings.Join(res, "\n")+"\n")
}

// waitBundleOutcome waits for bundle's promotion or revert of candidate.
func (s *scenario) waitBundleOutcome(bundle, candidate string, timeout time.Duration) {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		commits := s.bundleCommits(bundle)
		if countResults(commits, "promoted", candidate)+countResults(commits, "reverted", candidate) > 0 {
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("bundle %s: no promotion or revert of %s after %s\n%s", bundle, contract.Short(candidate), timeout, s.agent.LogTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// checkFastForwards verifies from the remote's reflog that every update of
// main it accepted was a fast-forward, and returns how many there were.
func (s *scenario) checkFastForwards() int {
	s.t.Helper()
	out := s.git(s.remote, "reflog", "show", "--format=%H", "refs/heads/main")
	hashes := strings.Fields(out) // newest first
	if len(hashes) < 2 {
		s.t.Fatalf("the remote's reflog of main has %d entries; is core.logAllRefUpdates on?", len(hashes))
	}
	for i := 0; i+1 < len(hashes); i++ {
		if _, err := testenv.Git(s.ctx, s.remote, "merge-base", "--is-ancestor", hashes[i+1], hashes[i]); err != nil {
			s.t.Fatalf("the remote accepted a non-fast-forward update of main: %s -> %s", contract.Short(hashes[i+1]), contract.Short(hashes[i]))
		}
	}
	return len(hashes) - 1
}
