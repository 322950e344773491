package ha

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// The action types. Each renders as "name field=value…", exactly as the
// scenario tests and their golden files expect, and carries only its own
// fields. Unless said otherwise, an action records nothing in the Tracker
// and a failure backs off loop_wait.

// Initialize claims the bootstrap of a new cluster and creates a database.
type Initialize struct{}

// String renders the action (see Action).
func (Initialize) String() string { return "initialize" }

// Execute runs e.Initialize.
func (a Initialize) Execute(ctx context.Context, s Step, e Executor) error {
	return e.Initialize(ctx, s, a)
}

// Long reports false.
func (Initialize) Long() bool { return false }

func (Initialize) done(*Tracker, Step, error) {}

func (Initialize) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Clone copies the leader's database into an empty data directory. It is
// long; failures in a row are counted and back off exponentially.
type Clone struct {
	Upstream db.Upstream
}

// String renders the action (see Action).
func (a Clone) String() string { return "clone upstream=" + a.Upstream.Name }

// Execute runs e.Clone.
func (a Clone) Execute(ctx context.Context, s Step, e Executor) error { return e.Clone(ctx, s, a) }

// Long reports true: it copies the whole database.
func (Clone) Long() bool { return true }

func (Clone) done(t *Tracker, _ Step, err error) { t.copyDone(err) }

func (Clone) backOff(t *Tracker, cfg cluster.DynamicConfig) time.Duration { return t.copyBackOff(cfg) }

// StartPrimary starts the local database as a primary. Failed starts are
// counted; a success resets them and the down clock.
type StartPrimary struct{}

// String renders the action (see Action).
func (StartPrimary) String() string { return "start-primary" }

// Execute runs e.StartPrimary.
func (a StartPrimary) Execute(ctx context.Context, s Step, e Executor) error {
	return e.StartPrimary(ctx, s, a)
}

// Long reports false: a start still under way is left to the loop.
func (StartPrimary) Long() bool { return false }

func (StartPrimary) done(t *Tracker, _ Step, err error) { t.startDone(err, true) }

func (StartPrimary) backOff(t *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return t.startPrimaryBackOff(cfg)
}

// StartReplica starts the local database as a replica of Upstream (nil:
// read-only, following nobody). Failed starts are counted.
type StartReplica struct {
	Upstream *db.Upstream
}

// String renders the action (see Action).
func (a StartReplica) String() string {
	if a.Upstream == nil {
		return "start-replica"
	}
	return "start-replica upstream=" + a.Upstream.Name
}

// Execute runs e.StartReplica.
func (a StartReplica) Execute(ctx context.Context, s Step, e Executor) error {
	return e.StartReplica(ctx, s, a)
}

// Long reports false: a start still under way is left to the loop.
func (StartReplica) Long() bool { return false }

func (StartReplica) done(t *Tracker, _ Step, err error) { t.startDone(err, false) }

func (StartReplica) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Stop stops the local database with Mode.
type Stop struct {
	Mode db.StopMode
}

// String renders the action (see Action).
func (a Stop) String() string {
	switch a.Mode {
	case db.StopFast:
		return "stop mode=fast"
	case db.StopImmediate:
		return "stop mode=immediate"
	}
	return "stop"
}

// Execute runs e.Stop.
func (a Stop) Execute(ctx context.Context, s Step, e Executor) error { return e.Stop(ctx, s, a) }

// Long reports false.
func (Stop) Long() bool { return false }

func (Stop) done(*Tracker, Step, error) {}

func (Stop) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration { return loopWaitBackOff(cfg) }

// Demote makes the local primary read-only in place and ends its client
// sessions (db.Demoter), for a switchover of an engine whose
// Capabilities.Switchover is db.SwitchoverDemote.
type Demote struct{}

// String renders the action (see Action).
func (Demote) String() string { return "demote" }

// Execute runs e.Demote.
func (a Demote) Execute(ctx context.Context, s Step, e Executor) error { return e.Demote(ctx, s, a) }

// Long reports false.
func (Demote) Long() bool { return false }

func (Demote) done(*Tracker, Step, error) {}

func (Demote) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Promote promotes the local replica.
type Promote struct{}

// String renders the action (see Action).
func (Promote) String() string { return "promote" }

// Execute runs e.Promote.
func (a Promote) Execute(ctx context.Context, s Step, e Executor) error { return e.Promote(ctx, s, a) }

// Long reports false.
func (Promote) Long() bool { return false }

func (Promote) done(*Tracker, Step, error) {}

func (Promote) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Follow repoints the running replica at Upstream.
type Follow struct {
	Upstream db.Upstream
}

// String renders the action (see Action).
func (a Follow) String() string { return "follow upstream=" + a.Upstream.Name }

// Execute runs e.Follow.
func (a Follow) Execute(ctx context.Context, s Step, e Executor) error { return e.Follow(ctx, s, a) }

// Long reports false.
func (Follow) Long() bool { return false }

func (Follow) done(*Tracker, Step, error) {}

func (Follow) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// AcquireLeader tries to create the leader key, with Promotion (if set) as
// the record of the promotion it is taken for; if it fails the rest of the
// plan is skipped. Evidence is what a promotion over an old primary relied
// on (the agent logs it). Taking the key resets the down clock and the
// failed starts (the primary start timeout counts from then).
//
// Over, when set, takes the key over from a leader whose key is still held
// (dcs.LeaderLease.TakeOverLeader, on proof of death, see takeover.go)
// rather than create an absent key.
type AcquireLeader struct {
	Evidence  *cluster.Evidence
	Promotion *cluster.Promotion
	Over      *TakeOver
}

// TakeOver is the leader key taken over and the guard: the key as read
// (epoch, lease) and the revision of its holder's member record then (0:
// it had none).
type TakeOver struct {
	Leader    cluster.Leader
	MemberRev int64
}

// String renders the action (see Action).
func (a AcquireLeader) String() string {
	s := "acquire-leader"
	if a.Over != nil {
		s += fmt.Sprintf(" over=%s@%d", a.Over.Leader.Name, a.Over.Leader.Epoch)
	}
	return s + evidenceField(a.Evidence) + promotionField(a.Promotion)
}

// Execute runs e.AcquireLeader.
func (a AcquireLeader) Execute(ctx context.Context, s Step, e Executor) error {
	return e.AcquireLeader(ctx, s, a)
}

// Long reports false.
func (AcquireLeader) Long() bool { return false }

func (AcquireLeader) done(t *Tracker, _ Step, err error) {
	if err == nil {
		t.DownSince, t.FailedStarts = time.Time{}, 0
	}
}

func (AcquireLeader) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// ReleaseLeader deletes the leader key Leader (if still that epoch). A
// release by a crashed leader (its database could not be restarted) is
// remembered as its ReleasedEpoch.
type ReleaseLeader struct {
	Leader cluster.Leader
}

// String renders the action (see Action).
func (a ReleaseLeader) String() string { return fmt.Sprintf("release-leader epoch=%d", a.Leader.Epoch) }

// Execute runs e.ReleaseLeader.
func (a ReleaseLeader) Execute(ctx context.Context, s Step, e Executor) error {
	return e.ReleaseLeader(ctx, s, a)
}

// Long reports false.
func (ReleaseLeader) Long() bool { return false }

func (a ReleaseLeader) done(t *Tracker, s Step, err error) {
	if err == nil && s.Plan.State == cluster.StateCrashed {
		t.ReleasedEpoch = a.Leader.Epoch
	}
}

func (ReleaseLeader) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// RecordFailover is a promotion's last step: it writes the history entry
// from the leader key's promotion record (none for kind ""), clears the
// operator request the promotion served, and marks the record complete.
// Epoch (the lost epoch), History (the entry's kind) and Evidence are
// shown in logs; the executor reads the record itself.
type RecordFailover struct {
	Epoch    cluster.Epoch
	History  cluster.HistoryKind
	Evidence *cluster.Evidence
}

// String renders the action (see Action).
func (a RecordFailover) String() string {
	s := "record-failover" + epochField(a.Epoch)
	if a.History != "" {
		s += fmt.Sprintf(" kind=%q", a.History)
	}
	return s + evidenceField(a.Evidence)
}

// Execute runs e.RecordFailover.
func (a RecordFailover) Execute(ctx context.Context, s Step, e Executor) error {
	return e.RecordFailover(ctx, s, a)
}

// Long reports false.
func (RecordFailover) Long() bool { return false }

func (RecordFailover) done(*Tracker, Step, error) {}

func (RecordFailover) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// MarkCannotFollow remembers (as the Tracker's CannotFollowEpoch) that
// this member cannot follow the leader's Epoch.
type MarkCannotFollow struct {
	Epoch cluster.Epoch
}

// String renders the action (see Action).
func (a MarkCannotFollow) String() string { return "mark-cannot-follow" + epochField(a.Epoch) }

// Execute runs e.MarkCannotFollow.
func (a MarkCannotFollow) Execute(ctx context.Context, s Step, e Executor) error {
	return e.MarkCannotFollow(ctx, s, a)
}

// Long reports false.
func (MarkCannotFollow) Long() bool { return false }

func (a MarkCannotFollow) done(t *Tracker, _ Step, err error) {
	if err == nil {
		t.CannotFollowEpoch = a.Epoch
	}
}

func (MarkCannotFollow) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Handoff records in the pending switchover request that this leader has
// stopped writes (with its final position) for Target.
type Handoff struct {
	Target string
}

// String renders the action (see Action).
func (a Handoff) String() string { return "handoff" + targetField(a.Target) }

// Execute runs e.Handoff.
func (a Handoff) Execute(ctx context.Context, s Step, e Executor) error { return e.Handoff(ctx, s, a) }

// Long reports false.
func (Handoff) Long() bool { return false }

func (Handoff) done(*Tracker, Step, error) {}

func (Handoff) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// ClearRequest deletes the pending operator request.
type ClearRequest struct{}

// String renders the action (see Action).
func (ClearRequest) String() string { return "clear-request" }

// Execute runs e.ClearRequest.
func (a ClearRequest) Execute(ctx context.Context, s Step, e Executor) error {
	return e.ClearRequest(ctx, s, a)
}

// Long reports false.
func (ClearRequest) Long() bool { return false }

func (ClearRequest) done(*Tracker, Step, error) {}

func (ClearRequest) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// SetSyncStandbys sets the local server's synchronous standbys: Names, or
// any one standby (Choice SyncAny).
type SetSyncStandbys struct {
	Names  []string
	Choice SyncChoice
}

// String renders the action (see Action).
func (a SetSyncStandbys) String() string {
	s := "set-sync-standbys" + namesField(a.Names)
	if a.Choice == SyncAny {
		s += " any"
	}
	return s
}

// Execute runs e.SetSyncStandbys.
func (a SetSyncStandbys) Execute(ctx context.Context, s Step, e Executor) error {
	return e.SetSyncStandbys(ctx, s, a)
}

// Long reports false.
func (SetSyncStandbys) Long() bool { return false }

func (SetSyncStandbys) done(*Tracker, Step, error) {}

func (SetSyncStandbys) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// SetFailsafeRecord writes Members as the leader's failsafe record (the
// members that must all confirm for it to keep writing without the
// store); nil Members deletes the record (failsafe_mode was turned off).
type SetFailsafeRecord struct {
	Members []cluster.FailsafeMember
	// TTL is the leader's lease TTL, recorded with the members.
	TTL cluster.Duration
}

// String renders the action (see Action).
func (a SetFailsafeRecord) String() string {
	if a.Members == nil {
		return "set-failsafe-record delete"
	}
	names := make([]string, 0, len(a.Members))
	for _, m := range a.Members {
		names = append(names, m.Name)
	}
	return "set-failsafe-record" + namesField(names)
}

// Execute runs e.SetFailsafeRecord.
func (a SetFailsafeRecord) Execute(ctx context.Context, s Step, e Executor) error {
	return e.SetFailsafeRecord(ctx, s, a)
}

// Long reports false.
func (SetFailsafeRecord) Long() bool { return false }

func (SetFailsafeRecord) done(*Tracker, Step, error) {}

func (SetFailsafeRecord) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// SetSyncRecord writes Names as the store's record of synchronous
// standbys of the leader's epoch (cluster.SyncState.Members), with, on an
// engine that takes any replica's acknowledgement (db.AcksAny), the
// members asked to acknowledge (Acking) and whether the server runs
// asynchronously (Async). The executor numbers the write (Gen).
type SetSyncRecord struct {
	Names  []string
	Acking []string
	Async  bool
}

// String renders the action (see Action).
func (a SetSyncRecord) String() string {
	s := "set-sync-record" + namesField(a.Names)
	if a.Acking != nil {
		s += " acking=[" + strings.Join(a.Acking, ",") + "]"
	}
	if a.Async {
		s += " async"
	}
	return s
}

// Record is the record the action writes for leader epoch epoch over
// prev (the record last read; nil when none): Gen follows prev's within
// the same epoch, from 1.
func (a SetSyncRecord) Record(prev *cluster.SyncState, epoch cluster.Epoch) cluster.SyncState {
	rec := cluster.SyncState{Epoch: epoch, Members: a.Names, Acking: a.Acking, Async: a.Async, Gen: 1}
	if prev != nil && prev.Epoch == epoch {
		rec.Gen = prev.Gen + 1
	}
	return rec
}

// Detach keeps the local server running read-only with its replication
// removed (db.Detacher): a diverged member on an engine whose policy is
// db.DivergedDetach.
type Detach struct{}

// String renders the action (see Action).
func (Detach) String() string { return "detach" }

// Execute runs e.Detach.
func (a Detach) Execute(ctx context.Context, s Step, e Executor) error { return e.Detach(ctx, s, a) }

// Long reports false.
func (Detach) Long() bool { return false }

func (Detach) done(*Tracker, Step, error) {}

func (Detach) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// SetAcknowledging turns the local replica's acknowledging (the replica
// side of semi-synchronous replication, db.Acknowledger) on or off.
type SetAcknowledging struct {
	State cluster.AckState
}

// String renders the action (see Action).
func (a SetAcknowledging) String() string { return "set-acknowledging " + string(a.State) }

// Execute runs e.SetAcknowledging.
func (a SetAcknowledging) Execute(ctx context.Context, s Step, e Executor) error {
	return e.SetAcknowledging(ctx, s, a)
}

// Long reports false.
func (SetAcknowledging) Long() bool { return false }

func (SetAcknowledging) done(*Tracker, Step, error) {}

func (SetAcknowledging) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Execute runs e.SetSyncRecord.
func (a SetSyncRecord) Execute(ctx context.Context, s Step, e Executor) error {
	return e.SetSyncRecord(ctx, s, a)
}

// Long reports false.
func (SetSyncRecord) Long() bool { return false }

func (SetSyncRecord) done(*Tracker, Step, error) {}

func (SetSyncRecord) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// CreateSlots creates replication slots for the members in Names.
type CreateSlots struct {
	Names []string
}

// String renders the action (see Action).
func (a CreateSlots) String() string { return "create-slots" + namesField(a.Names) }

// Execute runs e.CreateSlots.
func (a CreateSlots) Execute(ctx context.Context, s Step, e Executor) error {
	return e.CreateSlots(ctx, s, a)
}

// Long reports false.
func (CreateSlots) Long() bool { return false }

func (CreateSlots) done(*Tracker, Step, error) {}

func (CreateSlots) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// DropSlots drops the replication slots of the members in Names.
type DropSlots struct {
	Names []string
}

// String renders the action (see Action).
func (a DropSlots) String() string { return "drop-slots" + namesField(a.Names) }

// Execute runs e.DropSlots.
func (a DropSlots) Execute(ctx context.Context, s Step, e Executor) error {
	return e.DropSlots(ctx, s, a)
}

// Long reports false.
func (DropSlots) Long() bool { return false }

func (DropSlots) done(*Tracker, Step, error) {}

func (DropSlots) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Rewind resynchronizes the stopped local database in place with
// Upstream, discarding what diverged (db.RejoinResync; the engine's tool
// is Engine.Names.Resync). It is long. It is recorded as the rejoin of the
// leader's epoch whatever its outcome (it is tried once per epoch),
// unless it did not run because the upstream could not be reached.
type Rewind struct {
	Upstream db.Upstream
}

// String renders the action (see Action).
func (a Rewind) String() string { return "rewind upstream=" + a.Upstream.Name }

// Execute runs e.Rewind.
func (a Rewind) Execute(ctx context.Context, s Step, e Executor) error { return e.Rewind(ctx, s, a) }

// Long reports true: it rewrites the database.
func (Rewind) Long() bool { return true }

func (Rewind) done(t *Tracker, s Step, err error) {
	if errors.Is(err, db.ErrUpstreamUnavailable) {
		// The rewind did not run: the attempt is not used up.
		return
	}
	t.RejoinEpoch, t.RejoinError = s.leaderEpoch(), ""
	if err != nil {
		t.RejoinError = err.Error()
	}
}

func (Rewind) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Reclone deletes the stopped local database and clones Upstream
// (db.RejoinReclone). It is long and counted and paced as a Clone; a
// success is recorded as the rejoin of the leader's epoch without error,
// so that a later stop in the same epoch restarts the copy rather than
// re-clone it.
type Reclone struct {
	Upstream db.Upstream
}

// String renders the action (see Action).
func (a Reclone) String() string { return "reclone upstream=" + a.Upstream.Name }

// Execute runs e.Reclone.
func (a Reclone) Execute(ctx context.Context, s Step, e Executor) error {
	return e.Reclone(ctx, s, a)
}

// Long reports true: it copies the whole database.
func (Reclone) Long() bool { return true }

func (Reclone) done(t *Tracker, s Step, err error) {
	t.copyDone(err)
	if err == nil {
		t.RejoinEpoch, t.RejoinError = s.leaderEpoch(), ""
	}
}

func (Reclone) backOff(t *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return t.copyBackOff(cfg)
}

// BeginPromotion writes Promotion as the record of the promotion the held
// leader key is for (a key taken without one: by an older hamgr).
type BeginPromotion struct {
	Promotion cluster.Promotion
}

// String renders the action (see Action).
func (a BeginPromotion) String() string { return "begin-promotion" + promotionField(&a.Promotion) }

// Execute runs e.BeginPromotion.
func (a BeginPromotion) Execute(ctx context.Context, s Step, e Executor) error {
	return e.BeginPromotion(ctx, s, a)
}

// Long reports false.
func (BeginPromotion) Long() bool { return false }

func (BeginPromotion) done(*Tracker, Step, error) {}

func (BeginPromotion) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Fence fences Target, the old primary (the promotion record's
// OldPrimary, never another member), through the agent's fencer and marks
// the promotion's fence step done with the outcome. It runs after the key
// is taken and before the database is promoted, at most once per
// promotion. Failed attempts are counted (View.FenceFailures) and retried
// with a doubling back-off.
type Fence struct {
	Target string
}

// String renders the action (see Action).
func (a Fence) String() string { return "fence" + targetField(a.Target) }

// Execute runs e.Fence.
func (a Fence) Execute(ctx context.Context, s Step, e Executor) error { return e.Fence(ctx, s, a) }

// Long reports false (the fencer bounds its attempt).
func (Fence) Long() bool { return false }

func (Fence) done(t *Tracker, s Step, err error) { t.fenceDoneTrack(s, err) }

func (Fence) backOff(t *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return t.fenceBackOff(cfg)
}

// ProceedUnfenced marks the promotion's fence step done without a
// confirmation that Target was powered off, for Reason: fencing
// best-effort gave up after its timeout (the liveness rule had proved
// Target dead), or fencing was turned off meanwhile. The agent logs it as
// an error and records it (result unconfirmed) in the promotion record and
// its history entry.
type ProceedUnfenced struct {
	Target string
	Reason string
}

// String renders the action (see Action).
func (a ProceedUnfenced) String() string { return "proceed-unfenced" + targetField(a.Target) }

// Execute runs e.ProceedUnfenced.
func (a ProceedUnfenced) Execute(ctx context.Context, s Step, e Executor) error {
	return e.ProceedUnfenced(ctx, s, a)
}

// Long reports false.
func (ProceedUnfenced) Long() bool { return false }

func (ProceedUnfenced) done(*Tracker, Step, error) {}

func (ProceedUnfenced) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// Publish tells the agent's publishers (discovery) that this member is the
// primary, and has each read its change back. A publisher's failure does
// not fail it: the agent records it in the history entry's steps and
// keeps publishing level-triggered (agent.Republish).
type Publish struct{}

// String renders the action (see Action).
func (Publish) String() string { return "publish" }

// Execute runs e.Publish.
func (a Publish) Execute(ctx context.Context, s Step, e Executor) error { return e.Publish(ctx, s, a) }

// Long reports false.
func (Publish) Long() bool { return false }

func (Publish) done(*Tracker, Step, error) {}

func (Publish) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}

// RecordRefusal writes a history entry (cluster.HistoryFailoverRefused)
// saying that the automatic failover after the loss of Epoch, led by
// OldPrimary, was refused, and why (Reason); the Tracker then remembers
// Epoch as its RefusedEpoch, so the entry is written once.
type RecordRefusal struct {
	Epoch      cluster.Epoch
	OldPrimary string
	Reason     string
}

// String renders the action (see Action).
func (a RecordRefusal) String() string { return "record-refusal" + epochField(a.Epoch) }

// Execute runs e.RecordRefusal.
func (a RecordRefusal) Execute(ctx context.Context, s Step, e Executor) error {
	return e.RecordRefusal(ctx, s, a)
}

// Long reports false.
func (RecordRefusal) Long() bool { return false }

func (a RecordRefusal) done(t *Tracker, _ Step, err error) {
	if err == nil {
		t.RefusedEpoch = a.Epoch
	}
}

func (RecordRefusal) backOff(_ *Tracker, cfg cluster.DynamicConfig) time.Duration {
	return loopWaitBackOff(cfg)
}
