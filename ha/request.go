package ha

import (
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/election"
)

// decideLeaderRequest: a healthy leader with a pending operator request.
//
// A switchover stops this primary with a fast shutdown first (every
// session ends, a shutdown checkpoint is written and the WAL senders ship
// it to the streaming replicas before they exit), then records the final
// position in the request, then releases the leader key. The target takes
// the key only after it has received WAL past that position, so it holds
// every acknowledged commit.
func decideLeaderRequest(v View, r cluster.Request) Plan {
	l := *v.Snap.Leader
	switch {
	case r.Handoff != nil && r.Handoff.Epoch != l.Epoch:
		// A handoff of an earlier leadership (the old leader took the key
		// back but could not clear the request): stale.
		return Plan{Actions: []Action{ClearRequest{}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("dropped a stale switchover handoff of epoch %d", r.Handoff.Epoch)}
	case r.Handoff != nil:
		return finishHandoff(v, r)
	case r.Kind == cluster.KindFailover:
		return Plan{Actions: []Action{ClearRequest{}}, State: cluster.StateRunning, Problem: cluster.ProblemRequestFailed,
			Reason: fmt.Sprintf("manual failover to %s refused: the primary is healthy; use switchover", r.To)}
	case r.From != "" && r.From != v.Self:
		return Plan{Actions: []Action{ClearRequest{}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("dropped a switchover away from %s: %s leads now", r.From, v.Self)}
	case !r.At.IsZero() && v.Now.Before(r.At):
		return Plan{State: cluster.StateRunning, Soon: min(r.At.Sub(v.Now), time.Duration(v.Config.LoopWait)),
			Reason: fmt.Sprintf("switchover to %s scheduled at %s", targetName(r.To), r.At.UTC().Format(time.RFC3339))}
	}
	target, why := election.SwitchoverTarget(v.Snap, v.Self, r.To, v.Config.MaximumLagOnFailover, v.DB.Position)
	if target == "" {
		return Plan{Actions: []Action{ClearRequest{}}, State: cluster.StateRunning, Problem: cluster.ProblemRequestFailed,
			Reason: "switchover refused: " + why}
	}
	return Plan{Actions: append(stopWrites(v), Handoff{Target: target}, ReleaseLeader{Leader: l}),
		State: cluster.StateStopped, Reason: "switchover to " + target + ": stopped writes, handing over"}
}

// stopWrites is how this switchover's primary stops taking writes, by
// the engine's switchover method: a fast shutdown, or a demotion in place
// (a running server only; a stopped one takes no writes).
func stopWrites(v View) []Action {
	if v.Engine.Switchover != db.SwitchoverDemote {
		return []Action{Stop{Mode: db.StopFast}}
	}
	if !v.DB.Running {
		return nil
	}
	return []Action{Demote{}}
}

// finishHandoff: this leader recorded the handoff of switchover r (its
// final position) but still holds the key (the release failed, or the
// agent restarted midway). Whatever its database does now, it must not
// take a write past the recorded final position: stop writes again (a
// no-op when they are stopped) and release the key. It is never started
// or promoted under this key again.
func finishHandoff(v View, r cluster.Request) Plan {
	return Plan{Actions: append(stopWrites(v), ReleaseLeader{Leader: *v.Snap.Leader}),
		State: cluster.StateStopped, Reason: "switchover to " + r.Handoff.Target + ": releasing the leader key"}
}

// handoffPending reports whether this leader recorded a switchover
// handoff under its current key (finishHandoff applies), or — for an
// engine that demotes in place — demoted its database for a switchover
// that is due and whose handoff it has not recorded yet, under a key whose
// promotion is done (so the demotion, not a promotion in progress, made
// it read-only): decideLeaderRequest then picks the switchover up again.
// Otherwise a read-only database under a done promotion is promoted again
// (resumePromotion).
func handoffPending(v View, health detector.Health) (Plan, bool) {
	r, l := v.Snap.Request, v.Snap.Leader
	switch {
	case r == nil:
		return Plan{}, false
	case r.Handoff != nil && r.Handoff.Epoch == l.Epoch:
		return finishHandoff(v, *r), true
	case v.Engine.Switchover == db.SwitchoverDemote && r.Handoff == nil && r.Kind == cluster.KindSwitchover &&
		(r.At.IsZero() || !v.Now.Before(r.At)) &&
		health == detector.Healthy && v.DB.Role == cluster.RoleReplica && (l.Promotion == nil || l.Promotion.Complete()):
		return decideLeaderRequest(v, *r), true
	}
	return Plan{}, false
}

// holdsFinal reports whether this member's database holds everything the
// switchover's old primary wrote up to its final position, by the
// engine's switchover method (db.SwitchoverMethod): received past the
// shutdown checkpoint, or applied the demoted primary's executed set.
func holdsFinal(v View, final cluster.Position) bool {
	if v.Engine.Switchover == db.SwitchoverDemote {
		o := v.DB.Replayed.Compare(final)
		return o == cluster.Equal || o == cluster.Ahead
	}
	return v.DB.Position.Compare(final) == cluster.Ahead
}

func targetName(to string) string {
	if to == "" {
		return "the best replica"
	}
	return to
}

// decideHandoff: no leader key, and a switchover's handoff is recorded.
// It returns false when the handoff has expired and the normal rules apply.
func decideHandoff(v View, r cluster.Request, health detector.Health) (Plan, bool) {
	h := r.Handoff
	if last := v.Snap.LastLeader; last == nil || last.Epoch != h.Epoch {
		return Plan{Actions: []Action{ClearRequest{}}, State: stateOf(v),
			Reason: fmt.Sprintf("dropped a stale switchover handoff of epoch %d", h.Epoch)}, true
	}
	expired := !v.HandoffSeenAt.IsZero() && v.Now.Sub(v.HandoffSeenAt) >= HandoffTimeout(v.Config)
	switch v.Self {
	case r.From:
		if !expired {
			return Plan{State: cluster.StateStopped, Soon: electionTick,
				Reason: fmt.Sprintf("switchover: stopped at %s, handing over to %s", h.Final, h.Target)}, true
		}
		// The target did not take over: take the role back. This
		// member's database holds everything up to its final position, so
		// nothing acknowledged is lost.
		return Plan{Actions: []Action{AcquireLeader{}, ClearRequest{}}, State: cluster.StateStarting, Problem: cluster.ProblemRequestFailed,
			Reason: fmt.Sprintf("switchover to %s failed: it did not take over within %s; taking the primary role back",
				h.Target, HandoffTimeout(v.Config))}, true
	case h.Target:
		switch live, _ := OldPrimaryLiveness(v); {
		case live == detector.Alive:
			return Plan{State: stateOf(v), Soon: electionTick, Problem: cluster.ProblemOldPrimaryWritable,
				Reason: fmt.Sprintf("switchover from %s: its database still accepts writes; not promoting", r.From)}, true
		case health == detector.Healthy && v.DB.Role == cluster.RoleReplica && holdsFinal(v, h.Final):
			ev := &cluster.Evidence{Kind: cluster.EvidenceHandoff,
				Detail: fmt.Sprintf("%s stopped at %s and handed over to %s", r.From, h.Final, h.Target)}
			return Plan{Actions: promotionPlan(v, requestPromotion(v, r, cluster.HistorySwitchover, h.Epoch, r.From, ev)),
				State: cluster.StateStarting, Reason: fmt.Sprintf("switchover from %s: received past its final position %s; promoting", r.From, h.Final)}, true
		case expired:
			return Plan{State: stateOf(v), Problem: cluster.ProblemRequestFailed, Reason: fmt.Sprintf("switchover from %s: did not receive its final position %s in time (have %s)",
				r.From, h.Final, v.DB.Position)}, true
		default:
			return Plan{State: stateOf(v), Soon: electionTick,
				Reason: fmt.Sprintf("switchover from %s: catching up to %s (have %s)", r.From, h.Final, v.DB.Position)}, true
		}
	default:
		if expired {
			return Plan{}, false
		}
		return Plan{State: stateOf(v), Soon: electionTick,
			Reason: fmt.Sprintf("switchover from %s to %s in progress", r.From, h.Target)}, true
	}
}

// decideManualFailover: no leader key and an operator chose the new
// primary. The lag gate and the ranking are overridden; the fencing rule
// (the old primary must not take writes) is not.
func decideManualFailover(v View, r cluster.Request, health detector.Health) Plan {
	if r.To != v.Self {
		return Plan{State: stateOf(v), Soon: electionTick, Reason: "manual failover to " + r.To + " requested"}
	}
	switch {
	case v.Tags.NoFailover:
		return Plan{Actions: []Action{ClearRequest{}}, State: stateOf(v), Problem: cluster.ProblemRequestFailed,
			Reason: "manual failover to this member refused: it is tagged nofailover"}
	case health != detector.Healthy || v.DB.Role != cluster.RoleReplica:
		return Plan{State: stateOf(v), Soon: electionTick, Reason: "manual failover to this member: waiting for its database to run as a replica"}
	}
	ev, why, problem := promotionEvidence(v)
	if live, _ := OldPrimaryLiveness(v); why != "" && live != detector.Alive &&
		r.ConfirmedDown != "" && v.Snap.LastLeader != nil && r.ConfirmedDown == v.Snap.LastLeader.Name {
		ev, why = &cluster.Evidence{Kind: cluster.EvidenceOperator, Detail: fmt.Sprintf(
			"%s confirmed that %s can no longer take writes (no proof otherwise: %s)", r.RequestedBy, r.ConfirmedDown, why)}, ""
	}
	old := ""
	if v.Snap.LastLeader != nil {
		old = v.Snap.LastLeader.Name
	}
	if why == "" {
		why, problem = fencingBlocks(v, old, ev)
	}
	if why != "" {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: "manual failover: " + why, Problem: problem}
	}
	var lost cluster.Epoch
	if v.Snap.LastLeader != nil {
		lost = v.Snap.LastLeader.Epoch
	}
	return Plan{Actions: promotionPlan(v, requestPromotion(v, r, cluster.HistoryManualFailover, lost, old, ev)),
		State: cluster.StateStarting, Reason: "manual failover to this member requested by " + r.RequestedBy}
}

// requestPromotion is the record of a promotion that serves operator
// request r: it clears r when recorded, and its history names who asked.
func requestPromotion(v View, r cluster.Request, kind cluster.HistoryKind, lost cluster.Epoch, old string, ev *cluster.Evidence) cluster.Promotion {
	p := newPromotion(v, kind, lost, old, ev)
	p.ClearRequest = true
	p.Reason = fmt.Sprintf("%s requested by %s at %s", kind, r.RequestedBy, r.RequestedAt.UTC().Format(time.RFC3339))
	return p
}
