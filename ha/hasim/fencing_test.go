package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// fencingPolicy is fencing(off) (a fencer on every member, asynchronous
// replication) under the given fencing policy.
func fencingPolicy(p cluster.FencingPolicy) Config {
	cfg := fencing(cluster.SyncOff)
	cfg.Dynamic.Fencing = p
	return cfg
}

// expectNoPrimaryFor runs d and fails if any member runs a writable
// primary meanwhile.
func expectNoPrimaryFor(t *testing.T, w *World, d time.Duration, why string) {
	t.Helper()
	for end := w.Now().Add(d); w.Now().Before(end); {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		if ps := w.Primaries(); len(ps) != 0 {
			t.Fatalf("primaries %v: %s\n%s", ps, why, strings.Join(w.Log(), "\n"))
		}
	}
}

// Under require, a fence that keeps failing holds the promotion: the new
// leader reports fencing_unconfirmed and never promotes (checkPromotionSteps
// also refuses any promote without a confirmed fence), then promotes once
// the fence succeeds, recording the fence step in the history.
func TestFencingRequireHoldsUntilConfirmed(t *testing.T) {
	w := New(fencingPolicy(cluster.FencingRequire))
	run(t, w, 10*time.Second)
	run(t, w, 0, Fault{Kind: FailCall, Member: "n2", Call: CallFence, N: 1000}, Fault{Kind: KillNode, Member: "n1"})
	expectNoPrimaryFor(t, w, 30*time.Second, "promoted under fencing require without a confirmed fence")
	if st := w.Status("n2"); st.Problem != cluster.ProblemFencingUnconfirmed || !st.HoldsLeader {
		t.Fatalf("n2: problem %q, holds the key %v; want fencing_unconfirmed while holding it (%s)", st.Problem, st.HoldsLeader, st.Reason)
	}
	w.node("n2").failCalls = nil
	run(t, w, 60*time.Second) // back-off up to 30s between attempts
	expectCompletePromotion(t, w, "n2", 1)
	h := failoverHistory(w)[0]
	if h.Fence == nil || h.Fence.Result != cluster.FenceConfirmed || h.Fence.Target != "n1" || h.Fence.Attempts < 2 {
		t.Fatalf("history fence %+v: want n1 confirmed after failed attempts", h.Fence)
	}
}

// Under best-effort, the old primary proven dead (its node powered off:
// streams silent) and the fence failing, the new leader promotes once it
// has held the key for ttl, and records the fence as unconfirmed.
func TestFencingBestEffortPromotesAfterTimeout(t *testing.T) {
	w := New(fencingPolicy(cluster.FencingBestEffort))
	run(t, w, 10*time.Second)
	run(t, w, 0, Fault{Kind: FailCall, Member: "n2", Call: CallFence, N: 1000}, Fault{Kind: KillNode, Member: "n1"})
	if err := runUntil(w, 30*time.Second, func() bool { l := w.Leader(); return l != nil && l.Name == "n2" }); err != nil {
		t.Fatalf("n2 never took the key: %v", err)
	}
	taken := w.Now()
	if err := runUntil(w, 30*time.Second, func() bool { return len(w.Primaries()) == 1 }); err != nil {
		t.Fatalf("best-effort never promoted: %v\n%s", err, strings.Join(w.Log(), "\n"))
	}
	if held := w.Now().Sub(taken); held < time.Duration(w.Config().Dynamic.TTL) {
		t.Fatalf("promoted %s after taking the key, before ttl %s", held, time.Duration(w.Config().Dynamic.TTL))
	}
	run(t, w, 10*time.Second)
	h := failoverHistory(w)
	if len(h) != 1 || h[0].Fence == nil || h[0].Fence.Result != cluster.FenceUnconfirmed || h[0].Fence.Target != "n1" {
		t.Fatalf("history %+v: want one failover whose fence of n1 is unconfirmed", h)
	}
	if len(w.Fences) != 0 {
		t.Fatalf("fences %v, want none (every attempt failed)", w.Fences)
	}
}

// The agent-dead, database-alive old primary: without fencing the
// replicas refuse (old_primary_writable) for as long as it lasts; with
// best-effort and a failing fence they still never promote over it (the
// fence is the only proof); once the fence succeeds the old primary is
// powered off and the best candidate promoted.
func TestFencingAgentDeadDatabaseAlive(t *testing.T) {
	off := New(fencingPolicy(cluster.FencingOff))
	run(t, off, 10*time.Second)
	run(t, off, 0, Fault{Kind: KillAgent, Member: "n1"})
	run(t, off, 20*time.Second)
	if ps := off.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("fencing off: primaries %v, want the agent-less n1 only", ps)
	}
	if st := off.Status("n2"); st.Problem != cluster.ProblemOldPrimaryWritable {
		t.Fatalf("fencing off: n2 problem %q (%s), want old_primary_writable", st.Problem, st.Reason)
	}
	if l := off.Leader(); l != nil {
		t.Fatalf("fencing off: %s took the key over a writable old primary", l.Name)
	}

	w := New(fencingPolicy(cluster.FencingBestEffort))
	run(t, w, 10*time.Second)
	run(t, w, 0, Fault{Kind: FailCall, Member: "n2", Call: CallFence, N: 1000}, Fault{Kind: KillAgent, Member: "n1"})
	run(t, w, 40*time.Second)
	if ps := w.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("best-effort, fence failing: primaries %v, want n1 only (never promote over a writable primary unfenced)", ps)
	}
	if st := w.Status("n2"); st.Problem != cluster.ProblemFencingUnconfirmed {
		t.Fatalf("n2 problem %q (%s), want fencing_unconfirmed", st.Problem, st.Reason)
	}
	w.node("n2").failCalls = nil
	run(t, w, 60*time.Second)
	expectCompletePromotion(t, w, "n2", 1)
	if n1 := w.node("n1"); n1.alive {
		t.Fatal("the old primary n1 was not powered off")
	}
	if h := failoverHistory(w)[0]; h.Evidence.Kind != cluster.EvidenceFence {
		t.Fatalf("evidence %v, want fence", h.Evidence)
	}
}

// Under require, a best candidate with no fencer for the old primary does
// not take the key (fencing_not_configured); a candidate with one does.
func TestFencingRequireWithoutFencerForTheOldPrimary(t *testing.T) {
	cfg := three()
	cfg.Members[2].Fencer = true // only n3, the worse candidate
	cfg.Dynamic.Fencing = cluster.FencingRequire
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 0, Fault{Kind: KillNode, Member: "n1"})
	if err := runUntil(w, 30*time.Second, func() bool { return w.Status("n2").Problem == cluster.ProblemFencingNotConfigured }); err != nil {
		t.Fatalf("n2 never reported fencing_not_configured: %v (last: %s)", err, w.Status("n2").Reason)
	}
	if l := w.Leader(); l != nil && l.Name == "n2" {
		t.Fatal("n2 took the key without a fencer for n1")
	}
	run(t, w, 30*time.Second)
	if l := w.Leader(); l == nil || l.Name != "n3" || len(w.Fences) != 1 || !strings.HasPrefix(w.Fences[0], "n3->n1@") {
		t.Fatalf("leader %v, fences %v: want n3 leading after fencing n1", l, w.Fences)
	}
}

// The fence owed outlives the winner that owed it. n1's agent dies while
// its database runs (fencing is the only proof): n2, the best candidate,
// takes the key and dies in its fence step, and so does n3. n4 then leads
// after the loss of n3's epoch — but n3 and n2 never promoted, and n1 still
// runs as a primary: the fence owed since n2 took the key makes n4 fence
// n1, not n3, before it promotes. Fencing the last leader instead left two
// writable primaries.
func TestFenceOwedOutlivesTheWinner(t *testing.T) {
	cfg := Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2", Lag: 0x200}, {Name: "n3", Lag: 0x800}, {Name: "n4", Lag: 0x900}}}
	for i := range cfg.Members {
		cfg.Members[i].Fencer = true
	}
	w := New(cfg)
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	run(t, w, 30*time.Second, Fault{Kind: KillAgent, Member: "n1"},
		Fault{Kind: DieOnCall, Member: "n2", Call: CallFence}, Fault{Kind: DieOnCall, Member: "n3", Call: CallFence})
	expectLeader(t, w, "n4")
	if len(w.Fences) != 1 || !strings.HasPrefix(w.Fences[0], "n4->n1") {
		t.Fatalf("fences %v: want n4 to fence n1, the primary nobody fenced\n%s", w.Fences, strings.Join(w.Log(), "\n"))
	}
	if o := w.store.Snapshot().FenceOwed; o != nil {
		t.Fatalf("fence owed %+v after n4 fenced n1 and promoted", o)
	}
}
