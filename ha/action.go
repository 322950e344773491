package ha

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/detector"
)

// Action is one step of a Plan; the agent runs a plan's actions in order
// and stops at the first that fails. Each kind of action is its own type
// (actions.go) carrying only its own fields, and the decisions about it
// live on it: how it renders (String), whether it may take minutes (Long),
// what a Tracker records when it ran (ActionDone) and how long a round
// waits after it failed (Tracker.BackOff). Its Execute calls the one
// Executor method for its type, so a new action type cannot compile
// without an executor. The interface is sealed: only package ha defines
// actions.
type Action interface {
	// String renders the action for logs and scenario tests.
	String() string
	// Execute runs the action through e's method for its type.
	Execute(ctx context.Context, s Step, e Executor) error
	// Long reports whether the action may take minutes (it copies or
	// rewrites the database): the agent runs it in the background and it
	// ends the plan.
	Long() bool
	// done records in t what running the action, as a step of s, came to.
	done(t *Tracker, s Step, err error)
	// backOff is how long a round in which the action failed waits before
	// the next (Tracker.BackOff).
	backOff(t *Tracker, cfg cluster.DynamicConfig) time.Duration
}

// Step is what an action is executed in: the View it was decided on and
// the Plan it belongs to.
type Step struct {
	View View
	Plan Plan
}

// Executor runs actions: one method per action type, each called only by
// that type's Execute. Package agent implements it against the database
// and the store; tests implement it to record what ran.
type Executor interface {
	Initialize(ctx context.Context, s Step, a Initialize) error
	Clone(ctx context.Context, s Step, a Clone) error
	StartPrimary(ctx context.Context, s Step, a StartPrimary) error
	StartReplica(ctx context.Context, s Step, a StartReplica) error
	Stop(ctx context.Context, s Step, a Stop) error
	Demote(ctx context.Context, s Step, a Demote) error
	Promote(ctx context.Context, s Step, a Promote) error
	Follow(ctx context.Context, s Step, a Follow) error
	AcquireLeader(ctx context.Context, s Step, a AcquireLeader) error
	ReleaseLeader(ctx context.Context, s Step, a ReleaseLeader) error
	RecordFailover(ctx context.Context, s Step, a RecordFailover) error
	MarkCannotFollow(ctx context.Context, s Step, a MarkCannotFollow) error
	Handoff(ctx context.Context, s Step, a Handoff) error
	ClearRequest(ctx context.Context, s Step, a ClearRequest) error
	SetSyncStandbys(ctx context.Context, s Step, a SetSyncStandbys) error
	SetSyncRecord(ctx context.Context, s Step, a SetSyncRecord) error
	SetAcknowledging(ctx context.Context, s Step, a SetAcknowledging) error
	Detach(ctx context.Context, s Step, a Detach) error
	SetFailsafeRecord(ctx context.Context, s Step, a SetFailsafeRecord) error
	CreateSlots(ctx context.Context, s Step, a CreateSlots) error
	DropSlots(ctx context.Context, s Step, a DropSlots) error
	Rewind(ctx context.Context, s Step, a Rewind) error
	Reclone(ctx context.Context, s Step, a Reclone) error
	BeginPromotion(ctx context.Context, s Step, a BeginPromotion) error
	Fence(ctx context.Context, s Step, a Fence) error
	ProceedUnfenced(ctx context.Context, s Step, a ProceedUnfenced) error
	Publish(ctx context.Context, s Step, a Publish) error
	RecordRefusal(ctx context.Context, s Step, a RecordRefusal) error
}

// SyncChoice says which standbys SetSyncStandbys makes synchronous.
type SyncChoice int

// Sync choices.
const (
	// SyncNamed requires each standby in Names (none: asynchronous
	// replication).
	SyncNamed SyncChoice = iota
	// SyncAny requires any one standby, blocking commits while there is
	// none.
	SyncAny
)

// leaderEpoch is the epoch of s's leader key (0: none).
func (s Step) leaderEpoch() cluster.Epoch {
	if s.View.Snap.Leader == nil {
		return 0
	}
	return s.View.Snap.Leader.Epoch
}

// ActionDone updates the tracker after act, a step of s, ran and returned
// err; each action type says what it records (see the types' done
// methods): failed and successful starts, a leader key taken (the primary
// start timeout counts from then) or given up because the database could
// not be restarted, an epoch found impossible to follow, clone failures in
// a row, and the rejoin of the view's leader epoch.
func (t *Tracker) ActionDone(s Step, act Action, err error) {
	act.done(t, s, err)
}

// maxCloneBackOff caps the wait between attempts of a failing clone.
const maxCloneBackOff = 5 * time.Minute

// BackOff is how long a round whose action failed waits before the next
// round (0: go on at once). A failing action is retried after loop_wait,
// so it does not run in a tight loop — except a primary start that failed
// for the last allowed time outside a pause: the next round releases the
// leader key, and that must not wait. A clone (or re-clone) copies the
// whole database, so each failure in a row doubles its wait, up to
// five minutes.
func (t *Tracker) BackOff(failed Action, cfg cluster.DynamicConfig) time.Duration {
	return failed.backOff(t, cfg)
}

// loopWaitBackOff is the back-off of most actions: loop_wait.
func loopWaitBackOff(cfg cluster.DynamicConfig) time.Duration { return time.Duration(cfg.LoopWait) }

// startDone counts failed starts; a successful one resets the count (and,
// for a primary, the down clock).
func (t *Tracker) startDone(err error, primary bool) {
	switch {
	case err != nil:
		t.FailedStarts++
	case primary:
		t.FailedStarts, t.DownSince = 0, time.Time{}
	default:
		t.FailedStarts = 0
	}
}

// startPrimaryBackOff: a primary start that failed for the last allowed
// time outside a pause does not wait (the next round releases the key).
func (t *Tracker) startPrimaryBackOff(cfg cluster.DynamicConfig) time.Duration {
	if t.FailedStarts == detector.MaxFailedStarts && !cfg.Paused {
		return 0
	}
	return loopWaitBackOff(cfg)
}

// copyDone counts clone and re-clone failures in a row.
func (t *Tracker) copyDone(err error) {
	if err != nil {
		t.FailedClones++
		return
	}
	t.FailedClones = 0
}

// copyBackOff doubles loop_wait with each clone failure in a row, up to
// maxCloneBackOff (or loop_wait, if longer).
func (t *Tracker) copyBackOff(cfg cluster.DynamicConfig) time.Duration {
	wait := time.Duration(cfg.LoopWait)
	for i := 1; i < t.FailedClones && wait < maxCloneBackOff; i++ {
		wait *= 2
	}
	return min(wait, max(maxCloneBackOff, time.Duration(cfg.LoopWait)))
}

// The renderers of String's fields, shared so that every action renders
// a field the same way.

func namesField(names []string) string {
	return fmt.Sprintf(" names=[%s]", strings.Join(names, ","))
}

func epochField(e cluster.Epoch) string {
	if e == 0 {
		return ""
	}
	return fmt.Sprintf(" epoch=%d", e)
}

func evidenceField(e *cluster.Evidence) string {
	if e == nil || e.Kind == cluster.EvidenceNone {
		return ""
	}
	return fmt.Sprintf(" evidence=%s", e.Kind)
}

func promotionField(p *cluster.Promotion) string {
	if p == nil {
		return ""
	}
	return fmt.Sprintf(" promotion=%q", p.String())
}

func targetField(t string) string {
	if t == "" {
		return ""
	}
	return " target=" + t
}
