// Package detector classifies what an agent observes — its database's
// probes, the leader key and its own lease renewals — into a few states the
// HA policy decides on. It is pure: time comes in as arguments.
package detector

import (
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// LeaderState is how the leader key relates to this agent.
type LeaderState int

// Leader states.
const (
	_ LeaderState = iota
	// NoLeader: nobody holds the leader key.
	NoLeader
	// SelfLeader: this agent holds the key on its current lease.
	SelfLeader
	// StaleSelf: the key names this member but is bound to a lease this
	// agent no longer has (it restarted or re-granted its lease).
	StaleSelf
	// OtherLeader: another member holds the key.
	OtherLeader
)

// String names the state for logs.
func (s LeaderState) String() string {
	switch s {
	case NoLeader:
		return "no-leader"
	case SelfLeader:
		return "self"
	case StaleSelf:
		return "stale-self"
	case OtherLeader:
		return "other"
	}
	return "unknown"
}

// Leader classifies the leader key for member self holding lease.
func Leader(l *cluster.Leader, self string, lease int64) LeaderState {
	switch {
	case l == nil:
		return NoLeader
	case l.Name != self:
		return OtherLeader
	case lease != 0 && l.Lease == lease:
		return SelfLeader
	default:
		return StaleSelf
	}
}

// Health is the local database's condition.
type Health int

// Health values.
const (
	_ Health = iota
	// Healthy: the database answers queries.
	Healthy
	// Starting: the process runs but does not answer yet (startup or crash
	// recovery), within the allowed start time.
	Starting
	// Down: no server process.
	Down
	// Unrecoverable: it has not come back within the start timeout, or
	// failed to start too often.
	Unrecoverable
	// Empty: the data directory holds no database.
	Empty
)

// String names the health for logs.
func (h Health) String() string {
	switch h {
	case Healthy:
		return "healthy"
	case Starting:
		return "starting"
	case Down:
		return "down"
	case Unrecoverable:
		return "unrecoverable"
	case Empty:
		return "empty"
	}
	return "unknown"
}

// MaxFailedStarts is how many consecutive failed starts of a primary make it
// unrecoverable even before the start timeout: a server that exits during
// start (bad data directory, full disk) will not heal by retrying.
const MaxFailedStarts = 2

// Local classifies the local database. downSince is when it was first seen
// not answering, or stalled (zero when it answers); failedStarts counts
// consecutive failed start attempts. A stalled database (db.Status.Stalled:
// it answers on an old connection but takes no new session or commit) is
// treated like one that does not answer, but it keeps its role while
// within startTimeout: a stall on a busy machine may pass; one that lasts
// is a hung server and as unrecoverable as a crashed one.
func Local(st db.Status, now, downSince time.Time, startTimeout time.Duration, failedStarts int) Health {
	switch {
	case !st.HasData && !st.Running:
		return Empty
	case st.Running && st.Accepting && st.Stalled != "":
		if !downSince.IsZero() && now.Sub(downSince) >= startTimeout {
			return Unrecoverable
		}
		return Healthy
	case st.Running && st.Accepting:
		return Healthy
	case failedStarts >= MaxFailedStarts:
		return Unrecoverable
	case !downSince.IsZero() && now.Sub(downSince) >= startTimeout:
		return Unrecoverable
	case st.Running:
		return Starting
	default:
		return Down
	}
}

// FenceDeadline is the local time by which a leader whose last successful
// renewal request was sent at lastRenewSent must have stopped taking writes.
// The store cannot expire the lease before lastRenewSent + ttl on the
// agent's own clock (it received the request after it was sent), so
// stopping at lastRenewSent + loopWait + retryTimeout leaves
// ttl - loopWait - retryTimeout (positive by config validation) to stop the
// database. No clock of another machine is involved.
func FenceDeadline(lastRenewSent time.Time, cfg cluster.DynamicConfig) time.Time {
	return lastRenewSent.Add(time.Duration(cfg.LoopWait) + time.Duration(cfg.RetryTimeout))
}
