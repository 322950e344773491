package hasim

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// engine is one node's database as the agent sees it: a twin of
// db/postgres (db.Database and db.Replication) over the node's simulated
// database. Every call takes effect at once on the simulated clock; what
// takes time in PostgreSQL (a start, crash recovery) is modelled by the
// database itself (simDB.readyAt). The calls follow db/postgres's
// contracts, including its refusals (a primary start of a data directory
// that holds a replica, a rewind of a running server).
type engine struct {
	w *World
	n *node
	// exited is never sent on: the simulator wakes an agent itself when
	// its database crashes.
	exited chan time.Time
}

var (
	_ db.Database     = (*engine)(nil)
	_ db.Replication  = (*engine)(nil)
	_ db.Acknowledger = (*engine)(nil)
)

func (e *engine) d() *simDB { return &e.n.db }

// Probe measures the database as db/postgres does.
func (e *engine) Probe(context.Context) (db.Status, error) {
	return e.w.probe(e.n), nil
}

// Ask connects to the database at host:port as db/postgres does, and
// fails the same ways: a machine powered off or frozen, a hung postmaster
// and an overloaded machine give no answer (timeouts), a stopped database
// on a live machine refuses.
func (e *engine) Ask(_ context.Context, host string, port int) (db.Answer, error) {
	t := e.w.nodeAt(host, port)
	switch {
	case t == nil:
		return db.AnswerNone, fmt.Errorf("%s:%d: no such host", host, port)
	case !t.alive || t.dbFrozen() || t.db.hung || t.overloaded:
		return db.AnswerNone, fmt.Errorf("%s:%d: timeout: context deadline exceeded", host, port)
	case !t.db.running || t.rejecting && t != e.n:
		return db.AnswerRefused, fmt.Errorf("%s:%d: connect: connection refused", host, port)
	case !t.db.accepting:
		return db.AnswerNone, fmt.Errorf("%s:%d: the database system is starting up (SQLSTATE 57P03)", host, port)
	case t.db.standby:
		return db.AnswerReadOnly, nil
	}
	return db.AnswerWritable, nil
}

// Initialize creates a database in the empty data directory and starts
// it as a primary, as initdb and db/postgres Initialize do.
func (e *engine) Initialize(context.Context) error {
	d := e.d()
	if !d.hasData {
		*d = simDB{hasData: true, timeline: 1, lsn: 0x1000000, forks: map[uint32]cluster.LSN{},
			lag: d.lag, failStarts: d.failStarts}
	}
	if d.running {
		return nil
	}
	if d.standby {
		return errors.New("initialize: the data directory holds a replica")
	}
	return d.start(e.w.now, e.w.cfg)
}

// Clone copies the upstream's database into the empty data directory.
func (e *engine) Clone(_ context.Context, up db.Upstream) error {
	if e.d().running {
		return errors.New("clone: server is running")
	}
	if e.d().hasData {
		return errors.New("clone: data dir is not empty")
	}
	u := e.w.node(up.Name)
	if err := e.w.cloneFrom(e.n, u); err != nil {
		return err
	}
	if e.n.removed {
		e.n.removed = false
		epoch := cluster.Epoch(0)
		if l := e.w.Leader(); l != nil {
			epoch = l.Epoch
		}
		e.w.Reclones = append(e.w.Reclones, fmt.Sprintf("%s<-%s@%d", e.n.spec.Name, u.spec.Name, epoch))
		e.w.logf("%s: RE-CLONED from %s (%s)", e.n.spec.Name, u.spec.Name, e.n.db.String())
	}
	return nil
}

// StartPrimary starts the server as a primary; it refuses a data
// directory that holds a replica (standby.signal), as db/postgres does.
func (e *engine) StartPrimary(context.Context) error {
	d := e.d()
	switch {
	case !d.hasData:
		return errors.New("start primary: no database cluster in the data directory")
	case d.running:
		return nil
	case d.standby:
		return errors.New("start primary: the data directory holds standby.signal: start it as a replica and promote it")
	}
	return d.start(e.w.now, e.w.cfg)
}

// StartReplica starts the server as a replica of up (nil: no upstream);
// on a running replica it only repoints it.
func (e *engine) StartReplica(_ context.Context, up *db.Upstream) error {
	d := e.d()
	switch {
	case !d.hasData:
		return errors.New("start replica: no database cluster in the data directory")
	case d.running && !d.standby:
		return errors.New("start replica: server is running as a primary, not as a replica")
	case d.running:
		if up != nil {
			d.upstream = up.Name
		}
		return nil
	}
	d.standby, d.upstream = true, ""
	if up != nil {
		d.upstream = up.Name
	}
	return d.start(e.w.now, e.w.cfg)
}

// Stop stops the server; a fast stop of a writable primary writes a
// shutdown checkpoint that reaches its streaming replicas first.
func (e *engine) Stop(_ context.Context, mode db.StopMode) error {
	if (mode == db.StopFast || mode == db.StopFence) && e.n.writable() {
		e.w.shutdownCheckpoint(e.n)
	}
	e.d().stop(mode == db.StopImmediate || e.d().suspended)
	return nil
}

// Promote turns the running replica into a primary on a new timeline.
func (e *engine) Promote(context.Context) error {
	d, n, w := e.d(), e.n, e.w
	if !d.running || !d.accepting {
		return db.ErrNotRunning
	}
	if !d.standby {
		n.promotedLSN = d.lsn
		return nil
	}
	if err := w.callFault(n, CallPromote); err != nil {
		return err
	}
	w.checkHoldsKey(n, "promoted")
	w.checkPromotionSteps(n)
	w.checkPromised(n)
	d.forks = copyForks(d.forks)
	d.forks[d.timeline] = d.lsn
	d.timeline++
	d.standby, d.upstream, d.streaming, d.ack = false, "", false, false
	n.promotedLSN = d.lsn
	s := w.store.Snapshot()
	epoch := cluster.Epoch(0)
	if s.Leader != nil {
		epoch = s.Leader.Epoch
	}
	w.Promotions = append(w.Promotions, fmt.Sprintf("%s@%d", n.spec.Name, epoch))
	w.logf("%s: PROMOTED at %s on timeline %d (key %s)", n.spec.Name, d.lsn, d.timeline, w.leaderString())
	if r := s.Request; r != nil && r.Handoff != nil && r.Handoff.Target == n.spec.Name {
		w.checkSwitchover(n, *r, epoch)
	}
	return nil
}

// Follow repoints the running replica at up.
func (e *engine) Follow(_ context.Context, up db.Upstream) error {
	d := e.d()
	if !d.running || !d.standby {
		return fmt.Errorf("follow %s: %w", up.Name, db.ErrNotRunning)
	}
	d.upstream = up.Name
	return nil
}

// Suspend stops every process of the database: it acknowledges nothing
// and its WAL senders fall silent until Resume.
func (e *engine) Suspend(context.Context) error {
	if e.d().running {
		e.d().suspended = true
	}
	return nil
}

// Resume continues a suspended database.
func (e *engine) Resume(context.Context) error {
	e.d().suspended = false
	return nil
}

// Exited never receives.
func (e *engine) Exited() <-chan time.Time { return e.exited }

// Close does nothing.
func (e *engine) Close() {}

// ReplicationStatus reports the standbys streaming from this primary.
func (e *engine) ReplicationStatus(context.Context) (db.ReplicationStatus, error) {
	d := e.d()
	if !d.running || !d.accepting || d.standby {
		return db.ReplicationStatus{}, errors.New("replication status: not a running primary")
	}
	rs := db.ReplicationStatus{Current: cluster.PGPosition(0, d.lsn), SyncNames: slices.Clone(d.syncNames), SyncAny: d.syncAny}
	for _, r := range e.w.nodes {
		if r == e.n || !r.alive || !r.db.streaming || r.db.upstream != e.n.spec.Name {
			continue
		}
		sync := "async"
		if slices.Contains(d.syncNames, r.spec.Name) {
			sync = "sync"
		}
		rs.Standbys = append(rs.Standbys, db.Standby{Name: r.spec.Name, State: "streaming", SyncState: sync,
			Flushed: cluster.PGPosition(0, r.db.lsn), Replayed: cluster.PGPosition(0, r.db.lsn)})
	}
	return rs, nil
}

// SetSynchronousStandbys records the synchronous standby setting.
func (e *engine) SetSynchronousStandbys(_ context.Context, names []string, anyStandby bool) error {
	d := e.d()
	if !d.running {
		return db.ErrNotRunning
	}
	if err := e.w.callFault(e.n, CallSetSync); err != nil {
		return err
	}
	if e.w.cfg.SemiSync && len(names) > 0 {
		return errors.New("semi-synchronous replication cannot name standbys")
	}
	d.syncNames, d.syncAny = slices.Clone(names), anyStandby && len(names) == 0
	return nil
}

// SetAcknowledging turns the replica side on or off (a SemiSync world).
func (e *engine) SetAcknowledging(_ context.Context, state cluster.AckState) error {
	d := e.d()
	if !e.w.cfg.SemiSync {
		return errors.New("set acknowledging: not a semi-synchronous engine")
	}
	if !d.running || !d.accepting {
		return db.ErrNotRunning
	}
	d.ack = state == cluster.AckOn
	return nil
}

// SlotName is the member's name.
func (e *engine) SlotName(member string) string { return member }

// Slots lists the replication slots; a slot is active while its member
// streams from this database.
func (e *engine) Slots(context.Context) ([]db.Slot, error) {
	d := e.d()
	if !d.running || !d.accepting {
		return nil, db.ErrNotRunning
	}
	var out []db.Slot
	for name := range d.slots {
		active := false
		for _, r := range e.w.nodes {
			if r.spec.Name == name && r.alive && r.db.streaming && r.db.upstream == e.n.spec.Name {
				active = true
			}
		}
		out = append(out, db.Slot{Name: name, Active: active, WALStatus: "reserved"})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// CreateSlots creates the missing slots.
func (e *engine) CreateSlots(_ context.Context, members []string) error {
	d := e.d()
	if !d.running || !d.accepting || d.standby {
		return errors.New("create slots: not a running primary")
	}
	if d.slots == nil {
		d.slots = map[string]bool{}
	}
	for _, m := range members {
		d.slots[m] = true
	}
	return nil
}

// DropSlots drops the slots of members.
func (e *engine) DropSlots(_ context.Context, members []string) error {
	for _, m := range members {
		delete(e.d().slots, m)
	}
	return nil
}

// Rewind runs the simulated pg_rewind against up.
func (e *engine) Rewind(_ context.Context, up db.Upstream) (db.RewindResult, error) {
	return e.w.doRewind(e.n, e.w.node(up.Name))
}

// RemoveData deletes the stopped server's data.
func (e *engine) RemoveData(context.Context) error {
	d := e.d()
	if d.running {
		return fmt.Errorf("remove data: %w", errServerRunning)
	}
	*d = simDB{lag: d.lag, failStarts: d.failStarts}
	e.n.removed = true
	e.w.logf("%s: removed the data directory contents", e.n.spec.Name)
	return nil
}
