// Package db defines what hamgr needs from a database engine: a Prober that
// measures the local server and a Controller that starts, stops, promotes and
// repoints it. Engines (db/postgres, later db/mysql) implement both; nothing
// above this package knows which engine runs.
package db

import (
	"context"
	"errors"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Status is one measurement of the local database.
type Status struct {
	// Running is true when the server process exists (it may still be
	// starting up or in crash recovery and refuse connections).
	Running bool
	// Accepting is true when a probe query succeeded.
	Accepting bool
	// Role is primary or replica when Accepting; RoleUnknown otherwise.
	Role cluster.Role
	// Position is the flushed WAL position on a primary, the furthest of
	// received and replayed WAL on a replica. When the server is stopped it
	// is the furthest its files prove: for a data directory last run as a
	// primary the end of its WAL (what the election compares, and what
	// a failover without it loses), else the checkpoint or minimum
	// recovery point of its control data.
	Position cluster.Position
	// Coordinates are the server's own log coordinates in the engine's
	// notation, for operators (MariaDB/MySQL: the binary log file and
	// offset it writes, "mysql-bin.000003:1234"); "" when the engine has
	// none to show or the server did not answer. No decision uses them.
	Coordinates string
	// Checkpoint is a stopped server's latest checkpoint (after a fast
	// shutdown: the shutdown checkpoint, the final position a switchover
	// hands over); zero while it runs.
	Checkpoint cluster.Position
	// Received and Replayed are a replica's received and replayed
	// positions; zero otherwise.
	Received cluster.Position
	Replayed cluster.Position
	// Streaming is true when a replica's WAL receiver streams from Upstream.
	Streaming    bool
	UpstreamHost string
	UpstreamPort int
	// ReplayPaused is true when WAL replay has been paused on a replica.
	ReplayPaused bool
	// ReplayLagSeconds is how far a replica's replay is behind in time: 0
	// when it has replayed all it received, else the age of the last
	// replayed transaction; -1 when unknown.
	ReplayLagSeconds float64
	// HasData is false when the data directory holds no database cluster.
	HasData bool
	// WasPrimary is true when the server is stopped and its data directory
	// was last run as a primary (PostgreSQL: no standby.signal).
	WasPrimary bool
	// Err is why the probe failed to connect, when Running && !Accepting.
	Err error
	// ReceiverTimeout is a replica's WAL receiver timeout: the receiver
	// pings a silent sender after half of it and drops the connection
	// after all of it (0: unknown or disabled).
	ReceiverTimeout time.Duration
	// Stalled, when not empty, says how a running primary that still
	// answers on the agent's own connection failed the probe's fresh
	// connection and small committed write (a hung postmaster, a stalled
	// disk, a full WAL volume): it cannot take new sessions or commit.
	Stalled string
	// Diverged, when not empty, says how this server's history left the
	// newest history of its upstream that it holds (PostgreSQL: the
	// upstream's timeline forked off this server's timeline before the
	// WAL this server has): it cannot follow that upstream and must be
	// rewound or cloned again. Reported by the engine from the server's
	// own state, never guessed from the stream.
	Diverged string
	// Ack is a replica's acknowledging state (semi-synchronous
	// replication's replica side, on engines with Capabilities.Acks
	// AcksAny): AckOn when its replica side is on, or its stream still
	// runs as it did when the side was on; AckUnknown when not measured.
	Ack cluster.AckState
	// AckOverdue, when not empty, says how a commit on this primary has
	// waited for a replica's acknowledgement (Capabilities.Acks AcksAny)
	// longer than the probe's bound: with MariaDB, a replica that
	// received a commit before it acknowledged never acknowledges it, and
	// commits queued behind it wait too, until waiting is turned off.
	AckOverdue string
	// LastMessageAge is how long before the probe, by the server's own
	// clock, its WAL receiver last received a message from its sender (WAL
	// or a keepalive); -1 when unknown (no receiver, or nothing received
	// on the current connection yet).
	LastMessageAge time.Duration
}

// Answer is what the database at another member's address answered when
// asked whether it takes writes. Only AnswerRefused and AnswerReadOnly say
// that it does not; AnswerNone says nothing at all.
type Answer int

// Answers.
const (
	_ Answer = iota
	// AnswerNone: no usable answer — a timeout, an authentication error,
	// too many connections, a server that is starting up, recovering from
	// a crash or shutting down, any other error. The server may be alive
	// and taking writes on the connections it has.
	AnswerNone
	// AnswerRefused: the connection was actively refused (TCP reset): no
	// server listens at that address.
	AnswerRefused
	// AnswerReadOnly: a server answered that it is in recovery: it takes
	// no writes.
	AnswerReadOnly
	// AnswerWritable: a server answered as a primary accepting writes.
	AnswerWritable
)

// String names the answer for logs and evidence.
func (a Answer) String() string {
	switch a {
	case AnswerNone:
		return "no answer"
	case AnswerRefused:
		return "connection refused"
	case AnswerReadOnly:
		return "read-only"
	case AnswerWritable:
		return "writable"
	}
	return "not asked"
}

// Upstream is the server a replica streams from.
type Upstream struct {
	Name string
	Host string
	Port int
}

// StopMode says how hard to stop the server.
type StopMode int

// Stop modes.
const (
	_ StopMode = iota
	// StopFast rolls back sessions and writes a shutdown checkpoint.
	StopFast
	// StopImmediate kills every backend at once, with no checkpoint. A
	// server that does not go at once (a hung or stopped postmaster) has
	// every one of its processes killed.
	StopImmediate
	// StopFence stops acknowledging writes at once and is stopped by the
	// context's deadline whatever it takes: a fast shutdown (sessions end
	// at once, new ones are refused, the WAL senders ship what was written
	// to the replicas before they exit), turned into killing every
	// process of the server if the postmaster does not react or the
	// deadline comes first. Self-fencing uses it.
	StopFence
)

// ErrStillStarting is returned by StartPrimary and StartReplica when the
// context ends while the server process runs but has not finished
// starting (crash recovery, a long replay): not a failure. The caller
// looks again later; a server that exits during its start is an error.
var ErrStillStarting = errors.New("database is still starting")

// ErrNotRunning is returned by operations that need a running server.
var ErrNotRunning = errors.New("database is not running")

// ErrUpstreamUnavailable marks a rewind that did not start because the
// upstream could not be reached or did not accept the request; the local
// data was not touched, so it can be tried again.
var ErrUpstreamUnavailable = errors.New("upstream unavailable")

// Prober measures the local database. Probe never changes it.
type Prober interface {
	// Probe measures the server. It returns an error only when the
	// measurement itself is impossible (bad data directory); a stopped or
	// unreachable server is a Status with Running or Accepting false.
	Probe(ctx context.Context) (Status, error)
	// Ask connects to another member's server at host:port and reports
	// whether it takes writes, with the error that explains any answer
	// other than AnswerWritable and AnswerReadOnly. It classifies
	// conservatively: only a refused connection is AnswerRefused, and
	// anything it cannot classify is AnswerNone.
	Ask(ctx context.Context, host string, port int) (Answer, error)
}

// Controller changes the local database. Every method is idempotent: calling
// Start on a running server of the wanted role, or Promote on a primary, is a
// no-op that returns nil.
type Controller interface {
	// Initialize creates a new database cluster in an empty data directory
	// (initdb plus the replication user), ready to start as a primary.
	Initialize(ctx context.Context) error
	// Clone fills an empty data directory with a copy of upstream
	// (pg_basebackup), ready to start as its replica.
	Clone(ctx context.Context, up Upstream) error
	// StartPrimary starts the server as a primary and waits until it
	// takes writes, or returns ErrStillStarting when ctx ends first while
	// it is still starting. A data directory that holds a replica is
	// refused: it must be started as one and promoted.
	StartPrimary(ctx context.Context) error
	// StartReplica starts the server as a replica of up (nil: a replica
	// with no upstream, read-only) and waits until it takes read-only
	// connections, or returns ErrStillStarting as StartPrimary does.
	StartReplica(ctx context.Context, up *Upstream) error
	// Stop stops the server; a stopped server is not an error.
	Stop(ctx context.Context, mode StopMode) error
	// Promote turns a running replica into a primary and waits for it to
	// accept writes.
	Promote(ctx context.Context) error
	// Follow repoints a running replica at up without a restart.
	Follow(ctx context.Context, up Upstream) error
	// Suspend stops every process of the server at once (SIGSTOP), so it
	// acknowledges nothing until Resume or Stop; it is instantaneous and
	// changes nothing on disk. A stopped server is not an error.
	Suspend(ctx context.Context) error
	// Resume continues a suspended server.
	Resume(ctx context.Context) error
	// Exited returns a channel that receives a value each time the server
	// process is seen to exit, so the caller can react at once instead of
	// waiting for its next probe.
	Exited() <-chan time.Time
	// Close releases connections and watchers; it does not stop the server.
	Close()
}

// Database is one engine's adapter.
type Database interface {
	Prober
	Controller
}

// Standby is one streaming standby as its primary sees it.
type Standby struct {
	// Name is the standby's application_name (its member name).
	Name string
	// State is the WAL sender's state ("streaming", "catchup", ...).
	State string
	// SyncState is "sync", "potential", "quorum" or "async".
	SyncState string
	// Flushed and Replayed are the positions the standby confirmed
	// flushing and replaying.
	Flushed  cluster.Position
	Replayed cluster.Position
}

// ReplicationStatus is a primary's view of its standbys.
type ReplicationStatus struct {
	// Current is the primary's current position, read in the same query.
	Current  cluster.Position
	Standbys []Standby
	// SyncNames are the members named in the synchronous standby setting;
	// SyncAny is true when it names any standby ("*").
	SyncNames []string
	SyncAny   bool
}

// Slot is a physical replication slot on the local server.
type Slot struct {
	Name       string
	Active     bool
	RestartLSN cluster.LSN
	// WALStatus is "reserved", "extended", "unreserved" or "lost" (lost:
	// the WAL it needed was removed; its member must be re-cloned).
	WALStatus string
}

// RewindResult is what a rewind found.
type RewindResult struct {
	// Required is false when the local history had not diverged ("no
	// rewind required"): nothing was discarded.
	Required bool
	// DivergedAt is where the local history left the upstream's, and
	// WALEnd where the local history ended before the rewind: what lay
	// past DivergedAt was discarded; DivergedAt.LagTo(WALEnd) measures it.
	// Zero when unknown.
	DivergedAt cluster.Position
	WALEnd     cluster.Position
}

// Replication manages replication on the local server: the synchronous
// standby setting and replication slots on a primary, and pg_rewind of a
// stopped former primary. Engines implement it alongside Database.
type Replication interface {
	SyncReplication
	// SlotName is the replication slot name used for member.
	SlotName(member string) string
	// Slots lists the physical replication slots.
	Slots(ctx context.Context) ([]Slot, error)
	// CreateSlots creates the missing slots of members; DropSlots drops
	// the slots of members (inactive ones only; an active slot is skipped).
	CreateSlots(ctx context.Context, members []string) error
	DropSlots(ctx context.Context, members []string) error
	// Rewind synchronizes the stopped local data directory with up
	// (pg_rewind, after a CHECKPOINT on up) and leaves it stopped, ready
	// to StartReplica(up). It fails when the server runs.
	Rewind(ctx context.Context, up Upstream) (RewindResult, error)
	// RemoveData deletes the stopped server's data so it can be cloned
	// again. It fails when the server runs.
	RemoveData(ctx context.Context) error
}

// SyncReplication is a primary's synchronous replication: engines with
// Capabilities.Synchronous implement it.
type SyncReplication interface {
	// ReplicationStatus reports the standbys of a running primary.
	ReplicationStatus(ctx context.Context) (ReplicationStatus, error)
	// SetSynchronousStandbys sets which standbys must confirm each commit
	// and reloads: every one of names (in order); with no names, none
	// (asynchronous) unless anyStandby, which makes commits wait for any
	// one standby (and block while none is connected). An AcksAny engine
	// takes no names: anyStandby turns waiting on, for any replica that
	// acknowledges (Acknowledger).
	SetSynchronousStandbys(ctx context.Context, names []string, anyStandby bool) error
}

// RejoinMethods is a set of ways a member whose history diverged from the
// leader's (a former primary, say) can come back as the leader's replica.
type RejoinMethods int

// Rejoin methods, tried in this order.
const (
	// RejoinResync resynchronizes the stopped local data in place from
	// the upstream, discarding what diverged (PostgreSQL: pg_rewind):
	// Replication.Rewind, planned as ha.Rewind, once per leader epoch.
	RejoinResync RejoinMethods = 1 << iota
	// RejoinReclone deletes the local data and clones the upstream again
	// (Replication.RemoveData and Controller.Clone), planned as
	// ha.Reclone when a resync is off or failed.
	RejoinReclone
)

// Has reports whether every method of x is in m.
func (m RejoinMethods) Has(x RejoinMethods) bool { return m&x == x }

// Capabilities describes what the local engine can do, as far as the
// operator allowed it, and how the engine names its tools and settings
// to users. Package ha plans only what the capabilities allow, and takes
// every engine-specific word of its reasons from Names, so that nothing
// above this package names an engine's tools or settings. Engines
// provide theirs (postgres.Capabilities).
type Capabilities struct {
	// Rejoin is the set of rejoin methods this member may use.
	Rejoin RejoinMethods
	// Slots is true when the engine keeps a replication slot per member
	// on the leader (Replication.CreateSlots, DropSlots, Slots), which
	// the leader then manages.
	Slots bool
	// Synchronous is true when the engine implements synchronous
	// replication (Replication.SetSynchronousStandbys and
	// ReplicationStatus); without it package ha runs the cluster
	// asynchronously whatever synchronous_mode says, and says so
	// (durability_at_risk).
	Synchronous bool
	// Acks is which standbys the server accepts a commit's
	// acknowledgement from, when Synchronous.
	Acks AckPolicy
	// Diverged is what becomes of a running member whose history
	// diverged from the leader's and that may not rejoin by itself
	// (cannot_follow).
	Diverged DivergedPolicy
	// Switchover is how a switchover's primary stops taking writes
	// before it hands over (zero: SwitchoverStop).
	Switchover SwitchoverMethod
	// Names are the engine's user-facing names.
	Names Names
}

// Names are an engine's names, as its users know them, for what hamgr's
// reasons mention.
type Names struct {
	// Resync is the tool of RejoinResync ("pg_rewind").
	Resync string
	// ResyncSetting and RecloneSetting are the configuration settings
	// that allow RejoinResync and RejoinReclone
	// ("postgresql.use_pg_rewind").
	ResyncSetting  string
	RecloneSetting string
}

// AckPolicy is which standbys a synchronous primary waits for.
type AckPolicy int

// Acknowledgement policies.
const (
	// AcksNamed (PostgreSQL): the primary waits for every standby named
	// in its setting (Replication.SetSynchronousStandbys), or for any one
	// with anyStandby; the setting is the primary's alone.
	AcksNamed AckPolicy = iota
	// AcksAny (MariaDB and MySQL semi-synchronous replication): the
	// primary, while waiting is on (SetSynchronousStandbys with
	// anyStandby; no names), waits for an acknowledgement from any
	// connected replica whose replica side is on (Acknowledger), which
	// each replica's agent sets.
	AcksAny
)

// DivergedPolicy is what becomes of a running member that cannot follow
// the leader because its history diverged (it holds transactions the
// leader lacks) and that may not rejoin by itself.
type DivergedPolicy int

// Diverged policies.
const (
	// DivergedStop: the server is stopped (PostgreSQL, whose server
	// cannot run as a standby without a primary to stream from, and whose
	// data stays as it was for pg_rewind or an operator).
	DivergedStop DivergedPolicy = iota
	// DivergedDetach: the server keeps running read-only with its
	// replication removed (Detacher): it takes no writes and applies
	// nothing, and an operator can read what it holds (MariaDB, MySQL).
	DivergedDetach
)

// Detacher is implemented by engines with Capabilities.Diverged
// DivergedDetach.
type Detacher interface {
	// Detach makes the running server read-only (if it is not) and
	// removes its replication configuration: it applies nothing more and
	// takes no writes. Retrying is safe; a server with no replication
	// configured is left as it is.
	Detach(ctx context.Context) error
}

// Acknowledger is implemented by engines with Capabilities.Acks AcksAny:
// it turns the local replica's acknowledging on or off (MariaDB:
// rpl_semi_sync_slave_enabled, and a restart of the replication stream so
// that the primary sees the change). After AckOff returned, the replica
// acknowledges nothing until AckOn; Status.Ack reports the state. A
// promotion turns it off. Retrying is safe.
type Acknowledger interface {
	SetAcknowledging(ctx context.Context, state cluster.AckState) error
}

// SwitchoverMethod is how a switchover's primary stops taking writes, and
// so what its final position is and when the target holds it.
type SwitchoverMethod int

// Switchover methods.
const (
	_ SwitchoverMethod = iota
	// SwitchoverStop: a fast shutdown (Controller.Stop with StopFast).
	// The final position is the stopped server's Checkpoint (PostgreSQL:
	// its shutdown checkpoint record, which the WAL senders ship before
	// they exit); the target holds everything once it has received past
	// it (Position ahead of it).
	SwitchoverStop
	// SwitchoverDemote: the primary is demoted in place (Demoter.Demote:
	// read-only, every client session ended) and keeps running, so its
	// replicas keep streaming from it. The final position is the demoted
	// server's Position (its executed transactions); the target holds
	// everything once it has applied it (Replayed at or ahead of it).
	SwitchoverDemote
)

// Demoter is implemented by engines whose Capabilities.Switchover is
// SwitchoverDemote.
type Demoter interface {
	// Demote makes the running primary read-only in place and ends every
	// client session (but replication's and the agent's own), returning
	// only once no client transaction can commit any more: after it, the
	// server's Position is final until it is made writable again. On a
	// read-only server it only makes sure of read-only. A stopped server
	// is ErrNotRunning. Retrying is safe.
	Demote(ctx context.Context) error
}
