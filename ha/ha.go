package ha

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/election"
)

// OldPrimaryProbe is the agent's direct probe of the last leader's
// database at the address recorded in last_leader, made while the leader
// key is absent. Answer is zero when it was not probed (no address known).
type OldPrimaryProbe struct {
	Host   string
	Port   int
	Answer db.Answer
	// Err explains any answer but a writable or read-only one.
	Err string
}

// View is everything Decide looks at. The agent fills it each round.
type View struct {
	// Now is the agent's clock (monotonic readings are fine).
	Now time.Time
	// Self is this member's name; Tags its static tags.
	Self string
	Tags cluster.Tags
	// Config is the effective dynamic configuration.
	Config cluster.DynamicConfig
	// DB is the latest probe of the local database.
	DB db.Status
	// DBDownSince is when the database was first seen not answering while
	// it should (zero when it answers).
	DBDownSince time.Time
	// FailedStarts counts consecutive failed start attempts.
	FailedStarts int
	// StoreOK is true when this round's store read succeeded; Snap is then
	// fresh. When false, Snap is the last good snapshot.
	StoreOK bool
	Snap    cluster.Snapshot
	// LeaseID is this agent's current lease (0: none).
	LeaseID int64
	// LastRenewSent is when the last successful lease renewal was sent,
	// or, when later, the last failsafe round that every member of the
	// failsafe record confirmed (failsafe_mode): the fence deadline
	// counts from it.
	LastRenewSent time.Time
	// FailsafeActive is set on a leader whose primary runs on failsafe
	// confirmations: it cannot reach the store, and every member of its
	// failsafe record confirmed it since its last renewal.
	FailsafeActive bool
	// FailsafePromise is the last failsafe confirmation this member gave
	// another leader (zero: none): it takes part in no election and does
	// not take the leader key until FailsafePromise.Until.
	FailsafePromise FailsafePromise
	// Started is when this agent started: a member named in the failsafe
	// record of the lost epoch takes part in no election until a ttl
	// after it, since a promise it gave before a restart is forgotten.
	Started time.Time
	// LeaderLostAt is when this agent first saw the leader key absent in
	// the current loss (zero while there is a leader).
	LeaderLostAt time.Time
	// OldPrimary is the agent's direct probe of the last leader's
	// database, made while the leader key is absent; with the other
	// members' WAL stream reports it decides whether the old primary is
	// proven dead (OldPrimaryLiveness).
	OldPrimary OldPrimaryProbe
	// LastLeaderPosition is the last position the agent saw the leader
	// publish (zero: none).
	LastLeaderPosition cluster.Position
	// ReleasedEpoch is the epoch this agent gave up because its database
	// could not be restarted (0: none); it does not take the key back
	// while its database is still down.
	ReleasedEpoch cluster.Epoch
	// CannotFollowEpoch is the leader epoch this member found it cannot
	// follow (diverged history); it stays stopped while that epoch leads.
	CannotFollowEpoch cluster.Epoch
	// RefusedEpoch is the lost epoch whose automatic failover this agent
	// refused (failover_backoff) and recorded in the history (0: none).
	RefusedEpoch cluster.Epoch
	// ElectionOpenAt is when this agent first saw, during the current
	// leader loss, that the old primary no longer takes writes; the
	// fallback to worse-ranked candidates is timed from it, so a long wait
	// for a live old primary does not let a worse candidate jump the queue.
	ElectionOpenAt time.Time
	// LeaseLostAt is when this agent last found its own session lease
	// gone (zero: never). Lost together with the leader key, it says the
	// store dropped every lease at once (an etcd restart or a revocation),
	// so every member's record must come back before an election.
	LeaseLostAt time.Time
	// Peers names the members whose records the agent saw while there was
	// a leader (the last such snapshot).
	Peers []string
	// LastLeaderFreshAt is when the agent first saw, in the current leader
	// loss, the last leader's record with a position measured after it
	// (zero: not yet).
	LastLeaderFreshAt time.Time
	// Repl is the leader's view of its standbys (nil unless this member
	// runs a primary and synchronous mode is on).
	Repl *db.ReplicationStatus
	// SyncConfirmed lists the standbys that, while required by the
	// synchronous standby setting, confirmed a WAL position measured after
	// they became required: they hold every acknowledged commit.
	SyncConfirmed []string
	// Engine is what the local engine can do (as far as the operator
	// allowed) and how it names its tools and settings: Decide plans
	// only what it allows, and takes every engine-specific word of its
	// reasons from Engine.Names.
	Engine db.Capabilities
	// RejoinEpoch is the leader epoch this member last resynchronized
	// in place for (ha.Rewind, tried once per epoch whatever its outcome)
	// or re-cloned from; RejoinError the resync's error ("" when it
	// succeeded).
	RejoinEpoch cluster.Epoch
	RejoinError string
	// Slots are the leader's replication slots (engines with
	// Engine.Slots; filled only on a leader).
	Slots Slots
	// HandoffSeenAt is when this agent first saw the pending switchover's
	// handoff (zero when there is none); the handoff expires HandoffTimeout
	// later on this agent's own clock.
	HandoffSeenAt time.Time
	// Busy describes the long action (a clone, re-clone or rewind) the
	// agent runs in the background; "" when none. Nothing else is done to
	// the database meanwhile.
	Busy string
	// Fencing is set when the agent has a fencer (package stonith);
	// FenceTargets names the members it can fence (nil: any). Under the
	// dynamic config's fencing policy (require, best-effort) a promotion
	// over another member fences it (the Fence step) before it promotes;
	// with the policy off the liveness evidence stands alone.
	Fencing      bool
	FenceTargets []string
	// FenceFailures counts the failed attempts of the fence step of the
	// leader key this member holds (this agent's run); FenceError is the
	// last one's error.
	FenceFailures int
	FenceError    string
	// PublishFailed says which discovery publisher failed to publish
	// this member's role, and why ("": none fails); see publishProblem.
	PublishFailed string
	// LeaderGone is this round's check of the leader's ports, made only
	// when WantsLeaderGoneProbe (zero otherwise): the proof of death of
	// the take-over (takeover.go).
	LeaderGone LeaderGoneProbe
	// LeaderLinkLost is when this agent's idle connection to the leader
	// agent's API last dropped (zero: held, or none made since the
	// leader changed): the event that starts a take-over's checks.
	LeaderLinkLost time.Time
	// StreamLossSince is when this agent first read, under the current
	// leader key and the leader's current member record, every replica's
	// record reporting its stream lost, each written after the leader's
	// (Tracker.ObserveStreamLoss; zero: not so in Snap). A live leader's
	// agent answers such a record by writing its own again
	// (agent.AnswerStreamLoss).
	StreamLossSince time.Time
}

// Slots are the replication slots on a leader's server, by member.
type Slots struct {
	// Members lists the members that have a slot; Lost those whose slot
	// was invalidated (the history it held was removed); Stale those
	// whose slot belongs to a member absent longer than MemberSlotsTTL.
	Members []string
	Lost    []string
	Stale   []string
}

// Plan is Decide's answer.
type Plan struct {
	Actions []Action
	// State, Reason and Problem go into this member's record. Problem
	// names the condition Reason describes when it needs an operator
	// (cluster.ProblemTable); ProblemNone otherwise. Decide is the one
	// place problems are derived.
	State   cluster.MemberState
	Reason  string
	Problem cluster.Problem
	// Soon asks for the next round sooner than loop_wait (an election is
	// in progress); zero means loop_wait.
	Soon time.Duration
}

// String renders the plan on one line.
func (p Plan) String() string {
	parts := make([]string, 0, len(p.Actions))
	for _, a := range p.Actions {
		parts = append(parts, a.String())
	}
	s := "[" + strings.Join(parts, ", ") + "] state=" + string(p.State)
	if p.Problem != cluster.ProblemNone {
		s += " problem=" + string(p.Problem)
	}
	if p.Reason != "" {
		s += " reason=" + p.Reason
	}
	return s
}

// Timing constants of elections, derived from loop_wait where that matters.
const (
	// electionTick is how often a waiting candidate re-decides.
	electionTick = 200 * time.Millisecond
)

// freshWait bounds how long candidates wait for every live member to
// publish a position measured after the loss.
func freshWait(cfg cluster.DynamicConfig) time.Duration {
	return time.Duration(cfg.LoopWait) + time.Second
}

// candidateTimeout is how long each better-ranked candidate gets to take the
// leader key before the next one may try.
func candidateTimeout(cfg cluster.DynamicConfig) time.Duration {
	return 2*time.Duration(cfg.LoopWait) + time.Second
}

// MemberSlotsTTL is how long a member may be absent before its replication
// slot is dropped (until then the slot keeps the WAL it needs to return).
const MemberSlotsTTL = 30 * time.Minute

// decideSlots: a leader of an engine with slots keeps one per other live
// member, so a replica that falls behind or restarts does not lose WAL it
// needs, and drops the slots of members absent longer than MemberSlotsTTL.
func decideSlots(v View) (Plan, bool) {
	if !v.Engine.Slots {
		return Plan{}, false
	}
	var missing []string
	for _, m := range v.Snap.Members {
		if m.Name != v.Self && !slices.Contains(v.Slots.Members, m.Name) {
			missing = append(missing, m.Name)
		}
	}
	switch {
	case len(missing) > 0:
		return Plan{Actions: []Action{CreateSlots{Names: missing}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("creating replication slots for %v", missing)}, true
	case len(v.Slots.Stale) > 0:
		return Plan{Actions: []Action{DropSlots{Names: v.Slots.Stale}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("dropping replication slots of %v: absent for more than %s", v.Slots.Stale, MemberSlotsTTL)}, true
	}
	return Plan{}, false
}

// HandoffTimeout is how long a switchover's target has to take the leader
// key after the old leader stopped; then the old leader takes its role back.
func HandoffTimeout(cfg cluster.DynamicConfig) time.Duration { return time.Duration(cfg.TTL) }

// Decide is the HA policy. It is deterministic and pure.
func Decide(v View) Plan { return publishProblem(v, decide(v)) }

// decide is Decide without the discovery problem.
func decide(v View) Plan {
	health := detector.Local(v.DB, v.Now, v.DBDownSince, time.Duration(v.Config.PrimaryStartTimeout), v.FailedStarts)
	isPrimary := v.DB.Running && v.DB.Accepting && v.DB.Role == cluster.RolePrimary
	ls := detector.Leader(v.Snap.Leader, v.Self, v.LeaseID)

	// Rule 2: a leader whose lease may run out stops writing first. This is
	// checked before anything else and does not need the store.
	if ls == detector.SelfLeader && v.DB.Running && v.DB.Role != cluster.RoleReplica &&
		!v.LastRenewSent.IsZero() && !v.Now.Before(detector.FenceDeadline(v.LastRenewSent, v.Config)) {
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}}, State: cluster.StateFenced, Problem: cluster.ProblemLeaseNotRenewed,
			Reason: fmt.Sprintf("could not renew the leader lease since %s; stopped writes before it can expire",
				v.LastRenewSent.Format(time.RFC3339Nano))}
	}
	if !v.StoreOK {
		if ls == detector.SelfLeader && isPrimary && v.FailsafeActive {
			return Plan{State: cluster.StateRunning, Problem: cluster.ProblemFailsafeActive,
				Reason: fmt.Sprintf("store unreachable; failsafe_mode: every member confirmed this primary over the API (last round sent %s), so it keeps writing",
					v.LastRenewSent.UTC().Format(time.RFC3339Nano))}
		}
		return decideWithoutStore(v, ls, isPrimary)
	}
	if v.Busy != "" {
		return Plan{State: cluster.StateBootstrapping, Reason: "busy: " + v.Busy}
	}
	if v.Snap.Initialized == "" {
		return decideBootstrap(v, health)
	}
	if health == detector.Empty {
		return decideEmpty(v, ls)
	}
	switch ls {
	case detector.SelfLeader:
		return decideLeader(v, health, isPrimary)
	case detector.StaleSelf:
		return decideStaleSelf(v, health)
	case detector.OtherLeader:
		return takeOver(v, decideFollower(v, health, isPrimary))
	default:
		return decideNoLeader(v, health, isPrimary)
	}
}

// decideWithoutStore: the store is unreachable. Rule 1: a primary whose
// agent does not hold the key on its current lease stops; a leader keeps
// running until its fence deadline (checked by the caller). Nothing else
// changes without the store.
func decideWithoutStore(v View, ls detector.LeaderState, isPrimary bool) Plan {
	if isPrimary && ls != detector.SelfLeader {
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}}, State: cluster.StateFenced, Problem: cluster.ProblemStoreUnreachable,
			Reason: "running as primary without holding the leader key and the store is unreachable"}
	}
	return Plan{State: stateOf(v), Problem: cluster.ProblemStoreUnreachable, Reason: "store unreachable; keeping the database as it is"}
}

func decideBootstrap(v View, health detector.Health) Plan {
	if health == detector.Empty {
		return Plan{Actions: []Action{Initialize{}, AcquireLeader{}}, State: cluster.StateBootstrapping,
			Reason: "new cluster: creating the first database"}
	}
	// An existing database and no cluster record (the store was wiped):
	// claim the cluster with it; the normal rules take over next round.
	return Plan{Actions: []Action{Initialize{}}, State: stateOf(v),
		Reason: "cluster not initialized in the store; registering the existing database"}
}

func decideEmpty(v View, ls detector.LeaderState) Plan {
	if bootstrapClaimant(v) {
		// This member claimed the bootstrap, but its first database is
		// gone (initdb failed, or the data was removed): create it again.
		return Plan{Actions: []Action{Initialize{}, AcquireLeader{}}, State: cluster.StateBootstrapping,
			Reason: "new cluster: creating the first database again (the earlier attempt left none)"}
	}
	up := leaderUpstream(v)
	if ls != detector.OtherLeader || up == nil {
		return Plan{State: cluster.StateStopped, Reason: "empty data directory; waiting for a leader to clone from", Soon: electionTick}
	}
	return Plan{Actions: []Action{Clone{Upstream: *up}, StartReplica{Upstream: up}},
		State: cluster.StateBootstrapping, Reason: "cloning from " + up.Name}
}

// decideLeader: this agent holds the key on its lease.
func decideLeader(v View, health detector.Health, isPrimary bool) Plan {
	if r := v.Snap.Request; r != nil && r.Kind == cluster.KindFailover && r.To != v.Self && health != detector.Healthy {
		l := *v.Snap.Leader
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}, ReleaseLeader{Leader: l}},
			State: cluster.StateStopped, Reason: fmt.Sprintf("manual failover to %s requested while this primary is not healthy; released the leader key", r.To)}
	}
	if p, ok := handoffPending(v, health); ok {
		return p
	}
	if p, ok := resumePromotion(v, health, isPrimary); ok {
		return p
	}
	switch health {
	case detector.Healthy:
		if isPrimary && v.DB.Stalled != "" {
			// It answers on the agent's old connection only: say so, and
			// wait (no action would complete) until it recovers or the
			// stall lasts primary_start_timeout (then Unrecoverable).
			return Plan{State: cluster.StateRunning, Soon: electionTick, Problem: cluster.ProblemDatabaseStalled, Reason: fmt.Sprintf(
				"DATABASE STALLED since %s: %s; the leader key is released if it lasts primary_start_timeout (%s)",
				v.DBDownSince.UTC().Format(time.RFC3339), v.DB.Stalled, time.Duration(v.Config.PrimaryStartTimeout))}
		}
		if isPrimary {
			if p, ok := decideSlots(v); ok {
				return p
			}
			if p, ok := decideFailsafeRecord(v); ok {
				return p
			}
			if r := v.Snap.Request; r != nil {
				return decideLeaderRequest(v, *r)
			}
			p := decideSync(v)
			if len(v.Slots.Lost) > 0 && p.Reason == "" {
				p.Problem = cluster.ProblemReplicationSlotLost
				p.Reason = fmt.Sprintf("replication slots of %v were invalidated (the WAL they held was removed): those members must be re-cloned", v.Slots.Lost)
			}
			return p
		}
		// A healthy replica under the key is promoted by
		// resumePromotion.
		return Plan{State: stateOf(v), Reason: "holding the leader key with a database that is neither primary nor replica"}
	case detector.Starting:
		return Plan{State: cluster.StateStarting, Reason: "database is starting (crash recovery?)", Soon: electionTick}
	case detector.Down:
		if v.DB.HasData && !v.DB.WasPrimary {
			// The data directory under the key holds a replica (it was
			// restarted read-only after a release, or stopped before its
			// promotion): a primary start refuses it. Start it read-only;
			// the next round finishes the promotion.
			return Plan{Actions: []Action{StartReplica{}}, State: cluster.StateStarting,
				Reason: fmt.Sprintf("the database under the leader key is a stopped replica; starting it read-only to promote it (attempt %d)", v.FailedStarts+1)}
		}
		return Plan{Actions: []Action{StartPrimary{}}, State: cluster.StateStarting,
			Reason: fmt.Sprintf("primary database is down; restarting it in place (attempt %d)", v.FailedStarts+1)}
	default: // Unrecoverable
		l := *v.Snap.Leader
		if v.Config.Paused {
			return Plan{Actions: []Action{StartPrimary{}}, State: cluster.StateCrashed, Problem: cluster.ProblemPrimaryDown,
				Reason: "primary database does not come back; the cluster is paused, so the leader key is kept and restarts go on"}
		}
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}, ReleaseLeader{Leader: l}},
			State: cluster.StateCrashed, Problem: cluster.ProblemPrimaryDown,
			Reason: fmt.Sprintf("primary database did not come back (%d failed starts, primary_start_timeout %s); released the leader key so a replica can take over",
				v.FailedStarts, time.Duration(v.Config.PrimaryStartTimeout))}
	}
}

// decideStaleSelf: the key names us but is bound to a lease we no longer
// hold (the agent restarted, or its lease was re-granted). No other member
// has led since — the key is still ours — so it is safe to take it back
// under a new epoch: delete it by its epoch and create it again.
func decideStaleSelf(v View, health detector.Health) Plan {
	l := *v.Snap.Leader
	if health == detector.Unrecoverable {
		return Plan{Actions: []Action{ReleaseLeader{Leader: l}}, State: cluster.StateCrashed, Problem: cluster.ProblemPrimaryDown,
			Reason: "releasing the leader key left by this member's previous run: its database does not start"}
	}
	return Plan{Actions: []Action{ReleaseLeader{Leader: l}, AcquireLeader{Promotion: CarryPromotion(l)}}, State: stateOf(v),
		Reason: fmt.Sprintf("taking back the leader key of epoch %d held by this member's previous lease", l.Epoch)}
}

// decideFollower: another member leads.
func decideFollower(v View, health detector.Health, isPrimary bool) Plan {
	l := v.Snap.Leader
	if isPrimary || (v.DB.Running && v.DB.Role == cluster.RolePrimary) {
		// Rule 1 and 4.
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}}, State: cluster.StateFenced, Problem: cluster.ProblemSecondPrimary,
			Reason: fmt.Sprintf("%s leads at epoch %d; stopped this primary so there is only one", l.Name, l.Epoch)}
	}
	if v.CannotFollowEpoch == l.Epoch {
		return Plan{Actions: setAside(v), State: cluster.StateCannotFollow, Problem: cluster.ProblemCannotFollow,
			Reason: fmt.Sprintf("cannot follow %s (epoch %d): this database's history diverged%s; %s; it needs %s or a re-clone by an operator (see the database log)",
				l.Name, l.Epoch, errantAgainst(v, l.Name), setAsideHow(v), v.Engine.Names.Resync)}
	}
	up := leaderUpstream(v)
	if up == nil {
		return Plan{State: stateOf(v), Reason: fmt.Sprintf("leader %s has not published its address yet", l.Name), Soon: electionTick}
	}
	if v.DB.HasData && !v.DB.Running && (v.DB.WasPrimary || v.RejoinEpoch == l.Epoch) {
		// A former primary (or a member whose rewind failed) must first
		// be made a copy of the new primary's history. Not before the
		// leader runs as primary: a rewind (once per epoch) or a
		// re-clone against a server still starting would fail, or throw
		// this database away, for nothing.
		if lm := v.Snap.Member(l.Name); v.Engine.Rejoin != 0 &&
			(lm == nil || lm.Role != cluster.RolePrimary || lm.State != cluster.StateRunning) {
			return Plan{State: cluster.StateStarting, Soon: electionTick,
				Reason: fmt.Sprintf("former primary: waiting for %s to run as primary before rejoining it", l.Name)}
		}
		if p, ok := rejoin(v, up, nil, "former primary"); ok {
			return p
		}
		if v.RejoinEpoch == l.Epoch && v.RejoinError != "" {
			n := v.Engine.Names
			return Plan{State: cluster.StateCannotFollow, Problem: cluster.ProblemCannotFollow, Reason: fmt.Sprintf(
				"cannot follow %s: %s failed (%s); re-clone it (set %s, or empty its data directory and restart the agent)", l.Name, n.Resync, v.RejoinError, n.RecloneSetting)}
		}
	}
	switch health {
	case detector.Healthy:
		return decideHealthyFollower(v, l, up)
	case detector.Starting:
		return Plan{State: cluster.StateStarting, Soon: electionTick}
	case detector.Unrecoverable:
		return Plan{Actions: []Action{StartReplica{Upstream: up}}, State: cluster.StateCrashed, Problem: cluster.ProblemDatabaseNotStarting,
			Reason: fmt.Sprintf("database does not start (%d failed attempts); retrying every loop_wait as a replica of %s — see the database log", v.FailedStarts, up.Name)}
	default:
		return Plan{Actions: []Action{StartReplica{Upstream: up}}, State: cluster.StateStarting,
			Reason: "starting as a replica of " + up.Name}
	}
}

// decideHealthyFollower: a healthy replica of leader l, reachable at up:
// streaming from it (and acknowledging as the record says), repointed to
// it, or stopped when its history diverged from l's.
func decideHealthyFollower(v View, l *cluster.Leader, up *db.Upstream) Plan {
	ack := ackAction(v)
	if v.DB.Streaming && v.DB.UpstreamPort == up.Port && v.DB.UpstreamHost == up.Host {
		if ack != nil {
			return Plan{Actions: []Action{ack}, State: cluster.StateRunning,
				Reason: fmt.Sprintf("synchronous mode: acknowledging %s as the record of epoch %d says", ack.(SetAcknowledging).State, l.Epoch)}
		}
		return Plan{State: cluster.StateRunning}
	}
	if v.DB.Diverged != "" && v.DB.UpstreamPort == up.Port && v.DB.UpstreamHost == up.Host {
		// The engine says this database's history left the
		// leader's: it holds WAL the leader lacks and can never
		// stream from it as it is.
		why := fmt.Sprintf("diverged from %s (%s)%s", l.Name, v.DB.Diverged, errantAgainst(v, l.Name))
		if lm := v.Snap.Member(l.Name); v.Engine.Rejoin != 0 &&
			(lm == nil || lm.Role != cluster.RolePrimary || lm.State != cluster.StateRunning) {
			// As for a former primary: the one rewind of the epoch
			// against a leader not yet promoted would find nothing to
			// do and be used up (hasim seed 96).
			return Plan{State: cluster.StateRunning, Soon: electionTick,
				Reason: why + fmt.Sprintf(": waiting for %s to run as primary before rejoining it", l.Name)}
		}
		if p, ok := rejoin(v, up, []Action{Stop{Mode: db.StopFast}}, why); ok {
			return p
		}
		return Plan{Actions: append([]Action{MarkCannotFollow{Epoch: l.Epoch}}, setAside(v)...),
			State: cluster.StateCannotFollow, Problem: cluster.ProblemCannotFollow,
			Reason: fmt.Sprintf("%s and neither %s nor a re-clone is allowed (%s, %s)", why, v.Engine.Names.Resync, v.Engine.Names.ResyncSetting, v.Engine.Names.RecloneSetting)}
	}
	if awaitsSyncRecord(v, l) {
		return Plan{State: cluster.StateRunning, Soon: electionTick,
			Reason: fmt.Sprintf("waiting for %s's synchronous record of epoch %d before following it", l.Name, l.Epoch)}
	}
	acts := []Action{Follow{Upstream: *up}}
	if ack != nil {
		// Acknowledging as the record says before the stream starts: on,
		// so that every event of the new stream is acknowledged; off,
		// so that a record that no longer lists this member never sees
		// it acknowledge.
		acts = []Action{ack, Follow{Upstream: *up}}
	}
	return Plan{Actions: acts, State: cluster.StateRunning, Reason: "following " + up.Name}
}

// setAside is what is done with a running database that cannot follow
// the leader (db.Capabilities.Diverged): stopped, or detached from
// replication while it runs read-only; nothing once that is done.
func setAside(v View) []Action {
	switch {
	case !v.DB.Running:
		return nil
	case v.Engine.Diverged != db.DivergedDetach:
		return []Action{Stop{Mode: db.StopFast}}
	case v.DB.Role != cluster.RoleReplica || v.DB.Streaming || v.DB.UpstreamHost != "":
		return []Action{Detach{}}
	}
	return nil
}

// setAsideHow says what setAside does, for the reason.
func setAsideHow(v View) string {
	if v.Engine.Diverged == db.DivergedDetach {
		return "it runs read-only and does not replicate"
	}
	return "it is stopped"
}

// decideNoLeader: nobody holds the key.
func decideNoLeader(v View, health detector.Health, isPrimary bool) Plan {
	last := v.Snap.LastLeader
	if last != nil && last.Name == v.Self && v.Snap.FencedLastLeader() != nil {
		return decideFencedSelf(v, health, isPrimary)
	}
	lastIsSelf := last == nil || last.Name == v.Self
	if isPrimary {
		if lastIsSelf {
			// No newer epoch exists: the key is ours to take back.
			return Plan{Actions: []Action{AcquireLeader{}}, State: cluster.StateRunning,
				Reason: "primary without the leader key and no newer epoch: taking the key"}
		}
		return Plan{Actions: []Action{Stop{Mode: db.StopImmediate}}, State: cluster.StateFenced, Problem: cluster.ProblemSecondPrimary,
			Reason: fmt.Sprintf("running as primary but %s led after this member (epoch %d); stopped", last.Name, last.Epoch)}
	}
	if r := v.Snap.Request; r != nil && r.Handoff != nil {
		if p, ok := decideHandoff(v, *r, health); ok {
			return p
		}
	}
	if r := v.Snap.Request; r != nil && r.Kind == cluster.KindFailover {
		return decideManualFailover(v, *r, health)
	}
	if v.Config.Paused {
		return Plan{State: stateOf(v), Problem: cluster.ProblemPausedNoLeader, Reason: "no leader and the cluster is paused: no automatic failover"}
	}
	if health != detector.Healthy {
		if bootstrapClaimant(v) && v.DB.HasData && !v.DB.Running {
			// The first start of the new cluster's database failed (say
			// its port was taken) before anyone led: finish the
			// bootstrap (start it, create the replication role) and take
			// the key, rather than wait for a leader that can only be
			// this member. A start that fails again is retried after
			// the back-off.
			return Plan{Actions: []Action{Initialize{}, AcquireLeader{}}, State: cluster.StateBootstrapping,
				Reason: "new cluster: the first start of the first database failed; starting it again"}
		}
		if lastIsSelf && last != nil && v.ReleasedEpoch != last.Epoch && v.DB.HasData && (!v.DB.Running || health == detector.Starting) {
			// We were the last leader (the agent or node restarted, or
			// the store dropped every lease) and nobody took over: take
			// the key and restart the primary — or let its crash
			// recovery finish under the key rather than without it.
			return Plan{Actions: []Action{AcquireLeader{}}, State: cluster.StateStarting,
				Reason: "last leader restarting with no newer epoch: taking the leader key"}
		}
		if lastIsSelf && last != nil && v.ReleasedEpoch == last.Epoch && !v.DB.Running && v.DB.HasData {
			// It gave the key up because its database would not start.
			// Try again, read-only: if it comes up and nobody else has
			// been elected meanwhile, it may lead again (below).
			return Plan{Actions: []Action{StartReplica{}}, State: cluster.StateCrashed, Problem: cluster.ProblemPrimaryDown,
				Reason: "released the leader key after failed starts; trying to start the database read-only to rejoin"}
		}
		if lastIsSelf {
			return Plan{State: stateOf(v), Reason: "no leader; this member's database is not running and it may not rejoin until a new leader exists"}
		}
		if health == detector.Down && v.DB.HasData {
			return Plan{Actions: []Action{StartReplica{}}, State: cluster.StateStarting,
				Reason: "no leader; starting as a read-only replica to take part in the election"}
		}
		if health == detector.Unrecoverable && v.DB.HasData && !v.DB.Running {
			// Its starts failed (or it has been down past the start
			// timeout): nothing else can bring it back into an election,
			// so keep trying, paced by the back-off.
			return Plan{Actions: []Action{StartReplica{}}, State: cluster.StateCrashed, Problem: cluster.ProblemDatabaseNotStarting,
				Reason: fmt.Sprintf("no leader; the database does not start (%d failed attempts); retrying read-only to take part in the election — see the database log", v.FailedStarts)}
		}
		return Plan{State: stateOf(v), Reason: "no leader; database not ready", Soon: electionTick}
	}
	if lastIsSelf && last != nil && !v.Tags.NoFailover {
		// The last leader, now a running replica (restarted read-only
		// after a release): no newer epoch exists and it holds everything
		// it wrote. Others had their turn first.
		if !v.LeaderLostAt.IsZero() && v.Now.Sub(v.LeaderLostAt) >= freshWait(v.Config)+candidateTimeout(v.Config) {
			return Plan{Actions: promotionPlan(v, newPromotion(v, "", last.Epoch, "", nil)), State: cluster.StateStarting,
				Reason: "no other member took over after this member released the leader key; leading again"}
		}
		return Plan{State: cluster.StateRunning, Soon: electionTick,
			Reason: "released the leader key; giving the other members their turn first"}
	}
	return decideElection(v, last)
}

// decideElection: a running replica with no leader.
func decideElection(v View, last *cluster.LastLeader) Plan {
	var lost cluster.Epoch
	var oldName string
	if last != nil {
		lost, oldName = last.Epoch, last.Name
	}
	if v.Tags.NoFailover {
		return Plan{State: cluster.StateRunning, Reason: "no leader; this member is tagged nofailover", Soon: electionTick}
	}
	if p, ok := failsafeElection(v, lost); ok {
		return p
	}
	members, maxLag, why, problem := syncCandidates(v, lost)
	if why != "" {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why, Problem: problem}
	}
	res := election.Rank(members, election.Options{
		LostEpoch: lost, OldPrimary: oldName, MaximumLag: maxLag, Reference: oldPrimaryPosition(v, oldName),
	})
	waited := time.Duration(0)
	if !v.LeaderLostAt.IsZero() {
		waited = v.Now.Sub(v.LeaderLostAt)
	}
	// Wait (bounded) until every other live member has measured afresh, so
	// no candidate wins on a stale position; the old primary too, when its
	// agent is alive (its database stopped): it may hold the most WAL.
	if waited < freshWait(v.Config) {
		for _, m := range v.Snap.Members {
			undecided := m.State == cluster.StateUnknown || m.State == cluster.StateStarting
			if m.MeasuredAfterLossOf != lost && (m.Name == oldName && mayRetake(m) ||
				m.Name != oldName && !m.Tags.NoFailover &&
					(undecided || m.Role == cluster.RoleReplica && m.State == cluster.StateRunning)) {
				return Plan{State: cluster.StateRunning, Soon: electionTick,
					Reason: fmt.Sprintf("election for epoch %d: waiting for %s to publish a fresh position", lost, m.Name)}
			}
		}
	}
	if why := missingPeer(v, lost, waited); why != "" {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why}
	}
	idx := res.Index(v.Self)
	if idx < 0 {
		why, problem := noCandidateReason(v.Self, res)
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why, Problem: problem}
	}
	if why := lastLeaderFirst(v, last, res); why != "" {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why}
	}
	if idx > 0 && (v.ElectionOpenAt.IsZero() || v.Now.Sub(v.ElectionOpenAt) < time.Duration(idx)*candidateTimeout(v.Config)) {
		best, _ := res.Best()
		return Plan{State: cluster.StateRunning, Soon: electionTick,
			Reason: fmt.Sprintf("election for epoch %d: %s is the better candidate", lost, best.Name)}
	}
	// Rule 3: never promote without proof that the old primary takes no
	// writes.
	ev, why, problem := promotionEvidence(v)
	if why == "" {
		target, tev := owedFence(v, oldName, ev)
		why, problem = fencingBlocks(v, target, tev)
	}
	if why != "" {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why, Problem: problem}
	}
	if why := flapping(v, last); why != "" {
		p := Plan{State: cluster.StateRunning, Soon: electionTick, Reason: why, Problem: cluster.ProblemFailoverBackoff}
		if idx == 0 && v.RefusedEpoch != lost {
			p.Actions = []Action{RecordRefusal{Epoch: lost, OldPrimary: oldName, Reason: why}}
		}
		return p
	}
	rec := newPromotion(v, cluster.HistoryFailover, lost, oldName, ev)
	rec.Errant = res.Errant
	return Plan{Actions: promotionPlan(v, rec), State: cluster.StateStarting,
		Reason: withDivergence(fmt.Sprintf("elected after the loss of epoch %d; promoting (%s)", lost, ev.Kind), res)}
}

// errantAgainst names, for a reason, the transactions this member holds
// that member other's published position lacks, when the engine can name
// them (GTIDs); "" otherwise.
func errantAgainst(v View, other string) string {
	m := v.Snap.Member(other)
	if m == nil || m.Position.IsZero() {
		return ""
	}
	if beyond, named := v.DB.Position.Beyond(m.Position); named && !beyond.IsZero() {
		return fmt.Sprintf("; it holds %s that %s lacks", beyond, other)
	}
	return ""
}

// oldPrimaryPosition is the old primary's last known position, an
// election's reference (election.Options.Reference): its member record's
// while the record lasts, which every agent reads alike (a stopped former
// primary's is the end of its log, exact); else the last one this agent
// saw it publish as leader.
func oldPrimaryPosition(v View, old string) cluster.Position {
	if m := v.Snap.Member(old); old != "" && m != nil && !m.Position.IsZero() {
		return m.Position
	}
	return v.LastLeaderPosition
}

// withDivergence adds to an election's reason that the candidates'
// positions were not ordered, and what each held beyond the other.
func withDivergence(reason string, res election.Result) string {
	if d := res.Diverged(); d != "" {
		return reason + "; " + d
	}
	return reason
}

// flapping returns why an automatic failover after the loss of last is
// refused by failover_backoff, or "": the leader was lost (as this agent
// saw it, or now if it did not see the loss) less than failover_backoff
// after the cluster's previous automatic failover took the key. An
// operator's manual failover is not subject to it, and a last leader that
// comes back takes its key again as always.
func flapping(v View, last *cluster.LastLeader) string {
	window := time.Duration(v.Config.FailoverBackoff)
	if window <= 0 || last == nil || last.FailoverAt.IsZero() {
		return ""
	}
	lostAt := v.LeaderLostAt
	if lostAt.IsZero() {
		lostAt = v.Now
	}
	since := max(lostAt.Sub(last.FailoverAt), 0) // clocks of two machines
	if since >= window {
		return ""
	}
	return fmt.Sprintf("no automatic failover: %s (epoch %d) was lost %s after the previous automatic failover, within failover_backoff %s (flapping); choose the primary with hamgrctl failover --to NAME",
		last.Name, last.Epoch, cluster.FormatDuration(since.Round(time.Second)), cluster.FormatDuration(window))
}

// OldPrimaryLiveness applies the liveness rule (detector.OldPrimary) to
// v's probe of the old primary and the other members' WAL stream reports
// (every member record but the old primary's, this member's own
// included). It is not probed (Liveness 0) when the probe was not made.
func OldPrimaryLiveness(v View) (detector.Liveness, cluster.Evidence) {
	p := v.OldPrimary
	if p.Answer == 0 {
		return 0, cluster.Evidence{}
	}
	var witnesses []cluster.Member
	for _, m := range v.Snap.Members {
		if v.Snap.LastLeader == nil || m.Name != v.Snap.LastLeader.Name {
			witnesses = append(witnesses, m)
		}
	}
	return detector.OldPrimary(p.Answer, p.Host, p.Port, witnesses, v.Config)
}

// promotionEvidence is rule 3's check before promoting over the last
// leader: the proof that it takes no writes, or why there is none (a
// non-empty reason: do not promote) and its problem. Without a last
// leader there is nobody to prove dead.
func promotionEvidence(v View) (*cluster.Evidence, string, cluster.Problem) {
	last := v.Snap.LastLeader
	if last == nil || last.Name == v.Self {
		return &cluster.Evidence{}, "", cluster.ProblemNone
	}
	live, ev := OldPrimaryLiveness(v)
	fenced := v.Snap.FencedLastLeader()
	switch {
	case live == detector.Alive && fenced != nil:
		return nil, fmt.Sprintf("%s was fenced (%s) but its database still accepts writes; not promoting", last.Name, fenced),
			cluster.ProblemOldPrimaryWritable
	case fenced != nil:
		return &cluster.Evidence{Kind: cluster.EvidenceFenced, Detail: fenced.String()}, "", cluster.ProblemNone
	case live == detector.Dead:
		return &ev, "", cluster.ProblemNone
	case fenceSubstitutes(v, live):
		return fenceEvidence(v, live), "", cluster.ProblemNone
	}
	switch live {
	case detector.Alive:
		return nil, fmt.Sprintf("leader key of %s expired but its database still accepts writes; not promoting without fencing (%s)",
			last.Name, noFenceWhy(v, last.Name)), cluster.ProblemOldPrimaryWritable
	case detector.Unknown:
		return nil, fmt.Sprintf("the old primary %s gave no answer (%s) and no proof that it takes no writes: its WAL still reaches a member, or no member saw its stream go silent; not promoting",
			last.Name, v.OldPrimary.Err), cluster.ProblemOldPrimaryNotProvenDead
	}
	return nil, fmt.Sprintf("cannot check whether the old primary %s still accepts writes (no address known); not promoting", last.Name),
		cluster.ProblemOldPrimaryNotProvenDead
}

// mayRetake reports whether the old primary's own record says it may take
// its key back: its agent is alive, its database did not run as a replica
// and it did not give the key up.
func mayRetake(m cluster.Member) bool {
	if m.Role == cluster.RoleReplica {
		return false
	}
	switch m.State {
	case cluster.StateCrashed, cluster.StateCannotFollow, cluster.StateBootstrapping:
		return false
	}
	return true
}

// lastLeaderFirst: the last leader, back (its agent publishes again, its
// database stopped: the store dropped every lease at once, say) and at
// least as advanced as the best candidate, takes its own key back first
// (decideNoLeader) rather than lose the WAL only it has to a needless
// failover. The candidates give it one candidate turn, counted from when
// the election opened. It returns why to wait, or "".
func lastLeaderFirst(v View, last *cluster.LastLeader, res election.Result) string {
	best, ok := res.Best()
	opened := v.ElectionOpenAt
	if v.LastLeaderFreshAt.After(opened) {
		// Back only after the election opened: its turn counts from then.
		opened = v.LastLeaderFreshAt
	}
	if last == nil || !ok || v.ElectionOpenAt.IsZero() || v.Now.Sub(opened) >= candidateTimeout(v.Config) {
		return ""
	}
	m := v.Snap.Member(last.Name)
	if m == nil || m.MeasuredAfterLossOf != last.Epoch || !mayRetake(*m) {
		return ""
	}
	if o := m.Position.Compare(best.Position); o == cluster.Behind || o == cluster.Diverged {
		return ""
	}
	return fmt.Sprintf("election for epoch %d: the last leader %s is back and holds at least as much WAL (%s) as the best candidate %s (%s): it takes its key back first",
		last.Epoch, last.Name, m.Position, best.Name, best.Position)
}

// storeDroppedLeases reports whether this agent lost its own lease in the
// current leader loss (or up to a ttl before it): the store dropped the
// leases of everyone, not just the leader's.
func storeDroppedLeases(v View) bool {
	return !v.LeaseLostAt.IsZero() && !v.LeaderLostAt.IsZero() &&
		v.LeaseLostAt.After(v.LeaderLostAt.Add(-time.Duration(v.Config.TTL)))
}

// missingPeer: when the store dropped every lease at once, every member's
// record went with it, the old primary's too; the first agent to publish
// again must not win an election among the records that happen to be
// back. Candidates wait, bounded by freshWait plus one candidate turn
// from the loss, for every member seen before it (Peers) to publish again.
// After a crash of the leader alone the other records stay, so this costs
// nothing there. It returns why to wait, or "".
func missingPeer(v View, lost cluster.Epoch, waited time.Duration) string {
	if !storeDroppedLeases(v) || waited >= freshWait(v.Config)+candidateTimeout(v.Config) {
		return ""
	}
	for _, name := range v.Peers {
		if name != v.Self && v.Snap.Member(name) == nil {
			return fmt.Sprintf("election for epoch %d: the store dropped every lease; waiting for %s to publish its record again", lost, name)
		}
	}
	return ""
}

// noCandidateReason says why self is not among res's candidates; when
// nobody is, that is ProblemNoFailoverCandidate.
func noCandidateReason(self string, res election.Result) (string, cluster.Problem) {
	if len(res.Candidates) > 0 {
		for _, e := range res.Excluded {
			if e.Name == self {
				return "not a failover candidate: " + e.Reason, cluster.ProblemNone
			}
		}
		return "not a failover candidate", cluster.ProblemNone
	}
	var parts []string
	for _, e := range res.Excluded {
		parts = append(parts, e.Name+": "+e.Reason)
	}
	if len(parts) == 0 {
		return "NO FAILOVER CANDIDATE: no member record in the store", cluster.ProblemNoFailoverCandidate
	}
	return "NO FAILOVER CANDIDATE: " + strings.Join(parts, "; "), cluster.ProblemNoFailoverCandidate
}

// bootstrapClaimant reports whether this member claimed the bootstrap of
// a cluster in which nobody has led yet.
func bootstrapClaimant(v View) bool {
	return v.Snap.Initialized == v.Self && v.Snap.LastLeader == nil && v.Snap.Leader == nil
}

// leaderUpstream is the leader's address from its member record, or nil.
func leaderUpstream(v View) *db.Upstream {
	if v.Snap.Leader == nil {
		return nil
	}
	m := v.Snap.Member(v.Snap.Leader.Name)
	if m == nil || m.ConnHost == "" || m.ConnPort == 0 {
		return nil
	}
	return &db.Upstream{Name: m.Name, Host: m.ConnHost, Port: m.ConnPort}
}

// stateOf describes the database as it is.
func stateOf(v View) cluster.MemberState {
	switch {
	case v.DB.Running && v.DB.Accepting:
		return cluster.StateRunning
	case v.DB.Running:
		return cluster.StateStarting
	default:
		return cluster.StateStopped
	}
}

// slotsFor creates, right after a promotion, the slots of the other members
// so that they can follow the new primary at once (none when the engine
// keeps no slots: the action then creates nothing).
func slotsFor(v View) Action {
	var names []string
	for _, m := range v.Snap.Members {
		if m.Name != v.Self && v.Engine.Slots {
			names = append(names, m.Name)
		}
	}
	return CreateSlots{Names: names}
}

// rejoin plans how a stopped (or to be stopped, by first) member that may
// have diverged from the leader comes back as its replica, by the methods
// v.Engine allows: a rewind (db.RejoinResync) once per leader epoch, then
// a re-clone (db.RejoinReclone) if that failed or is off. It returns
// false when neither applies.
func rejoin(v View, up *db.Upstream, first []Action, why string) (Plan, bool) {
	l := v.Snap.Leader
	switch {
	case v.Engine.Rejoin.Has(db.RejoinResync) && v.RejoinEpoch != l.Epoch:
		return Plan{Actions: append(first, Rewind{Upstream: *up}, StartReplica{Upstream: up}),
			State: cluster.StateStarting, Reason: why + ": rewinding from " + up.Name + " if its history diverged, then following it"}, true
	case v.Engine.Rejoin.Has(db.RejoinReclone) && (v.RejoinEpoch != l.Epoch || v.RejoinError != ""):
		return Plan{Actions: append(first, Reclone{Upstream: *up}, StartReplica{Upstream: up}),
			State: cluster.StateBootstrapping, Reason: fmt.Sprintf("%s: %s failed or is off; cloning %s again", why, v.Engine.Names.Resync, up.Name)}, true
	}
	return Plan{}, false
}
