package hasim

import (
	"context"
	"fmt"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/memstore"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/stonith"
)

// Call names a call of an agent into its database, its store, its fencer
// or its publisher that faults FailCall and DieOnCall target.
type Call string

// The calls a fault can target: one per step of a promotion.
const (
	CallAcquire         Call = "acquire-leader"
	CallFence           Call = "fence"
	CallSetSync         Call = "set-sync"
	CallPrePromote      Call = "pre-promote"
	CallPromote         Call = "promote"
	CallPublish         Call = "publish"
	CallUpdatePromotion Call = "update-promotion"
	CallHistory         Call = "append-history"
)

// callFault applies the faults armed for n's next call: the agent process
// dies in it (DieOnCall: it never returns to its agent, which makes no
// further call) or it fails (FailCall). A nil error lets the call go on.
func (w *World) callFault(n *node, call Call) error {
	if n.dieOn == call {
		n.dieOn = ""
		w.logf("%s: its agent died while calling %s", n.spec.Name, call)
		n.agentDown, n.agentGoneAt = true, w.now
		n.client.SetReachable(false)
		return fmt.Errorf("agent process died calling %s", call)
	}
	if n.failCalls[call] > 0 {
		n.failCalls[call]--
		w.logf("%s: injected failure of %s", n.spec.Name, call)
		return fmt.Errorf("injected failure of %s", call)
	}
	return nil
}

// simFencer powers the target's simulated machine off, as a BMC would:
// the agent dies and the database stops at once, whatever state the
// machine was in (frozen, partitioned, hung). Each fence is listed in
// World.Fences.
type simFencer struct {
	w *World
	n *node
}

func (f simFencer) Fence(_ context.Context, t stonith.Target) (stonith.Confirmation, error) {
	w := f.w
	if err := w.callFault(f.n, CallFence); err != nil {
		return stonith.Confirmation{}, err
	}
	target := w.node(t.Name)
	if target == nil {
		return stonith.Confirmation{}, fmt.Errorf("no BMC known for %s", t.Name)
	}
	w.checkFence(f.n, t.Name)
	target.alive, target.frozen = false, false
	target.db.stop(true)
	epoch := cluster.Epoch(0)
	if l := w.Leader(); l != nil {
		epoch = l.Epoch
	}
	w.Fences = append(w.Fences, fmt.Sprintf("%s->%s@%d", f.n.spec.Name, t.Name, epoch))
	w.logf("%s: FENCED %s (powered off)", f.n.spec.Name, t.Name)
	return stonith.Confirmation{Method: "sim power off", Detail: "power state read back: off"}, nil
}

// simPublisher is every agent's publisher: it lists each publication in
// World.Publications.
type simPublisher struct {
	w *World
	n *node
}

func (p simPublisher) Name() string { return "sim" }

func (p simPublisher) Publish(_ context.Context, pr discovery.Primary) error {
	if err := p.w.callFault(p.n, CallPublish); err != nil {
		return err
	}
	p.w.Publications = append(p.w.Publications, fmt.Sprintf("%s@%d", pr.Name, pr.Epoch))
	return nil
}

// PublishesReplicas reports true: every agent's publisher also publishes
// the replicas (discovery.ReplicaPublisher).
func (p simPublisher) PublishesReplicas() bool { return true }

// PublishReplicas lists each publication of the replica set in
// World.ReplicaSets, as "primary@epoch:[hosts]".
func (p simPublisher) PublishReplicas(_ context.Context, epoch cluster.Epoch, hosts []string) error {
	if err := p.w.callFault(p.n, CallPublish); err != nil {
		return err
	}
	p.w.ReplicaSets = append(p.w.ReplicaSets, fmt.Sprintf("%s@%d:%v", p.n.spec.Name, epoch, hosts))
	return nil
}

// simPrePromoter is every agent's pre_promote hook (blocking on failure):
// it lists each successful run in World.PrePromotes, and records a
// violation if it runs, or fails, on a database that is already a primary
// (the hook must run before the promotion, and a failing one must keep it
// from happening).
type simPrePromoter struct {
	w *World
	n *node
}

func (p simPrePromoter) PrePromote(_ context.Context, pr discovery.Primary) error {
	if p.n.db.hasData && !p.n.db.standby {
		p.w.violate("%s: pre_promote ran on a database already promoted", p.n.spec.Name)
	}
	if err := p.w.callFault(p.n, CallPrePromote); err != nil {
		return err
	}
	p.w.PrePromotes = append(p.w.PrePromotes, fmt.Sprintf("%s@%d over %s", pr.Name, pr.Epoch, pr.OldPrimary))
	return nil
}

// faultyStore is an agent's store client with the promotion's store calls
// open to FailCall and DieOnCall.
type faultyStore struct {
	*memstore.Client
	w *World
	n *node
}

func (s faultyStore) AcquireLeader(ctx context.Context, who cluster.LastLeader, after cluster.Epoch, p *cluster.Promotion) (cluster.Leader, bool, error) {
	if err := s.w.callFault(s.n, CallAcquire); err != nil {
		return cluster.Leader{}, false, err
	}
	return s.Client.AcquireLeader(ctx, who, after, p)
}

func (s faultyStore) UpdatePromotion(ctx context.Context, l cluster.Leader, p cluster.Promotion) error {
	if err := s.w.callFault(s.n, CallUpdatePromotion); err != nil {
		return err
	}
	return s.Client.UpdatePromotion(ctx, l, p)
}

func (s faultyStore) AppendHistory(ctx context.Context, e cluster.HistoryEntry) error {
	if err := s.w.callFault(s.n, CallHistory); err != nil {
		return err
	}
	return s.Client.AppendHistory(ctx, e)
}

// checkFence: a fence by fencer of target happens only while fencer holds
// the leader key of an epoch E whose promotion record names target as its
// old primary, target being the leader of the epoch the promotion took
// over from (the last leader) or of the epoch of a fence still owed
// (owesFence), and not fencer itself; and at most once per epoch.
func (w *World) checkFence(fencer *node, target string) {
	l := w.store.Snapshot().Leader
	switch {
	case l == nil || l.Name != fencer.spec.Name:
		w.violate("%s fenced %s without holding the leader key (leader %s)", fencer.spec.Name, target, w.leaderString())
		return
	case l.Promotion == nil || l.Promotion.OldPrimary != target || target == fencer.spec.Name:
		w.violate("%s fenced %s at epoch %d, not the old primary of its promotion (%v)", fencer.spec.Name, target, l.Epoch, l.Promotion)
		return
	}
	if old, ok := w.leaderAt[l.Promotion.Lost]; ok && old != target && !w.owesFence(target) {
		w.violate("%s fenced %s at epoch %d, but %s led the lost epoch %d", fencer.spec.Name, target, l.Epoch, old, l.Promotion.Lost)
	}
	if w.fencedAt == nil {
		w.fencedAt = map[cluster.Epoch]string{}
	}
	if prev, ok := w.fencedAt[l.Epoch]; ok {
		w.violate("%s fenced %s a second time at epoch %d (first: %s)", fencer.spec.Name, target, l.Epoch, prev)
	}
	w.fencedAt[l.Epoch] = target
}

// owesFence reports whether the store's fence owed names target as the
// leader of the epoch an unfinished earlier promotion took over from: a
// promotion then fences it rather than its own last leader.
func (w *World) owesFence(target string) bool {
	o := w.store.Snapshot().FenceOwed
	if o == nil || o.Target != target {
		return false
	}
	old, ok := w.leaderAt[o.Lost]
	return ok && old == target
}

// checkPromotionSteps: no database is promoted at epoch E before every
// earlier step of E's promotion is done — the key was taken with a
// promotion record (StepKey), the old primary was dealt with (StepFence:
// fenced, or no fencer and the liveness evidence), and in synchronous mode
// the database requires a standby's confirmation of every commit
// (StepSync, observed on the database itself).
func (w *World) checkPromotionSteps(n *node) {
	s := w.store.Snapshot()
	l := s.Leader
	if l == nil || l.Name != n.spec.Name {
		return // checkHoldsKey reports it
	}
	p := l.Promotion
	switch {
	case p == nil:
		w.violate("%s promoted at epoch %d under a leader key without a promotion record", n.spec.Name, l.Epoch)
		return
	case !p.Has(cluster.StepKey) || !p.Has(cluster.StepFence):
		w.violate("%s promoted at epoch %d before the earlier steps were done (%s)", n.spec.Name, l.Epoch, p)
	case mustConfirmFence(s, *p, n.spec.Name) && (p.Fence == nil || p.Fence.Result != cluster.FenceConfirmed):
		w.violate("%s promoted at epoch %d over %s without a confirmed fence (fencing %s, evidence %v, fence %v)",
			n.spec.Name, l.Epoch, p.OldPrimary, s.Config.Fencing, p.Evidence, p.Fence)
	}
	// A semi-synchronous engine in mode on starts asynchronous when nobody
	// is asked to acknowledge, and its record says so (ha.waitBeforePromote).
	semiAsync := w.cfg.SemiSync && s.Config != nil && s.Config.SynchronousMode == cluster.SyncOn &&
		s.Sync != nil && s.Sync.Epoch == l.Epoch && s.Sync.Async
	if s.Config != nil && s.Config.SynchronousMode.Enabled() && !n.db.syncAny && len(n.db.syncNames) == 0 && !semiAsync {
		w.violate("%s promoted at epoch %d in synchronous mode %s before requiring a standby's confirmation",
			n.spec.Name, l.Epoch, s.Config.SynchronousMode)
	}
}

// mustConfirmFence reports whether promotion p of self may promote only
// after a confirmed fence: it is over another member that neither handed
// over nor was fenced by an operator, and fencing is require or the fence
// is the promotion's only proof (evidence fence).
func mustConfirmFence(s cluster.Snapshot, p cluster.Promotion, self string) bool {
	if p.OldPrimary == "" || p.OldPrimary == self || p.Evidence == nil {
		return false
	}
	switch p.Evidence.Kind {
	case cluster.EvidenceHandoff, cluster.EvidenceFenced, cluster.EvidenceNone:
		return false
	case cluster.EvidenceFence:
		return true
	}
	return s.Config != nil && s.Config.Fencing == cluster.FencingRequire
}
