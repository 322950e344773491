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
	}
	if s.Config != nil && s.Config.SynchronousMode.Enabled() && !n.db.syncAny && len(n.db.syncNames) == 0 {
		w.violate("%s promoted at epoch %d in synchronous mode %s before requiring a standby's confirmation",
			n.spec.Name, l.Epoch, s.Config.SynchronousMode)
	}
}
