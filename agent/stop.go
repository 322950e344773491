package agent

import (
	"context"
	"errors"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
)

// stopTimeout bounds the whole clean stop: a handover is one switchover.
func stopTimeout(cfg cluster.DynamicConfig) time.Duration {
	return 2*time.Duration(cfg.TTL) + 10*time.Second
}

// stop is the agent's clean stop (Options.OnStop). While the cluster is
// paused, or with OnStopLeaveRunning, the database is left as it is. A
// leader with OnStopHandover asks for a switchover to the best replica and
// runs rounds until it has handed over (its database stopped, the key
// released) or the switchover was refused; then, in every mode, whatever
// still runs stops (fast) and a key still held is released, so that a
// replica with everything this primary wrote takes over.
func (a *Agent) stop(ctx context.Context) {
	defer a.withdraw(context.WithoutCancel(ctx))
	cfg := a.config()
	if a.opts.OnStop == OnStopLeaveRunning || cfg.Paused {
		a.log.Info("agent stopping; PostgreSQL is left as it is (on_stop leave-running, or the cluster is paused)")
		return
	}
	ctx, cancel := context.WithTimeout(ctx, stopTimeout(cfg))
	defer cancel()
	if a.opts.OnStop == OnStopHandover && a.leads() {
		a.handOver(ctx)
	}
	a.notifyObservers(ctx, PhaseStopping)
	a.log.Info("agent stopping: stopping PostgreSQL")
	sctx, scancel := context.WithTimeout(ctx, 30*time.Second)
	err := a.opts.DB.Stop(sctx, db.StopFast)
	scancel()
	if err != nil {
		a.log.Error("could not stop PostgreSQL; stopping it immediately", "err", err)
		sctx, scancel = context.WithTimeout(ctx, 10*time.Second)
		err = a.opts.DB.Stop(sctx, db.StopImmediate)
		scancel()
	}
	if err != nil {
		a.log.Error("could not stop PostgreSQL; keeping the leader key", "err", err)
		return
	}
	a.mu.Lock()
	l, held := a.snap.Leader, a.holdsLeader
	a.mu.Unlock()
	if held != 0 && l != nil && l.Epoch == held {
		rctx, rcancel := context.WithTimeout(ctx, time.Duration(cfg.RetryTimeout)/2)
		if err := a.opts.Store.ReleaseLeader(rctx, *l); err != nil {
			a.log.Error("could not release the leader key; it expires with the lease", "epoch", l.Epoch, "err", err)
		} else {
			a.log.Info("released leader key", "epoch", l.Epoch, "reason", "agent stopping")
		}
		rcancel()
	}
	a.emit("agent stopped; PostgreSQL stopped")
}

// leads reports whether this agent holds the leader key.
func (a *Agent) leads() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.holdsLeader != 0
}

// handOver asks for a switchover away from this leader and runs rounds
// until it is done (the key released) or the request is gone (refused).
func (a *Agent) handOver(ctx context.Context) {
	r := cluster.Request{Kind: cluster.KindSwitchover, From: a.opts.Name, RequestedAt: a.clk.Now().UTC(),
		RequestedBy: "agent " + a.opts.Name + " stopping (on_stop handover)"}
	rctx, cancel := context.WithTimeout(ctx, time.Duration(a.config().RetryTimeout)/2)
	err := a.opts.Store.CreateRequest(rctx, r)
	cancel()
	if err != nil && !errors.Is(err, dcs.ErrRequestPending) {
		a.log.Error("agent stopping: cannot ask for a switchover; stopping without one", "err", err)
		return
	}
	a.log.Info("agent stopping: handing over to the best replica first")
	for ctx.Err() == nil {
		wait := a.Round(ctx)
		a.mu.Lock()
		done, pending := a.holdsLeader == 0, a.snap.Request != nil
		a.mu.Unlock()
		if done {
			a.log.Info("agent stopping: handed over")
			return
		}
		if !pending {
			a.log.Warn("agent stopping: the switchover was refused (see the plan above); stopping without one")
			return
		}
		sleep(ctx, min(wait, 200*time.Millisecond))
	}
}
