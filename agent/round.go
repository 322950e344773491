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
	now := a.clk.Now()
	st, snap, storeOK, cfg := a.observe(ctx, now)
	view := a.view(ctx, now, cfg, st, snap, storeOK)

	plan := ha.Decide(view)
	a.logPlan(now, plan, snap)
	failedAct, failed := a.execute(ctx, view, plan)
	return a.settle(ctx, cfg, st, plan, failedAct, failed)
}

// observe is a round's first phase: the lease, the database probe, this
// member's record published and the cluster read (again after a fresh
// probe when the leader is gone and this member's record predates the
// loss, so the election compares fresh positions), and the dynamic config
// adopted. It returns the probe, the snapshot, whether the store answered
// and the config in effect.
func (a *Agent) observe(ctx context.Context, now time.Time) (db.Status, cluster.Snapshot, bool, cluster.DynamicConfig) {
	cfg := a.config()
	storeTimeout := time.Duration(cfg.RetryTimeout) / 2
	if err := a.ensureLease(ctx, storeTimeout); err != nil {
		a.log.Warn("no store lease", "err", err)
	}
	st := a.probe(ctx)
	snap, storeOK := a.publishAndLoad(ctx, storeTimeout, st)
	if !storeOK {
		return st, snap, false, cfg
	}
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
		st = a.probe(ctx)
		if s2, ok := a.publishAndLoad(ctx, storeTimeout, st); ok {
			snap = s2
		}
	}
	return st, snap, true, cfg
}

// view is a round's second phase: what ha.Decide sees, with the
// measurements only some decisions need (the leader's standbys and slots,
// the old primary's and a gone leader's liveness) taken when they are.
func (a *Agent) view(ctx context.Context, now time.Time, cfg cluster.DynamicConfig, st db.Status, snap cluster.Snapshot, storeOK bool) ha.View {
	a.mu.Lock()
	if storeOK {
		a.track.StoreReachable(now)
	} else {
		a.track.StoreUnreachable(now)
	}
	a.track.ObserveDB(a.probedAt, st, snap)
	view := a.track.View(ha.View{
		Now: now, Self: a.opts.Name, Tags: a.opts.Tags, Config: cfg, DB: st, StoreOK: storeOK, Snap: a.snap,
		LeaseID: a.leaseID, LastRenewSent: a.fenceFromLocked(), FailsafeActive: a.failsafeActiveLocked(),
		FailsafePromise: a.promise, Started: a.started,
		Engine: a.opts.Engine, Busy: a.busy, Fencing: a.opts.Fencer != nil, FenceTargets: fenceTargets(a.opts.Fencer),
		PublishFailed: a.publishFailed(), LeaderLinkLost: a.linkLostAt,
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
	if ha.WantsLeaderGoneProbe(view) {
		view.LeaderGone = a.probeLeaderGone(ctx, view)
		view.LeaderGone.Done = a.clk.Now()
	}
	return view
}

// settle is a round's last phase, after the plan ran: this member's new
// state is recorded (and published at once when it changed or actions
// ran), the leader link follows the leader, and the wait until the next
// round is chosen: the back-off after a failed action, 10ms after new
// actions, longer after actions repeated without effect, else an idle
// round's.
func (a *Agent) settle(ctx context.Context, cfg cluster.DynamicConfig, st db.Status, plan ha.Plan, failedAct ha.Action, failed bool) time.Duration {
	storeTimeout := time.Duration(cfg.RetryTimeout) / 2
	a.mu.Lock()
	changed := a.self.State != plan.State || a.self.Reason != plan.Reason || a.self.Problem != plan.Problem
	a.self.State, a.self.Reason, a.self.Problem = plan.State, plan.Reason, plan.Problem
	a.lastLoop = a.clk.Now()
	a.mu.Unlock()
	a.pokePublish() // what this member is may have changed
	a.mu.Lock()
	target := linkTargetOf(a.opts.Name, a.snap)
	a.mu.Unlock()
	a.setLinkTarget(target)
	if len(plan.Actions) == 0 {
		if changed {
			// The decision changed this member's state: publish it now,
			// not a loop_wait later (operators and the other agents
			// read it).
			a.publishAndLoad(ctx, storeTimeout, st)
		}
		a.repeatsLastPlan(plan, false)
		return a.idleWait(cfg, plan, st)
	}
	// Publish the outcome now rather than a loop_wait later.
	st = a.probe(ctx)
	a.publishAndLoad(ctx, storeTimeout, st)
	if wait := a.backOff(cfg, failedAct, failed); wait > 0 {
		return wait
	}
	n := a.repeatsLastPlan(plan, failed)
	if n == 0 {
		return 10 * time.Millisecond
	}
	// The same actions succeeded in the previous rounds and changed
	// nothing this round sees (a replica repointed at an upstream that
	// does not answer yet): the next round comes after 100ms, doubling
	// with each repeat, and at most as an idle one would; at once, the
	// loop would probe and write to the store a hundred times a second
	// until the upstream comes back.
	return min(repeatWait<<min(n-1, 8), a.idleWait(cfg, plan, st))
}

// backOff is the wait before retrying failedAct when it failed (0: none,
// or its failure was the lease found gone, which the next round mends
// at once); no round starts before it, whatever wakes the loop.
func (a *Agent) backOff(cfg cluster.DynamicConfig, failedAct ha.Action, failed bool) time.Duration {
	a.mu.Lock()
	defer a.mu.Unlock()
	var wait time.Duration
	if failed && !a.leaseLostInRound {
		wait = a.track.BackOff(failedAct, cfg)
	}
	a.leaseLostInRound = false
	if wait > 0 {
		a.notBefore = a.clk.Now().Add(wait)
		a.repeated, a.repeats = "", 0
	}
	return wait
}

// repeatWait is the wait after a round that repeated the previous round's
// successful actions for the first time; it doubles with each repeat.
const repeatWait = 100 * time.Millisecond

// repeatsLastPlan reports how many rounds in a row before this one ran
// plan's actions with success (0: none, or the plan differs or failed),
// and remembers this round's.
func (a *Agent) repeatsLastPlan(plan ha.Plan, failed bool) int {
	acts := ""
	if len(plan.Actions) > 0 && !failed {
		acts = fmt.Sprint(plan.Actions)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if acts == "" || acts != a.repeated {
		a.repeated, a.repeats = acts, 0
		return 0
	}
	a.repeats++
	return a.repeats
}

// idleWait is how long the loop waits after a round that leaves nothing
// to do at once: loop_wait (aligned with the renewals), or sooner when the
// plan or the replica's stream asks for it.
func (a *Agent) idleWait(cfg cluster.DynamicConfig, plan ha.Plan, st db.Status) time.Duration {
	wait := a.alignedWait(time.Duration(cfg.LoopWait))
	if plan.Soon > 0 {
		wait = min(wait, plan.Soon)
	}
	a.mu.Lock()
	soon := a.track.Stream.SilenceSoon(st)
	unpublished := a.track.Stream.SilenceSeen && (a.self.WAL == nil || !a.self.WAL.SilenceSeen)
	a.mu.Unlock()
	if soon > 0 {
		// A silence on the replica's stream must be seen while the
		// receiver still holds the connection (the liveness rule's
		// evidence): look again soon.
		wait = min(wait, soon)
	}
	if unpublished {
		// Seen after this round published the record (the observation
		// follows the publication): the take-overs before the ttl wait
		// for every replica's report, so publish it now, not a
		// loop_wait later.
		wait = min(wait, silencePublishWait)
	}
	return wait
}

// silencePublishWait is how soon the next round comes when this round saw
// its stream fall silent after publishing the record.
const silencePublishWait = 10 * time.Millisecond

// alignedWait returns how long an idle loop waits for its next round: at
// most loop_wait, and no later than the renewer's next renewal, so that
// the two wake together. The renewal schedule is the lease's (one
// keep-alive per loop_wait, timed from the last send); a round scheduled
// loop_wait after this one would wake the process a second time in every
// loop_wait, which is most of what an idle agent costs.
func (a *Agent) alignedWait(loopWait time.Duration) time.Duration {
	a.mu.Lock()
	next, leased := a.nextRenew, a.leaseID != 0
	a.mu.Unlock()
	if d := next.Sub(a.clk.Now()); leased && d > 0 && d < loopWait {
		return d
	}
	return loopWait
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
	if c.FailsafeMode && !a.cfg.FailsafeMode {
		signal(a.failsafeWake) // something to watch now
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
	a.recordMu.Lock()
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
	a.recordMu.Unlock()
	snap, err := a.opts.Store.Load(sctx)
	a.mu.Lock()
	// Taken after the read: every record in snap was written before it.
	a.track.ObserveStreamLoss(a.clk.Now(), snap)
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
	a.noteFailsafeRecordLocked(snap.Failsafe)
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
	r, ok := a.opts.DB.(db.SyncReplication)
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
