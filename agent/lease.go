package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/ha"
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
		a.track.LeaseLost(now)
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

// resumeGap is how far past its fence deadline the fence timer must find
// itself for the agent to count as having been frozen (SIGSTOP, a paused
// VM) rather than cut off while running: its timer fires at the deadline
// (or polls every fenceTick after a failed stop).
const resumeGap = time.Second

// Fence is rule 2 of package ha, enforced on its own timer so that a loop
// round blocked on a slow store or database cannot delay it: a leader
// whose renewals have failed until its fence deadline stops its database,
// whatever the database is doing (even crash recovery, when it is not yet
// known to be a primary). Fences are serialized; Round calls Fence first
// too, so no decision is taken on a view the fence is about to change.
//
// A leader that was running when its deadline came (cut off from the store)
// stops with db.StopFence, within what is left of its lease: writes stop at
// once, and the WAL already written still reaches the replicas when the
// shutdown has time to finish. A leader that finds itself long past its
// deadline was frozen; see fenceAfterResume.
func (a *Agent) Fence(ctx context.Context) {
	a.fenceMu.Lock()
	defer a.fenceMu.Unlock()
	now := a.clk.Now()
	a.mu.Lock()
	// What the deadline counts from: the last renewal's send time, or a
	// later failsafe round's that every member confirmed (failsafe.go).
	sent := a.fenceFromLocked()
	deadline := detector.FenceDeadline(sent, a.cfg)
	due := a.holdsLeader != 0 && !a.lastRenewSent.IsZero() && !now.Before(deadline)
	epoch, cfg := a.holdsLeader, a.cfg
	a.mu.Unlock()
	if !due {
		return
	}
	if now.Sub(deadline) > resumeGap {
		a.fenceAfterResume(ctx, epoch, cfg)
		return
	}
	a.log.Error("self-fencing: lease not renewed (nor failsafe confirmed) in time; stopping the database before the lease (or the members' failsafe promises) can expire",
		"epoch", epoch, "lease_expires_at_the_earliest", sent.Add(time.Duration(cfg.TTL)).Format(time.RFC3339Nano))
	// The lease cannot expire, nor a failsafe promise end, before
	// sent + ttl on this clock; the fence stop kills whatever is left
	// shortly before that.
	margin := min(500*time.Millisecond, (time.Duration(cfg.TTL)-time.Duration(cfg.LoopWait)-time.Duration(cfg.RetryTimeout))/2)
	sctx, cancel := context.WithDeadline(ctx, sent.Add(time.Duration(cfg.TTL)-margin))
	err := a.opts.DB.Stop(sctx, db.StopFence)
	cancel()
	if err != nil {
		a.log.Error("self-fencing stop failed", "err", err)
		return
	}
	a.fenced(ctx, epoch, "self-fenced: stopped database")
}

// fenced records that the database was stopped for epoch.
func (a *Agent) fenced(ctx context.Context, epoch cluster.Epoch, what string) {
	a.emit(what)
	a.opts.Metrics.SelfFence()
	a.mu.Lock()
	if a.holdsLeader == epoch {
		a.holdsLeader = 0
	}
	a.mu.Unlock()
	a.notifyObservers(ctx, PhaseFenced)
	a.poke()
}

// fenceAfterResume handles a leader that resumes long past its fence
// deadline: the agent was frozen (SIGSTOP, a paused VM) or starved, and
// its database may have been taking writes all along (only the agent was
// frozen) or just resumed with it. Someone may have been promoted
// meanwhile — or nobody (the replicas saw the old primary's WAL still
// flowing and refused to promote without proof). It suspends every
// process of the database at once (nothing is acknowledged from then on),
// asks the store, and then resumes the database if the key is still its
// own (the lease survived) or can be taken back under a new epoch because
// nobody led after it (last_leader unchanged); otherwise, or if the store
// does not answer in time, it kills the database.
func (a *Agent) fenceAfterResume(ctx context.Context, epoch cluster.Epoch, cfg cluster.DynamicConfig) {
	a.log.Warn("resumed past the fence deadline: suspending the database while asking the store whether the leader key is still ours", "epoch", epoch)
	if err := a.opts.DB.Suspend(ctx); err != nil {
		a.log.Error("cannot suspend the database; stopping it", "err", err)
	}
	ok, why := a.reclaim(ctx, epoch, cfg)
	if ok {
		if err := a.opts.DB.Resume(ctx); err != nil {
			a.log.Error("cannot resume the suspended database", "err", err)
		}
		a.log.Info("kept the primary after resuming", "why", why)
		a.emit("resumed: kept the primary (" + why + ")")
		a.poke()
		return
	}
	a.log.Error("fencing after resume: stopping the database", "why", why, "epoch", epoch)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := a.opts.DB.Stop(sctx, db.StopImmediate)
	cancel()
	if err != nil {
		a.log.Error("fencing stop failed", "err", err)
		return
	}
	a.fenced(ctx, epoch, "fenced after resume: stopped database ("+why+")")
}

// reclaim asks the store, within a short deadline, whether this agent
// still leads at epoch, or may lead again because nobody led after it;
// it takes the key back in the second case. It says why not otherwise.
func (a *Agent) reclaim(ctx context.Context, epoch cluster.Epoch, cfg cluster.DynamicConfig) (bool, string) {
	cctx, cancel := context.WithTimeout(ctx, min(time.Duration(cfg.RetryTimeout)/2, 2*time.Second))
	defer cancel()
	store := a.opts.Store
	sent := a.clk.Now()
	err := store.KeepAlive(cctx)
	if err != nil && !errors.Is(err, dcs.ErrLeaseLost) {
		return false, "the store does not answer: " + err.Error()
	}
	snap, lerr := store.Load(cctx)
	if lerr != nil {
		return false, "the store does not answer: " + lerr.Error()
	}
	a.mu.Lock()
	lease := a.leaseID
	a.mu.Unlock()
	if err == nil {
		if l := snap.Leader; l != nil && l.Epoch == epoch && l.Lease == lease {
			a.mu.Lock()
			a.lastRenewSent, a.nextRenew = sent, sent.Add(time.Duration(cfg.LoopWait))
			a.mu.Unlock()
			return true, "the lease was still alive"
		}
		return false, "the leader key is not ours any more"
	}
	switch ll := snap.LastLeader; {
	case snap.Leader != nil:
		return false, fmt.Sprintf("%s leads at epoch %d", snap.Leader.Name, snap.Leader.Epoch)
	case ll == nil || ll.Name != a.opts.Name || ll.Epoch != epoch:
		return false, "another member led after this one"
	}
	release, gerr := a.failsafeGate()
	if gerr != nil {
		return false, gerr.Error()
	}
	defer release()
	if err := store.Grant(cctx, time.Duration(cfg.TTL)); err != nil {
		return false, "cannot grant a new lease: " + err.Error()
	}
	// An unfinished promotion of the lost key goes on under the new one.
	var carried *cluster.Promotion
	a.mu.Lock()
	if old := a.snap.Leader; old != nil && old.Epoch == epoch {
		carried = ha.CarryPromotion(*old)
	}
	who := cluster.LastLeader{Name: a.opts.Name, ConnHost: a.opts.ConnHost, ConnPort: a.opts.ConnPort,
		FailoverAt: ha.FailoverAt(snap.LastLeader, nil, a.clk.Now())}
	a.mu.Unlock()
	l, ok, err := store.AcquireLeader(cctx, who, epoch, carried)
	if err != nil || !ok {
		return false, fmt.Sprintf("could not take the leader key back (%v, held by %s)", err, l.Name)
	}
	a.mu.Lock()
	a.leaseID, a.lastRenewSent, a.nextRenew, a.holdsLeader = store.LeaseID(), sent, sent.Add(time.Duration(cfg.LoopWait)), l.Epoch
	a.pokeFence()
	a.mu.Unlock()
	a.log.Info("acquired leader key", "epoch", l.Epoch, "reason", "resumed; nobody took over")
	return true, fmt.Sprintf("nobody took over; took the leader key back at epoch %d", l.Epoch)
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
