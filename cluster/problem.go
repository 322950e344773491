package cluster

// Problem names a condition that the HA loop found and cannot resolve by
// itself, or resolves only by giving something up: the operator should
// look. The HA policy (ha.Decide) derives it, once, with the human reason;
// the agent publishes it in its member record (Member.Problem), and the
// API, hamgrctl and the metrics read it from there.
//
// A Problem's value is its code: a stable snake_case string used in JSON
// (the member record's "problem" field, absent when there is none) and as
// the code label of hamgr_problem. The empty Problem, ProblemNone, means
// there is none. A code this version does not know (written by a newer
// agent) is kept as it is, so Problem is a string type rather than an
// integer enum.
type Problem string

// Problem codes. ProblemTable describes each: what it means and what the
// operator should do.
const (
	// ProblemNone: nothing needs an operator.
	ProblemNone Problem = ""
	// ProblemDurabilityAtRisk: synchronous_mode on, but the leader's server
	// requires no standby: commits are acknowledged with no copy.
	ProblemDurabilityAtRisk Problem = "durability_at_risk"
	// ProblemWritesBlocked: synchronous_mode strict and no healthy standby:
	// commits wait until one returns.
	ProblemWritesBlocked Problem = "writes_blocked"
	// ProblemNoFailoverCandidate: no leader and no member may be elected.
	ProblemNoFailoverCandidate Problem = "no_failover_candidate"
	// ProblemOldPrimaryNotProvenDead: no leader, and nothing proves that
	// the old primary takes no writes: no member promotes.
	ProblemOldPrimaryNotProvenDead Problem = "old_primary_not_proven_dead"
	// ProblemOldPrimaryWritable: the old primary's leader key expired but
	// its database still accepts writes: no member promotes.
	ProblemOldPrimaryWritable Problem = "old_primary_writable"
	// ProblemDatabaseStalled: the primary answers on the agent's old
	// connection only (new connections or writes do not complete).
	ProblemDatabaseStalled Problem = "database_stalled"
	// ProblemCannotFollow: this member's history diverged from the
	// leader's and it cannot rejoin by itself (rewind off or failed,
	// re-clone not allowed).
	ProblemCannotFollow Problem = "cannot_follow"
	// ProblemReplicationSlotLost: the leader found members' replication
	// slots invalidated (the WAL they held was removed).
	ProblemReplicationSlotLost Problem = "replication_slot_lost"
	// ProblemPrimaryDown: the leader's database does not come back; the
	// leader key was released (or, paused, is kept while restarts go on).
	ProblemPrimaryDown Problem = "primary_down"
	// ProblemDatabaseNotStarting: this member's database does not start
	// (repeated failed starts); the agent keeps retrying.
	ProblemDatabaseNotStarting Problem = "database_not_starting"
	// ProblemPausedNoLeader: no leader while the cluster is paused: no
	// automatic failover.
	ProblemPausedNoLeader Problem = "paused_no_leader"
	// ProblemStoreUnreachable: the agent cannot reach the store (etcd).
	ProblemStoreUnreachable Problem = "store_unreachable"
	// ProblemLeaseNotRenewed: the leader could not renew its lease in time
	// and stopped its own primary (self-fencing).
	ProblemLeaseNotRenewed Problem = "lease_not_renewed"
	// ProblemSecondPrimary: this member's database ran as a primary while
	// another member led (or had led after it); the agent stopped it.
	ProblemSecondPrimary Problem = "second_primary"
	// ProblemRequestFailed: an operator's switchover or manual failover
	// was refused or did not complete.
	ProblemRequestFailed Problem = "request_failed"
	// ProblemFailoverBackoff: no leader, and the leader was lost within
	// failover_backoff of the previous automatic failover: no automatic
	// failover (anti-flapping).
	ProblemFailoverBackoff Problem = "failover_backoff"
	// ProblemFencingUnconfirmed: the new leader holds the key but its
	// fencer has not confirmed the old primary's power-off: it does not
	// promote (fencing require, or no other proof), and retries.
	ProblemFencingUnconfirmed Problem = "fencing_unconfirmed"
	// ProblemFencingNotConfigured: fencing is required, but this member,
	// the one to promote, has no fencer for the old primary: it does not
	// take the key.
	ProblemFencingNotConfigured Problem = "fencing_not_configured"
	// ProblemPublishFailed: a discovery publisher (DNS, Consul, a hook)
	// could not publish this member's role; the agent retries with
	// back-off. It never holds up or undoes a promotion.
	ProblemPublishFailed Problem = "publish_failed"
	// ProblemFailsafeActive: failsafe_mode keeps a primary writable
	// while its agent cannot reach the store, because every member
	// confirmed it over the API; no failover can happen meanwhile.
	ProblemFailsafeActive Problem = "failsafe_active"
)

// ProblemInfo describes a Problem for operators.
type ProblemInfo struct {
	// Code is the problem.
	Code Problem
	// Meaning says what the condition is.
	Meaning string
	// Action says what the operator should do.
	Action string
}

// ProblemTable returns, in a new slice, every problem code this version
// derives with its meaning and the operator's action: the one table that
// docs/design.md reproduces and hamgr_problem exports a series for. Its
// words are the engine's neutral ones (rewind, re-clone, the engine's
// rejoin and slot settings); docs/design.md names each engine's.
func ProblemTable() []ProblemInfo {
	return []ProblemInfo{
		{ProblemDurabilityAtRisk, "synchronous_mode on, but the leader's server requires no standby (none is healthy, or the engine has no synchronous replication in hamgr yet): commits are acknowledged without a copy, and a failover may lose them",
			"bring a replica back to streaming from the leader; or accept the risk for now"},
		{ProblemWritesBlocked, "synchronous_mode strict and no healthy standby: commits wait until one returns",
			"bring a replica back to streaming; or set synchronous_mode on (accepting the risk)"},
		{ProblemNoFailoverCandidate, "no leader, and no member may be elected (each is excluded for the reason given; in strict mode, no synchronous standby was recorded)",
			"fix an excluded member (start it, let it catch up, remove nofailover), or choose one: hamgrctl failover --to"},
		{ProblemOldPrimaryNotProvenDead, "no leader, and nothing proves that the old primary takes no writes (it does not answer, its WAL still reaches a member, or its address is unknown): nobody promotes",
			"make sure the old primary is down (power it off), then hamgrctl failover --to NAME --confirm-down OLD"},
		{ProblemOldPrimaryWritable, "the old primary's leader key expired but its database still accepts writes (its agent died or hangs, or etcd dropped its lease): nobody promotes (there would be two primaries); with fencing on and a fencer for it, the best candidate fences it and fails over instead",
			"find out why its agent lost the key; restart its agent (it takes the key back), or stop that database (hamgrctl fence OLD powers it off); or turn fencing on (hamgrctl config set fencing require)"},
		{ProblemDatabaseStalled, "the primary answers on the agent's old connection only: new connections or a small write do not complete (hung postmaster, full disk); the key is released if it lasts primary_start_timeout",
			"check the database host (disk, memory, the database log)"},
		{ProblemCannotFollow, "this member's history diverged from the leader's and it cannot rejoin by itself (rewind off or failed, re-clone not allowed); it stays stopped",
			"re-clone it: allow a re-clone in the engine's rejoin settings, or empty its data directory and restart the agent"},
		{ProblemReplicationSlotLost, "the leader found replication slots invalidated: the WAL those members needed was removed",
			"re-clone those members; consider letting slots keep more (see the engine's slot settings)"},
		{ProblemPrimaryDown, "the leader's database does not come back after restarts: the leader key was released so a replica can take over (paused: the key is kept and restarts go on)",
			"read the database log on that member and repair it; it rejoins as a replica"},
		{ProblemDatabaseNotStarting, "this member's database does not start; the agent retries every loop_wait",
			"read the database log on that member and repair it"},
		{ProblemPausedNoLeader, "no leader while the cluster is paused: no automatic failover",
			"resume (hamgrctl resume), or choose a primary with hamgrctl failover --to"},
		{ProblemStoreUnreachable, "the agent cannot reach etcd: it changes nothing, and a primary whose agent cannot renew its lease stops before the lease expires",
			"restore the network path to etcd, or etcd's quorum"},
		{ProblemLeaseNotRenewed, "the leader could not renew its lease in time and stopped its own primary so that a new one may be elected safely",
			"find out why etcd was slow or unreachable from that member"},
		{ProblemSecondPrimary, "this member's database ran as a primary while another member led (or had led after it): the agent stopped it so there is only one",
			"nothing at once; it rejoins by rewind or re-clone (see the engine's rejoin settings); find out how it came to run as primary"},
		{ProblemRequestFailed, "an operator's switchover or manual failover was refused or did not complete (the reason says why)",
			"read the reason; fix the target (streaming, caught up, not nofailover) and ask again"},
		{ProblemFencingUnconfirmed, "the new leader holds the leader key but its fencer has not confirmed the old primary's power-off: it does not promote (fencing require, or the fence is the only proof that the old primary takes no writes) and retries with back-off; the reason has the fencer's error",
			"fix the path to the old primary's BMC (address, credentials, network) or power it off by hand and let the next attempt confirm it; or, knowing it takes no writes, set fencing best-effort"},
		{ProblemFencingNotConfigured, "fencing is required, but the member that would be promoted has no fencer for the old primary (no fencing.members entry for it in its config file): it does not take the leader key",
			"add fencing.members.OLD to the config file of every member that may be promoted and restart its agent; or set fencing best-effort or off"},
		{ProblemFailoverBackoff, "no leader, and the leader was lost within failover_backoff of the previous automatic failover: hamgr does not fail over again by itself (flapping); the history has a \"failover refused\" entry",
			"find out why the new primary failed too (hamgrctl history, its logs); then choose the primary: hamgrctl failover --to NAME; or let the old primary come back (it takes the key again)"},
		{ProblemPublishFailed, "a discovery publisher (named in the reason: dns, consul, hooks) could not publish this member's role or read it back; clients that find the primary through it may be sent to the old one. The promotion went on regardless; the agent retries with back-off",
			"fix what the reason names (the DNS server or its key, the Consul agent or its token, the hook); the agent publishes again by itself"},
		{ProblemFailsafeActive, "failsafe_mode: the leader cannot reach etcd but keeps its primary writable because every member confirmed it over the API (on a replica: it confirmed, and takes part in no election meanwhile); no failover can happen until etcd is back or a member stops confirming",
			"restore the leader's path to etcd, or etcd's quorum; to fail over meanwhile, stop the primary's agent or database"},
	}
}

// Info returns p's row of ProblemTable; false for ProblemNone and codes
// this version does not know.
func (p Problem) Info() (ProblemInfo, bool) {
	for _, i := range ProblemTable() {
		if i.Code == p {
			return i, true
		}
	}
	return ProblemInfo{}, false
}

// String is the code ("" for ProblemNone).
func (p Problem) String() string { return string(p) }
