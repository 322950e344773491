package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/detector"
)

// renewRetry is how soon a failed renewal is retried.
const renewRetry = 500 * time.Millisecond

// Renew renews the session lease once if a renewal is due (every
// loop_wait; renewRetry after a failure) and returns how long until the
// next one is due. It records when each successful request was *sent*:
// the store cannot expire the lease earlier than that plus the TTL, which
// is what the fence deadline is computed from. A lost lease is forgotten
// (the next round grants a new one) and the loop is woken.
func (a *Agent) Renew(ctx context.Context) time.Duration {
	now := a.clk.Now()
	a.mu.Lock()
	id, cfg, due := a.leaseID, a.cfg, a.nextRenew
	a.mu.Unlock()
	if id == 0 {
		return renewTick
	}
	if now.Before(due) {
		return due.Sub(now)
	}
	rctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.RetryTimeout)/2)
	err := a.opts.Store.KeepAlive(rctx)
	cancel()
	next := time.Duration(cfg.LoopWait)
	a.mu.Lock()
	switch {
	case err == nil:
		if a.leaseID == id {
			a.lastRenewSent = now
		}
	case errors.Is(err, dcs.ErrLeaseLost):
		if a.leaseID == id {
			a.leaseID = 0
		}
		a.opts.Metrics.StoreError(opLeaseLost)
		a.log.Warn("lease lost", "lease", fmt.Sprintf("%x", id))
	default:
		a.log.Warn("lease renewal failed", "err", err)
		a.opts.Metrics.StoreError(opKeepAlive)
		next = renewRetry
	}
	a.nextRenew = now.Add(next)
	a.mu.Unlock()
	if err != nil {
		a.poke()
	}
	return next
}

// Fence is rule 2 of package ha, enforced on its own timer so that a loop
// round blocked on a slow store or database cannot delay it: a leader
// whose renewals have failed until its fence deadline stops its database
// at once, whatever the database is doing (even crash recovery, when it is
// not yet known to be a primary).
func (a *Agent) Fence(ctx context.Context) {
	now := a.clk.Now()
	a.mu.Lock()
	due := a.holdsLeader != 0 && !a.lastRenewSent.IsZero() &&
		!now.Before(detector.FenceDeadline(a.lastRenewSent, a.cfg))
	epoch := a.holdsLeader
	a.mu.Unlock()
	if !due {
		return
	}
	a.log.Error("self-fencing: lease not renewed in time; stopping the database before the lease can expire",
		"epoch", epoch)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.opts.DB.Stop(sctx, db.StopImmediate)
	cancel()
	if err != nil {
		a.log.Error("self-fencing stop failed", "err", err)
		return
	}
	a.emit("self-fenced: stopped database")
	a.opts.Metrics.SelfFence()
	a.mu.Lock()
	a.holdsLeader = 0
	a.mu.Unlock()
	a.poke()
}

// ensureLease grants a session lease when the agent has none.
func (a *Agent) ensureLease(ctx context.Context, timeout time.Duration) error {
	a.mu.Lock()
	id, ttl, lw := a.leaseID, a.cfg.TTL, a.cfg.LoopWait
	a.mu.Unlock()
	if id != 0 {
		return nil
	}
	sent := a.clk.Now()
	gctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := a.opts.Store.Grant(gctx, time.Duration(ttl)); err != nil {
		a.opts.Metrics.StoreError(opGrant)
		return fmt.Errorf("grant lease of %s: %w", time.Duration(ttl), err)
	}
	a.mu.Lock()
	a.leaseID, a.lastRenewSent, a.nextRenew = a.opts.Store.LeaseID(), sent, sent.Add(time.Duration(lw))
	a.mu.Unlock()
	return nil
}
