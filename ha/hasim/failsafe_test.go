package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// failsafeConfig: three members, failsafe_mode on.
func failsafeConfig() Config {
	cfg := Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}}
	cfg.defaults()
	cfg.Dynamic.FailsafeMode = true
	return cfg
}

// stepWhile steps w for d, failing the test at the first step after
// which the writable primaries are not want ("" for none).
func stepWhile(t *testing.T, w *World, d time.Duration, want string) {
	t.Helper()
	end := w.Now().Add(d)
	for w.Now().Before(end) {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		if got := strings.Join(w.Primaries(), ","); got != want {
			t.Fatalf("+%s: primaries [%s], want [%s]\n%s\n%s", w.Now().Sub(Origin), got, want, w.Summary(), tail(w.Log(), 80))
		}
	}
}

// With failsafe_mode on and every member up, a full store outage of 60 s
// (twenty ttls) leaves the primary writable throughout, with no second
// primary and no failover, whether the store comes back renewing every
// lease or revoking them all (the leader then takes its key back).
func TestFailsafeOutageAllUp(t *testing.T) {
	for _, back := range []FaultKind{StoreReturnRenewing, StoreReturn} {
		t.Run(back.String(), func(t *testing.T) {
			w := New(failsafeConfig())
			run(t, w, 10*time.Second)
			if f := w.store.Snapshot().Failsafe; f == nil || f.Leader != "n1" || len(f.Members) != 3 {
				t.Fatalf("failsafe record %+v, want n1's naming the three members", f)
			}
			if err := w.Step(Fault{Kind: StoreOutage}); err != nil {
				t.Fatal(err)
			}
			stepWhile(t, w, 60*time.Second, "n1")
			if st := w.Status("n1"); st.Problem != cluster.ProblemFailsafeActive {
				t.Errorf("n1 during the outage: problem %q (%s), want %s", st.Problem, st.Reason, cluster.ProblemFailsafeActive)
			}
			if err := w.Step(Fault{Kind: back}); err != nil {
				t.Fatal(err)
			}
			stepWhile(t, w, 15*time.Second, "n1")
			expectLeader(t, w, "n1")
			if len(w.Promotions) != 0 {
				t.Errorf("promotions %v, want none", w.Promotions)
			}
		})
	}
}

// Without failsafe_mode the same outage stops the primary by its fence
// deadline, as before.
func TestFailsafeOffOutageFences(t *testing.T) {
	cfg := failsafeConfig()
	cfg.Dynamic.FailsafeMode = false
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 5*time.Second, Fault{Kind: StoreOutage})
	if ps := w.Primaries(); len(ps) != 0 {
		t.Fatalf("primaries %v 5s into the outage without failsafe, want none", ps)
	}
}

// A member that goes down during the outage stops the confirmations: the
// primary stops within its fence deadline (loop_wait + retry_timeout after
// the last confirmed round) plus a tick, and nobody else becomes a
// primary while the store is down.
func TestFailsafeOutageMemberDown(t *testing.T) {
	for _, f := range []Fault{{Kind: KillNode, Member: "n3"}, {Kind: CutAPI, Member: "n2"}, {Kind: Pause, Member: "n3"}} {
		t.Run(f.String(), func(t *testing.T) {
			w := New(failsafeConfig())
			run(t, w, 10*time.Second)
			run(t, w, 10*time.Second, Fault{Kind: StoreOutage})
			expectPrimaries(t, w, "n1")
			cfg := w.cfg.Dynamic
			bound := time.Duration(cfg.LoopWait+cfg.RetryTimeout) + 2*w.cfg.Tick
			run(t, w, bound, f)
			expectPrimaries(t, w, "")
			stepWhile(t, w, 20*time.Second, "")
		})
	}
}

// The primary cut off from the store only (the replicas reach it, and
// the primary reaches their APIs): its lease expires in the store, but
// the replicas promised it and nobody is elected while it writes; when a
// member stops confirming, the primary stops first and only then is a
// replica promoted (with proof: the old primary's port refuses).
func TestFailsafePartitionedPrimary(t *testing.T) {
	w := New(failsafeConfig())
	run(t, w, 10*time.Second)
	if err := w.Step(Fault{Kind: Partition, Member: "n1"}); err != nil {
		t.Fatal(err)
	}
	stepWhile(t, w, 30*time.Second, "n1")
	if l := w.Leader(); l != nil {
		t.Fatalf("leader key %+v 30s after n1 was cut off, want it expired", l)
	}
	if st := w.Status("n2"); st.Problem != cluster.ProblemFailsafeActive {
		t.Errorf("n2: problem %q (%s), want %s", st.Problem, st.Reason, cluster.ProblemFailsafeActive)
	}
	if err := w.Step(Fault{Kind: CutAPI, Member: "n3"}); err != nil {
		t.Fatal(err)
	}
	var stopped, promoted time.Time
	for end := w.Now().Add(30 * time.Second); w.Now().Before(end); {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		ps := strings.Join(w.Primaries(), ",")
		if stopped.IsZero() && ps != "n1" {
			stopped = w.Now()
		}
		if promoted.IsZero() && ps != "" && ps != "n1" {
			promoted = w.Now()
		}
	}
	if stopped.IsZero() || promoted.IsZero() || !promoted.After(stopped) {
		t.Fatalf("n1 stopped at %v, a new primary at %v: want a failover after n1 stopped\n%s\n%s", stopped, promoted, w.Summary(), tail(w.Log(), 80))
	}
	t.Logf("n1 stopped %s after n3's API was cut; %s promoted %s later", stopped.Sub(Origin)-40*time.Second-w.cfg.Tick, w.Leader().Name, promoted.Sub(stopped))
	cfg := w.cfg.Dynamic
	if promoted.Sub(stopped) < time.Duration(cfg.TTL)-time.Duration(cfg.LoopWait+cfg.RetryTimeout) {
		t.Errorf("promoted %s after n1 stopped: sooner than the members' promises allow", promoted.Sub(stopped))
	}
	if l := w.Leader(); l == nil || l.Name == "n1" {
		t.Errorf("leader %v after the failover", l)
	}
}

// expectPrimaries checks the writable primaries ("" for none).
func expectPrimaries(t *testing.T, w *World, want string) {
	t.Helper()
	if got := strings.Join(w.Primaries(), ","); got != want {
		t.Fatalf("primaries [%s], want [%s]\n%s\n%s", got, want, w.Summary(), tail(w.Log(), 80))
	}
}

// TestRandomFaultsFailsafe is TestRandomFaults with failsafe_mode on and
// members' APIs cut and restored at random: the invariants (never two
// writable primaries; a lease expires under a writable primary only while
// every running member promised it) after every step, liveness at the end.
func TestRandomFaultsFailsafe(t *testing.T) {
	seeds := 100
	if testing.Short() {
		seeds = 10
	}
	if *seedsFlag > 0 {
		seeds = *seedsFlag
	}
	failures, promotions := 0, 0
	for seed := *firstSeed; seed < *firstSeed+uint64(seeds); seed++ {
		w, injected, err := randomWorldWith(seed, randomOptions{failsafe: true})
		promotions += len(w.Promotions)
		if err == nil {
			continue
		}
		t.Errorf("seed %d: %v\nfaults:\n  %s\n%s\nlog:\n%s", seed, err, strings.Join(injected, "\n  "), w.Summary(), tail(w.Log(), 150))
		if failures++; failures >= 3 {
			return
		}
	}
	t.Logf("%d seeds with failsafe_mode on: %d promotions", seeds, promotions)
	if promotions < seeds/4 {
		t.Errorf("only %d promotions in %d seeds: the faults do not exercise failover", promotions, seeds)
	}
}

// A member confirms only the leader it knows at the epoch it knows, and
// a confirmation binds it: n2 and n3 confirm n1, n1's node crashes at
// once (its port refuses: proof), and nobody is promoted until a ttl after
// the confirmations; then one is.
func TestFailsafeConfirmationBinds(t *testing.T) {
	w := New(failsafeConfig())
	run(t, w, 10*time.Second)
	l := w.Leader()
	for _, req := range []cluster.FailsafeRequest{
		{Cluster: "sim", Leader: "n1", Epoch: l.Epoch + 1},
		{Cluster: "sim", Leader: "n3", Epoch: l.Epoch},
		{Cluster: "other", Leader: "n1", Epoch: l.Epoch},
	} {
		if ans := w.node("n2").a.ConfirmFailsafe(req); ans.Confirmed || ans.Reason == "" {
			t.Errorf("n2 asked %+v: %+v, want a refusal with a reason", req, ans)
		}
	}
	if ans := w.node("n1").a.ConfirmFailsafe(cluster.FailsafeRequest{Cluster: "sim", Leader: "n1", Epoch: l.Epoch}); ans.Confirmed {
		t.Errorf("the leader confirmed itself: %+v", ans)
	}
	req := cluster.FailsafeRequest{Cluster: "sim", Leader: "n1", Epoch: l.Epoch, TTL: cluster.Duration(5 * time.Second)}
	for _, name := range []string{"n2", "n3"} {
		if ans := w.node(name).a.ConfirmFailsafe(req); !ans.Confirmed {
			t.Fatalf("%s refused %+v: %s", name, req, ans.Reason)
		}
	}
	// The leader's ttl (5s) is longer than the members' (3s): it counts.
	until := w.Now().Add(5 * time.Second)
	if err := w.Step(Fault{Kind: CrashNode, Member: "n1"}); err != nil {
		t.Fatal(err)
	}
	for w.Now().Before(until) {
		if err := w.Step(); err != nil {
			t.Fatal(err)
		}
		if ps := w.Primaries(); len(ps) > 0 && w.Now().Before(until) {
			t.Fatalf("+%s: primaries %v before the promises to n1 ended at +%s\n%s", w.Now().Sub(Origin), ps, until.Sub(Origin), tail(w.Log(), 60))
		}
	}
	run(t, w, 10*time.Second)
	if ps := w.Primaries(); len(ps) != 1 || ps[0] == "n1" {
		t.Fatalf("primaries %v after the promises ended, want n2 or n3\n%s", ps, tail(w.Log(), 60))
	}
}
