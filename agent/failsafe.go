package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/ha"
)

// Failsafe mode (failsafe_mode; docs/design.md, "Failsafe mode").
//
// A leader that cannot renew its lease normally stops its primary at
// last_send + loop_wait + retry_timeout (Fence). With failsafe_mode on,
// Failsafe asks every other member named in the leader's failsafe record
// (the one the store holds for this epoch, as last read or written) to
// confirm it, and when every one confirms, the send time of that round
// counts like a renewal's: the fence deadline becomes
// send + loop_wait + retry_timeout, and the fence stop kills what is left
// shortly before send + ttl. A member that confirms promises, on its own
// clock, to take no leader key for a ttl from when it answered (later than
// the send), so while the primary runs on a round's permission no member
// the record names can be elected; a member it does not name is no
// candidate for that epoch (ha.failsafeElection). One refusal, one
// timeout, a record this agent is unsure of, and no round is confirmed:
// the fence goes on as without failsafe.

// FailsafePeers asks other members' agents to confirm a leader that
// cannot reach the store (package api implements it over HTTP: POST
// /failsafe). AskFailsafe returns the member's answer, or an error when it
// could not be had by ctx's deadline.
type FailsafePeers interface {
	AskFailsafe(ctx context.Context, m cluster.FailsafeMember, req cluster.FailsafeRequest) (cluster.FailsafeAnswer, error)
}

// failsafeIdle is how long Failsafe sleeps, with failsafe_mode on, when it
// has nothing to watch; failsafeDormant how long with failsafe_mode off
// (applyConfig wakes it when the mode is turned on).
const (
	failsafeIdle    = time.Second
	failsafeDormant = time.Minute
)

// fenceFromLocked is what the fence deadline counts from: the last
// successful renewal's send time, or the last fully confirmed failsafe
// round's for the epoch this agent leads, whichever is later. a.mu held.
func (a *Agent) fenceFromLocked() time.Time {
	if a.failsafeEpoch == a.holdsLeader && a.lastFailsafeSent.After(a.lastRenewSent) {
		return a.lastFailsafeSent
	}
	return a.lastRenewSent
}

// failsafeActiveLocked reports whether the primary runs on failsafe
// confirmations (a round confirmed after the last renewal). a.mu held.
func (a *Agent) failsafeActiveLocked() bool {
	return a.holdsLeader != 0 && a.failsafeEpoch == a.holdsLeader && a.lastFailsafeSent.After(a.lastRenewSent)
}

// Failsafe runs one failsafe round if one is due and returns how long
// until the next check. A round is due on a leader with failsafe_mode on
// and a failsafe record for its epoch once its lease renewal is late
// (loop_wait + retry_timeout/4 after what the fence counts from; a
// healthy renewal is done long before), and again a loop_wait after each
// confirmed round; a round that was not confirmed is retried after
// renewRetry, until the fence deadline. Run calls it on its own
// goroutine, so a renewal hung on an unreachable store does not delay it.
func (a *Agent) Failsafe(ctx context.Context) time.Duration {
	now := a.clk.Now()
	a.mu.Lock()
	cfg, epoch, rec, lease, next, gen := a.cfg, a.holdsLeader, a.failsafeRec, a.leaseID, a.nextFailsafe, a.failsafeGen
	from := a.fenceFromLocked()
	// The key must be held on the current lease as last seen: a lease
	// the store said is gone is no reason to keep writing.
	held := a.snap.Leader != nil && a.snap.Leader.Epoch == epoch && a.snap.Leader.Lease == lease && lease != 0
	a.mu.Unlock()
	if !cfg.FailsafeMode {
		return failsafeDormant
	}
	if epoch == 0 || !held || rec == nil || rec.Epoch != epoch || a.opts.Peers == nil || from.IsZero() {
		return failsafeIdle
	}
	deadline := detector.FenceDeadline(from, cfg)
	due := from.Add(time.Duration(cfg.LoopWait) + time.Duration(cfg.RetryTimeout)/4)
	switch {
	case !now.Before(deadline):
		return failsafeIdle // too late: Fence stops the database
	case now.Before(due):
		return min(due.Sub(now), failsafeIdle)
	case now.Before(next):
		return min(next.Sub(now), failsafeIdle)
	}
	sent := now
	why := a.askPeers(ctx, *rec, epoch, min(time.Duration(cfg.RetryTimeout)/2, deadline.Sub(now)))
	a.mu.Lock()
	defer a.mu.Unlock()
	if why == "" && a.failsafeGen != gen {
		why = "the failsafe record was rewritten meanwhile"
	}
	if why != "" || a.holdsLeader != epoch {
		a.nextFailsafe = a.clk.Now().Add(renewRetry)
		if why != "" {
			a.log.Warn("failsafe: not every member confirmed this primary; it stops at the fence deadline unless the lease is renewed or a later round is confirmed",
				"why", why, "fence_deadline", deadline.Format(time.RFC3339Nano))
		}
		return renewRetry
	}
	if !a.failsafeActiveLocked() {
		a.log.Warn("failsafe: the store is unreachable but every member confirmed this primary; it keeps writing", "epoch", epoch,
			"members", len(rec.Members))
		a.emit("failsafe: store unreachable, every member confirmed; keeping the primary")
	}
	a.lastFailsafeSent, a.failsafeEpoch = sent, epoch
	return time.Duration(cfg.LoopWait) + time.Duration(cfg.RetryTimeout)/4
}

// askPeers asks every member of rec but this one, at once, within timeout;
// it returns "" when each confirmed leader self at epoch, or what failed.
func (a *Agent) askPeers(ctx context.Context, rec cluster.FailsafeState, epoch cluster.Epoch, timeout time.Duration) string {
	a.mu.Lock()
	ttl := a.cfg.TTL
	a.mu.Unlock()
	req := cluster.FailsafeRequest{Cluster: a.opts.Cluster, Leader: a.opts.Name, Epoch: epoch, TTL: ttl}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	var fails []string
	for _, m := range rec.Members {
		if m.Name == a.opts.Name {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ans, err := a.opts.Peers.AskFailsafe(cctx, m, req)
			why := ""
			switch {
			case err != nil:
				why = err.Error()
			case !ans.Confirmed:
				why = "refused: " + ans.Reason
			case ans.Member != m.Name || ans.Leader != req.Leader || ans.Epoch != epoch:
				why = fmt.Sprintf("answered for %s about %s at epoch %d", ans.Member, ans.Leader, ans.Epoch)
			}
			if why != "" {
				mu.Lock()
				fails = append(fails, m.Name+": "+why)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return strings.Join(fails, "; ")
}

// ConfirmFailsafe answers a leader's failsafe request (POST /failsafe).
// It confirms only when failsafe_mode is on in this agent's config, this
// agent neither leads nor is taking the leader key, its database is not a
// primary, and the latest leader it knows (the leader key, or with none
// last_leader) is req's leader at req's epoch. A confirmation is a
// promise: this agent takes no leader key until a ttl (its own or req's,
// the longer) after it answered
// (failsafeGate), whatever it later reads from the store.
func (a *Agent) ConfirmFailsafe(req cluster.FailsafeRequest) cluster.FailsafeAnswer {
	a.mu.Lock()
	defer a.mu.Unlock()
	ans := cluster.FailsafeAnswer{Member: a.opts.Name, Leader: req.Leader, Epoch: req.Epoch}
	name, epoch := "", cluster.Epoch(0)
	if l := a.snap.Leader; l != nil {
		name, epoch = l.Name, l.Epoch
	} else if ll := a.snap.LastLeader; ll != nil {
		name, epoch = ll.Name, ll.Epoch
	}
	switch {
	case req.Cluster != a.opts.Cluster:
		ans.Reason = fmt.Sprintf("this member belongs to cluster %q", a.opts.Cluster)
	case !a.cfg.FailsafeMode:
		ans.Reason = "failsafe_mode is off in this member's config"
	case req.Leader == a.opts.Name || a.holdsLeader != 0 || a.acquiring > 0:
		ans.Reason = "this member leads, or is taking the leader key"
	case a.self.Role == cluster.RolePrimary:
		ans.Reason = "this member's database runs as a primary"
	case name != req.Leader || epoch != req.Epoch:
		ans.Reason = fmt.Sprintf("the latest leader this member knows is %q at epoch %d", name, epoch)
	}
	if ans.Reason != "" {
		a.log.Warn("failsafe: refused to confirm a leader", "leader", req.Leader, "epoch", req.Epoch, "why", ans.Reason)
		return ans
	}
	now := a.clk.Now()
	// The leader stops before its send time plus its ttl: promise at
	// least that long, and at least this member's own ttl.
	until := now.Add(max(time.Duration(a.cfg.TTL), time.Duration(req.TTL)))
	if !now.Before(a.promise.Until) {
		a.log.Warn("failsafe: confirmed the leader over the API; taking part in no election while it asks", "leader", req.Leader,
			"epoch", req.Epoch, "until", until.Format(time.RFC3339Nano))
		a.emit(fmt.Sprintf("failsafe: confirmed %s (epoch %d)", req.Leader, req.Epoch))
	}
	if until.After(a.promise.Until) {
		a.promise = ha.FailsafePromise{Leader: req.Leader, Epoch: req.Epoch, Until: until}
	}
	ans.Confirmed = true
	return ans
}

// errFailsafeHold is wrapped by failsafeGate's refusals.
var errFailsafeHold = errors.New("failsafe: not taking the leader key")

// failsafeGate is called before every attempt to take the leader key: it
// refuses while a failsafe promise (or the hold after a restart, see
// ha.FailsafeHold) binds this member, and otherwise marks the attempt as
// under way, so that ConfirmFailsafe refuses until the returned function
// is called (after holdsLeader is set on success). Confirmations and
// attempts are thus ordered: a confirmation given before the check blocks
// the attempt, and one asked after it is refused.
func (a *Agent) failsafeGate() (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := ha.View{Now: a.clk.Now(), Self: a.opts.Name, Config: a.cfg, Snap: a.snap, FailsafePromise: a.promise, Started: a.started}
	if until, why := ha.FailsafeHold(v, ha.LostEpoch(a.snap)); !until.IsZero() {
		return nil, fmt.Errorf("%w before %s: %s", errFailsafeHold, until.UTC().Format(time.RFC3339Nano), why)
	}
	a.acquiring++
	return func() {
		a.mu.Lock()
		a.acquiring--
		a.mu.Unlock()
	}, nil
}

// noteFailsafeRecord records what the store holds as this leader's
// failsafe record after a load (snap) or a write: only a record for the
// epoch it leads counts, and nil (unknown) disables failsafe until the
// next load. a.mu held.
func (a *Agent) noteFailsafeRecordLocked(rec *cluster.FailsafeState) {
	if rec == nil || a.holdsLeader == 0 || rec.Epoch != a.holdsLeader || rec.Leader != a.opts.Name {
		a.failsafeRec = nil
		return
	}
	c := *rec
	a.failsafeRec = &c
}

// SetFailsafeRecord writes (or deletes) the leader's failsafe record. A
// write that fails leaves the record unknown: no failsafe round is
// confirmed until a load reads it again. Before writing, it drops any
// permission a failsafe round gave (the fence counts from the last
// renewal again) and voids rounds under way: members the new record adds
// (or, deleted, any member) may be elected without having promised, so
// only the lease may cover the primary until a round under the new record
// is confirmed. The store answers while it writes, so renewals do.
func (x executor) SetFailsafeRecord(ctx context.Context, s ha.Step, act ha.SetFailsafeRecord) error {
	a, l := x.a, s.View.Snap.Leader
	if l == nil {
		return errors.New("set failsafe record: no leader")
	}
	a.mu.Lock()
	a.failsafeRec, a.lastFailsafeSent = nil, time.Time{}
	a.failsafeGen++
	a.mu.Unlock()
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	var rec *cluster.FailsafeState
	if act.Members != nil {
		rec = &cluster.FailsafeState{Leader: l.Name, Epoch: l.Epoch, Members: act.Members, TTL: act.TTL}
	}
	err := a.opts.Store.SetFailsafe(sctx, *l, rec)
	a.mu.Lock()
	if err != nil {
		rec = nil
	}
	a.noteFailsafeRecordLocked(rec)
	a.mu.Unlock()
	if err != nil {
		return fmt.Errorf("failsafe record %s: %w", act, err)
	}
	a.log.Info("failsafe record written", "record", act.String(), "epoch", l.Epoch)
	return nil
}

// FailsafePromise is the last failsafe confirmation this member gave (for
// the simulator and tests).
func (a *Agent) FailsafePromise() ha.FailsafePromise {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.promise
}
