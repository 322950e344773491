package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

func three() Config {
	return Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2", Lag: 0x200}, {Name: "n3", Lag: 0x800}}}
}

// run steps for d, failing the test on any invariant violation.
func run(t *testing.T, w *World, d time.Duration, faults ...Fault) {
	t.Helper()
	if len(faults) > 0 {
		if err := w.Step(faults...); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Run(d); err != nil {
		t.Fatal(err)
	}
}

// expectLeader checks that name is the only writable primary and holds the
// leader key on its agent's current lease.
func expectLeader(t *testing.T, w *World, name string) {
	t.Helper()
	ps := w.Primaries()
	if len(ps) != 1 || ps[0] != name {
		t.Fatalf("primaries = %v, want [%s]\n%s\n%s", ps, name, w.Summary(), strings.Join(w.Log(), "\n"))
	}
	if st := w.Status(name); !st.HoldsLeader {
		t.Fatalf("%s is the primary but does not hold the leader key (key %v)\n%s\n%s", name, w.Leader(), w.Summary(),
			strings.Join(w.Log(), "\n"))
	}
}

func TestSteadyState(t *testing.T) {
	w := New(three())
	run(t, w, time.Minute)
	expectLeader(t, w, "n1")
	for _, n := range []string{"n2", "n3"} {
		if st := w.Status(n); !st.DB.Streaming || st.DB.UpstreamHost != "n1" {
			t.Errorf("%s not streaming from n1: %+v", n, st.DB)
		}
	}
	if len(w.Promotions) != 0 {
		t.Errorf("promotions in a healthy cluster: %v", w.Promotions)
	}
}

func TestBootstrapFromEmpty(t *testing.T) {
	cfg := three()
	cfg.Fresh = true
	w := New(cfg)
	run(t, w, 30*time.Second)
	ps := w.Primaries()
	if len(ps) != 1 {
		t.Fatalf("primaries = %v\n%s", ps, w.Summary())
	}
	expectLeader(t, w, ps[0])
	for _, n := range []string{"n1", "n2", "n3"} {
		if n == ps[0] {
			continue
		}
		if st := w.Status(n); !st.DB.Streaming {
			t.Errorf("%s not streaming: %+v\n%s", n, st.DB, w.Summary())
		}
	}
}

// The primary's node dies: the most advanced replica (n2, lag 0x200 vs
// 0x800) takes over; n1 comes back and cannot follow (its unreplicated WAL
// diverged from the new timeline), so it stays stopped.
func TestNodeCrashOfPrimary(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	if got := strings.Join(w.Promotions, ","); !strings.HasPrefix(got, "n2@") || strings.Contains(got, ",") {
		t.Errorf("promotions = %s, want one of n2", got)
	}
	if st := w.Status("n3"); !st.DB.Streaming || st.DB.UpstreamHost != "n2" {
		t.Errorf("n3 does not follow n2: %+v", st.DB)
	}
	run(t, w, 40*time.Second, Fault{Kind: StartNode, Member: "n1"})
	expectLeader(t, w, "n2")
	if st := w.Status("n1"); st.DB.Running || st.State != "cannot_follow" {
		t.Errorf("n1 = running %v state %s, want stopped and cannot_follow\n%s", st.DB.Running, st.State, w.Summary())
	}
}

// With no lag the old primary rejoins as a replica of the new leader.
func TestNodeCrashOfPrimaryRejoins(t *testing.T) {
	w := New(Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}})
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2") // equal positions: the name breaks the tie
	run(t, w, 20*time.Second, Fault{Kind: StartNode, Member: "n1"})
	expectLeader(t, w, "n2")
	if st := w.Status("n1"); !st.DB.Streaming || st.DB.UpstreamHost != "n2" {
		t.Errorf("n1 did not rejoin as a replica of n2: %+v\n%s", st.DB, w.Summary())
	}
}

// The leader is cut off from the store: it fences itself before its lease
// expires (checked by the invariants), a replica takes over, and after the
// partition heals the old leader never runs as a primary again.
func TestPartitionOfLeaderFromStore(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: Partition, Member: "n1"})
	expectLeader(t, w, "n2")
	if st := w.Status("n1"); st.DB.Running {
		t.Errorf("partitioned n1 still runs its database: %+v", st.DB)
	}
	run(t, w, 30*time.Second, Fault{Kind: Heal, Member: "n1"})
	expectLeader(t, w, "n2")
}

// A partition shorter than the fence deadline changes nothing.
func TestShortPartitionOfLeader(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 1200*time.Millisecond, Fault{Kind: Partition, Member: "n1"})
	run(t, w, 20*time.Second, Fault{Kind: Heal, Member: "n1"})
	expectLeader(t, w, "n1")
	if len(w.Promotions) != 0 {
		t.Errorf("promotions after a short partition: %v", w.Promotions)
	}
}

// The leader's agent is SIGSTOPped while its database keeps running: the
// key expires, but replicas see the old primary still writable and do not
// promote. After SIGCONT the agent's fence timer stops the database at once
// (its deadline passed long ago); then either it takes the key back or a
// replica is elected; never two primaries.
func TestAgentPausedWithDatabaseAlive(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: Pause, Member: "n1"})
	if w.Leader() != nil {
		t.Fatalf("leader key %v survived a paused agent", w.Leader())
	}
	if ps := w.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("primaries = %v, want the paused n1 only", ps)
	}
	if len(w.Promotions) != 0 {
		t.Fatalf("promoted while the old primary accepts writes: %v", w.Promotions)
	}
	if s := w.Status("n2"); s.Problem != cluster.ProblemOldPrimaryWritable {
		t.Errorf("n2 problem = %q (reason %q), want %s", s.Problem, s.Reason, cluster.ProblemOldPrimaryWritable)
	}
	run(t, w, 20*time.Second, Fault{Kind: Resume, Member: "n1"})
	ps := w.Primaries()
	if len(ps) != 1 {
		t.Fatalf("primaries = %v, want one\n%s", ps, w.Summary())
	}
	expectLeader(t, w, ps[0])
}

// The leader's agent dies with the database running: replicas wait; the
// restarted agent adopts the database (stale own key or no key, no newer
// epoch) and leads again.
func TestAgentRestartAdoptsDatabase(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 500*time.Millisecond, Fault{Kind: KillAgent, Member: "n1"})
	run(t, w, 10*time.Second, Fault{Kind: StartAgent, Member: "n1"})
	expectLeader(t, w, "n1")
	run(t, w, 10*time.Second, Fault{Kind: KillAgent, Member: "n1"})
	run(t, w, 10*time.Second, Fault{Kind: StartAgent, Member: "n1"})
	expectLeader(t, w, "n1")
	if len(w.Promotions) != 0 {
		t.Errorf("promotions: %v", w.Promotions)
	}
}

// The postmaster crashes and restarts in place through crash recovery; no
// failover.
func TestPostmasterCrashRestart(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: CrashDB, Member: "n1"})
	expectLeader(t, w, "n1")
	if len(w.Promotions) != 0 {
		t.Errorf("promotions after a restartable crash: %v", w.Promotions)
	}
}

// The postmaster crashes and will not start again: after MaxFailedStarts
// the leader releases the key and n2 takes over.
func TestPostmasterCrashWillNotStart(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: FailStarts, Member: "n1", N: 1000}, Fault{Kind: CrashDB, Member: "n1"})
	expectLeader(t, w, "n2")
	if st := w.Status("n1"); st.State != "crashed" && st.State != "stopped" {
		t.Errorf("n1 state = %s, want crashed or stopped (%s)", st.State, st.Reason)
	}
}

// Double fault: the primary's node dies and the best replica is partitioned
// from the store at the same time: n3 takes over.
func TestDoubleFault(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n1"}, Fault{Kind: Partition, Member: "n2"})
	expectLeader(t, w, "n3")
	run(t, w, 30*time.Second, Fault{Kind: Heal, Member: "n2"}, Fault{Kind: StartNode, Member: "n1"})
	expectLeader(t, w, "n3")
}

// Double fault in sequence: after a failover to n2, n2's node dies too; n3
// is the last one standing and takes over.
func TestSecondFailover(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n2"})
	expectLeader(t, w, "n3")
	if len(w.Promotions) != 2 {
		t.Errorf("promotions = %v, want two", w.Promotions)
	}
}

// nofailover members are never promoted, even when they are the most
// advanced.
func TestNoFailoverTag(t *testing.T) {
	cfg := three()
	cfg.Members[1].Tags.NoFailover = true
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n3")
}

// A switchover to n3: n1 stops with a fast shutdown, whose checkpoint
// reaches the streaming replicas; n3 takes over past n1's final position
// with no WAL lost (checked by the world), and n1 rejoins as its replica.
func TestSwitchover(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: Switchover, Member: "n3"})
	expectLeader(t, w, "n3")
	if len(w.Switchovers) != 1 || !strings.HasPrefix(w.Switchovers[0], "n1->n3@") {
		t.Fatalf("switchovers = %v, want n1->n3\n%s", w.Switchovers, strings.Join(w.Log(), "\n"))
	}
	if r := w.Request(); r != nil {
		t.Errorf("request %+v still pending after the switchover", r)
	}
	run(t, w, 20*time.Second)
	for _, n := range []string{"n1", "n2"} {
		if st := w.Status(n); !st.DB.Streaming || st.DB.UpstreamHost != "n3" {
			t.Errorf("%s does not follow n3 after the switchover: %+v\n%s", n, st.DB, w.Summary())
		}
	}
	if h := w.History(); len(h) != 1 || h[0].Kind != cluster.HistorySwitchover {
		t.Errorf("history = %+v, want one switchover", h)
	}
}

// The switchover target's node dies right after the handoff: n1 takes its
// role back after HandoffTimeout, and nobody is promoted.
func TestSwitchoverTargetDies(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	// The target's database crashes as soon as n1 has stopped, before it
	// received the shutdown checkpoint (n3's lag is 0x800).
	run(t, w, 0, Fault{Kind: Switchover, Member: "n3"})
	for w.Request() == nil || w.Request().Handoff == nil {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if len(w.Switchovers) != 0 {
		t.Fatalf("switchovers = %v before the crash", w.Switchovers)
	}
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n3"})
	if len(w.Switchovers) != 0 || len(w.Promotions) != 0 {
		t.Fatalf("switchovers = %v, promotions %v; want none", w.Switchovers, w.Promotions)
	}
	ps := w.Primaries()
	if len(ps) != 1 {
		t.Fatalf("primaries = %v\n%s", ps, strings.Join(w.Log(), "\n"))
	}
	expectLeader(t, w, ps[0])
	if w.Request() != nil {
		t.Errorf("request still pending: %+v", w.Request())
	}
}

// A manual failover to n3 after the primary's node died, although n2 is
// further ahead.
func TestManualFailover(t *testing.T) {
	w := New(three())
	cfg := *w.store.Snapshot().Config
	cfg.Paused = true // no automatic failover: the operator decides
	w.store.SetDynamicConfig(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: KillNode, Member: "n1"})
	if len(w.Primaries()) != 0 || len(w.Promotions) != 0 {
		t.Fatalf("paused cluster failed over on its own: %v", w.Promotions)
	}
	run(t, w, 10*time.Second, Fault{Kind: Failover, Member: "n3"})
	expectLeader(t, w, "n3")
	if h := w.History(); len(h) != 1 || h[0].Kind != cluster.HistoryManualFailover {
		t.Errorf("history = %+v, want one manual failover", h)
	}
}
