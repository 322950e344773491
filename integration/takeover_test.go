package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// The failover before the ttl on proof of death (docs/design.md, "Failover
// before the ttl"), against real PostgreSQL and etcd.

// The primary's agent and PostgreSQL are SIGKILLed together on a host that
// stays up: both ports refuse, every replica loses its stream, and the best
// replica takes the key over while it is still held (evidence
// refused-early: that cannot happen after the key expired). In synchronous
// mode no acknowledged write is lost.
func TestTakeOverOnProofOfDeathInSyncMode(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	setConfig(t, c, "synchronous_mode", "on")
	waitSyncRecord(t, c, 30*time.Second)
	old, lead := leader(t, c)
	w := startWriters(t, c, "takeover")
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+50); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObservePromotion(ctxFor(t, ttl+time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	a := w.stop()
	h := lastPromotion(t, c, old.Name)
	if h.Evidence == nil || h.Evidence.Kind != cluster.EvidenceRefusedEarly {
		t.Fatalf("evidence %v: want refused-early (the key taken over before it expired)", h.Evidence)
	}
	if h.Epoch <= lead.Epoch {
		t.Errorf("new epoch %d not above the old %d", h.Epoch, lead.Epoch)
	}
	if missing := verifyNoLoss(t, w.allOpt, a.all.AckedIDs); len(missing) > 0 {
		t.Errorf("synchronous mode: %d acknowledged writes lost: %v", len(missing), missing)
	}
	// How fast is for the drill (docs/drills.md), not for a test that a
	// loaded machine could fail while hamgr behaves correctly.
	t.Logf("agent and database killed: %s promoted %v after (ttl %v); write unavailability %v; evidence %s",
		tl.New, tl.Promoted, ttl, a.all.OutageAround(t0), h.Evidence)
}

// Only the primary's agent is killed (its PostgreSQL runs and answers on
// its port): no take-over. The key runs out on its ttl, and the replicas
// refuse to promote over a writable old primary (fencing off).
func TestNoTakeOverWhenOnlyTheAgentDies(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	if err := old.KillAgent(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(localcluster.FastTiming.TTL)
	var took string
	err := localcluster.WaitFor(ctxFor(t, ttl+30*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		if s.Leader != nil && s.Leader.Epoch != lead.Epoch {
			took = s.Leader.Name
			return true
		}
		return s.Leader == nil
	})
	if err != nil {
		t.Fatalf("leader key did not expire: %v", err)
	}
	if took != "" {
		t.Fatalf("%s took the key while %s's database runs", took, old.Name)
	}
	for _, n := range others(c, old.Name) {
		waitReason(t, c, n.Name, "still accepts writes|is the better candidate", 15*time.Second)
	}
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Evidence != nil && h.Evidence.Kind == cluster.EvidenceRefusedEarly {
			t.Errorf("history entry %+v: a take-over while the old primary's database runs", h)
		}
	}
	if s, _ := c.Snapshot(context.Background()); s.Leader != nil {
		t.Errorf("leader %s at epoch %d, want none (the old primary still writes)", s.Leader.Name, s.Leader.Epoch)
	}
	t.Logf("%s's agent killed, its database alive: no take-over; the replicas refuse to promote (fencing off)", old.Name)
}
