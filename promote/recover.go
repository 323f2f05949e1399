package promote

import (
	"fmt"
	"time"
)

// View is what the cluster shows of a bundle: which color the stable
// Services select, and what each color runs (from its annotations).
type View struct {
	Live   string // the color every stable twin selects; "" when there are none
	Mixed  bool   // the stable twins disagree, or one selects no color
	Colors map[string]ColorView
}

// ColorView is one color of a bundle as the cluster shows it.
type ColorView struct {
	Commit, Digest  string
	Healthy         bool // every workload is current by kstatus rules
	ScaledDown      bool // tandem scaled it to zero
	Replicas, Ready int
}

// Runs reports whether the color runs the release with digest, scaled up:
// a standby that can take traffic once it is healthy.
func (c ColorView) Runs(digest string) bool {
	return !c.ScaledDown && c.Replicas > 0 && digest != "" && c.Digest == digest
}

// Recover is the state a (re)started agent resumes from, and what it must
// do first, given release.yaml (nil when there is none), the cluster's view
// and the time now. It converges after a crash at any moment:
//
//   - the stable twins select the recorded live color: resume (and finish a
//     soak that was cut short, or record one that ended unrecorded);
//   - they select another color whose workloads are healthy: the flip
//     happened before the crash, so commit that promotion;
//   - they are mixed, or select an unhealthy color: put them back on the
//     recorded live color (never leave traffic on a broken color).
func Recover(base State, rel *Release, v View, now time.Time) (State, Decision) {
	s, d := recoverFrom(base, rel, v, now)
	s.Pending = d
	return s, d
}

func recoverFrom(base State, rel *Release, v View, now time.Time) (State, Decision) {
	s := base
	s.Phase, s.Release = PhaseIdle, rel
	s.Last = lastResult(rel, s.Policy)
	if rel != nil && rel.Live != "" {
		s.Live = rel.Live
		s.LiveCommit, s.LiveDigest, s.LiveCharts = rel.Colors[rel.Live].Commit, rel.Colors[rel.Live].Digest, rel.Colors[rel.Live].Charts
		prev := s.Idle()
		if pc, ok := rel.Colors[prev]; ok && pc.State == StatePrevious {
			s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts = prev, pc.Commit, pc.Digest, pc.Charts
			s.PreviousWarm = v.Colors[prev].Runs(pc.Digest)
		}
	}
	switch {
	case v.Live == "" && !v.Mixed:
		return s, Decision{Action: ActNone} // no twins yet: first deploy, or no Services
	case !v.Mixed && v.Live == s.Live:
		promoted := rel.Colors[s.Live].PromotedAt
		if s.Policy.Soak > 0 && s.PreviousWarm && promoted != nil && now.Before(promoted.Add(s.Policy.Soak)) {
			// Killed during the soak: watch for the rest of it.
			s.Phase = PhaseSoaking
			s.Candidate = &Candidate{Commit: s.LiveCommit, Digest: s.LiveDigest, Policy: s.Policy}
			return s, Decision{Action: ActSoak, Color: s.Live, Ref: s.liveRef(), After: promoted.Add(s.Policy.Soak).Sub(now)}
		}
		if promoted != nil && !Soaked(rel, s.Policy.Soak) && !now.Before(promoted.Add(s.Policy.Soak)) {
			// The soak ended before the restart but was not recorded:
			// record it now (soaked decides whether anyone waits for it).
			return soaked(s, now)
		}
		return settled(s, now)
	}
	cv := v.Colors[v.Live]
	if _, ok := flipHappened(rel, v); ok {
		// The flip happened, the commit did not: record it now.
		s.Candidate = &Candidate{Commit: cv.Commit, Digest: cv.Digest, Policy: s.Policy}
		s.Target = v.Live
		s.Previous, s.PrevCommit, s.PrevDigest, s.PrevCharts, s.PreviousWarm = s.Live, s.LiveCommit, s.LiveDigest, s.LiveCharts, s.Live != "" && v.Colors[s.Live].Runs(s.LiveDigest)
		s.Live, s.LiveCommit, s.LiveDigest, s.LiveCharts = v.Live, cv.Commit, cv.Digest, nil // the cluster does not say
		evidence := fmt.Sprintf("recovered after a restart: the flip had happened; %s %d/%d ready", v.Live, cv.Ready, cv.Replicas)
		s, d := record(s, Decision{Color: s.Live, Result: ResultPromoted,
			Message: PromoteMessage(s.Bundle, s.Live, cv.Commit, evidence)}, now, nil)
		d.Say = &Note{Phase: NoteRecover, Color: s.Live, Commit: s.LiveCommit, Warn: true,
			Detail: "the stable Services select a color release.yaml does not record: committing that promotion"}
		return s, d
	}
	if s.Live == "" {
		// Nothing recorded and nothing healthy selected: wait for a candidate.
		reason := "the stable Services select an unhealthy or mixed color and release.yaml records none"
		return s, Decision{Action: ActNone, Reason: reason, Say: &Note{Phase: NoteRecover, Detail: reason, Warn: true}}
	}
	reason := "the stable Services are mixed or select an unhealthy color; putting them back on " + s.Live
	s.Phase = PhaseRerouting
	return s, Decision{Action: ActReroute, Color: s.Live, Ref: s.liveRef(), Reason: reason,
		Say: &Note{Phase: NoteRecover, Color: s.Live, Detail: reason, Warn: true}}
}

// lastResult is what release.yaml says of the last outcome: a failure
// recorded after the live release was promoted was a hold (first deploy,
// onFailure: hold) or a revert; else the live release was promoted.
func lastResult(rel *Release, p Policy) string {
	if rel == nil {
		return ""
	}
	live := rel.Colors[rel.Live]
	if f := rel.LastFailure; f != nil && (live.PromotedAt == nil || f.At.After(*live.PromotedAt)) {
		if rel.Live == "" || p.OnFailure == OnFailureHold {
			return ResultHeld
		}
		return ResultReverted
	}
	if rel.Live != "" {
		return ResultPromoted
	}
	return ""
}
