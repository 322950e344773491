package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/ha"
)

// The executors of the actions on the local database.

// Clone copies the upstream's database into the empty data directory.
func (x executor) Clone(ctx context.Context, _ ha.Step, act ha.Clone) error {
	a := x.a
	dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	a.emit("cloning from " + act.Upstream.Name)
	return a.opts.DB.Clone(dctx, act.Upstream)
}

// StartPrimary starts the database as a primary; a start still under way
// counts as done.
func (x executor) StartPrimary(ctx context.Context, s ha.Step, _ ha.StartPrimary) error {
	a := x.a
	dctx, cancel := context.WithTimeout(ctx, startWait(s.View.Config))
	defer cancel()
	err := a.startedOrStarting(a.opts.DB.StartPrimary(dctx))
	if err == nil {
		a.emit("restarted primary database")
	}
	return err
}

// StartReplica starts the database read-only, following act.Upstream if
// set; a start still under way counts as done.
func (x executor) StartReplica(ctx context.Context, s ha.Step, act ha.StartReplica) error {
	a := x.a
	dctx, cancel := context.WithTimeout(ctx, startWait(s.View.Config))
	defer cancel()
	err := a.startedOrStarting(a.opts.DB.StartReplica(dctx, act.Upstream))
	if err == nil && act.Upstream != nil {
		a.emit("started as replica of " + act.Upstream.Name)
	}
	return err
}

// Stop stops the database with act.Mode.
func (x executor) Stop(ctx context.Context, s ha.Step, act ha.Stop) error {
	a := x.a
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := a.opts.DB.Stop(dctx, act.Mode); err != nil {
		return err
	}
	a.emit("stopped database: " + s.Plan.Reason)
	return nil
}

// Demote demotes the primary in place (db.Demoter) for a switchover.
func (x executor) Demote(ctx context.Context, s ha.Step, _ ha.Demote) error {
	a := x.a
	d, ok := a.opts.DB.(db.Demoter)
	if !ok {
		return errors.New("demote: the database engine cannot demote in place")
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.Demote(dctx); err != nil {
		return err
	}
	a.emit("demoted database in place: " + s.Plan.Reason)
	return nil
}

// Promote promotes the replica and notes when (for the history entry).
func (x executor) Promote(ctx context.Context, s ha.Step, _ ha.Promote) error {
	a := x.a
	if err := a.prePromote(ctx, s.View); err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if err := a.opts.DB.Promote(dctx); err != nil {
		return err
	}
	a.mu.Lock()
	a.promotedAt = a.clk.Now()
	a.mu.Unlock()
	a.emit("promoted")
	return nil
}

// Follow repoints the running replica at act.Upstream.
func (x executor) Follow(ctx context.Context, s ha.Step, act ha.Follow) error {
	a := x.a
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	before := s.View.DB.Streaming
	if err := a.opts.DB.Follow(dctx, act.Upstream); err != nil {
		return err
	}
	if !before {
		a.emit("repointed to " + act.Upstream.Name)
	}
	return nil
}

// replication is the engine's replication management, or an error saying
// the engine cannot do what.
func (x executor) replication(what string) (db.Replication, error) {
	r, ok := x.a.opts.DB.(db.Replication)
	if !ok {
		return nil, errors.New("this database engine cannot " + what)
	}
	return r, nil
}

// SetSyncStandbys sets the server's synchronous standbys.
func (x executor) SetSyncStandbys(ctx context.Context, _ ha.Step, act ha.SetSyncStandbys) error {
	r, ok := x.a.opts.DB.(db.SyncReplication)
	if !ok {
		return errors.New("this database engine cannot manage synchronous replication")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	anyStandby := act.Choice == ha.SyncAny
	if err := r.SetSynchronousStandbys(dctx, act.Names, anyStandby); err != nil {
		return err
	}
	x.a.log.Info("synchronous standbys set", "names", act.Names, "any", anyStandby)
	return nil
}

// Detach keeps the local server running read-only with no replication.
func (x executor) Detach(ctx context.Context, _ ha.Step, _ ha.Detach) error {
	r, ok := x.a.opts.DB.(db.Detacher)
	if !ok {
		return errors.New("this database engine cannot detach a server from replication")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.Detach(dctx); err != nil {
		return fmt.Errorf("detach: %w", err)
	}
	x.a.log.Info("detached: running read-only with no replication")
	return nil
}

// SetAcknowledging turns the local replica's acknowledging on or off.
func (x executor) SetAcknowledging(ctx context.Context, _ ha.Step, act ha.SetAcknowledging) error {
	r, ok := x.a.opts.DB.(db.Acknowledger)
	if !ok {
		return errors.New("this database engine has no acknowledging replica side")
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := r.SetAcknowledging(dctx, act.State); err != nil {
		return fmt.Errorf("set acknowledging %s: %w", act.State, err)
	}
	x.a.log.Info("acknowledging set", "state", string(act.State))
	return nil
}

// CreateSlots creates the members' replication slots.
func (x executor) CreateSlots(ctx context.Context, _ ha.Step, act ha.CreateSlots) error {
	r, err := x.replication("manage replication slots")
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.CreateSlots(dctx, act.Names)
}

// DropSlots drops the members' replication slots.
func (x executor) DropSlots(ctx context.Context, _ ha.Step, act ha.DropSlots) error {
	r, err := x.replication("manage replication slots")
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return r.DropSlots(dctx, act.Names)
}

// Rewind resynchronizes the stopped database with act.Upstream, and
// records in the history what it discarded. Its outcome is recorded by
// ha.Tracker.ActionDone.
func (x executor) Rewind(ctx context.Context, s ha.Step, act ha.Rewind) error {
	a := x.a
	r, err := x.replication("rewind or re-clone")
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	a.emit("rejoining " + act.Upstream.Name + " (pg_rewind if its history diverged)")
	res, err := r.Rewind(dctx, act.Upstream)
	if err == nil && res.Required && !res.DivergedAt.IsZero() && res.WALEnd.Cmp(res.DivergedAt) > 0 {
		a.recordDiscard(ctx, s.View, res)
	}
	return err
}

// Reclone deletes the stopped database and clones act.Upstream.
func (x executor) Reclone(ctx context.Context, _ ha.Step, act ha.Reclone) error {
	a := x.a
	r, err := x.replication("rewind or re-clone")
	if err != nil {
		return err
	}
	dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	if err := r.RemoveData(dctx); err != nil {
		return err
	}
	a.emit("re-cloning from " + act.Upstream.Name)
	return a.opts.DB.Clone(dctx, act.Upstream)
}

// startWait bounds how long a round waits for a database to start: a
// crash recovery may take much longer, and the loop goes on meanwhile
// (publishing, deciding; the start timeout is counted by
// detector.Local).
func startWait(cfg cluster.DynamicConfig) time.Duration {
	return max(2*time.Duration(cfg.LoopWait), 3*time.Second)
}

// startedOrStarting turns a start that is still under way into success.
func (a *Agent) startedOrStarting(err error) error {
	if errors.Is(err, db.ErrStillStarting) {
		a.log.Info("database still starting; the loop goes on", "err", err)
		return nil
	}
	return err
}

// recordDiscard writes what this member's rewind discarded into the
// history entry of the failover away from it, replacing a lower bound.
func (a *Agent) recordDiscard(ctx context.Context, v ha.View, res db.RewindResult) {
	sctx, cancel := context.WithTimeout(ctx, time.Duration(v.Config.RetryTimeout)/2)
	defer cancel()
	hist, err := a.opts.Store.History(sctx)
	if err != nil {
		a.log.Warn("cannot read the history to record what the rewind discarded", "err", err)
		return
	}
	for i := len(hist) - 1; i >= 0; i-- {
		e := hist[i]
		if e.OldPrimary != a.opts.Name {
			continue
		}
		if e.DataLoss != nil && e.DataLoss.How != cluster.DataLossLowerBound {
			return
		}
		bytes, _ := res.DivergedAt.LagTo(res.WALEnd)
		e.DataLoss = &cluster.DataLoss{Bytes: bytes, How: cluster.DataLossRewind,
			Detail: fmt.Sprintf("%s's %s discarded its WAL from %s (where it diverged) to %s", a.opts.Name, a.opts.Engine.Names.Resync, res.DivergedAt, res.WALEnd)}
		e.DataLossBytes = bytes
		if err := a.opts.Store.AppendHistory(sctx, e); err != nil {
			a.log.Warn("cannot record what the rewind discarded", "epoch", e.Epoch, "err", err)
			return
		}
		a.log.Warn("the rewind discarded WAL that the new primary never had", "bytes", bytes, "epoch", e.Epoch,
			"diverged_at", res.DivergedAt, "wal_end", res.WALEnd)
		return
	}
}
