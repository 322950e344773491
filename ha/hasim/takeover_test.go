package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/ha"
)

// The failover before the ttl on proof of death (ha/takeover.go). In the
// simulator ttl is 3s and loop_wait 1s.

// leaderEvidence is the evidence of the current leader key's promotion.
func leaderEvidence(w *World) cluster.EvidenceKind {
	if l := w.Leader(); l != nil && l.Promotion != nil && l.Promotion.Evidence != nil {
		return l.Promotion.Evidence.Kind
	}
	return cluster.EvidenceNone
}

// Agent and database of the primary killed on a machine that stays up:
// both ports refuse, every replica loses its stream, and the best one
// (n2) takes the key over before it could expire.
func TestTakeOverCrashedNode(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	run(t, w, 2500*time.Millisecond, Fault{Kind: CrashNode, Member: "n1"})
	if len(w.TakeOvers) != 1 || !strings.HasPrefix(w.TakeOvers[0], "n2<-n1@") {
		t.Fatalf("take-overs %v within 2.5s of the crash (ttl 3s), want n2 over n1\n%s\n%s", w.TakeOvers, w.Summary(), strings.Join(w.Log(), "\n"))
	}
	run(t, w, 2*time.Second)
	expectLeader(t, w, "n2")
	if ev := leaderEvidence(w); ev != cluster.EvidenceRefusedEarly {
		t.Fatalf("evidence %s, want refused-early", ev)
	}
}

// The crashed primary's agent cannot answer the replicas' reports of
// their stream loss, so the take-over does not wait for the lease to go
// unrenewed for loop_wait + 1s: it comes on the unanswered reports, and
// says so in its evidence. (TestNoTakeOverBehindRejectingFirewall is the
// other half: a live leader answers, and fails without the answer.)
func TestTakeOverOnUnansweredStreamLoss(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	crash := w.Now()
	need := ha.TakeOverUnrenewed(w.Config().Dynamic)
	run(t, w, 0, Fault{Kind: CrashNode, Member: "n1"})
	for len(w.TakeOvers) == 0 && w.Now().Sub(crash) < 3*need {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
	}
	l := w.Leader()
	if len(w.TakeOvers) != 1 || l == nil || l.Promotion == nil || l.Promotion.Evidence == nil {
		t.Fatalf("take-overs %v, leader %+v: want n2 to take n1's key over\n%s", w.TakeOvers, l, strings.Join(w.Log(), "\n"))
	}
	ev := l.Promotion.Evidence
	if ev.Kind != cluster.EvidenceRefusedEarly || !strings.Contains(ev.Detail, "stream loss unanswered for") {
		t.Fatalf("evidence %s %q, want refused-early on the unanswered stream loss", ev.Kind, ev.Detail)
	}
	t.Logf("taken over %v after the crash (the lease bound alone: %v after the last renewal): %s", w.Now().Sub(crash), need, ev.Detail)
}

// Only the primary's agent dies (its database runs): its database port
// answers, so there is no take-over; the key runs out as before and the
// liveness rule refuses a writable old primary.
func TestNoTakeOverWhileDatabaseRuns(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: KillAgent, Member: "n1"})
	if len(w.TakeOvers) != 0 || len(w.Promotions) != 0 {
		t.Fatalf("take-overs %v, promotions %v: want none\n%s", w.TakeOvers, w.Promotions, strings.Join(w.Log(), "\n"))
	}
}

// The primary's agent is stopped (SIGSTOP) and its database crashed: the
// database port refuses, but the stopped agent's API port still accepts
// (the kernel completes the handshake), so there is no take-over before
// the key expires.
func TestNoTakeOverWhileAgentStopped(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 2500*time.Millisecond, Fault{Kind: Pause, Member: "n1"}, Fault{Kind: CrashDB, Member: "n1"})
	if len(w.TakeOvers) != 0 {
		t.Fatalf("take-overs %v while n1's agent process exists\n%s", w.TakeOvers, strings.Join(w.Log(), "\n"))
	}
}

// A machine that vanishes (power off: timeouts) or freezes gives no
// refusal: no take-over; the liveness rule decides after the key expires.
func TestNoTakeOverOnTimeouts(t *testing.T) {
	for _, k := range []FaultKind{KillNode, Freeze} {
		w := New(three())
		run(t, w, 10*time.Second)
		run(t, w, 10*time.Second, Fault{Kind: k, Member: "n1"})
		if len(w.TakeOvers) != 0 {
			t.Fatalf("%s: take-overs %v\n%s", k, w.TakeOvers, strings.Join(w.Log(), "\n"))
		}
	}
}

// The crashed primary's agent comes back at once: it answers on its API
// port (and takes its key back under a new epoch), so nobody takes over.
func TestNoTakeOverWhenAgentRestarts(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 5*time.Second, Fault{Kind: CrashNode, Member: "n1"}, Fault{Kind: StartNode, Member: "n1"})
	if len(w.TakeOvers) != 0 {
		t.Fatalf("take-overs %v after n1's agent restarted\n%s", w.TakeOvers, strings.Join(w.Log(), "\n"))
	}
	expectLeader(t, w, "n1")
}

// With fencing require and a fencer, the take-over still fences before it
// promotes (checkPromotionSteps checks the confirmation).
func TestTakeOverFencesUnderRequire(t *testing.T) {
	cfg := three()
	for i := range cfg.Members {
		cfg.Members[i].Fencer = true
	}
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 2500*time.Millisecond, Fault{Kind: CrashNode, Member: "n1"})
	if len(w.TakeOvers) != 1 || len(w.Fences) != 1 || !strings.HasPrefix(w.Fences[0], "n2->n1") {
		t.Fatalf("take-overs %v, fences %v: want n2 to take over and fence n1\n%s", w.TakeOvers, w.Fences, strings.Join(w.Log(), "\n"))
	}
	run(t, w, 2*time.Second)
	expectLeader(t, w, "n2")
}

// A firewall on the primary's machine rejects the other members: their
// streams are cut and both of its ports refuse them, yet its agent lives
// and renews its lease, and its database takes writes. The lease
// condition keeps the replicas from taking over: n1 keeps the key for as
// long as the firewall stays, and nobody else is promoted.
func TestNoTakeOverBehindRejectingFirewall(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	epoch := w.Leader().Epoch
	run(t, w, 20*time.Second, Fault{Kind: Reject, Member: "n1"})
	if len(w.TakeOvers) != 0 || len(w.Promotions) != 0 {
		t.Fatalf("take-overs %v, promotions %v while n1's agent renews behind a rejecting firewall\n%s", w.TakeOvers, w.Promotions, strings.Join(w.Log(), "\n"))
	}
	expectLeader(t, w, "n1")
	if l := w.Leader(); l.Epoch != epoch {
		t.Fatalf("n1 leads epoch %d, want still %d", l.Epoch, epoch)
	}
	run(t, w, 10*time.Second, Fault{Kind: Unreject, Member: "n1"})
	expectLeader(t, w, "n1")
}

// The documented residual: behind the rejecting firewall n1's agent is
// also cut off from the store, so its lease goes unrenewed while its
// database still runs. With fencing require the take-over powers n1 off
// before the promotion, so the two never take writes together (the
// world's invariants check it at every step).
func TestTakeOverBehindRejectingFirewallFencesUnderRequire(t *testing.T) {
	w := New(fencingPolicy(cluster.FencingRequire))
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: Reject, Member: "n1"}, Fault{Kind: Partition, Member: "n1"})
	if len(w.TakeOvers) != 1 || len(w.Fences) == 0 || !strings.Contains(w.Fences[0], "->n1") {
		t.Fatalf("take-overs %v, fences %v: want a replica to take over and fence n1\n%s", w.TakeOvers, w.Fences, strings.Join(w.Log(), "\n"))
	}
	if l := w.Leader(); l == nil || l.Name == "n1" {
		t.Fatalf("leader %v, want a replica", l)
	}
}

// fencedTen is three() with a fencer on every member, fencing require and
// a ttl of 10s, so that a take-over before the ttl shows.
func fencedTen() Config {
	cfg := fencingPolicy(cluster.FencingRequire)
	cfg.Dynamic.TTL = cluster.Duration(10 * time.Second)
	return cfg
}

// A frozen primary (a paused VM: its connections stay up, nothing
// answers) under fencing require: once its lease has gone unrenewed for
// loop_wait + 1s, its agent gives no answer and every replica heard its
// sender stop answering, the best replica takes the key over to fence it,
// and promotes after the confirmed power-off, well before the key's ttl.
func TestFenceTakeOverOfFrozenPrimary(t *testing.T) {
	w := New(fencedTen())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	run(t, w, 7*time.Second, Fault{Kind: Freeze, Member: "n1"})
	if len(w.TakeOvers) != 1 || !strings.HasPrefix(w.TakeOvers[0], "n2<-n1@") || !strings.HasSuffix(w.TakeOvers[0], "(fence)") {
		t.Fatalf("take-overs %v within 7s of the freeze (ttl 10s), want n2 over n1 to fence it\n%s", w.TakeOvers, strings.Join(w.Log(), "\n"))
	}
	if len(w.Fences) != 1 || !strings.HasPrefix(w.Fences[0], "n2->n1") {
		t.Fatalf("fences %v, want n2 to fence n1", w.Fences)
	}
	expectLeader(t, w, "n2")
	if ev := leaderEvidence(w); ev != cluster.EvidenceFence {
		t.Fatalf("evidence %s, want fence", ev)
	}
	t.Logf("evidence: %s", w.Leader().Promotion.Evidence.Detail)
}

// Under fencing require, a primary behind a rejecting firewall (its agent
// API refuses the replicas, their streams are cut) whose agent renews its
// lease is not taken over to be fenced either.
func TestNoFenceTakeOverWhileAgentRenews(t *testing.T) {
	w := New(fencedTen())
	run(t, w, 10*time.Second)
	run(t, w, 30*time.Second, Fault{Kind: Reject, Member: "n1"})
	if len(w.TakeOvers) != 0 || len(w.Fences) != 0 {
		t.Fatalf("take-overs %v, fences %v while n1's agent renews\n%s", w.TakeOvers, w.Fences, strings.Join(w.Log(), "\n"))
	}
	expectLeader(t, w, "n1")
}

// A replica whose upstream stops answering (its node crashed: the key is
// held until the take-over) plans to follow it every round, and the follow
// succeeds without changing anything. The same actions again wait 100ms,
// doubling with each repeat: before, each replica asked for its next round at once
// (10ms: a probe and a store write each) until the key was taken, and
// indefinitely for an upstream it could not reach while the store could.
func TestRepeatedPlanBacksOff(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	rounds, hurried := w.Rounds("n2")
	// Up to the step before the take-over (whose promotion rightly
	// hurries its rounds).
	const most = 1500 * time.Millisecond
	start := w.Now()
	run(t, w, 0, Fault{Kind: CrashNode, Member: "n1"})
	r, h := w.Rounds("n2")
	for w.Now().Sub(start) < most {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		if len(w.TakeOvers) > 0 {
			break
		}
		r, h = w.Rounds("n2")
	}
	window := w.Now().Sub(start)
	r, h = r-rounds, h-hurried
	// The first follow is followed at once by a round that publishes its
	// outcome; the same follow again is not.
	if h > 1 {
		t.Errorf("n2 asked for its next round at once after %d of its %d rounds in the %v after its upstream crashed, want at most 1\n%s",
			h, r, window, strings.Join(w.Log(), "\n"))
	}
	t.Logf("n2 ran %d rounds in %v, %d of them hurried", r, window, h)
}

// While the crashed leader's ports have been refused less than a second
// ago and only its lease is still too recent, the candidate's rounds read
// the lease alone; the take-over comes once the lease has gone unrenewed
// for loop_wait + 1 s (2 s here), on a single port check of its own round
// followed by a lease read. The crash comes 0.2 s before n2's next round,
// so that n2 finds the ports refusing well before the lease reads long
// enough.
func TestTakeOverWaitReadsLeaseOnly(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	expectLeader(t, w, "n1")
	before, _ := w.Rounds("n2")
	for r := before; r == before; r, _ = w.Rounds("n2") {
		run(t, w, w.cfg.Tick)
	}
	run(t, w, time.Duration(w.cfg.Dynamic.LoopWait)-2*w.cfg.Tick)
	rounds, _ := w.Rounds("n2")
	checks := w.PortChecks("n2")
	run(t, w, 2500*time.Millisecond, Fault{Kind: CrashNode, Member: "n1"})
	if len(w.TakeOvers) != 1 || !strings.HasPrefix(w.TakeOvers[0], "n2<-n1@") {
		t.Fatalf("take-overs %v within 2.5s of the crash, want n2 over n1", w.TakeOvers)
	}
	r, _ := w.Rounds("n2")
	r, c := r-rounds, w.PortChecks("n2")-checks
	t.Logf("n2: %d rounds in the 2.5s, %d port checks", r, c)
	// The first round's three checks, and the take-over's single one;
	// the rounds in between read the lease alone.
	if r < 4 || c != 2 {
		t.Errorf("n2 checked the ports in %d of its %d rounds, want 2 (the first, the take-over's) with rounds in between that read the lease alone\n%s",
			c, r, strings.Join(w.Log(), "\n"))
	}
}
