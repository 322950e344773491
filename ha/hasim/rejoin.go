package hasim

import (
	"errors"
	"fmt"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// This file models how a member rejoins the leader with a copy of its
// history: a clone into an empty data directory (pg_basebackup), pg_rewind
// of a stopped, possibly diverged database, and a re-clone (data deleted,
// then cloned). Each is instantaneous on the simulated clock.

// errServerRunning is what db/postgres returns when a rewind or a data
// removal finds the local server running.
var errServerRunning = errors.New("the server is running; stop it first")

// noRewindRequired ends an entry of World.Rewinds for which pg_rewind
// found nothing to do and left the data as it was.
const noRewindRequired = " (no rewind required)"

// serving reports whether n's database accepts connections: what
// pg_basebackup needs, and pg_rewind for its CHECKPOINT on the source and
// its source-server connection.
func (n *node) serving() bool { return n.alive && n.db.running && n.db.accepting }

// rejoined records that n's data was just made a copy of u's history: any
// key n is promoted under from now on must be newer than every epoch
// issued so far (checked by checkHoldsKey).
func (w *World) rejoined(n, u *node) {
	n.rejoinEpoch, n.rejoinedFrom = w.maxEpoch, u.spec.Name
}

// cloneFrom fills n's data directory with a copy of u's database
// (db/postgres Clone): u's timeline, timeline history and position, ready
// to start as u's replica. It fails, leaving n as it was, when u does not
// accept connections.
func (w *World) cloneFrom(n, u *node) error {
	if u == n || !u.serving() {
		return fmt.Errorf("clone from %s: not reachable", u.spec.Name)
	}
	d := &n.db
	*d = simDB{hasData: true, standby: true, timeline: u.db.timeline, lsn: u.db.lsn, forks: copyForks(u.db.forks),
		lag: d.lag, failStarts: d.failStarts, upstream: u.spec.Name}
	w.rejoined(n, u)
	return nil
}

// rewind models db/postgres Rewind of n's stopped database from u's
// (pg_rewind after a CHECKPOINT on u). It fails, changing nothing, when n
// has no data or its server runs, or when u does not accept connections.
//
// Like pg_rewind it rewinds only when the two histories are on different
// timelines and n's WAL goes past the point where u's history left n's
// timeline (that is, n cannot follow u). Then n's history becomes a copy of
// u's: u's timeline and timeline history, at u's position at that moment
// (pg_rewind copies every block changed since the divergence, and the
// target replays u's WAL up to the source's position before it is
// consistent). Otherwise pg_rewind reports "no rewind required" and n keeps
// its data, even when, on the same timeline id, it cannot follow u (two
// members promoted from the same timeline without seeing each other's
// history files pick the same new timeline id, in PostgreSQL as here).
// Crash recovery, which db/postgres runs first for a database that was not
// shut down cleanly, is done either way. On success the data directory is
// left a standby of u (standby.signal and primary_conninfo), so it cannot
// start as a primary.
func (w *World) rewind(n, u *node) (required bool, err error) {
	d := &n.db
	switch {
	case !d.hasData:
		return false, errors.New("rewind: no database cluster in the data directory")
	case d.running:
		return false, fmt.Errorf("rewind: %w", errServerRunning)
	case u == n || !u.serving():
		return false, fmt.Errorf("rewind: CHECKPOINT on upstream %s: not reachable: %w", u.spec.Name, db.ErrUpstreamUnavailable)
	}
	required = d.timeline != u.db.timeline && !canFollow(d, &u.db)
	if required {
		d.timeline, d.lsn, d.forks = u.db.timeline, u.db.lsn, copyForks(u.db.forks)
		d.stopPos = 0
	}
	d.crashed = false
	d.standby, d.upstream, d.streaming = true, u.spec.Name, false
	w.rejoined(n, u)
	return required, nil
}

// doRewind executes db.Replication.Rewind of n's database from u and
// records it in World.Rewinds or World.RewindFailures, with the leader
// epoch it happened in.
func (w *World) doRewind(n, u *node) (db.RewindResult, error) {
	epoch := cluster.Epoch(0)
	if l := w.Leader(); l != nil {
		epoch = l.Epoch
	}
	what := fmt.Sprintf("%s<-%s@%d", n.spec.Name, u.spec.Name, epoch)
	res := db.RewindResult{WALEnd: cluster.PGPosition(n.db.timeline, n.db.lsn)}
	if fork, ok := u.db.forks[n.db.timeline]; ok {
		res.DivergedAt = cluster.PGPosition(n.db.timeline, fork)
	}
	required, err := w.rewind(n, u)
	if err != nil {
		w.RewindFailures = append(w.RewindFailures, what)
		return db.RewindResult{}, err
	}
	res.Required = required
	if !required {
		what += noRewindRequired
	}
	w.Rewinds = append(w.Rewinds, what)
	w.logf("%s: REWOUND from %s, rewind required %v (%s)", n.spec.Name, u.spec.Name, required, n.db.String())
	return res, nil
}
