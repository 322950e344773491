package agent

import (
	"context"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/detector"
)

// RoundObserver is told what each round of the loop left behind (package
// sdnotify tells systemd, package watchdog kicks /dev/watchdog). It is
// called after every Round (PhaseRound), by the fence timer when it has
// stopped the database (PhaseFenced: possibly on another goroutine than
// the rounds', so implementations must be safe for concurrent use), when
// the clean stop is about to stop the database (PhaseStopping), and once
// more when Run has stopped (PhaseStopped). It must return quickly (no
// network round trips) and must not call back into the Agent.
type RoundObserver interface {
	AfterRound(ctx context.Context, r RoundReport)
}

// Phase says which point of the agent's life a RoundReport describes.
type Phase int

// Phases.
const (
	// PhaseRound: a round of the loop has just ended (during a clean
	// stop too: a leader's handover runs rounds).
	PhaseRound Phase = 1 + iota
	// PhaseFenced: the fence timer (or the fence at the start of a round)
	// has stopped the database because the lease could not be renewed in
	// time; the report says it no longer runs.
	PhaseFenced
	// PhaseStopping: the clean stop is about to stop the database (after
	// a leader's handover, if any); no round runs from then on.
	PhaseStopping
	// PhaseStopped: Run has done its clean stop and is about to return;
	// no report follows.
	PhaseStopped
)

// Leadership says whether this member leads.
type Leadership int

// Leaderships.
const (
	// NotLeading: the member does not hold the leader key, or its lease
	// may have expired (past the fence deadline).
	NotLeading Leadership = 1 + iota
	// Leading: the member holds the leader key on its lease, and the
	// fence deadline of its last renewal has not passed (the same rule as
	// cluster.AgentStatus.HoldsLeader).
	Leading
)

// RoundReport is what a RoundObserver is told.
type RoundReport struct {
	Phase Phase
	// At is the agent's clock when the report was made.
	At     time.Time
	Member string
	// Leadership is whether this member leads.
	Leadership Leadership
	// Epoch and Leader are the leader key's epoch and holder as last read
	// (0 and "" when no one holds it).
	Epoch  cluster.Epoch
	Leader string
	// Role is the local database's role at its last probe (RoleUnknown
	// when it did not answer); DBRunning whether its process existed.
	Role      cluster.Role
	DBRunning bool
	// State and Reason are this member's published state and why.
	State  cluster.MemberState
	Reason string
	// StoreOK is whether the round's last store read succeeded.
	StoreOK bool
	// LastRenewSent is when the last successful renewal of the lease was
	// sent (zero: none): the store cannot expire the lease before it plus
	// Config.TTL, on this clock.
	LastRenewSent time.Time
	// Config is the dynamic configuration the agent runs with.
	Config cluster.DynamicConfig
}

// report builds a RoundReport from the agent's state.
func (a *Agent) report(p Phase) RoundReport {
	now := a.clk.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	r := RoundReport{
		Phase: p, At: now, Member: a.opts.Name, Leadership: NotLeading,
		Epoch: leaderEpoch(a.snap.Leader), Leader: leaderName(a.snap.Leader),
		Role: cluster.RoleUnknown, DBRunning: a.dbRunning,
		State: a.self.State, Reason: a.self.Reason, StoreOK: a.storeOK,
		LastRenewSent: a.lastRenewSent, Config: a.cfg,
	}
	if a.accepting {
		r.Role = a.self.Role
	}
	if a.holdsLeader != 0 && a.snap.Leader != nil && a.snap.Leader.Epoch == a.holdsLeader &&
		!a.lastRenewSent.IsZero() && now.Before(detector.FenceDeadline(a.lastRenewSent, a.cfg)) {
		r.Leadership = Leading
	}
	return r
}

// notifyObservers tells every Options.Observers what p left behind.
func (a *Agent) notifyObservers(ctx context.Context, p Phase) {
	if len(a.opts.Observers) == 0 {
		return
	}
	r := a.report(p)
	if p == PhaseFenced {
		// The fence's stop succeeded; the last probe predates it.
		r.DBRunning, r.Role = false, cluster.RoleUnknown
	}
	for _, o := range a.opts.Observers {
		o.AfterRound(ctx, r)
	}
}
