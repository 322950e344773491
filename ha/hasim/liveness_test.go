package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Scenarios of issue 7: a probe that does not answer is never proof.

func noPromotions(t *testing.T, w *World) {
	t.Helper()
	if len(w.Promotions) != 0 {
		t.Fatalf("promotions %v\n%s\n%s", w.Promotions, w.Summary(), strings.Join(w.Log(), "\n"))
	}
}

// The primary's agent and postmaster are frozen (SIGSTOP of the agent's
// process group) while its backends and WAL senders keep going: its probes
// time out, but the replicas still hear its WAL, so nobody is promoted.
// Resumed, its agent takes its key back and the primary never stopped.
func TestFrozenAgentAndPostmasterNoPromotion(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 25*time.Second, Fault{Kind: Pause, Member: "n1"}, Fault{Kind: Hang, Member: "n1"})
	noPromotions(t, w)
	if ps := w.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("primaries %v, want n1 still writable", ps)
	}
	if s := w.Status("n2"); s.Problem != cluster.ProblemOldPrimaryNotProvenDead || !strings.Contains(s.Reason, "gave no answer") {
		t.Errorf("n2's problem %q, reason %q: want the no-proof refusal", s.Problem, s.Reason)
	}
	run(t, w, 10*time.Second, Fault{Kind: Resume, Member: "n1"}, Fault{Kind: Unhang, Member: "n1"})
	noPromotions(t, w)
	expectLeader(t, w, "n1")
	if !strings.Contains(strings.Join(w.Log(), "\n"), "n1: kept the primary after resuming") {
		t.Errorf("n1 did not keep its primary by taking its key back\n%s", strings.Join(w.Log(), "\n"))
	}
}

// The primary's agent dies on an overloaded machine: every probe of its
// database times out, its WAL still flows: no promotion.
func TestAgentDeathOnOverloadedPrimaryNoPromotion(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 30*time.Second, Fault{Kind: KillAgent, Member: "n1"}, Fault{Kind: Overload, Member: "n1"})
	noPromotions(t, w)
	if ps := w.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("primaries %v, want n1", ps)
	}
}

// A primary whose machine vanishes (power loss: timeouts, no refusals) is
// still failed over, once the replicas' streams have been silent for the
// bound (max(ttl - loop_wait, receiver timeout) = 4s here).
func TestVanishedPrimaryFailsOver(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	kill := w.Now()
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	h := w.History()
	if len(h) != 1 || h[0].Evidence == nil || h[0].Evidence.Kind != cluster.EvidenceStreamsSilent {
		t.Fatalf("history %+v, want one failover on streams-silent evidence", h)
	}
	t.Logf("promoted %s after the power loss at +%s: %s", w.Promotions[0], kill.Sub(Origin), h[0].Evidence)
}

// A frozen machine (a paused VM) looks like a vanished one and is failed
// over; when it thaws, its agent fences its database before anything else
// (modelled: the simulator lets the agent win that race), and the old
// primary rejoins.
func TestFrozenPrimaryFailsOverAndFencesOnThaw(t *testing.T) {
	cfg := three()
	for i := range cfg.Members {
		cfg.Members[i].UseRewind = true
	}
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: Freeze, Member: "n1"})
	expectLeader(t, w, "n2")
	run(t, w, 20*time.Second, Fault{Kind: Thaw, Member: "n1"})
	expectLeader(t, w, "n2")
	if st := w.Status("n1"); !st.DB.Streaming {
		t.Errorf("n1 did not rejoin after the thaw: %+v (%s)", st.DB, st.Reason)
	}
}

// A primary whose postmaster hangs while its agent lives: the agent sees
// its own database stalled (a fresh connection does not get in), and after
// primary_start_timeout kills it and releases the key; a replica takes
// over on the refused connection.
func TestHungPostmasterIsReleased(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: Hang, Member: "n1"})
	expectLeader(t, w, "n2")
	if !strings.Contains(strings.Join(w.Log(), "\n"), "problem="+string(cluster.ProblemDatabaseStalled)) {
		t.Errorf("n1 never said its database stalled\n%s", strings.Join(w.Log(), "\n"))
	}
}

// etcd loses quorum long enough for the primary to fence itself, then
// comes back with every lease revoked at once (as seen in issue 7): the
// fenced old primary, the most advanced (its fence shut down cleanly, so
// its WAL reached the replicas too), takes its own key back; no needless
// failover.
func TestStoreReturnWithLeasesRevokedNoNeedlessFailover(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: StoreOutage})
	if ps := w.Primaries(); len(ps) != 0 {
		t.Fatalf("primaries %v during the outage, want none (the leader fences itself)", ps)
	}
	run(t, w, 15*time.Second, Fault{Kind: StoreReturn})
	noPromotions(t, w)
	expectLeader(t, w, "n1")
}

// etcd loses its quorum for longer than primary_start_timeout (3s here)
// and comes back as a real etcd cluster does, every lease extended to its
// full TTL: the leader key is still the fenced old primary's. Its agent
// restarts its database as the primary; it does not count the outage,
// when it could not start it, against primary_start_timeout and release
// the key as if the database would not come back (the needless failover
// the 3-member etcd quorum-loss test found).
func TestStoreReturnKeepingLeasesAfterLongOutageNoNeedlessFailover(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: StoreOutage})
	if ps := w.Primaries(); len(ps) != 0 {
		t.Fatalf("primaries %v during the outage, want none (the leader fences itself)", ps)
	}
	run(t, w, 15*time.Second, Fault{Kind: StoreReturnRenewing})
	noPromotions(t, w)
	expectLeader(t, w, "n1")
	if h := w.History(); len(h) != 0 {
		t.Errorf("history %+v, want no new leadership", h)
	}
	if log := strings.Join(w.Log(), "\n"); strings.Contains(log, "did not come back") {
		t.Errorf("n1 gave up its database after the outage\n%s", log)
	}
}

// Only the primary's agent pauses, longer than the ttl: nobody may promote
// (its WAL flows), and on resume it keeps its primary rather than stopping
// it (issue 7, point 6).
func TestPausedAgentKeepsItsPrimaryOnResume(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 25*time.Second, Fault{Kind: Pause, Member: "n1"})
	noPromotions(t, w)
	run(t, w, 10*time.Second, Fault{Kind: Resume, Member: "n1"})
	noPromotions(t, w)
	expectLeader(t, w, "n1")
	if strings.Contains(strings.Join(w.Log(), "\n"), "n1: stopping") {
		t.Errorf("n1 stopped its database after resuming\n%s", strings.Join(w.Log(), "\n"))
	}
}

// The primary's machine loses power; the replicas' agents restart after
// their receivers dropped the silent connection: nobody has proof, so
// nobody promotes. The operator, who knows the machine is off, fails over
// with --confirm-down; the promotion records the operator as its evidence.
func TestPowerLossWithoutProofNeedsTheOperator(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: KillNode, Member: "n1"}, Fault{Kind: KillAgent, Member: "n2"}, Fault{Kind: KillAgent, Member: "n3"})
	run(t, w, 20*time.Second, Fault{Kind: StartAgent, Member: "n2"}, Fault{Kind: StartAgent, Member: "n3"})
	noPromotions(t, w)
	if s := w.Status("n2"); s.Problem != cluster.ProblemOldPrimaryNotProvenDead {
		t.Errorf("n2's problem %q (reason %q), want the no-proof refusal", s.Problem, s.Reason)
	}
	run(t, w, 10*time.Second, Fault{Kind: Failover, Member: "n3"})
	noPromotions(t, w) // a manual failover without the confirmation needs the proof too
	run(t, w, 10*time.Second, Fault{Kind: CancelRequest})
	run(t, w, 10*time.Second, Fault{Kind: Failover, Member: "n3", ConfirmDown: "n1"})
	expectLeader(t, w, "n3")
	h := w.History()
	if len(h) != 1 || h[0].Evidence == nil || h[0].Evidence.Kind != cluster.EvidenceOperator {
		t.Fatalf("history %+v, want a manual failover on the operator's confirmation", h)
	}
}
