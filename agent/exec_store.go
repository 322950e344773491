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

// The executors of the actions on the store (and the bootstrap, which
// claims the cluster in the store before it creates the database).

// Initialize claims the cluster's bootstrap and creates the first
// database, or registers an existing one with a store that forgot the
// cluster.
func (x executor) Initialize(ctx context.Context, s ha.Step, _ ha.Initialize) error {
	a, v := x.a, s.View
	sctx, cancel := x.storeCtx(ctx, s)
	who, err := a.opts.Store.Initialize(sctx, a.opts.Name, a.opts.Config)
	cancel()
	if err != nil {
		return fmt.Errorf("claim cluster bootstrap: %w", err)
	}
	if who != a.opts.Name {
		return fmt.Errorf("cluster bootstrap claimed by %s", who)
	}
	if v.DB.HasData && v.Snap.Initialized != a.opts.Name {
		// An existing database claims a cluster the store forgot:
		// register it as it is.
		return nil
	}
	// A new database, or the retry of a bootstrap whose first start
	// failed: Initialize keeps an existing data directory, starts it
	// and creates the replication role.
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	a.emit("initializing a new database")
	return a.opts.DB.Initialize(dctx)
}

// ReleaseLeader deletes the leader key of act.Leader's epoch.
func (x executor) ReleaseLeader(ctx context.Context, s ha.Step, act ha.ReleaseLeader) error {
	a := x.a
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	if err := a.opts.Store.ReleaseLeader(sctx, act.Leader); err != nil {
		return fmt.Errorf("release leader key of epoch %d: %w", act.Leader.Epoch, err)
	}
	a.mu.Lock()
	a.holdsLeader = 0
	a.mu.Unlock()
	a.log.Info("released leader key", "epoch", act.Leader.Epoch, "reason", s.Plan.Reason)
	a.emit(fmt.Sprintf("released leader key (epoch %d)", act.Leader.Epoch))
	return nil
}

// ClearRequest deletes the pending operator request.
func (x executor) ClearRequest(ctx context.Context, s ha.Step, _ ha.ClearRequest) error {
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	if err := x.a.opts.Store.ClearRequest(sctx); err != nil {
		return fmt.Errorf("clear request: %w", err)
	}
	x.a.log.Info("operator request closed", "reason", s.Plan.Reason)
	return nil
}

// SetSyncRecord writes the record of synchronous standbys for the
// leader's epoch.
// The leader is the key this agent holds: within a promotion's first
// round the view still shows the key it took over.
func (x executor) SetSyncRecord(ctx context.Context, s ha.Step, act ha.SetSyncRecord) error {
	l, err := x.a.heldLeader()
	if err != nil {
		return fmt.Errorf("set sync record: %w", err)
	}
	rec := act.Record(s.View.Snap.Sync, l.Epoch)
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	if err := x.a.opts.Store.SetSync(sctx, l, rec); err != nil {
		return fmt.Errorf("record synchronous standbys %v: %w", act.Names, err)
	}
	x.a.log.Info("synchronous standby record written", "names", act.Names, "acking", act.Acking, "async", act.Async, "epoch", l.Epoch, "gen", rec.Gen)
	return nil
}

// MarkCannotFollow does nothing here: ha.Tracker.ActionDone records it.
func (executor) MarkCannotFollow(context.Context, ha.Step, ha.MarkCannotFollow) error { return nil }

// Handoff records, in the pending switchover request, the position at
// which this stopped primary ended, for act.Target to catch up to.
func (x executor) Handoff(ctx context.Context, s ha.Step, act ha.Handoff) error {
	a, v, target := x.a, s.View, act.Target
	if v.Snap.Request == nil || v.Snap.Leader == nil {
		return errors.New("handoff: no pending request or leader")
	}
	final, err := finalPosition(a.probe(ctx), v.Engine.Switchover)
	if err != nil {
		return err
	}
	r := *v.Snap.Request
	r.Handoff = &cluster.Handoff{Target: target, Final: final, Epoch: v.Snap.Leader.Epoch, StoppedAt: a.clk.Now().UTC()}
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	if err := a.opts.Store.UpdateRequest(sctx, r); err != nil {
		return fmt.Errorf("handoff to %s: %w", target, err)
	}
	a.log.Info("switchover: stopped writes, handing over", "target", target, "final_position", final.String())
	a.emit("switchover: stopped at " + final.String() + ", handing over to " + target)
	return nil
}

// finalPosition is a switchover's final position, read from the database
// that stopped taking writes by method m: the stopped server's shutdown
// checkpoint, or the demoted server's position.
func finalPosition(st db.Status, m db.SwitchoverMethod) (cluster.Position, error) {
	if m == db.SwitchoverDemote {
		if !st.Accepting || st.Role != cluster.RoleReplica || st.Position.IsZero() {
			return cluster.Position{}, fmt.Errorf("handoff: cannot read the position of the demoted database (accepting=%t, role=%s)", st.Accepting, st.Role)
		}
		return st.Position, nil
	}
	if st.Running || st.Checkpoint.IsZero() {
		return cluster.Position{}, fmt.Errorf("handoff: cannot read the shutdown checkpoint of the stopped database (running=%t)", st.Running)
	}
	return st.Checkpoint, nil
}

// RecordRefusal writes the history entry of an automatic failover that
// failover_backoff refused.
func (x executor) RecordRefusal(ctx context.Context, s ha.Step, act ha.RecordRefusal) error {
	a := x.a
	// Entries are keyed by epoch: this one takes the revision the
	// refusal was decided at, which is after the lost epoch and before any
	// next leader's (see cluster.HistoryFailoverRefused).
	rev := cluster.Epoch(s.View.Snap.Revision)
	if rev <= act.Epoch {
		return fmt.Errorf("record the refused failover of epoch %d: the snapshot's revision %d is not after it", act.Epoch, rev)
	}
	e := cluster.HistoryEntry{Epoch: rev, Kind: cluster.HistoryFailoverRefused, OldPrimary: act.OldPrimary,
		Reason: act.Reason, DetectedAt: s.View.LeaderLostAt, OldPosition: s.View.LastLeaderPosition}
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	if err := a.opts.Store.AppendHistory(sctx, e); err != nil {
		a.opts.Metrics.StoreError(opAppendHistory)
		return fmt.Errorf("record the refused failover of epoch %d in the history: %w", act.Epoch, err)
	}
	a.log.Warn("automatic failover refused: an operator must choose the primary", "lost_epoch", act.Epoch,
		"old_primary", act.OldPrimary, "reason", act.Reason)
	a.emit("failover refused (failover_backoff): " + act.Reason)
	return nil
}
