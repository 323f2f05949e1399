package main

// Crash at every phase: the real agent is SIGKILLed at a random moment of a
// chosen phase of a release, restarted, and the crash-safety invariants are
// checked (see scenario.invariants). The random delays come from one seed,
// logged at the start ($TANDEM_CHAOS_SEED replays a run).

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-gitops/tandem/testenv"
)

// crashRuns is how many kills each phase gets inside the phase (a kill that
// landed just after it is counted apart, and another one follows, up to
// 3*crashRuns kills in all).
const crashRuns = 5

// crashPhases are the phases of TestCrashAtEveryPhase.
var crashPhases = []string{"render", "apply", "verify", "flip", "push", "revert"}

// TestCrashAtEveryPhase kills the agent (SIGKILL, its whole process group,
// so a git push in flight dies with it) after render, during apply, during
// verification, after the flip before the promotion commit, after the
// commit before the push completes (or after the branch moved, before the
// agent heard back), and during a revert; each at least crashRuns times at
// random moments, restarting the agent after every kill. After each
// restart the release settles and the invariants hold.
func TestCrashAtEveryPhase(t *testing.T) {
	seed := chaosSeed()
	t.Logf("chaos seed %d (TANDEM_CHAOS_SEED=%d replays these timings)", seed, seed)
	var mu sync.Mutex
	survived := map[string]int{}
	killed := map[string]int{}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 3) // three bundles (and agents) at a time
	for i, phase := range crashPhases {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			t.Run(phase, func(t *testing.T) {
				rng := newLockedRand(seed + uint64(i))
				in, all := crashPhase(t, phase, rng)
				mu.Lock()
				survived[phase], killed[phase] = in, all
				mu.Unlock()
			})
		}()
	}
	wg.Wait()
	var b strings.Builder
	total := 0
	for _, p := range crashPhases {
		fmt.Fprintf(&b, "  %-7s %d kills inside the phase survived (%d kills in all)\n", p, survived[p], killed[p])
		total += killed[p]
	}
	t.Logf("crashes survived, seed %d: %d kills in all\n%s", seed, total, b.String())
}

// crashPhase runs one phase's kills against one bundle and returns how many
// kills landed inside the phase and how many there were in all.
func crashPhase(t *testing.T, phase string, rng *lockedRand) (inside, all int) {
	apps := []string{"client", "server"}
	s := newScenario(t, "revert", "30s", app{"client", "example/client:v1"}, app{"server", "example/server:v1"})
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	t.Cleanup(cancel)
	s.ctx = ctx
	guard := s.guardSelectors(s.ns)
	l := newLedger()
	l.candidate(s.git(s.clone, "rev-parse", "HEAD"), "promoted")
	s.start()
	s.waitOutcome(l.candidates[0], 2*time.Minute)
	s.invariants(l, apps...)

	applyWin, verifyWin := 500*time.Millisecond, 2*time.Second
	for i := 1; inside < crashRuns && i <= 3*crashRuns; i++ {
		all++
		result, image := "promoted", fmt.Sprintf("example/server:%s%d", phase, i)
		switch phase {
		case "revert":
			result, image = "reverted", fmt.Sprintf("missing.invalid/server:%s%d", phase, i)
		case "verify":
			image += "-slow" // ready after 2s: a verification a kill can land in
		}
		s.setImage("server", image)
		cand := s.push(fmt.Sprintf("server %s (%s crash %d)", image, phase, i))
		l.candidate(cand, result)

		var delay time.Duration
		var in bool
		var where string
		switch phase {
		case "render":
			s.waitEvent("candidate event", time.Minute, phaseOf("candidate", cand, true))
			delay = rng.upTo(50 * time.Millisecond)
			time.Sleep(delay)
			s.agent.Kill()
			in = !s.hasEvent(phaseOf("apply", cand, true))
			where = "after render, before apply finished"
		case "apply":
			s.waitEvent("candidate event", time.Minute, phaseOf("candidate", cand, true))
			delay = rng.upTo(applyWin)
			time.Sleep(delay)
			s.agent.Kill()
			in = !s.hasEvent(phaseOf("apply", cand, true))
			where = "during apply"
		case "verify":
			s.waitEvent("apply event", time.Minute, phaseOf("apply", cand, true))
			delay = rng.upTo(verifyWin)
			time.Sleep(delay)
			s.agent.Kill()
			in = !s.hasEvent(phaseOf("verify", cand, true)) && !s.hasEvent(phaseOf("verify", cand, false))
			where = "during verification"
		case "flip":
			// A slow remote holds the promotion commit for 3s after it
			// starts, so a kill within 1s of the flip precedes it.
			s.slowHook("pre-receive", s.work+"/pushed", 3*time.Second)
			s.waitEvent("flip event", time.Minute, phaseOf("flip", cand, true))
			delay = rng.upTo(time.Second)
			time.Sleep(delay)
			s.agent.Kill()
			in = s.outcomes(cand) == 0
			where = "after the flip, before the promotion commit landed"
		case "push":
			// The hook runs once the agent made its commit and pushes it:
			// pre-receive holds the push before the branch moves;
			// post-receive after it moved, before the agent hears back.
			kind := []string{"pre-receive", "post-receive"}[i%2]
			marker := fmt.Sprintf("%s/pushing-%d", s.work, i)
			s.slowHook(kind, marker, 3*time.Second)
			s.waitFile(marker, time.Minute)
			delay = rng.upTo(1500 * time.Millisecond)
			time.Sleep(delay)
			s.agent.Kill()
			// The branch must not have moved yet with pre-receive, and must
			// have with post-receive: that is where the kill landed.
			landed := s.outcomes(cand) == 1
			in = landed == (kind == "post-receive")
			where = fmt.Sprintf("after the commit, during its push (%s hook; on the branch before the restart: %v)", kind, landed)
		case "revert":
			s.slowHook("pre-receive", s.work+"/pushed", 3*time.Second)
			s.waitEvent("failed verification", time.Minute, phaseOf("verify", cand, false))
			delay = rng.upTo(1500 * time.Millisecond)
			time.Sleep(delay)
			s.agent.Kill()
			in = s.outcomes(cand) == 0
			where = "during the revert (failed color taken out, revert commit not landed)"
		}
		s.removeHooks()
		if in {
			inside++
		}
		// Right after the kill: no stable Service selects nothing.
		for svc, color := range s.selectors() {
			if color == "" {
				t.Fatalf("kill %d (%s): stable Service %s selects no color", i, where, svc)
			}
		}
		t.Logf("kill %d at +%s: %s (inside the phase: %v)", i, delay.Round(time.Millisecond), where, in)

		s.start()
		s.waitOutcome(cand, 3*time.Minute)
		s.settledAt("after the restart") // a duplicate commit would need a candidate
		live := s.invariants(l, apps...)
		t.Logf("kill %d survived: live %s, %d agent commits", i, live, len(s.agentCommits()))
		// Narrow the random windows to three quarters of the shortest
		// apply and verification seen here, so kills land inside them.
		if d := s.durationOf("apply", cand) * 3 / 4; d > 0 {
			applyWin = max(min(applyWin, d), 20*time.Millisecond)
		}
		if d := s.durationOf("verify", cand) * 3 / 4; d > 0 {
			verifyWin = max(min(verifyWin, d), 100*time.Millisecond)
		}
	}
	s.settledAt("at the end")
	s.invariants(l, apps...)
	seen, empty := guard()
	if len(empty) > 0 {
		t.Errorf("a stable Service selected no color at some moment: %v", empty)
	}
	t.Logf("%d versions of the stable Services watched through the kills: none selected no color", seen)
	if inside < crashRuns {
		t.Errorf("only %d of %d kills landed inside phase %s (want %d)", inside, all, phase, crashRuns)
	}
	if h := len(s.humanCommits()); h != len(l.humans) {
		t.Errorf("%d human commits on the branch, want %d", h, len(l.humans))
	}
	return inside, all
}

// outcomes counts the promotion and revert commits of candidate on the branch.
func (s *scenario) outcomes(candidate string) int {
	commits := s.agentCommits()
	return countResults(commits, "promoted", candidate) + countResults(commits, "reverted", candidate)
}

func (s *scenario) agentCommits() []testenv.TrailerCommit {
	s.t.Helper()
	commits, err := testenv.AgentCommits(s.ctx, s.remote, "main")
	if err != nil {
		s.t.Fatal(err)
	}
	return commits
}

// durationOf is the duration the current agent logged for phase of
// candidate (zero when it logged none).
func (s *scenario) durationOf(phase, candidate string) time.Duration {
	for _, e := range s.events() {
		if phaseOf(phase, candidate, true)(e) {
			if ms, ok := e["duration"].(float64); ok {
				return time.Duration(ms * float64(time.Millisecond))
			}
		}
	}
	return 0
}
