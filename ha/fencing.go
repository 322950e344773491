package ha

import (
	"fmt"
	"slices"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/detector"
)

// Fencing policy (cluster.FencingPolicy, the dynamic config's fencing).
//
// Fencing targets only the previous primary: the leader of the lost epoch,
// from last_leader, recorded as the promotion's OldPrimary when the key is
// taken; the Fence action carries that name and nothing else. It happens
// after this member holds the key and before its database is promoted
// (the fence step), at most once per epoch: the record marks the step done
// with the confirmation, and a failed attempt is retried, never repeated
// after a success (a resumed promotion carries the step over).
//
//   - off: the step is marked done when the key is taken; the liveness
//     evidence, checked before the key, stands alone.
//   - require: the step is done only by a confirmation. Until then the
//     member holds the key without promoting, retries with back-off and
//     reports problem fencing_unconfirmed. A candidate with no fencer for
//     the old primary does not take the key (fencing_not_configured).
//   - best-effort: as require, but once the key has been held for ttl and
//     at least one attempt failed, the member promotes without the
//     confirmation (ProceedUnfenced: logged as an error, recorded in the
//     record and the history) — only when the liveness rule proved the old
//     primary dead before the key was taken.
//
// The fence also stands in for the liveness rule's proof
// (fenceSubstitutes): when the old primary answers as writable (its agent
// is gone, its database alive; require or best-effort) or, under require,
// gives no answer and its streams prove nothing, a candidate with a fencer
// for it takes the key with evidence "fence" and promotes only after the
// confirmation, whatever the policy: a best-effort timeout there would
// promote over a primary that may be writing, the one thing the liveness
// rule exists to prevent. Without fencing, or without a fencer for it,
// the refusal stands (old_primary_writable, old_primary_not_proven_dead).

// fencingPolicy is the effective policy (off when unset).
func fencingPolicy(v View) cluster.FencingPolicy { return v.Config.Fencing.Or() }

// canFence reports whether this agent has a fencer for member name.
func (v View) canFence(name string) bool {
	return v.Fencing && (v.FenceTargets == nil || slices.Contains(v.FenceTargets, name))
}

// fenceSubstitutes reports whether, for an old primary whose liveness is
// live (not proven dead), a fence may stand in for the proof, this agent
// having a fencer for the last leader and the last leader's agent being
// gone (its member record expired with its lease: no renewals), the store
// not having dropped every lease at once (then a live agent republishes
// and takes its key back, and fencing it would be a needless failover):
// over a writable one with fencing on; over one that gives no answer only
// with fencing require. Under
// best-effort a silent old primary waits for the liveness proof as with
// fencing off: the key holder stops probing it, so a promotion begun on
// the fence alone could never fall back to the proof that arrives later,
// and best-effort would then be less available than off.
func fenceSubstitutes(v View, live detector.Liveness) bool {
	last := v.Snap.LastLeader
	if last == nil || last.Name == v.Self || !v.canFence(last.Name) || v.Snap.Member(last.Name) != nil || storeDroppedLeases(v) {
		return false
	}
	pol := fencingPolicy(v)
	return live == detector.Alive && pol.Enabled() || live == detector.Unknown && pol == cluster.FencingRequire
}

// fenceEvidence is the evidence of a promotion that relies on the fence
// alone (fenceSubstitutes), saying what the liveness rule found.
func fenceEvidence(v View, live detector.Liveness) *cluster.Evidence {
	last := v.Snap.LastLeader
	found := fmt.Sprintf("gave no answer (%s) and its streams prove nothing", v.OldPrimary.Err)
	if live == detector.Alive {
		found = "still accepts writes (its agent no longer renews its lease)"
	}
	return &cluster.Evidence{Kind: cluster.EvidenceFence, Detail: fmt.Sprintf(
		"%s %s; fencing %s: promoting only once its power-off is confirmed", last.Name, found, fencingPolicy(v))}
}

// fencingBlocks returns why a candidate may not take the key to promote
// over old with evidence ev, or "": fencing require and no fencer for old
// here (the fence step could never be done).
func fencingBlocks(v View, old string, ev *cluster.Evidence) (string, cluster.Problem) {
	if old == "" || old == v.Self || fencingPolicy(v) != cluster.FencingRequire || v.canFence(old) {
		return "", cluster.ProblemNone
	}
	if ev != nil && (ev.Kind == cluster.EvidenceHandoff || ev.Kind == cluster.EvidenceFenced) {
		return "", cluster.ProblemNone
	}
	return fmt.Sprintf("fencing require, but this member has no fencer for the old primary %s (add fencing.members.%s to its config file); not taking the leader key",
		old, old), cluster.ProblemFencingNotConfigured
}

// owedFence is the old primary a promotion over old with evidence ev
// must fence, and the evidence that stands for it: old and ev, unless an
// earlier promotion took the key to promote over another member and never
// recorded its fence step (Snapshot.FenceOwed; its winner died or lost
// the key in between). That member may still run as a primary — the
// winner never promoted, or promoted only on that fence — so the fence
// and the evidence are that promotion's, not the last leader's. A fence
// owed for this member itself is none: it is the database promoted.
func owedFence(v View, old string, ev *cluster.Evidence) (string, *cluster.Evidence) {
	if o := fenceOwedOver(v, old, ev); o != nil {
		return o.Target, o.Evidence
	}
	return old, ev
}

// fenceOwedOver is the fence owed that replaces old and ev (owedFence),
// nil when none does.
func fenceOwedOver(v View, old string, ev *cluster.Evidence) *cluster.FenceOwed {
	o := v.Snap.FenceOwed
	if o == nil || o.Target == "" || o.Target == v.Self || o.Target == old {
		return nil
	}
	if ev != nil && ev.Kind == cluster.EvidenceHandoff {
		return nil // a handoff comes from a leader that promoted, so fenced
	}
	return o
}

// fenceDone says why promotion p's fence step needs no fencer ("": it
// does): nobody to fence, a handoff, an operator's fence, or fencing off
// with the liveness evidence standing alone.
func fenceDone(v View, p cluster.Promotion) string {
	switch {
	case p.OldPrimary == "" || p.OldPrimary == v.Self:
		return "nobody to fence: no other member led before"
	case p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceHandoff:
		return "not needed: the old primary stopped and handed over"
	case p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceFenced:
		return "fenced before the election: " + p.Evidence.Detail
	case p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceFence:
		return ""
	case !fencingPolicy(v).Enabled():
		return "fencing off: relying on the liveness evidence"
	}
	return ""
}

// fenceAction is the fence step of promotion p, not done yet: a Fence of
// the old primary, or, under best-effort after its timeout, promoting
// without the confirmation.
func fenceAction(v View, p cluster.Promotion) Action {
	if why := giveUpFence(v, p); why != "" {
		return ProceedUnfenced{Target: p.OldPrimary, Reason: why}
	}
	return Fence{Target: p.OldPrimary}
}

// giveUpFence returns why best-effort fencing promotes without a
// confirmation now, or "": the policy is best-effort (or was turned off
// since the key was taken), the liveness rule proved the old primary dead
// before the key, at least one attempt failed, and the key has been held
// for ttl.
func giveUpFence(v View, p cluster.Promotion) string {
	pol := fencingPolicy(v)
	if p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceFence {
		return "" // the fence is the only proof
	}
	if pol == cluster.FencingOff {
		return "fencing was turned off during the promotion; relying on the liveness evidence (" + evidenceName(p.Evidence) + ")"
	}
	held := v.Now.Sub(p.ElectedAt)
	if pol != cluster.FencingBestEffort || v.FenceFailures == 0 || p.ElectedAt.IsZero() || held < bestEffortTimeout(v.Config) {
		return ""
	}
	return fmt.Sprintf("fencing best-effort: %s not confirmed after %d attempts in %s (%s); promoting on the liveness evidence (%s)",
		p.OldPrimary, v.FenceFailures, held.Round(time.Second), v.FenceError, evidenceName(p.Evidence))
}

func evidenceName(ev *cluster.Evidence) string {
	if ev == nil {
		return "none"
	}
	return ev.String()
}

// bestEffortTimeout is how long best-effort fencing tries before it
// promotes without a confirmation: ttl from the key being taken. ttl is
// the outage the operator accepts for a node crash; best-effort at most
// doubles it.
func bestEffortTimeout(cfg cluster.DynamicConfig) time.Duration { return time.Duration(cfg.TTL) }

// maxFenceBackOff caps the wait between a failing fence's attempts.
const maxFenceBackOff = 30 * time.Second

// fenceBackOff doubles loop_wait with each failed fence attempt in a row,
// up to maxFenceBackOff (or loop_wait, if longer).
func (t *Tracker) fenceBackOff(cfg cluster.DynamicConfig) time.Duration {
	wait := time.Duration(cfg.LoopWait)
	for i := 1; i < t.FenceFailures && wait < maxFenceBackOff; i++ {
		wait *= 2
	}
	return min(wait, max(maxFenceBackOff, time.Duration(cfg.LoopWait)))
}

// fenceDoneTrack records a fence attempt of the held key's epoch.
func (t *Tracker) fenceDoneTrack(s Step, err error) {
	epoch := s.leaderEpoch()
	if t.FenceEpoch != epoch {
		t.FenceEpoch, t.FenceFailures, t.FenceError = epoch, 0, ""
	}
	if err == nil {
		t.FenceFailures, t.FenceError = 0, ""
		return
	}
	t.FenceFailures++
	t.FenceError = err.Error()
}

// fencePending is the problem and reason of a promotion held at its fence
// step after failed attempts (ok false: none failed yet).
func fencePending(v View, p cluster.Promotion) (cluster.Problem, string, bool) {
	if p.Has(cluster.StepFence) || v.FenceFailures == 0 {
		return cluster.ProblemNone, "", false
	}
	then := "not promoting until it is confirmed (fencing require); retrying"
	switch {
	case p.Evidence != nil && p.Evidence.Kind == cluster.EvidenceFence:
		then = "not promoting until it is confirmed: the fence is the only proof that it takes no writes; retrying"
	case fencingPolicy(v) == cluster.FencingBestEffort && !p.ElectedAt.IsZero():
		then = fmt.Sprintf("fencing best-effort: promoting without it at %s", p.ElectedAt.Add(bestEffortTimeout(v.Config)).UTC().Format(time.RFC3339))
	}
	return cluster.ProblemFencingUnconfirmed, fmt.Sprintf("FENCING UNCONFIRMED: holding the leader key of epoch %d; fencing the old primary %s failed %d times (%s); %s",
		v.Snap.Leader.Epoch, p.OldPrimary, v.FenceFailures, v.FenceError, then), true
}

// noFenceWhy says why no fence stands in for the liveness proof over old.
func noFenceWhy(v View, old string) string {
	switch {
	case !fencingPolicy(v).Enabled():
		return "fencing is off: hamgrctl config set fencing require, with a fencing section in each member's config file"
	case !v.canFence(old):
		return "this member has no fencer for " + old + ": add fencing.members." + old + " to its config file"
	case v.Snap.Member(old) != nil:
		return "its agent still publishes its record: it takes its key back"
	}
	return "the store dropped every lease at once: its agent, if alive, takes its key back"
}

// decideFencedSelf: no leader, and this member is the last leader that an
// operator fenced (LastLeader.Fenced): its node came back, but it never
// takes the key back or runs its database as a primary under that record;
// it waits, read-only, for a new leader (whose epoch makes it rejoin as a
// replica) and takes no part in the election it caused, unless an
// operator's manual failover chooses it.
func decideFencedSelf(v View, health detector.Health, isPrimary bool) Plan {
	last := v.Snap.LastLeader
	why := fmt.Sprintf("this member was fenced by an operator after it led epoch %d (%s): it does not lead again; waiting for a new leader", last.Epoch, v.Snap.FencedLastLeader())
	switch {
	case isPrimary || v.DB.Running && v.DB.Role == cluster.RolePrimary:
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}}, State: cluster.StateFenced, Problem: cluster.ProblemSecondPrimary, Reason: why}
	case health == detector.Down && v.DB.HasData:
		return Plan{Actions: []Action{StartReplica{}}, State: cluster.StateStarting, Reason: why}
	}
	if r := v.Snap.Request; r != nil && r.Kind == cluster.KindFailover && r.To == v.Self {
		// The operator chose this member nonetheless.
		return decideManualFailover(v, *r, health)
	}
	return Plan{State: stateOf(v), Soon: electionTick, Reason: why}
}
