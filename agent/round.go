package agent

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/ha"
)

// Round runs one observe → decide → execute pass and returns how long the
// loop should wait for the next one, unless an event (a change in the
// store, the database process exiting) comes first; in any case no round
// starts before NotBefore.
func (a *Agent) Round(ctx context.Context) time.Duration {
	defer a.notifyObservers(ctx, PhaseRound)
	defer a.observeRound(a.opts.Metrics, a.clk.Now())
	// A fence due now acts before anything is decided (after a freeze the
	// round and the fence timer wake together).
	a.Fence(ctx)
	cfg := a.config()
	storeTimeout := time.Duration(cfg.RetryTimeout) / 2
	now := a.clk.Now()

	if err := a.ensureLease(ctx, storeTimeout); err != nil {
		a.log.Warn("no store lease", "err", err)
	}
	st := a.probe(ctx)

	snap, storeOK := a.publishAndLoad(ctx, storeTimeout, st)
	if storeOK {
		if snap.Config != nil {
			a.applyConfig(*snap.Config)
			cfg = a.config()
		}
		a.mu.Lock()
		lost := a.track.ObserveLeader(now, snap)
		fresh := a.track.NeedsFreshRecord(snap)
		a.mu.Unlock()
		if lost {
			a.log.Warn("leader key absent", "last_leader", lastLeaderName(snap), "epoch", ha.LostEpoch(snap))
			a.emit("leader loss detected (last leader " + lastLeaderName(snap) + ")")
		}
		if snap.Leader == nil && fresh {
			// Re-measure and publish a position taken after the loss,
			// then read again so the election compares fresh positions.
			st = a.probe(ctx)
			if s2, ok := a.publishAndLoad(ctx, storeTimeout, st); ok {
				snap = s2
			}
		}
	}

	a.mu.Lock()
	if storeOK {
		a.track.StoreReachable(now)
	} else {
		a.track.StoreUnreachable(now)
	}
	a.track.ObserveDB(a.probedAt, st, snap)
	view := a.track.View(ha.View{
		Now: now, Self: a.opts.Name, Tags: a.opts.Tags, Config: cfg, DB: st, StoreOK: storeOK, Snap: a.snap,
		LeaseID: a.leaseID, LastRenewSent: a.lastRenewSent,
		Engine: a.opts.Engine, Busy: a.busy, Fencing: a.opts.Fencer != nil,
	})
	a.mu.Unlock()
	if st.Accepting && st.Role == cluster.RolePrimary && view.Snap.Leader != nil && view.Snap.Leader.Name == a.opts.Name {
		view.Repl, view.SyncConfirmed = a.measureSync(ctx)
		if a.opts.Engine.Slots {
			view.Slots = a.measureSlots(ctx, now, view.Snap)
		}
	}
	if ha.WantsOldPrimaryProbe(view) {
		p := a.probeOldPrimary(ctx, snap)
		a.mu.Lock()
		a.track.ObserveOldPrimary(&view, p)
		a.mu.Unlock()
		a.logOldPrimary(view)
	}

	plan := ha.Decide(view)
	a.logPlan(now, plan, snap)
	failedAct, failed := a.execute(ctx, view, plan)
	a.mu.Lock()
	changed := a.self.State != plan.State || a.self.Reason != plan.Reason || a.self.Problem != plan.Problem
	a.self.State, a.self.Reason, a.self.Problem = plan.State, plan.Reason, plan.Problem
	a.lastLoop = a.clk.Now()
	a.mu.Unlock()
	if len(plan.Actions) == 0 && changed {
		// The decision changed this member's state: publish it now, not a
		// loop_wait later (operators and the other agents read it).
		a.publishAndLoad(ctx, storeTimeout, st)
	}
	if len(plan.Actions) > 0 {
		// Publish the outcome now rather than a loop_wait later.
		st = a.probe(ctx)
		a.publishAndLoad(ctx, storeTimeout, st)
		var wait time.Duration
		if failed {
			a.mu.Lock()
			if !a.leaseLostInRound {
				wait = a.track.BackOff(failedAct, cfg)
			}
			a.leaseLostInRound = false
			a.mu.Unlock()
		}
		if wait > 0 {
			// A failing action is retried after the back-off,
			// whatever wakes the loop meanwhile.
			a.mu.Lock()
			a.notBefore = a.clk.Now().Add(wait)
			a.mu.Unlock()
			return wait
		}
		return 10 * time.Millisecond
	}
	wait := time.Duration(cfg.LoopWait)
	if plan.Soon > 0 {
		wait = min(wait, plan.Soon)
	}
	a.mu.Lock()
	soon := a.track.Stream.SilenceSoon(st)
	a.mu.Unlock()
	if soon > 0 {
		// A silence on the replica's stream must be seen while the
		// receiver still holds the connection (the liveness rule's
		// evidence): look again soon.
		wait = min(wait, soon)
	}
	return wait
}

// applyConfig adopts the dynamic config read from the store, unless it
// breaks the rules (written by an older hamgr, or by hand: the agent keeps
// what it had and says so once). A new ttl applies to the next lease only
// (it is granted at a restart), and a loop_wait or retry_timeout that
// would put the fence deadline past the current lease's expiry waits for
// it too: the fence deadline must stay before ttl (rule 2).
func (a *Agent) applyConfig(c cluster.DynamicConfig) {
	if report, err := a.cfgGate.Admit(c); err != nil {
		if report {
			a.log.Error("the dynamic config in etcd breaks the rules; keeping the previous one until it is fixed (hamgrctl config set KEY=VALUE)",
				"err", err)
		}
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	c.TTL = a.cfg.TTL
	if report, err := a.leaseGate.Admit(c); err != nil {
		if report {
			a.log.Warn("the new loop_wait and retry_timeout wait for a lease with the new ttl (restart the agent to apply them)", "err", err)
		}
		c.LoopWait, c.RetryTimeout = a.cfg.LoopWait, a.cfg.RetryTimeout
	}
	if c.LoopWait != a.cfg.LoopWait || c.RetryTimeout != a.cfg.RetryTimeout {
		a.pokeFence() // the fence deadline moved
	}
	a.cfg = c
}

func leaderName(l *cluster.Leader) string {
	if l == nil {
		return ""
	}
	return l.Name
}

func leaderEpoch(l *cluster.Leader) cluster.Epoch {
	if l == nil {
		return 0
	}
	return l.Epoch
}

func (a *Agent) probe(ctx context.Context) db.Status {
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := a.opts.DB.Probe(pctx)
	if err != nil {
		a.opts.Metrics.ProbeError()
		a.log.Warn("database probe failed", "err", err)
	}
	a.mu.Lock()
	a.accepting, a.dbRunning, a.probedAt = st.Accepting, st.Running, a.clk.Now()
	a.mu.Unlock()
	return st
}

// publishAndLoad writes this member's record and reads the cluster.
func (a *Agent) publishAndLoad(ctx context.Context, timeout time.Duration, st db.Status) (cluster.Snapshot, bool) {
	a.mu.Lock()
	m := a.track.Record(a.clk.Now(), cluster.Member{
		Name: a.opts.Name, Tags: a.opts.Tags, APIURL: a.opts.APIURL, ConnHost: a.opts.ConnHost, ConnPort: a.opts.ConnPort,
		UpdatedAt: a.clk.Now().UTC(), State: a.self.State, Reason: a.self.Reason, Problem: a.self.Problem,
	}, a.snap, st)
	a.self = m
	lease := a.leaseID
	a.mu.Unlock()

	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if lease != 0 {
		if err := a.opts.Store.PublishMember(sctx, m); errors.Is(err, dcs.ErrLeaseLost) {
			// Revoked: the next round grants a new lease at once.
			a.mu.Lock()
			if a.leaseID == lease {
				a.leaseID = 0
			}
			a.track.LeaseLost(a.clk.Now())
			a.mu.Unlock()
			a.log.Warn("lease lost", "while", "publishing the member record")
		} else if err != nil {
			a.opts.Metrics.StoreError(opPublish)
			a.log.Warn("publish member record failed", "err", err)
		}
	}
	snap, err := a.opts.Store.Load(sctx)
	a.mu.Lock()
	defer a.mu.Unlock()
	if err != nil {
		a.opts.Metrics.StoreError(opLoad)
		a.log.Warn("store read failed", "err", err)
		a.storeOK = false
		return a.snap, false
	}
	a.snap, a.storeOK = snap, true
	if l := snap.Leader; l != nil && l.Name == a.opts.Name && l.Lease == a.leaseID {
		if a.holdsLeader != l.Epoch {
			a.pokeFence() // a new fence deadline to watch
		}
		a.holdsLeader = l.Epoch
	} else if a.holdsLeader != 0 {
		a.holdsLeader = 0
	}
	return snap, true
}

func lastLeaderName(s cluster.Snapshot) string {
	if s.LastLeader == nil {
		return ""
	}
	return s.LastLeader.Name
}

// probeOldPrimary asks the last leader's database directly whether it
// still takes writes (rule 3 of package ha). The answer alone proves
// death only when the connection is refused or the server is read-only;
// ha.OldPrimaryLiveness weighs a missing answer against the members'
// WAL stream reports.
func (a *Agent) probeOldPrimary(ctx context.Context, s cluster.Snapshot) ha.OldPrimaryProbe {
	ll := s.LastLeader
	if ll == nil || ll.Name == a.opts.Name {
		return ha.OldPrimaryProbe{}
	}
	host, port := ll.ConnHost, ll.ConnPort
	if host == "" {
		// Written by an older agent: fall back to the member record seen.
		a.mu.Lock()
		old := a.track.LastLeader
		a.mu.Unlock()
		if old == nil || old.Name != ll.Name {
			return ha.OldPrimaryProbe{}
		}
		host, port = old.ConnHost, old.ConnPort
	}
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ans, err := a.opts.DB.Ask(pctx, host, port)
	p := ha.OldPrimaryProbe{Host: host, Port: port, Answer: ans}
	if err != nil {
		p.Err = err.Error()
	}
	return p
}

// execute runs the plan's actions in order, stopping at the first failure;
// it returns the action that failed, and whether one did.
func (a *Agent) execute(ctx context.Context, v ha.View, p ha.Plan) (ha.Action, bool) {
	for _, act := range p.Actions {
		if long(act.Kind) {
			// It copies or rewrites the database: minutes, during which
			// the loop must go on. It ends the plan; the rounds after it
			// decide what comes next.
			a.runInBackground(ctx, v, p, act)
			return ha.Action{}, false
		}
		err := a.do(ctx, v, p, act)
		a.mu.Lock()
		a.track.ActionDone(v, p, act, err)
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("action failed", "action", act.String(), "err", err)
			if errors.Is(err, dcs.ErrLeaseLost) {
				// The store dropped the session lease before the renewer
				// noticed (a revocation): forget it, so the next round,
				// at once, grants a new one and tries again.
				a.mu.Lock()
				a.leaseID, a.leaseLostInRound = 0, true
				a.track.LeaseLost(a.clk.Now())
				a.mu.Unlock()
			}
			return act, true
		}
	}
	return ha.Action{}, false
}

func (a *Agent) do(ctx context.Context, v ha.View, p ha.Plan, act ha.Action) error {
	cfg := v.Config
	store := a.opts.Store
	storeCtx := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, time.Duration(cfg.RetryTimeout)/2)
	}
	switch act.Kind {
	case ha.Initialize:
		sctx, cancel := storeCtx()
		who, err := store.Initialize(sctx, a.opts.Name, a.opts.Config)
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
	case ha.Clone:
		dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		a.emit("cloning from " + act.Upstream.Name)
		return a.opts.DB.Clone(dctx, *act.Upstream)
	case ha.StartPrimary:
		dctx, cancel := context.WithTimeout(ctx, startWait(cfg))
		defer cancel()
		err := a.startedOrStarting(a.opts.DB.StartPrimary(dctx))
		if err == nil {
			a.emit("restarted primary database")
		}
		return err
	case ha.StartReplica:
		dctx, cancel := context.WithTimeout(ctx, startWait(cfg))
		defer cancel()
		err := a.startedOrStarting(a.opts.DB.StartReplica(dctx, act.Upstream))
		if err == nil && act.Upstream != nil {
			a.emit("started as replica of " + act.Upstream.Name)
		}
		return err
	case ha.Stop:
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := a.opts.DB.Stop(dctx, act.Mode); err != nil {
			return err
		}
		a.emit("stopped database: " + p.Reason)
		return nil
	case ha.Promote:
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
	case ha.Follow:
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		before := v.DB.Streaming
		if err := a.opts.DB.Follow(dctx, *act.Upstream); err != nil {
			return err
		}
		if !before {
			a.emit("repointed to " + act.Upstream.Name)
		}
		return nil
	case ha.AcquireLeader:
		return a.acquireLeader(ctx, v, act)
	case ha.BeginPromotion, ha.Fence, ha.Publish:
		return a.promotionStep(ctx, v, act)
	case ha.ReleaseLeader:
		sctx, cancel := storeCtx()
		defer cancel()
		if err := store.ReleaseLeader(sctx, *act.Leader); err != nil {
			return fmt.Errorf("release leader key of epoch %d: %w", act.Leader.Epoch, err)
		}
		a.mu.Lock()
		a.holdsLeader = 0
		a.mu.Unlock()
		a.log.Info("released leader key", "epoch", act.Leader.Epoch, "reason", p.Reason)
		a.emit(fmt.Sprintf("released leader key (epoch %d)", act.Leader.Epoch))
		return nil
	case ha.RecordFailover:
		return a.recordFailover(ctx, v)
	case ha.Handoff:
		return a.handoff(ctx, v, act.Target)
	case ha.ClearRequest:
		sctx, cancel := storeCtx()
		defer cancel()
		if err := store.ClearRequest(sctx); err != nil {
			return fmt.Errorf("clear request: %w", err)
		}
		a.log.Info("operator request closed", "reason", p.Reason)
		return nil
	case ha.SetSyncStandbys:
		r, ok := a.opts.DB.(db.Replication)
		if !ok {
			return errors.New("this database engine cannot manage synchronous replication")
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := r.SetSynchronousStandbys(dctx, act.Names, act.AnyStandby); err != nil {
			return err
		}
		a.log.Info("synchronous standbys set", "names", act.Names, "any", act.AnyStandby)
		return nil
	case ha.SetSyncRecord:
		if v.Snap.Leader == nil {
			return errors.New("set sync record: no leader")
		}
		sctx, cancel := storeCtx()
		defer cancel()
		if err := store.SetSync(sctx, *v.Snap.Leader, act.Names); err != nil {
			return fmt.Errorf("record synchronous standbys %v: %w", act.Names, err)
		}
		a.log.Info("synchronous standby record written", "names", act.Names, "epoch", v.Snap.Leader.Epoch)
		return nil
	case ha.CreateSlots, ha.DropSlots:
		r, ok := a.opts.DB.(db.Replication)
		if !ok {
			return errors.New("this database engine cannot manage replication slots")
		}
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if act.Kind == ha.CreateSlots {
			return r.CreateSlots(dctx, act.Names)
		}
		return r.DropSlots(dctx, act.Names)
	case ha.Rewind, ha.Reclone:
		r, ok := a.opts.DB.(db.Replication)
		if !ok {
			return errors.New("this database engine cannot rewind or re-clone")
		}
		dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		defer cancel()
		if act.Kind == ha.Reclone {
			if err := r.RemoveData(dctx); err != nil {
				return err
			}
			a.emit("re-cloning from " + act.Upstream.Name)
			return a.opts.DB.Clone(dctx, *act.Upstream)
		}
		a.emit("rejoining " + act.Upstream.Name + " (pg_rewind if its history diverged)")
		res, err := r.Rewind(dctx, *act.Upstream) // recorded by ha.Tracker.ActionDone
		if err == nil && res.Required && !res.DivergedAt.IsZero() && res.WALEnd.Cmp(res.DivergedAt) > 0 {
			a.recordDiscard(ctx, v, res)
		}
		return err
	case ha.MarkCannotFollow:
		return nil // recorded by ha.Tracker.ActionDone
	}
	return errors.New("unknown action " + act.String())
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

// handoff records, in the pending switchover request, the position at
// which this stopped primary ended, for target to catch up to.
func (a *Agent) handoff(ctx context.Context, v ha.View, target string) error {
	if v.Snap.Request == nil || v.Snap.Leader == nil {
		return errors.New("handoff: no pending request or leader")
	}
	st := a.probe(ctx)
	if st.Running || st.Checkpoint.IsZero() {
		return fmt.Errorf("handoff: cannot read the shutdown checkpoint of the stopped database (running=%t)", st.Running)
	}
	r := *v.Snap.Request
	r.Handoff = &cluster.Handoff{Target: target, Final: st.Checkpoint, Epoch: v.Snap.Leader.Epoch, StoppedAt: a.clk.Now().UTC()}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(v.Config.RetryTimeout)/2)
	defer cancel()
	if err := a.opts.Store.UpdateRequest(sctx, r); err != nil {
		return fmt.Errorf("handoff to %s: %w", target, err)
	}
	a.log.Info("switchover: stopped writes, handing over", "target", target, "final_position", st.Checkpoint.String())
	a.emit("switchover: stopped at " + st.Checkpoint.String() + ", handing over to " + target)
	return nil
}

// long reports whether an action of kind k may take minutes.
func long(k ha.ActionKind) bool {
	return k == ha.Clone || k == ha.Reclone || k == ha.Rewind
}

// runInBackground runs a long action through Options.Background and
// records it as the agent's busy action until it ends; a failure backs off
// as a failed action of a round does.
func (a *Agent) runInBackground(ctx context.Context, v ha.View, p ha.Plan, act ha.Action) {
	a.mu.Lock()
	a.busy = fmt.Sprintf("%s since %s", act, a.clk.Now().UTC().Format(time.RFC3339))
	a.mu.Unlock()
	a.opts.Background(func() {
		err := a.do(ctx, v, p, act)
		a.mu.Lock()
		a.track.ActionDone(v, p, act, err)
		a.busy = ""
		if err != nil {
			a.notBefore = a.clk.Now().Add(a.track.BackOff(act, a.cfg))
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("action failed", "action", act.String(), "err", err)
		} else {
			a.log.Info("action done", "action", act.String())
		}
		a.poke()
	})
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

// logOldPrimary logs, once per change, what the probe of the old primary
// and the members' stream reports add up to.
func (a *Agent) logOldPrimary(v ha.View) {
	live, ev := ha.OldPrimaryLiveness(v)
	key := fmt.Sprintf("%s/%s/%s", live, v.OldPrimary.Answer, ev.Kind)
	a.mu.Lock()
	same := key == a.lastLiveness
	a.lastLiveness = key
	a.mu.Unlock()
	if same {
		return
	}
	args := []any{"liveness", live.String(), "answer", v.OldPrimary.Answer.String(),
		"address", fmt.Sprintf("%s:%d", v.OldPrimary.Host, v.OldPrimary.Port)}
	if v.OldPrimary.Err != "" {
		args = append(args, "err", v.OldPrimary.Err)
	}
	if ev.Kind != cluster.EvidenceNone {
		args = append(args, "evidence", ev.String())
	}
	a.log.Info("old primary probed", args...)
}

// logPlan logs a plan when it acts, when the state changes, or when only
// the reason changed and the last such line is at least 2 s old (an
// election's reasons change with every WAL record).
func (a *Agent) logPlan(now time.Time, p ha.Plan, s cluster.Snapshot) {
	key := ha.Plan{Actions: p.Actions, State: p.State}.String()
	full := p.String()
	a.mu.Lock()
	skip := full == a.lastPlan ||
		len(p.Actions) == 0 && key == a.lastPlanKey && now.Sub(a.lastPlanLogged) < 2*time.Second
	if !skip {
		a.lastPlan, a.lastPlanKey, a.lastPlanLogged = full, key, now
	}
	a.mu.Unlock()
	if !skip {
		a.log.Info("plan", "plan", full, "leader", leaderName(s.Leader), "epoch", leaderEpoch(s.Leader))
	}
}

// measureSync reads the primary's standbys and works out which required
// standbys have confirmed a position measured after they became required.
func (a *Agent) measureSync(ctx context.Context) (*db.ReplicationStatus, []string) {
	r, ok := a.opts.DB.(db.Replication)
	if !ok {
		return nil, nil
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rs, err := r.ReplicationStatus(rctx)
	if err != nil {
		a.log.Warn("replication status", "err", err)
		return nil, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	confirmed := a.syncTracker.Observe(rs)
	return &rs, confirmed
}

// measureSlots maps the leader's replication slots to members: those with
// a slot, those whose slot was invalidated, and those absent longer than
// ha.MemberSlotsTTL whose slot can go. Slots that belong to no member ever
// seen are left alone (an operator's own).
func (a *Agent) measureSlots(ctx context.Context, now time.Time, s cluster.Snapshot) ha.Slots {
	r, ok := a.opts.DB.(db.Replication)
	if !ok {
		return ha.Slots{}
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	slots, err := r.Slots(rctx)
	if err != nil {
		a.log.Warn("list replication slots", "err", err)
		return ha.Slots{}
	}
	var have, lost, stale []string
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.lastSeen == nil {
		a.lastSeen = map[string]time.Time{}
	}
	for _, m := range s.Members {
		a.lastSeen[m.Name] = now
	}
	for member, seen := range a.lastSeen {
		name := r.SlotName(member)
		for _, sl := range slots {
			if sl.Name != name {
				continue
			}
			have = append(have, member)
			if sl.WALStatus == "lost" {
				lost = append(lost, member)
			}
			if now.Sub(seen) > ha.MemberSlotsTTL && !sl.Active {
				stale = append(stale, member)
			}
		}
	}
	slices.Sort(have)
	slices.Sort(lost)
	slices.Sort(stale)
	return ha.Slots{Members: have, Lost: lost, Stale: stale}
}
