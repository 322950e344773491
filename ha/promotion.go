package ha

import (
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/detector"
)

// Promotions are level-triggered. Every promotion — after an election, for
// a switchover, for a manual failover, or of the last leader's own replica
// — takes the leader key with a record of itself in the key's value
// (cluster.Promotion, one transaction), then runs its steps in the order of
// cluster.PromotionStep:
//
//	key taken → old primary fenced → synchronous pre-step → promote → publish → record
//
// The first round plans them all. When a step fails, or the agent
// restarts, the next rounds read the record from the leader key and plan
// only the steps left, in the same order (resumePromotion), so no step is
// ever skipped: in synchronous mode the pre-step always comes before the
// promotion, and a promotion never happens before the fence. Which steps
// are done is known from the record where it cannot be observed (the key,
// the fence, the end) and from the database where it can (promoted: it
// runs as a primary); the others repeat harmlessly until the record is
// complete (the synchronous pre-step, publishing, the history entry, all
// idempotent).
//
// The fence step is the seam for STONITH (fencing.go): under the
// fencing policy (require, best-effort) a promotion over another member
// fences it before promoting, at most once per promotion (the record says
// it is done). With fencing off, or nobody to fence, the record marks it
// done when the key is taken: the liveness evidence, checked before the
// key was taken, stands alone. The publish step is the seam for discovery.

// newPromotion is the record of a promotion taken over from epoch lost,
// whose leader was old ("" or this member: nobody to fence), with the
// fence owed by an unfinished earlier promotion taking old's place
// (owedFence).
func newPromotion(v View, kind cluster.HistoryKind, lost cluster.Epoch, old string, ev *cluster.Evidence) cluster.Promotion {
	p := cluster.Promotion{Kind: kind, Lost: lost, OldPrimary: old, Evidence: ev,
		Done: []cluster.PromotionStep{cluster.StepKey}}
	if o := fenceOwedOver(v, old, ev); o != nil {
		p.OldPrimary, p.OldEpoch, p.Evidence = o.Target, o.Lost, o.Evidence
	}
	if p.Fenced = fenceDone(v, p); p.Fenced != "" {
		p = p.With(cluster.StepFence)
	}
	return p
}

// promotionPlan takes the leader key with record p and runs every step of
// the promotion.
func promotionPlan(v View, p cluster.Promotion) []Action {
	acquire := AcquireLeader{Evidence: p.Evidence, Promotion: &p}
	return append([]Action{acquire}, promotionSteps(v, p, false)...)
}

// promotionSteps are the steps of p left after the key: the fence unless
// done, then — unless the database was promoted already — the synchronous
// pre-step (in synchronous mode) and the promotion, then publishing and
// the record.
func promotionSteps(v View, p cluster.Promotion, promoted bool) []Action {
	var acts []Action
	if !promoted {
		if !p.Has(cluster.StepFence) {
			acts = append(acts, fenceAction(v, p))
		}
		if syncMode(v).Enabled() {
			carry, ok := carryBeforePromote(v)
			if ok {
				acts = append(acts, carry)
			}
			if waitBeforePromote(v, carry, ok) {
				acts = append(acts, SetSyncStandbys{Choice: SyncAny})
			}
		}
		acts = append(acts, Promote{})
		if v.Engine.Slots {
			acts = append(acts, slotsFor(v))
		}
	}
	acts = append(acts, Publish{})
	if p.ClearRequest && requestServed(v) {
		acts = append(acts, ClearRequest{})
	}
	return append(acts, RecordFailover{Epoch: p.Lost, History: p.Kind, Evidence: p.Evidence})
}

// requestServed reports whether the pending operator request is one a
// promotion of this member serves (its switchover handoff, or a manual
// failover to it), so that resuming the promotion clears that request and
// never a newer one.
func requestServed(v View) bool {
	r := v.Snap.Request
	switch {
	case r == nil:
		return false
	case r.Handoff != nil:
		return r.Handoff.Target == v.Self
	default:
		return r.Kind == cluster.KindFailover && r.To == v.Self
	}
}

// resumePromotion: this member holds the leader key and its promotion is
// not complete. With a healthy database it plans the steps left; otherwise
// the leader's rules for its database apply (start it read-only, wait for
// its recovery, release the key), and the promotion resumes once it runs.
func resumePromotion(v View, health detector.Health, isPrimary bool) (Plan, bool) {
	l := v.Snap.Leader
	if health != detector.Healthy || (isPrimary && v.DB.Stalled != "") {
		return Plan{}, false
	}
	p := l.Promotion
	promoted := v.DB.Role == cluster.RolePrimary
	if p == nil || (p.Complete() && !promoted) {
		if promoted {
			return Plan{}, false
		}
		// The key was taken without a record (by an older hamgr, or
		// for a database that turned out to hold a replica), or its
		// promotion is complete but the database runs read-only again
		// (a restart in place that did not finish making it writable, a
		// switchover's demotion whose request was cancelled): begin one.
		rec := newPromotion(v, "", l.Epoch, "", nil)
		acts := append([]Action{BeginPromotion{Promotion: rec}}, promotionSteps(v, rec, false)...)
		return Plan{Actions: acts, State: cluster.StateStarting, Reason: "promoting: this member holds the leader key"}, true
	}
	if p.Complete() {
		return Plan{}, false
	}
	state := cluster.StateStarting
	if promoted {
		state = cluster.StateRunning
	}
	plan := Plan{Actions: promotionSteps(v, *p, promoted), State: state,
		Reason: fmt.Sprintf("resuming the promotion of epoch %d (%s)", l.Epoch, p)}
	if problem, why, ok := fencePending(v, *p); ok {
		plan.Problem, plan.Reason = problem, why
	}
	return plan, true
}

// CarryPromotion is what a member taking its own key back under a new
// epoch (its agent restarted, or resumed after a freeze) keeps of the
// unfinished promotion the old key l was for: the record, with the steps
// that cannot be observed marked done as they were (the key, and the
// fence: the old primary stays fenced). Nil when there is none to carry.
func CarryPromotion(l cluster.Leader) *cluster.Promotion {
	p := l.Promotion
	if p == nil || p.Complete() {
		return nil
	}
	c := *p
	c.Done = nil
	c = c.With(cluster.StepKey)
	if p.Has(cluster.StepFence) {
		c = c.With(cluster.StepFence)
	}
	return &c
}

// FailoverAt is the LastLeader.FailoverAt a member writes when it takes
// the leader key at now for promotion rec (nil: none, such as a leader
// taking its own key back): now for an automatic failover, else the
// previous last leader's value, so failover_backoff measures from the
// cluster's latest automatic failover whoever led since.
func FailoverAt(prev *cluster.LastLeader, rec *cluster.Promotion, now time.Time) time.Time {
	if rec != nil && rec.Kind == cluster.HistoryFailover {
		return now.UTC()
	}
	if prev == nil {
		return time.Time{}
	}
	return prev.FailoverAt
}
