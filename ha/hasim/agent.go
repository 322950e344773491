package hasim

import (
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/ha"
)

// agent mirrors the state package agent keeps between rounds; what its
// View remembers is the same ha.Tracker the real agent keeps.
type agent struct {
	n             *node
	incarnation   int
	leaseID       int64
	lastRenewSent time.Time
	nextRenew     time.Time
	holdsLeader   cluster.Epoch
	snap          cluster.Snapshot
	self          cluster.Member
	track         ha.Tracker

	// promotedLSN is where the database was at its last promotion.
	promotedLSN cluster.LSN
	lastPlan    string

	nextRound time.Time
	notBefore time.Time
}

func newAgent(n *node, incarnation int) *agent {
	return &agent{n: n, incarnation: incarnation, track: ha.Tracker{Self: n.spec.Name}}
}

var errUnreachable = errors.New("store unreachable (partitioned)")

func (w *World) cfgDyn() cluster.DynamicConfig { return w.store.config }

// renew is the agent's renewLoop: every loop_wait, retried every 500ms
// after a failure; it records when each successful request was sent.
func (w *World) renew(n *node) {
	a := n.a
	if a.leaseID == 0 || w.now.Before(a.nextRenew) {
		return
	}
	lw := time.Duration(w.cfgDyn().LoopWait)
	if n.partitioned {
		a.nextRenew = w.now.Add(500 * time.Millisecond)
		return
	}
	l, ok := w.store.leases[a.leaseID]
	if !ok {
		w.logf("%s: lease %d lost", n.spec.Name, a.leaseID)
		a.leaseID = 0
		a.nextRound = w.now
		return
	}
	l.expires = w.now.Add(time.Duration(w.cfgDyn().TTL))
	w.store.leases[a.leaseID] = l
	a.lastRenewSent, a.nextRenew = w.now, w.now.Add(lw)
}

// fenceTimer is the agent's fenceLoop (rule 2 on its own timer): a leader
// past its fence deadline stops its database whatever it is doing, even in
// crash recovery, when it is not yet known to be a primary.
func (w *World) fenceTimer(n *node) {
	a := n.a
	if a.holdsLeader == 0 || a.lastRenewSent.IsZero() ||
		w.now.Before(detector.FenceDeadline(a.lastRenewSent, w.cfgDyn())) {
		return
	}
	w.logf("%s: fence timer: lease not renewed since +%s; stopping the database (epoch %d, %s)",
		n.spec.Name, a.lastRenewSent.Sub(Origin), a.holdsLeader, n.db.String())
	n.db.stop(true)
	a.holdsLeader = 0
	a.nextRound = w.now
}

func (w *World) probe(n *node) db.Status {
	st := n.db.status(n.alive)
	return st
}

func (w *World) ensureLease(n *node) {
	a := n.a
	if a.leaseID != 0 || n.partitioned {
		return
	}
	w.store.nextLease++
	id := w.store.nextLease
	w.store.leases[id] = lease{expires: w.now.Add(time.Duration(w.cfgDyn().TTL)), owner: n.spec.Name, incarnation: a.incarnation}
	a.leaseID, a.lastRenewSent = id, w.now
	a.nextRenew = w.now.Add(time.Duration(w.cfgDyn().LoopWait))
}

// publishAndLoad writes this member's record and reads the cluster.
func (w *World) publishAndLoad(n *node, st db.Status) (cluster.Snapshot, bool) {
	a := n.a
	host, port := addr(n.spec.Name)
	m := a.track.Record(cluster.Member{
		Name: n.spec.Name, Tags: n.spec.Tags, ConnHost: host, ConnPort: port,
		UpdatedAt: w.now, State: a.self.State, Reason: a.self.Reason,
	}, a.snap, st)
	a.self = m
	if n.partitioned {
		return a.snap, false
	}
	if _, ok := w.store.leases[a.leaseID]; ok && a.leaseID != 0 {
		w.store.members[n.spec.Name] = memberRec{m: m, lease: a.leaseID}
		w.store.rev++
	}
	snap := w.store.snapshot()
	a.snap = snap
	if l := snap.Leader; l != nil && l.Name == n.spec.Name && l.Lease == a.leaseID {
		a.holdsLeader = l.Epoch
	} else {
		a.holdsLeader = 0
	}
	return snap, true
}

// probeOldPrimary asks the database at last_leader's address whether it
// takes writes (agent.probeOldPrimary); like the real agent it falls back to
// the last leader's member record it saw when last_leader has no address.
func (w *World) probeOldPrimary(n *node, s cluster.Snapshot) ha.Liveness {
	ll := s.LastLeader
	if ll == nil || ll.Name == n.spec.Name {
		return ha.LivenessUnknown
	}
	host, port := ll.ConnHost, ll.ConnPort
	if host == "" {
		old := n.a.track.LastLeader
		if old == nil || old.Name != ll.Name {
			return ha.LivenessUnknown
		}
		host, port = old.ConnHost, old.ConnPort
	}
	if t := w.nodeAt(host, port); t != nil && t.writable() {
		return ha.Alive
	}
	return ha.Dead
}

// round is one observe → decide → execute pass of agent.round.
func (w *World) round(n *node) {
	a := n.a
	cfg := w.cfgDyn()
	now := w.now
	w.ensureLease(n)
	st := w.probe(n)
	snap, storeOK := w.publishAndLoad(n, st)
	if storeOK {
		a.track.ObserveLeader(now, snap)
		if snap.Leader == nil && a.track.NeedsFreshRecord(snap) {
			st = w.probe(n)
			if s2, ok := w.publishAndLoad(n, st); ok {
				snap = s2
			}
		}
	}
	a.track.ObserveDB(now, st, snap)
	view := a.track.View(ha.View{
		Now: now, Self: n.spec.Name, Tags: n.spec.Tags, Config: cfg, DB: st, StoreOK: storeOK, Snap: a.snap,
		LeaseID: a.leaseID, LastRenewSent: a.lastRenewSent,
		UseRewind: n.spec.UseRewind, AllowReclone: n.spec.AllowReclone,
	})
	// Replication slots are not modelled: every member has one.
	for _, m := range a.snap.Members {
		view.SlotMembers = append(view.SlotMembers, m.Name)
	}
	if ha.WantsOldPrimaryProbe(view) {
		a.track.ObserveOldPrimary(&view, w.probeOldPrimary(n, snap))
	}
	plan := ha.Decide(view)
	if s := plan.String(); s != a.lastPlan {
		w.logf("%s: plan %s (leader %s)", n.spec.Name, s, w.store.leaderString())
		a.lastPlan = s
	}
	failedAct, failed := w.execute(n, view, plan)
	changed := a.self.State != plan.State || a.self.Reason != plan.Reason
	a.self.State, a.self.Reason = plan.State, plan.Reason
	if len(plan.Actions) == 0 && changed {
		// As the agent does: a changed state is published at once.
		w.publishAndLoad(n, st)
	}
	switch {
	case len(plan.Actions) > 0:
		st = w.probe(n)
		w.publishAndLoad(n, st)
		if wait := a.track.BackOff(failedAct, cfg); failed && wait > 0 {
			a.notBefore = now.Add(wait)
			a.nextRound = a.notBefore
		} else {
			a.nextRound = now.Add(10 * time.Millisecond)
		}
	case plan.Soon > 0 && plan.Soon < time.Duration(cfg.LoopWait):
		a.nextRound = now.Add(plan.Soon)
	default:
		a.nextRound = now.Add(time.Duration(cfg.LoopWait))
	}
}

func (w *World) execute(n *node, v ha.View, p ha.Plan) (ha.Action, bool) {
	for _, act := range p.Actions {
		err := w.do(n, v, p, act)
		n.a.track.ActionDone(v, p, act, err)
		if err != nil {
			w.logf("%s: action %s failed: %v", n.spec.Name, act, err)
			return act, true
		}
	}
	return ha.Action{}, false
}

func (w *World) do(n *node, v ha.View, p ha.Plan, act ha.Action) error {
	a, d, s := n.a, &n.db, &w.store
	name := n.spec.Name
	storeUp := func() error {
		if n.partitioned {
			return errUnreachable
		}
		return nil
	}
	switch act.Kind {
	case ha.Initialize:
		if err := storeUp(); err != nil {
			return err
		}
		if s.initialized == "" {
			s.initialized = name
			s.rev++
		}
		if s.initialized != name {
			return fmt.Errorf("cluster bootstrap claimed by %s", s.initialized)
		}
		if !d.hasData {
			*d = simDB{hasData: true, timeline: 1, lsn: 0x1000000, forks: map[uint32]cluster.LSN{}, lag: d.lag, failStarts: d.failStarts}
		}
		return nil
	case ha.Clone:
		return w.cloneFrom(n, w.node(act.Upstream.Name))
	case ha.Rewind, ha.Reclone:
		return w.doRejoin(n, v, act)
	case ha.StartPrimary:
		var err error
		if !d.running {
			err = d.start(w.now, w.cfg)
		}
		return err
	case ha.StartReplica:
		var err error
		if !d.running {
			d.standby, d.upstream = true, ""
			if act.Upstream != nil {
				d.upstream = act.Upstream.Name
			}
			err = d.start(w.now, w.cfg)
		}
		return err
	case ha.Stop:
		if act.Mode == db.StopFast && n.writable() {
			w.shutdownCheckpoint(n)
		}
		d.stop(act.Mode == db.StopImmediate)
		return nil
	case ha.Promote:
		if !d.running || !d.accepting {
			return db.ErrNotRunning
		}
		if !d.standby {
			a.promotedLSN = d.lsn
			return nil
		}
		w.checkHoldsKey(n, "promoted")
		d.forks = copyForks(d.forks)
		d.forks[d.timeline] = d.lsn
		d.timeline++
		d.standby, d.upstream, d.streaming = false, "", false
		a.promotedLSN = d.lsn
		epoch := cluster.Epoch(0)
		if s.leader != nil {
			epoch = s.leader.Epoch
		}
		w.Promotions = append(w.Promotions, fmt.Sprintf("%s@%d", name, epoch))
		w.logf("%s: PROMOTED at %s on timeline %d (key %s)", name, d.lsn, d.timeline, s.leaderString())
		return nil
	case ha.Follow:
		if !d.running || !d.standby {
			return db.ErrNotRunning
		}
		d.upstream = act.Upstream.Name
		return nil
	case ha.AcquireLeader:
		if err := storeUp(); err != nil {
			return err
		}
		if _, ok := s.leases[a.leaseID]; !ok || a.leaseID == 0 {
			return fmt.Errorf("acquire leader key: store lease lost")
		}
		if s.leader != nil {
			return fmt.Errorf("leader key is held by %s (epoch %d)", s.leader.Name, s.leader.Epoch)
		}
		s.rev++
		l := cluster.Leader{Name: name, Epoch: cluster.Epoch(s.rev), Lease: a.leaseID}
		if l.Epoch <= w.maxEpoch {
			w.violate("epoch went from %d to %d", w.maxEpoch, l.Epoch)
		}
		w.maxEpoch = l.Epoch
		s.leader = &l
		// Written in the same transaction as the key, with the address
		// candidates probe (dcs.LeaderLease.AcquireLeader).
		host, port := addr(name)
		s.lastLeader = &cluster.LastLeader{Name: name, Epoch: l.Epoch, Since: w.now, ConnHost: host, ConnPort: port}
		a.holdsLeader = l.Epoch
		a.snap.Leader = &l
		w.logf("%s: acquired leader key epoch %d (lease %d)", name, l.Epoch, l.Lease)
		w.wakeAll()
		return nil
	case ha.ReleaseLeader:
		if err := storeUp(); err != nil {
			return err
		}
		if s.leader != nil && s.leader.Epoch == act.Leader.Epoch {
			w.logf("%s: released leader key epoch %d", name, act.Leader.Epoch)
			s.leader = nil
			s.rev++
			w.wakeAll()
		}
		a.holdsLeader = 0
		return nil
	case ha.RecordFailover:
		kind := "failover"
		if act.History != "" {
			kind = act.History
		}
		if kind == "switchover" {
			w.checkSwitchover(n, v)
		}
		if err := storeUp(); err == nil {
			s.history = append(s.history, cluster.HistoryEntry{Epoch: a.holdsLeader, Kind: kind, NewPrimary: name})
		}
		return nil
	case ha.Handoff:
		// agent.handoff: record the stopped database's final position.
		if v.Snap.Request == nil || v.Snap.Leader == nil {
			return errors.New("handoff: no pending request or leader")
		}
		st := w.probe(n)
		if st.Running || st.Position.LSN == 0 {
			return fmt.Errorf("handoff: cannot read the final position of the stopped database (running=%t)", st.Running)
		}
		if err := storeUp(); err != nil {
			return err
		}
		if s.request == nil {
			return errors.New("handoff: no request is pending")
		}
		r := *v.Snap.Request
		r.Handoff = &cluster.Handoff{Target: act.Target, FinalLSN: st.Position.LSN, Epoch: v.Snap.Leader.Epoch, StoppedAt: w.now}
		s.request = &r
		s.rev++
		w.logf("%s: switchover: stopped at %s, handing over to %s", name, st.Position.LSN, act.Target)
		w.wakeAll()
		return nil
	case ha.ClearRequest:
		if err := storeUp(); err != nil {
			return err
		}
		if s.request != nil {
			w.logf("%s: request %s closed: %s", name, requestString(s.request), p.Reason)
			s.request = nil
			s.rev++
			w.wakeAll()
		}
		return nil
	case ha.MarkCannotFollow:
		return nil // recorded by ha.Tracker.ActionDone
	case ha.CreateSlots, ha.DropSlots, ha.SetSyncStandbys, ha.SetSyncRecord:
		// Slots and synchronous replication are not modelled.
		return nil
	}
	return fmt.Errorf("unknown action %s", act)
}
