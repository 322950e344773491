package cluster

import "time"

// AgentStatus is what an agent exposes through its HTTP API (package api
// reads it through api.Source). The agent builds a fresh AgentStatus for
// every request from the results of its latest loop round, so
// building one must be cheap and must not wait for the store or the database.
type AgentStatus struct {
	// Cluster is the cluster's name (its scope in the store).
	Cluster string
	// Self is this member's latest record: role, state, position, lag, tags,
	// API URL and connection host and port.
	Self Member
	// Accepting is true when the local database answered its last probe.
	Accepting bool
	// HoldsLeader is true when this agent holds the leader key with a live
	// lease. Only then is a primary "the primary" for /primary.
	HoldsLeader bool
	// Leader is the holder of the leader key, or nil if no one holds it.
	Leader *Leader
	// Members is the latest snapshot's member records.
	Members []Member
	// Paused is true while automatic failover is suspended.
	Paused bool
	// StoreOK is true when the agent's last round trip to the store succeeded.
	StoreOK bool
	// LastLoop is when the agent's loop last completed a round.
	LastLoop time.Time
	// SyncMode is the cluster's synchronous_mode; Sync the leader's record
	// of synchronous standbys (nil when none).
	SyncMode SyncMode
	Sync     *SyncState
	// Config is the dynamic configuration the agent runs with: /liveness
	// derives its bound from ttl and primary_start_timeout (see
	// LivenessBound), /readiness takes maximum_lag_on_failover as its
	// default lag bound.
	Config DynamicConfig
	// Started is when the agent started; /liveness measures from it until
	// the first round completes. Zero when unknown.
	Started time.Time
	// LastLeaderPosition is the last position the agent saw the leader
	// publish (zero if none). Replica lag is measured against it while no
	// leader's record can be read, as during a failover.
	LastLeaderPosition Position
	// Fenced holds the operators' fences recorded in the store, by member
	// (nil: none); FenceOwed the fence a promotion took the leader key for
	// and has not confirmed (nil: none).
	Fenced    map[string]FenceOutcome
	FenceOwed *FenceOwed
}
