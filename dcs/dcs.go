// Package dcs defines hamgr's view of the distributed configuration store
// (etcd): the interfaces are cut by role (session lease, leader key, members,
// configuration, history) and dcs/etcd implements them all.
//
// Keyspace, under a prefix (default /hamgr) and the cluster name:
//
//	<prefix>/<cluster>/leader         leader record (and the record of the promotion it was taken for), bound to the leader's lease; epoch = its create revision
//	<prefix>/<cluster>/last_leader    persistent copy of the latest leader record (no lease)
//	<prefix>/<cluster>/members/<name> member record, bound to that member's lease
//	<prefix>/<cluster>/config         dynamic cluster config (JSON)
//	<prefix>/<cluster>/initialize     name of the member that bootstrapped the cluster (released only before anyone led)
//	<prefix>/<cluster>/history/<epoch as 20 digits> history entry (JSON)
//	<prefix>/<cluster>/request        pending switchover or failover request (JSON)
//	<prefix>/<cluster>/sync           the leader's synchronous standbys (JSON)
//	<prefix>/<cluster>/fenced/<name>  an operator's latest fence of that member (hamgrctl fence; JSON)
//
// Values are JSON and never contain secrets.
package dcs

import (
	"context"
	"errors"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// ErrLeaseLost means the session lease expired (or was revoked) on the store:
// everything bound to it is gone. The holder must Grant a new lease.
var ErrLeaseLost = errors.New("store lease lost")

// Session owns the agent's lease. Member and leader keys are bound to it.
type Session interface {
	// Grant creates a new lease of the given TTL, replacing (and revoking,
	// best effort) any previous one.
	Grant(ctx context.Context, ttl time.Duration) error
	// KeepAlive renews the lease once. It returns ErrLeaseLost when the
	// lease no longer exists. The caller must note the time it *sent* the
	// request: the store cannot expire the lease earlier than that plus the
	// TTL, whichever clock the store runs on.
	KeepAlive(ctx context.Context) error
	// LeaseID is the current lease (0 when none).
	LeaseID() int64
}

// Reader reads the whole cluster in one consistent request.
type Reader interface {
	Load(ctx context.Context) (cluster.Snapshot, error)
}

// LeaderLease is the leader key.
type LeaderLease interface {
	// AcquireLeader creates the leader key for who.Name, bound to the
	// session lease, in one transaction that succeeds only if the key is
	// absent and last_leader is still the leadership of epoch after (0:
	// none yet) — the one the caller's decision was made on, so that a
	// decision taken on a snapshot another leadership has since passed
	// cannot take the key. The same transaction writes last_leader (who,
	// with its address; who.Epoch is ignored). It returns the new leader
	// record (its Epoch is the key's create revision) and true, or the
	// current holder and false; when the key is absent but last_leader
	// changed it returns an error wrapping ErrEpochChanged. A non-nil p
	// is the record of the promotion the key is taken for: it is stored
	// in the key's value by the same transaction, and the returned
	// leader carries it. The same transaction also writes the fence
	// owed (cluster.FenceOwed) when p has an old primary and its fence
	// step is not done, and deletes any fence owed when p's fence step is
	// done; a nil p leaves it as it is.
	AcquireLeader(ctx context.Context, who cluster.LastLeader, after cluster.Epoch, p *cluster.Promotion) (cluster.Leader, bool, error)
	// UpdatePromotion replaces the promotion record in the leader key's
	// value, only while l still holds the key (same epoch); the key stays
	// bound to its lease. Otherwise it fails and writes nothing. When p's
	// fence step is done, the same transaction deletes the fence owed.
	UpdatePromotion(ctx context.Context, l cluster.Leader, p cluster.Promotion) error
	// ReleaseLeader deletes the leader key if it still is l (same epoch).
	ReleaseLeader(ctx context.Context, l cluster.Leader) error
	// TakeOverLeader takes the leader key from old, whose agent and
	// database the caller proved gone while the key is still held (the
	// failover faster than the ttl, see docs/design.md "Failover before
	// the ttl"). First one transaction deletes the key only if it is
	// still old's: its create revision is old.Epoch, it is bound to
	// old.Lease, and old's member record is still at revision memberRev
	// (Member.Revision as the caller read it; 0: the record must be
	// absent) — a restarted old agent rewrites its record before it
	// could run its database as a primary, and any new key of its own
	// has a new create revision, so either makes the take-over fail.
	// Then, at once, AcquireLeader(who, old.Epoch, p) creates the key for
	// who: it fails if anyone took the key in between. etcd cannot do
	// both in one transaction (it refuses a delete and a put of the same
	// key in one request, and the new epoch must be a new create
	// revision). It returns the new leader and true; false with the
	// current holder when the second step lost the key to another
	// member; an error wrapping ErrTakeOverRefused when the guard failed
	// (nothing was written). The caller then revokes old.Lease
	// (RevokeLease): the old agent's renewals fail from then on.
	TakeOverLeader(ctx context.Context, who cluster.LastLeader, old cluster.Leader, memberRev int64, p *cluster.Promotion) (cluster.Leader, bool, error)
	// RevokeLease revokes lease id (another member's): every key bound
	// to it is deleted and its holder's next renewal fails with
	// ErrLeaseLost. Revoking a lease that no longer exists is not an
	// error.
	RevokeLease(ctx context.Context, id int64) error
	// LeaseTimeToLive reads how long lease id (another member's) has left
	// before it expires, as etcd's LeaseTimeToLive reports it: Remaining
	// in whole seconds, rounded down, and the TTL it was granted with
	// (every renewal sets the time left back to Granted). A lease that no
	// longer exists gives an error wrapping ErrLeaseLost.
	LeaseTimeToLive(ctx context.Context, id int64) (LeaseTTL, error)
}

// LeaseTTL is a lease's time left as the store reported it.
type LeaseTTL struct {
	// Remaining is the time left, rounded down to a whole second (the
	// true time left lies in [Remaining, Remaining+1s) when the store
	// answered).
	Remaining time.Duration
	// Granted is the TTL the lease was granted with.
	Granted time.Duration
}

// UnrenewedFor is a lower bound on how long the lease had gone without a
// renewal when the store answered: the store sets the time left back to
// Granted at each renewal, and the true time left is under Remaining+1s.
// It is 0 when the answer allows a renewal within the last second.
func (t LeaseTTL) UnrenewedFor() time.Duration {
	if d := t.Granted - t.Remaining - time.Second; d > 0 {
		return d
	}
	return 0
}

// ErrTakeOverRefused is returned by TakeOverLeader when the leader key or
// the old leader's member record changed since the caller read them: the
// proof it had is about a leadership or an agent that no longer is.
var ErrTakeOverRefused = errors.New("the leader key or the old leader's member record changed since they were read")

// Members publishes this agent's member record.
type Members interface {
	// PublishMember writes members/<m.Name>, bound to the session lease.
	PublishMember(ctx context.Context, m cluster.Member) error
}

// ErrEpochChanged is returned by AcquireLeader when another leadership
// began (and ended) after the one the caller decided on.
var ErrEpochChanged = errors.New("another leadership began since the decision")

// ErrNoConfig is returned by ConfigStore.UpdateConfig when the cluster has
// no dynamic config yet (it was never bootstrapped, or the cluster name or
// prefix is wrong).
var ErrNoConfig = errors.New("the cluster has no dynamic config yet (not bootstrapped, or wrong cluster name or prefix?)")

// ErrLeaderExisted is returned by ConfigStore.ResetBootstrap when the
// cluster has had a leader: its bootstrap claim is final, since releasing
// it would let a second, different database be bootstrapped over the one
// that led.
var ErrLeaderExisted = errors.New("the cluster has had a leader: its bootstrap claim is final")

// ErrNotClaimed is returned by ConfigStore.ResetBootstrap when no member
// has claimed the bootstrap of the cluster.
var ErrNotClaimed = errors.New("no member has claimed the bootstrap of the cluster")

// ErrClaimChanged is returned by ConfigStore.ResetBootstrap when the
// bootstrap claim is held by another member than the one to release.
var ErrClaimChanged = errors.New("the bootstrap claim is held by another member")

// ConfigStore holds the dynamic configuration and the bootstrap claim.
type ConfigStore interface {
	// Initialize claims the right to bootstrap the cluster for name and
	// writes cfg as the dynamic config, if no one has claimed it yet. It
	// returns the claimant's name (name itself when the claim succeeded).
	Initialize(ctx context.Context, name string, cfg cluster.DynamicConfig) (string, error)
	// ResetBootstrap releases claimant's bootstrap claim (deletes the
	// initialize key), so that the next Initialize succeeds, only if
	// nobody has ever led the cluster. One transaction checks that
	// initialize still names claimant and that leader, last_leader and
	// every history entry are absent (last_leader is written with every
	// leader key and never deleted; history is checked too in case it
	// was deleted by hand), and deletes it; nothing else is written, so
	// the dynamic config stays until the next claimant's Initialize
	// replaces it. It returns the claim the store held: claimant when it
	// was released, else the current claimant ("" when none) with an
	// error wrapping, in this order of precedence, ErrLeaderExisted,
	// ErrNotClaimed or ErrClaimChanged.
	ResetBootstrap(ctx context.Context, claimant string) (string, error)
	// SetConfig replaces the dynamic config.
	SetConfig(ctx context.Context, cfg cluster.DynamicConfig) error
	// UpdateConfig reads the dynamic config, passes it to fn and writes
	// fn's result only if the config was not changed in between (a
	// compare-and-swap); on such a conflict it reads again and calls fn
	// again, a few times at most. An error from fn is returned as is and
	// nothing is written. It returns the config written.
	UpdateConfig(ctx context.Context, fn func(cur cluster.DynamicConfig) (cluster.DynamicConfig, error)) (cluster.DynamicConfig, error)
}

// History is the append-only log of leadership changes.
type History interface {
	AppendHistory(ctx context.Context, e cluster.HistoryEntry) error
	History(ctx context.Context) ([]cluster.HistoryEntry, error)
}

// ErrRequestPending is returned by CreateRequest when a request exists.
var ErrRequestPending = errors.New("a switchover or failover request is already pending")

// Requests holds the single pending operator request.
type Requests interface {
	// CreateRequest writes r if no request is pending; otherwise it returns
	// an error wrapping ErrRequestPending.
	CreateRequest(ctx context.Context, r cluster.Request) error
	// UpdateRequest replaces the pending request (used by the leader to
	// record its handoff); it fails if none is pending.
	UpdateRequest(ctx context.Context, r cluster.Request) error
	// ClearRequest deletes the pending request, if any.
	ClearRequest(ctx context.Context) error
}

// SyncRecord holds the leader's record of its synchronous standbys.
type SyncRecord interface {
	// SetSync writes rec as the synchronous standby record for leader l
	// (its Leader and Epoch are l's), only if l still holds the leader key
	// (same epoch); otherwise it fails.
	SetSync(ctx context.Context, l cluster.Leader, rec cluster.SyncState) error
}

// FailsafeRecord holds the leader's failsafe record (failsafe_mode).
type FailsafeRecord interface {
	// SetFailsafe writes rec as the failsafe record of leader l (its
	// Leader and Epoch taken from l), or deletes the record when rec is
	// nil, only if l still holds the leader key (same epoch); otherwise
	// it fails and changes nothing.
	SetFailsafe(ctx context.Context, l cluster.Leader, rec *cluster.FailsafeState) error
}

// Watcher wakes the agent when the cluster changes.
type Watcher interface {
	// Changes returns a channel that receives after any change under the
	// cluster's keys (coalesced: one value may stand for many changes). It
	// closes when ctx ends.
	Changes(ctx context.Context) <-chan struct{}
	// StreamLosses returns a channel that receives after a member record
	// reporting a stream loss (cluster.Member.ReportsStreamLoss) is
	// written (coalesced), as seen by the watch a running Changes holds:
	// nothing arrives while no Changes channel is open. It closes when ctx
	// ends. A leader's agent answers each by rewriting its own record.
	StreamLosses(ctx context.Context) <-chan struct{}
}

// Store is everything an agent needs from the store.
type Store interface {
	Session
	Reader
	LeaderLease
	Members
	ConfigStore
	History
	Requests
	SyncRecord
	FailsafeRecord
	Watcher
	// Close revokes nothing and closes the client.
	Close() error
}
