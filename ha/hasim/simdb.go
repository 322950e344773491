package hasim

import (
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// simDB is a simulated PostgreSQL.
type simDB struct {
	hasData   bool
	running   bool
	accepting bool
	// standby is the data directory's role: true for a replica
	// (standby.signal), false for a primary.
	standby  bool
	timeline uint32
	lsn      cluster.LSN
	// forks maps each earlier timeline of this database's history to the
	// position where it ended.
	forks     map[uint32]cluster.LSN
	upstream  string
	streaming bool
	// readyAt is when a starting server begins to accept connections.
	readyAt time.Time
	// crashed means the next start needs crash recovery.
	crashed bool
	// stopPos is the shutdown checkpoint's location after a clean (fast)
	// stop of a primary: what the control data, and so a probe of the
	// stopped server, reports. Zero otherwise.
	stopPos cluster.LSN
	// failStarts makes the next that many starts fail.
	failStarts int
	lag        cluster.LSN
	// syncNames and syncAny are synchronous_standby_names; slots the
	// replication slots (by member name).
	syncNames []string
	syncAny   bool
	// ack is a replica's acknowledging (semi-sync's replica side, a
	// SemiSync world): off at every start.
	ack   bool
	slots map[string]bool
	// streamingFrom is the sender a streaming replica's receiver is
	// connected to (it keeps the connection while the sender is silent,
	// up to the receiver timeout), and lastMsg when the last message from
	// it arrived.
	streamingFrom string
	lastMsg       time.Time
	// hung is a postmaster that hangs: no new connection gets in, while
	// the backends and WAL senders it already has keep working.
	hung bool
	// suspended: every process stopped by the agent (db.Controller.Suspend).
	suspended bool
}

func (d *simDB) String() string {
	role := "primary"
	if d.standby {
		role = "replica"
	}
	state := "stopped"
	switch {
	case !d.hasData:
		state = "empty"
	case d.running && d.accepting:
		state = "running"
	case d.running:
		state = "starting"
	}
	s := fmt.Sprintf("%s/%s tl=%d lsn=%s", state, role, d.timeline, d.lsn)
	if d.streaming {
		s += " streaming<-" + d.upstream
	}
	return s
}

func (d *simDB) status(now time.Time, alive bool, receiverTimeout time.Duration) db.Status {
	// A stopped server reports the end of its WAL (db/postgres reads it
	// with pg_waldump) and its latest checkpoint: the shutdown checkpoint
	// after a fast stop.
	pos := cluster.PGPosition(d.timeline, d.lsn)
	var ckpt cluster.Position
	if !d.running && d.hasData {
		ckpt = cluster.PGPosition(d.timeline, d.lsn)
		if d.stopPos != 0 {
			ckpt = cluster.PGPosition(d.timeline, d.stopPos)
		}
	}
	// A stopped data directory without standby.signal was last run as a
	// primary (what the postgres prober reads from the files).
	wasPrimary := d.hasData && !d.standby && !d.running
	if !alive {
		return db.Status{HasData: d.hasData, Position: pos, Checkpoint: ckpt, WasPrimary: wasPrimary}
	}
	st := db.Status{
		Running: d.running, Accepting: d.running && d.accepting, HasData: d.hasData,
		Position: pos, Checkpoint: ckpt, WasPrimary: wasPrimary,
	}
	if st.Accepting {
		st.Role = cluster.RolePrimary
		if d.standby {
			st.Role = cluster.RoleReplica
			st.Received, st.Replayed = pos, pos
		}
	}
	st.LastMessageAge = -1
	if st.Accepting && d.standby {
		st.ReceiverTimeout = receiverTimeout
	}
	if st.Accepting && d.standby && d.streaming {
		st.Streaming = true
		st.UpstreamHost, st.UpstreamPort = d.streamingFrom, 5432
		st.LastMessageAge = now.Sub(d.lastMsg)
	}
	return st
}

func copyForks(m map[uint32]cluster.LSN) map[uint32]cluster.LSN {
	c := make(map[uint32]cluster.LSN, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// canFollow reports whether a replica at r can stream from u (PostgreSQL's
// timeline history check).
func canFollow(r, u *simDB) bool {
	switch {
	case r.timeline == u.timeline:
		return r.lsn <= u.lsn
	case r.timeline < u.timeline:
		end, ok := u.forks[r.timeline]
		return ok && r.lsn <= end
	default:
		return false
	}
}

// advanceDB moves one database forward by a tick. A frozen node's
// database does not move at all.
func (w *World) advanceDB(n *node) {
	d := &n.db
	if !n.alive || !d.running {
		d.streaming, d.ack = false, false
		return
	}
	if n.dbFrozen() {
		return
	}
	if !d.accepting && !w.now.Before(d.readyAt) {
		d.accepting, d.crashed = true, false
		if !d.standby {
			w.logf("%s: database finished starting and accepts writes", n.spec.Name)
			w.checkHoldsKey(n, "became a writable primary (start finished)")
		}
	}
	if !d.accepting {
		return
	}
	if !d.standby {
		d.lsn += w.cfg.WritePerTick
		w.acknowledge(n)
		return
	}
	was := d.streaming
	w.stream(n)
	if was != d.streaming {
		w.logf("%s: streaming from %q: %v", n.spec.Name, d.upstream, d.streaming)
	}
}

// stream moves a running replica's WAL receiver forward by a tick. A
// connected receiver hears from a sender whose WAL senders run (even
// behind a hung postmaster), loses the connection at once when the
// sender's database stopped on a live machine (the kernel resets it), and
// keeps a silent one (a machine powered off or frozen) until the
// receiver timeout. A sender behind a rejecting firewall resets it too. A new connection needs a postmaster that lets it in.
func (w *World) stream(n *node) {
	d := &n.db
	var u *node
	if d.upstream != "" && d.upstream != n.spec.Name {
		u = w.node(d.upstream)
	}
	if d.streaming && (u == nil || d.streamingFrom != u.spec.Name) {
		d.streaming = false // repointed: the receiver restarts
	}
	if !d.streaming {
		if u != nil && u.alive && !u.dbFrozen() && u.db.running && u.db.accepting && !u.db.hung && !u.rejecting && canFollow(d, &u.db) {
			d.streaming, d.streamingFrom, d.lastMsg = true, u.spec.Name, w.now
			w.catchUp(d, u)
		}
		return
	}
	switch {
	case u.alive && !u.dbFrozen() && u.db.running && u.db.accepting && !u.rejecting && canFollow(d, &u.db):
		d.lastMsg = w.now
		w.catchUp(d, u)
	case u.alive && !u.dbFrozen():
		d.streaming = false // the sender stopped or cannot serve this history: the connection closes
	case w.now.Sub(d.lastMsg) >= w.cfg.ReceiverTimeout:
		d.streaming = false // "terminating walreceiver due to timeout"
	}
}

// catchUp brings replica d to within its lag of u's WAL.
func (w *World) catchUp(d *simDB, u *node) {
	if u.db.lsn > d.lsn+d.lag {
		d.lsn = u.db.lsn - d.lag
	}
	if u.db.timeline > d.timeline {
		d.timeline, d.forks = u.db.timeline, copyForks(u.db.forks)
	}
}
