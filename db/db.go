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
	// is the checkpoint read from its control data, if any.
	Position   cluster.Position
	ReceiveLSN cluster.LSN
	ReplayLSN  cluster.LSN
	// Streaming is true when a replica's WAL receiver streams from Upstream.
	Streaming    bool
	UpstreamHost string
	UpstreamPort int
	// ReplayPaused is true when WAL replay has been paused on a replica.
	ReplayPaused bool
	// HasData is false when the data directory holds no database cluster.
	HasData bool
	// Err is why the probe failed to connect, when Running && !Accepting.
	Err error
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
	// StopImmediate kills every backend at once, with no checkpoint:
	// the fastest way to stop acknowledging writes (self-fencing).
	StopImmediate
)

// ErrNotRunning is returned by operations that need a running server.
var ErrNotRunning = errors.New("database is not running")

// Prober measures the local database. Probe never changes it.
type Prober interface {
	// Probe measures the server. It returns an error only when the
	// measurement itself is impossible (bad data directory); a stopped or
	// unreachable server is a Status with Running or Accepting false.
	Probe(ctx context.Context) (Status, error)
	// IsWritablePrimary connects to another member's server at host:port
	// and reports whether it answers as a primary accepting writes. A
	// server that cannot be reached within the context's deadline reports
	// false with the error that explains why.
	IsWritablePrimary(ctx context.Context, host string, port int) (bool, error)
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
	// StartPrimary starts the server as a primary. If the data directory
	// holds a replica it is started as one and must be promoted instead.
	StartPrimary(ctx context.Context) error
	// StartReplica starts the server as a replica of up (nil: a replica
	// with no upstream, read-only).
	StartReplica(ctx context.Context, up *Upstream) error
	// Stop stops the server; a stopped server is not an error.
	Stop(ctx context.Context, mode StopMode) error
	// Promote turns a running replica into a primary and waits for it to
	// accept writes.
	Promote(ctx context.Context) error
	// Follow repoints a running replica at up without a restart.
	Follow(ctx context.Context, up Upstream) error
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
