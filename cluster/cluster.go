package cluster

import (
	"fmt"
	"slices"
	"time"
)

// Role is what a member's database is doing.
type Role int

// Roles. The zero value is deliberately invalid so a forgotten assignment
// shows up as "unknown" rather than as a primary.
const (
	RoleUnknown Role = iota
	// RolePrimary accepts writes.
	RolePrimary
	// RoleReplica replays WAL from an upstream and refuses writes.
	RoleReplica
)

// String returns the role's lower-case name as used in JSON and on the CLI.
func (r Role) String() string {
	switch r {
	case RolePrimary:
		return "primary"
	case RoleReplica:
		return "replica"
	default:
		return "unknown"
	}
}

// MarshalText encodes the role by name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText decodes a role name; unknown names decode to RoleUnknown.
func (r *Role) UnmarshalText(b []byte) error {
	switch string(b) {
	case "primary":
		*r = RolePrimary
	case "replica":
		*r = RoleReplica
	default:
		*r = RoleUnknown
	}
	return nil
}

// Tags are per-member flags that steer elections and load balancing.
type Tags struct {
	// NoFailover keeps the member from ever being elected.
	NoFailover bool `json:"nofailover,omitempty"`
	// NoLoadBalance keeps the member out of read pools: its API's replica
	// checks (/replica, /read-only on a replica, /async, /sync, ...) never
	// answer 200. It does not affect elections.
	NoLoadBalance bool `json:"noloadbalance,omitempty"`
	// Priority breaks ties between equally advanced candidates: higher wins.
	Priority int `json:"priority"`
	// Custom are the operator's own key/value tags (a data center, a rack),
	// matched by the API's ?tag_KEY=VALUE filters; hamgr attaches no other
	// meaning to them. Nil when there are none.
	Custom map[string]string `json:"custom,omitempty"`
}

// MemberState is a short machine-readable word for what the agent is doing
// with its database; Member.Reason carries the human explanation.
type MemberState string

// Member states published in member keys.
const (
	StateRunning       MemberState = "running"
	StateStarting      MemberState = "starting"
	StateStopped       MemberState = "stopped"
	StateCrashed       MemberState = "crashed"
	StateBootstrapping MemberState = "bootstrapping"
	StateFenced        MemberState = "fenced"        // stopped by self-fencing
	StateCannotFollow  MemberState = "cannot_follow" // needs an operator (or rewind)
	StateUnknown       MemberState = "unknown"
)

// Member is what an agent publishes about itself under members/<name>. The key
// is bound to the agent's own lease, so a dead agent's record disappears.
type Member struct {
	Name  string      `json:"name"`
	Role  Role        `json:"role"`
	State MemberState `json:"state"`
	// Reason explains State in words an operator can act on (empty when healthy).
	Reason string `json:"reason,omitempty"`
	// Problem names the condition Reason describes when an operator should
	// look (see ProblemTable); absent when there is none, and in records
	// written before problem codes existed.
	Problem Problem `json:"problem,omitempty"`
	// Position is how far the database has come (db.Status.Position).
	Position Position `json:"position"`
	// Received and Replayed are a replica's received and replayed
	// positions (zero when unknown).
	Received Position `json:"received,omitzero"`
	Replayed Position `json:"replayed,omitzero"`
	// LagBytes is how far behind the leader's last published position this
	// member is, in its engine's lag unit (Engine.LagUnit); -1 when unknown.
	LagBytes int64 `json:"lag_bytes"`
	// LagSeconds is a replica's replay delay in seconds (0 when it replayed
	// all it received); -1 when unknown.
	LagSeconds float64 `json:"lag_seconds"`
	// Streaming is true when a replica's WAL receiver streams from its upstream.
	Streaming bool `json:"streaming,omitempty"`
	// Upstream is the member a replica follows.
	Upstream string `json:"upstream,omitempty"`
	// APIURL is the agent's HTTP API base URL.
	APIURL string `json:"api_url"`
	// ConnHost and ConnPort are how other members and clients reach the database.
	ConnHost string `json:"conn_host"`
	ConnPort int    `json:"conn_port"`
	Tags     Tags   `json:"tags"`
	// Coordinates are the database's own log coordinates for operators
	// (db.Status.Coordinates: a binary log file and offset); absent when
	// the engine shows none.
	Coordinates string `json:"coordinates,omitempty"`
	// Diverged is true when the engine reports that this replica's history
	// diverged from its upstream's (it holds WAL the leader lacks): it must
	// be rewound or re-cloned and is never a healthy replica.
	Diverged bool `json:"diverged,omitempty"`
	// Ack is what this member reported of its replica side of an
	// acknowledging (semi-synchronous) replication, on engines with one
	// (db.AcksAny); nil otherwise, and in records written before it.
	Ack *AckReport `json:"ack,omitempty"`
	// MeasuredAfterLossOf is the epoch of the leadership whose loss this
	// record's position was measured after; 0 outside elections. Candidates
	// compare only positions measured after the same loss.
	MeasuredAfterLossOf Epoch `json:"measured_after_loss_of,omitempty"`
	// WAL is what this member's agent observed of its WAL receiver's
	// stream (replicas; nil when it never had one): the evidence the
	// liveness rule reads when the old primary does not answer.
	WAL *WALStream `json:"wal_stream,omitempty"`
	// UpdatedAt is the agent's wall clock at publication, for humans only.
	UpdatedAt time.Time `json:"updated_at"`
	// Revision is the store's revision of the record's last write (etcd:
	// its mod revision), filled by Load and never stored: a live agent
	// rewrites its record every loop_wait, and a restarted one before it
	// could run its database as a primary, so a take-over conditioned on
	// it fails when the agent came back (dcs.LeaderLease.TakeOverLeader).
	Revision int64 `json:"-"`
}

// StreamLost reports whether the record says this member streams from
// nobody: not streaming, and no connected WAL receiver.
func (m Member) StreamLost() bool {
	return !m.Streaming && (m.WAL == nil || !m.WAL.Connected)
}

// ReportsStreamLoss reports whether the record is a replica's saying it
// lost its stream (StreamLost) or saw it fall silent on a live connection
// (WALStream.SilenceSeen): what a live leader's agent answers at once by
// rewriting its own record (dcs.Watcher.StreamLosses), which the
// take-overs before the ttl rely on.
func (m Member) ReportsStreamLoss() bool {
	return m.Role == RoleReplica && (m.StreamLost() || m.WAL != nil && m.WAL.SilenceSeen)
}

// AckState says whether a replica acknowledges the commits it receives
// (semi-synchronous replication's replica side).
type AckState string

// Acknowledging states.
const (
	// AckUnknown: not measured (no server answered, or the engine has no
	// replica side).
	AckUnknown AckState = ""
	// AckOff: the replica acknowledges nothing: its replica side is off,
	// and its stream was restarted since it was turned off.
	AckOff AckState = "off"
	// AckOn: the replica acknowledges, or may (its replica side is on, or
	// was on when its stream started).
	AckOn AckState = "on"
)

// AckReport is a member's report of its acknowledging state, and of the
// synchronous record it acted on: State was measured before this agent
// acted on the record of generation Gen (SyncState.Gen) of the leader's
// epoch Epoch, so AckOff with a record that does not ask it to acknowledge
// stays off until a later record does.
//
// OffFrom, with AckOff, is a position this member's database had reached
// after it was already known to acknowledge nothing (read in a probe after
// the one that first found it off, while it stayed off): everything it
// ever acknowledged is at or before it. A member leaving the record once
// another holds OffFrom loses nothing, however far it has streamed since.
type AckReport struct {
	State   AckState  `json:"state"`
	Epoch   Epoch     `json:"epoch"`
	Gen     int64     `json:"gen"`
	OffFrom *Position `json:"off_from,omitempty"`
}

// WALStream is a replica's stream from its sender as the replica's own
// agent observed it; every duration is measured on that member's clock.
type WALStream struct {
	// Host and Port are the sender the receiver streams from, or last
	// streamed from when it is not connected.
	Host string `json:"host"`
	Port int    `json:"port"`
	// Connected is true while the receiver holds a streaming connection.
	Connected bool `json:"connected,omitempty"`
	// Heard is true once this agent has seen a message from the sender
	// arrive (since it started); Silent is then how long before
	// publication the last one arrived.
	Heard  bool     `json:"heard,omitempty"`
	Silent Duration `json:"silent"`
	// SilenceSeen is true when, since the last message, the agent saw the
	// connection still up while nothing had come for longer than the
	// receiver's ping interval (Timeout/2) plus half a second: the sender
	// stopped answering, rather than this member stopping listening.
	SilenceSeen bool `json:"silence_seen,omitempty"`
	// Timeout is the receiver's timeout (an engine setting): it pings a
	// silent sender after half of it and drops the connection after all
	// of it. 0 when unknown or disabled.
	Timeout Duration `json:"timeout,omitempty"`
	// LeaderSeen is true once this agent has seen the leader's agent
	// alive — its member record changed between two reads while it held
	// the key — since it started; SinceLeader is then how long before
	// publication it last did. A stream that went silent only after the
	// leader's agent stopped publishing belongs to a primary whose agent
	// was not there to fence it.
	LeaderSeen  bool     `json:"leader_seen,omitempty"`
	SinceLeader Duration `json:"since_leader"`
}

// EvidenceKind names what proved that an old primary could no longer take
// writes when another member was promoted over it.
type EvidenceKind int

// Evidence kinds. A timeout, an authentication error or any other failure
// to get an answer is never evidence.
const (
	// EvidenceNone: nothing was needed or recorded (the first leader of a
	// cluster, the last leader taking its own key back, an older agent).
	EvidenceNone EvidenceKind = iota
	// EvidenceRefused: the old primary's database port refused the
	// connection: no server listens there.
	EvidenceRefused
	// EvidenceReadOnly: the old primary's database answered that it is in
	// recovery (read-only).
	EvidenceReadOnly
	// EvidenceStreamsSilent: the old primary did not answer, and every
	// other member that had heard from it reports its WAL stream silent
	// for at least the bound, at least one of them having seen the
	// silence on a live connection.
	EvidenceStreamsSilent
	// EvidenceHandoff: the old primary stopped itself and handed the key
	// over (a switchover).
	EvidenceHandoff
	// EvidenceReleased: the old primary stopped its database and released
	// the key itself.
	EvidenceReleased
	// EvidenceOperator: an operator's manual failover confirmed that the
	// old primary can no longer take writes (it was powered off or cut off
	// by hand), where the liveness rule had no proof. The operator
	// answers for it.
	EvidenceOperator
	// EvidenceFence: the liveness rule had no proof (the old primary
	// answered as writable, or gave no answer and its streams proved
	// nothing), and fencing is on: the key was taken to fence it, and the
	// promotion waits for the fencer's confirmation of its power-off,
	// whatever the policy (best-effort never promotes without it here).
	EvidenceFence
	// EvidenceFenced: the old primary was fenced by an operator (hamgrctl
	// fence) after it led: last_leader records the confirmation.
	EvidenceFenced
	// EvidenceRefusedEarly: the failover before the ttl on proof of
	// death: while the old primary's key was still held, its database
	// port and its agent's API port both refused connections on repeated
	// checks and every replica had lost its stream; the key was taken
	// over, guarded by its epoch, its lease and the old member record's
	// revision (ha/takeover.go).
	EvidenceRefusedEarly
)

var evidenceNames = map[EvidenceKind]string{
	EvidenceNone: "none", EvidenceRefused: "refused", EvidenceReadOnly: "read-only",
	EvidenceStreamsSilent: "streams-silent", EvidenceHandoff: "handoff", EvidenceReleased: "released",
	EvidenceOperator: "operator", EvidenceFence: "fence", EvidenceFenced: "fenced",
	EvidenceRefusedEarly: "refused-early",
}

// String names the kind as in JSON.
func (k EvidenceKind) String() string {
	if s, ok := evidenceNames[k]; ok {
		return s
	}
	return fmt.Sprintf("evidence(%d)", int(k))
}

// MarshalText encodes the kind by name.
func (k EvidenceKind) MarshalText() ([]byte, error) { return []byte(k.String()), nil }

// UnmarshalText decodes a kind name; an unknown name is an error.
func (k *EvidenceKind) UnmarshalText(b []byte) error {
	for kind, name := range evidenceNames {
		if name == string(b) {
			*k = kind
			return nil
		}
	}
	return fmt.Errorf("unknown evidence kind %q", b)
}

// Evidence is what a promotion over an old primary relied on.
type Evidence struct {
	Kind EvidenceKind `json:"kind"`
	// Detail says what was observed, in words (the probe's answer, which
	// members reported which silence).
	Detail string `json:"detail,omitempty"`
}

// String renders the evidence for logs.
func (e Evidence) String() string {
	if e.Detail == "" {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Detail
}

// Epoch is the fencing token: the store revision at which the leader key was
// created. Every new leadership has a larger epoch than every earlier one.
type Epoch int64

// Leader is the holder of the leader key.
type Leader struct {
	Name  string `json:"name"`
	Epoch Epoch  `json:"epoch"`
	// Lease identifies the store lease the key is bound to.
	Lease int64 `json:"lease"`
	// Promotion is the record of the promotion the key was taken for,
	// kept in the key's value (nil: the key was not taken to promote, or
	// by an older hamgr).
	Promotion *Promotion `json:"promotion,omitempty"`
}

// LastLeader is the persistent (lease-less) record of the latest leadership;
// it survives the leader key's expiry so that a restarted agent can tell
// whether anyone led after it.
type LastLeader struct {
	Name  string    `json:"name"`
	Epoch Epoch     `json:"epoch"`
	Since time.Time `json:"since"`
	// ConnHost and ConnPort are the leader's database address, so that a
	// candidate can check the old primary is really gone even after its
	// member record has expired.
	ConnHost string `json:"conn_host,omitempty"`
	ConnPort int    `json:"conn_port,omitempty"`
	// FailoverAt is when the cluster's latest automatic failover took the
	// leader key (zero: none known). Each new leader writes it, carrying
	// the previous last leader's value unless its own promotion is an
	// automatic failover; failover_backoff is measured from it.
	FailoverAt time.Time `json:"failover_at,omitzero"`
}

// Snapshot is one consistent read of a cluster's keys.
type Snapshot struct {
	// Revision is the store revision the snapshot was read at.
	Revision int64
	// Leader is nil when no one holds the leader key.
	Leader *Leader
	// LastLeader is nil before the first leader.
	LastLeader *LastLeader
	// Members holds every live member record, sorted by name.
	Members []Member
	// Initialized names the member that bootstrapped the cluster ("" if none yet).
	Initialized string
	// Config is the dynamic configuration; nil when not yet written.
	Config *DynamicConfig
	// Request is the pending operator request, nil when none.
	Request *Request
	// Sync is the leader's record of synchronous standbys, nil when none.
	Sync *SyncState
	// Failsafe is the leader's failsafe record (the members it must hear
	// from to keep writing without the store), nil when none.
	Failsafe *FailsafeState
	// Fenced holds the operators' fences (hamgrctl fence), by member.
	Fenced map[string]FenceOutcome
	// FenceOwed is the fence a promotion took the leader key for and has
	// not confirmed yet, nil when none is owed.
	FenceOwed *FenceOwed
}

// FenceOwed is the record of a fence owed: a member took the leader key
// to promote over Target, which may still run as a primary, and has not
// yet recorded its promotion's fence step done. It is written with the
// key (dcs.LeaderLease.AcquireLeader) and deleted when the fence step is
// recorded, so it outlives a winner that dies in between: the next
// promotion fences Target, not the winner that never promoted.
type FenceOwed struct {
	// Target is the member to fence: the old primary of that promotion.
	Target string `json:"target"`
	// Lost is the epoch Target led.
	Lost Epoch `json:"lost,omitempty"`
	// By is the member that took the key and owed the fence.
	By string `json:"by"`
	// Evidence is what that promotion had, before it took the key, that
	// Target takes no writes (EvidenceFence: nothing but the fence).
	Evidence *Evidence `json:"evidence,omitempty"`
}

// FencedLastLeader is the operator's confirmed fence of the last leader
// made while (or after) it led its epoch, or nil. Its agent, back, never
// takes the key or runs its database as a primary again under that
// last_leader record, and candidates count it as proof that the old
// primary takes no writes (EvidenceFenced). A new leadership makes it
// stale: its Epoch is no longer the last leader's.
func (s Snapshot) FencedLastLeader() *FenceOutcome {
	last := s.LastLeader
	if last == nil {
		return nil
	}
	f, ok := s.Fenced[last.Name]
	if !ok || f.Result != FenceConfirmed || f.Epoch != last.Epoch {
		return nil
	}
	return &f
}

// Member returns the record of the named member, or nil.
func (s Snapshot) Member(name string) *Member {
	for i := range s.Members {
		if s.Members[i].Name == name {
			return &s.Members[i]
		}
	}
	return nil
}

// Duration is a time.Duration that marshals as a Go duration string ("10s").
type Duration time.Duration

// MarshalText encodes the duration as "1m30s".
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("duration %q: %w", b, err)
	}
	*d = Duration(v)
	return nil
}

// DynamicConfig is the cluster-wide configuration kept in the store under
// config. Every agent applies it; the first agent to bootstrap writes it from
// its static config file.
type DynamicConfig struct {
	TTL                  Duration `json:"ttl"`
	LoopWait             Duration `json:"loop_wait"`
	RetryTimeout         Duration `json:"retry_timeout"`
	PrimaryStartTimeout  Duration `json:"primary_start_timeout"`
	MaximumLagOnFailover int64    `json:"maximum_lag_on_failover"`
	// Paused suspends automatic failover (maintenance mode).
	Paused bool `json:"paused,omitempty"`
	// SynchronousMode is "off" (or empty), "on" or "strict"; see SyncMode.
	SynchronousMode SyncMode `json:"synchronous_mode,omitempty"`
	// SynchronousNodeCount is how many standbys must confirm each commit
	// in synchronous mode (0 means 1).
	SynchronousNodeCount int `json:"synchronous_node_count,omitempty"`
	// FailoverBackoff is the anti-flapping window: an automatic failover
	// is refused when the leader is lost less than this long after the
	// previous automatic failover (LastLeader.FailoverAt), and an operator
	// must choose the primary. 0 (the default) turns it off.
	FailoverBackoff Duration `json:"failover_backoff,omitempty"`
	// FailsafeMode lets a leader that cannot reach the store keep its
	// primary writable for as long as every member named in the leader's
	// failsafe record confirms, over the API, that it sees this leader
	// and no other (see FailsafeState). Off by default.
	FailsafeMode bool `json:"failsafe_mode,omitempty"`
	// Fencing is the fencing policy: off (or empty, the default),
	// require or best-effort; see FencingPolicy.
	Fencing FencingPolicy `json:"fencing,omitempty"`
}

// FencingPolicy says whether a promotion over an old primary powers it
// off first (package stonith, through each member's fencing section of
// its config file). Its value is the string stored in the dynamic config.
type FencingPolicy string

// Fencing policies.
const (
	// FencingOff: no fencing; the liveness evidence, checked before the
	// key is taken, stands alone (a member's fencing section is unused).
	FencingOff FencingPolicy = "off"
	// FencingRequire: the new leader holds the key but does not promote
	// until its fencer confirmed the old primary's power-off; it retries
	// with back-off, and the cluster shows problem fencing_unconfirmed.
	FencingRequire FencingPolicy = "require"
	// FencingBestEffort: as require, but when the old primary was proven
	// dead by the liveness rule and the fencer could not confirm within
	// ttl of the key being taken, the member promotes anyway (logged as
	// an error, recorded in the history). A promotion that relies on the
	// fence as its only proof (a writable or silent-but-unproven old
	// primary) still waits for the confirmation.
	FencingBestEffort FencingPolicy = "best-effort"
)

// Enabled reports whether the policy fences (require or best-effort).
func (f FencingPolicy) Enabled() bool { return f == FencingRequire || f == FencingBestEffort }

// Or returns f, or FencingOff when f is empty.
func (f FencingPolicy) Or() FencingPolicy {
	if f == "" {
		return FencingOff
	}
	return f
}

// SyncMode is the cluster's replication durability mode.
type SyncMode string

// Synchronous modes.
const (
	// SyncOff: asynchronous replication; a failover may lose the last
	// acknowledged writes (bounded by maximum_lag_on_failover).
	SyncOff SyncMode = "off"
	// SyncOn: commits wait for synchronous_node_count standbys while any is
	// healthy; with none, the primary falls back to asynchronous and says so.
	SyncOn SyncMode = "on"
	// SyncStrict: commits wait for a standby even when none is connected;
	// no acknowledged write is ever lost, at the price of availability.
	SyncStrict SyncMode = "strict"
)

// Enabled reports whether the mode is on or strict.
func (m SyncMode) Enabled() bool { return m == SyncOn || m == SyncStrict }

// NodeCount is SynchronousNodeCount with its default.
func (c DynamicConfig) NodeCount() int {
	if c.SynchronousNodeCount <= 0 {
		return 1
	}
	return c.SynchronousNodeCount
}

// SyncState is the leader's record of its synchronous standbys, kept under
// sync. Every member listed holds every commit acknowledged at Epoch: a
// member is added only after it has confirmed the primary's WAL while
// required by the server's synchronous standby setting, and removed here
// before it is removed from that setting.
//
// With an engine whose server accepts an acknowledgement from any
// replica that has acknowledging turned on (db.AcksAny: MariaDB and
// MySQL semi-synchronous replication) the order is the other way round:
// Members lists every member that may have acknowledged a commit of the
// epoch (a superset of those acknowledging), Acking the ones the leader
// asks to acknowledge, and an election must hear every one of Members.
// See package ha's semisync.go.
type SyncState struct {
	Leader  string   `json:"leader"`
	Epoch   Epoch    `json:"epoch"`
	Members []string `json:"members"`
	// Acking (db.AcksAny engines) are the members asked to acknowledge
	// commits (their replica side on); a subset of Members. A member
	// leaves Members only after it reported acknowledging off under a
	// record that no longer lists it here (Member.Ack).
	Acking []string `json:"acking,omitempty"`
	// Async (db.AcksAny engines) is true while the leader's server does
	// not wait for acknowledgements: commits are acknowledged without a
	// copy (durability at risk), so Members does not bound an election.
	// Set before the server stops waiting; cleared only after it waits
	// again.
	Async bool `json:"async,omitempty"`
	// Gen counts the writes of the record within its epoch (from 1), so
	// that a member's report names the record it acted on (AckReport.Gen).
	Gen int64 `json:"gen,omitempty"`
}

// Acks reports whether name is asked to acknowledge commits (Acking).
func (s *SyncState) Acks(name string) bool {
	return s != nil && slices.Contains(s.Acking, name)
}

// Has reports whether name is listed.
func (s *SyncState) Has(name string) bool {
	if s == nil {
		return false
	}
	for _, m := range s.Members {
		if m == name {
			return true
		}
	}
	return false
}

// HistoryKind says how a change of leadership came about. Its value is
// the string stored in the history's "kind" field, so entries written
// before the type existed read the same; a kind this version does not know
// is kept as it is.
type HistoryKind string

// History kinds. The agent of the promoted member writes HistoryFailover,
// HistorySwitchover or HistoryManualFailover, and the best candidate of an
// election that failover_backoff refused writes HistoryFailoverRefused;
// HistoryBootstrap and
// HistoryTakeover are read from older entries and written by no code path
// of this version.
const (
	// HistoryFailover: the leader key was lost and the best candidate was
	// elected and promoted.
	HistoryFailover HistoryKind = "failover"
	// HistorySwitchover: an operator's switchover; the old primary
	// stopped and handed over its final position first.
	HistorySwitchover HistoryKind = "switchover"
	// HistoryManualFailover: an operator chose the new primary while
	// there was no leader.
	HistoryManualFailover HistoryKind = "manual failover"
	// HistoryBootstrap: the first primary of a new cluster.
	HistoryBootstrap HistoryKind = "bootstrap"
	// HistoryTakeover: a member took over a leaderless cluster.
	HistoryTakeover HistoryKind = "takeover"
	// HistoryFailoverRefused: no promotion; an automatic failover was
	// refused because the leader was lost within failover_backoff of the
	// previous one. NewPrimary is empty, and Epoch is the store revision
	// the refusal was decided at: after the lost epoch (the reason names
	// it) and before the next leader's, so the entry sorts between them
	// and replaces neither.
	HistoryFailoverRefused HistoryKind = "failover refused"
	// HistoryFence: no promotion; an operator fenced a member with
	// hamgrctl fence (Fence holds the outcome, OldPrimary the target).
	// NewPrimary is empty and Epoch is the store revision it was written
	// at, so it sorts between the leaderships around it.
	HistoryFence HistoryKind = "fence"
)

// HistoryEntry records one change of leadership.
type HistoryEntry struct {
	Epoch       Epoch       `json:"epoch"`
	Kind        HistoryKind `json:"kind"`
	OldPrimary  string      `json:"old_primary,omitempty"`
	NewPrimary  string      `json:"new_primary"`
	Reason      string      `json:"reason"`
	OldPosition Position    `json:"old_position"`
	NewPosition Position    `json:"new_position"`
	// DataLossBytes estimates the WAL the old primary had that the new one
	// lacked at promotion (0 when the new one had everything known).
	DataLossBytes int64     `json:"data_loss_bytes"`
	DetectedAt    time.Time `json:"detected_at"`
	ElectedAt     time.Time `json:"elected_at"`
	PromotedAt    time.Time `json:"promoted_at"`
	// Steps lists how long each step took, in order.
	Steps []Step `json:"steps,omitempty"`
	// Evidence is what proved the old primary could no longer take
	// writes when this member was promoted.
	Evidence *Evidence `json:"evidence,omitempty"`
	// DataLoss says how DataLossBytes was found; nil in entries of older
	// agents (then DataLossBytes came from the last position the new
	// primary saw the old one publish).
	DataLoss *DataLoss `json:"data_loss,omitempty"`
	// Fence is the promotion's fence step (nil: none was needed, or an
	// older agent).
	Fence *FenceOutcome `json:"fence,omitempty"`
	// Errant lists, when the election's positions were not ordered
	// (errant transactions), what each member held that the history it
	// was compared with lacked (none: they were ordered).
	Errant []Errant `json:"errant,omitempty"`
}

// Errant is what one member's position held that another history lacked,
// in the engine's notation (GTIDs): found by an election among positions
// that were not ordered. A candidate's errant transactions against the new
// primary leave it unable to follow until repaired; the new primary's own
// against the old primary's last known position become part of the
// cluster's history.
type Errant struct {
	Member string `json:"member"`
	// Against names the history Member's position was compared with: the
	// new primary's name, or the old primary's.
	Against string   `json:"against"`
	Holds   Position `json:"holds"`
}

// String renders e for reasons and logs.
func (e Errant) String() string {
	return fmt.Sprintf("%s holds %s that %s lacks", e.Member, e.Holds, e.Against)
}

// FenceResult is how a fence ended. Its value is the string stored in
// JSON and used as the result label of hamgr_fences_total.
type FenceResult string

// Fence results.
const (
	// FenceConfirmed: the fencer confirmed the target's power-off.
	FenceConfirmed FenceResult = "confirmed"
	// FenceFailed: an attempt failed (the fencer returned an error or
	// timed out); it is retried.
	FenceFailed FenceResult = "failed"
	// FenceUnconfirmed: fencing best-effort gave up after its timeout and
	// the member was promoted without a confirmation.
	FenceUnconfirmed FenceResult = "unconfirmed"
)

// FenceOutcome is the record of a fence: of a promotion's fence step (in
// the promotion record and its history entry) or of an operator's
// hamgrctl fence (a history entry of kind HistoryFence). No secret is
// ever in it.
type FenceOutcome struct {
	// Target is the member fenced: a promotion's old primary.
	Target string `json:"target"`
	// Driver names the driver and action (the fencer's confirmation
	// method, "ipmi power off" say); empty when none confirmed.
	Driver string `json:"driver,omitempty"`
	// Result is confirmed or unconfirmed.
	Result FenceResult `json:"result"`
	// Detail is what confirmed it (the power state read back), or for
	// unconfirmed the last attempt's error.
	Detail string `json:"detail,omitempty"`
	// Attempts counts the attempts (this agent's run).
	Attempts int `json:"attempts,omitempty"`
	// At is when it ended; Duration how long it took from the key being
	// taken (from the start of the command, for an operator's fence).
	At       time.Time `json:"at,omitzero"`
	Duration Duration  `json:"duration"`
	// By names who fenced (the new leader, or "hamgrctl on HOST").
	By string `json:"by,omitempty"`
	// Epoch, in an operator's fence, is the epoch of last_leader when it
	// was made (the target led it, or led before it).
	Epoch Epoch `json:"epoch,omitempty"`
}

// String renders the outcome on one line.
func (f FenceOutcome) String() string {
	s := fmt.Sprintf("%s %s", f.Target, f.Result)
	if f.Driver != "" {
		s += " by " + f.Driver
	}
	if f.Detail != "" {
		s += ": " + f.Detail
	}
	return s
}

// DataLossHow says how a leadership change's data loss was measured.
type DataLossHow int

// How data loss is measured.
const (
	// DataLossLowerBound: the old primary's last position published while
	// it led; its WAL ended there or later, so the loss is at least this.
	// It becomes exact when the old primary rejoins by a rewind.
	DataLossLowerBound DataLossHow = iota + 1
	// DataLossFinalPosition: the old primary's agent published where its
	// WAL ended (its database stopped) before the new primary promoted:
	// exact.
	DataLossFinalPosition
	// DataLossRewind: the old primary's rewind found where its history
	// diverged from the new primary's and how far its WAL went past that:
	// exact, the WAL it discarded.
	DataLossRewind
	// DataLossHandoff: a switchover, which promotes only past the old
	// primary's final position: none.
	DataLossHandoff
)

var dataLossNames = map[DataLossHow]string{
	DataLossLowerBound: "lower-bound", DataLossFinalPosition: "final-position", DataLossRewind: "rewind",
	DataLossHandoff: "handoff",
}

// String names the way as in JSON.
func (h DataLossHow) String() string {
	if s, ok := dataLossNames[h]; ok {
		return s
	}
	return "unknown"
}

// MarshalText encodes the way by name.
func (h DataLossHow) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText decodes a name; an unknown one decodes to 0 (unknown).
func (h *DataLossHow) UnmarshalText(b []byte) error {
	*h = 0
	for k, name := range dataLossNames {
		if name == string(b) {
			*h = k
		}
	}
	return nil
}

// DataLoss is what a leadership change lost of the old primary's WAL, and
// how that was found. In synchronous mode it counts WAL of commits that
// were never acknowledged (the synchronous standby holds every
// acknowledged one).
type DataLoss struct {
	Bytes  int64       `json:"bytes"`
	How    DataLossHow `json:"how"`
	Detail string      `json:"detail,omitempty"`
}

// Step is one timed step of a failover.
type Step struct {
	Name     string   `json:"name"`
	Duration Duration `json:"duration"`
	// Failed says why the step did not complete ("": it did), such as a
	// discovery publisher that could not read its change back.
	Failed string `json:"failed,omitempty"`
	// Late, for a publish step that failed during the promotion and was
	// retried until its publisher read the change back, is how long after
	// the database's promotion that happened; Failed then keeps the first
	// failure. A promotion is done when none of its steps has Failed set
	// without Late.
	Late Duration `json:"late,omitempty"`
}

// Done reports whether the step completed, during the promotion or late.
func (s Step) Done() bool { return s.Failed == "" || s.Late > 0 }

// RequestKind says what an operator asked for.
type RequestKind string

// Request kinds.
const (
	// KindSwitchover is a planned change of primary with no data loss.
	KindSwitchover RequestKind = "switchover"
	// KindFailover is an operator's choice of new primary when there is
	// no healthy one (it overrides the lag gate, not the fencing rules).
	KindFailover RequestKind = "failover"
)

// Request is the operator's pending switchover or failover, kept under
// request until it completes, is cancelled or is refused.
type Request struct {
	Kind RequestKind `json:"kind"`
	// From is the leader the switchover moves away from ("" for failover).
	From string `json:"from,omitempty"`
	// To is the chosen new primary ("" for switchover: the best replica).
	To string `json:"to,omitempty"`
	// At schedules a switchover (zero: as soon as possible).
	At          time.Time `json:"at,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	// RequestedBy names who asked ("hamgrctl on host", "api from addr").
	RequestedBy string `json:"requested_by,omitempty"`
	// Handoff is set by the old leader once it has stopped writes.
	Handoff *Handoff `json:"handoff,omitempty"`
	// ConfirmedDown names the old primary that the operator of a manual
	// failover confirmed can no longer take writes (powered off, cut off):
	// the failover then proceeds without the liveness rule's proof, but
	// never over an old primary that answers as writable.
	ConfirmedDown string `json:"confirmed_down,omitempty"`
}

// Handoff is the old leader's half of a switchover: it stopped taking
// writes at Final and gives the leader key to Target.
type Handoff struct {
	Target string `json:"target"`
	// Final is the old primary's final position (its shutdown
	// checkpoint); the target promotes only once its own position is
	// ahead of it.
	Final     Position  `json:"final"`
	Epoch     Epoch     `json:"epoch"`
	StoppedAt time.Time `json:"stopped_at"`
}
