package integration

import (
	"context"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// (a) Node crash: the primary's agent and every postgres process die in one
// call. A new primary serves within the TTL plus a few seconds, the other
// replica follows, and no write acknowledged while replicas were caught up
// is lost.
func TestNodeCrashFailover(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	mon := monitorPrimaries(t, c)
	old, lead := leader(t, c)

	w1, o1 := writer(t, c, "before_crash")
	res1 := w1.Stop()
	waitCaughtUp(t, c, old)
	w2, o2 := writer(t, c, "during_crash")

	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObserveFailover(ctxFor(t, ttl+30*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline: detected %v elected %v (%s, epoch %d) promoted %v following %v", tl.Detected, tl.Elected, tl.New, tl.Epoch, tl.Promoted, tl.Following)
	// How fast is for the drill (docs/drills.md), not for a test a loaded
	// machine could fail while hamgr behaves correctly.
	t.Logf("new primary %v after the crash (ttl %v)", tl.Promoted, ttl)
	if tl.Epoch <= lead.Epoch {
		t.Errorf("new epoch %d not greater than old %d", tl.Epoch, lead.Epoch)
	}
	if err := w2.WaitAcked(ctxFor(t, 30*time.Second), w2.Acked()+20); err != nil {
		t.Fatalf("writes did not resume: %v", err)
	}
	res2 := w2.Stop()
	t.Logf("write unavailability %v", res2.OutageAround(t0))
	if missing := verifyNoLoss(t, o1, res1.AckedIDs); len(missing) > 0 {
		t.Errorf("%d writes acknowledged before the crash (replicas caught up) are missing: %v", len(missing), missing)
	}
	// Writes in flight at the crash may be lost in asynchronous mode; report it.
	t.Logf("asynchronous mode: %d of %d writes acknowledged during the crash window lost",
		len(verifyNoLoss(t, o2, res2.AckedIDs)), res2.Acked)
	_ = mon
}

// (b) The postmaster crashes while its agent lives: restarted in place,
// no failover, nothing lost.
func TestPostmasterCrashRestartsInPlace(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	w, o := writer(t, c, "pm_crash")
	oldPID := old.PostmasterPID()
	if err := old.CrashPostgres(); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+50); err != nil {
		t.Fatalf("writes did not resume: %v", err)
	}
	res := w.Stop()
	outage := res.LongestGap
	t.Logf("postmaster crash: write unavailability %v (longest gap between acknowledged writes)", outage)
	n, l := leader(t, c)
	if n.Name != old.Name || l.Epoch != lead.Epoch {
		t.Errorf("leader changed from %s@%d to %s@%d: want a restart in place", old.Name, lead.Epoch, n.Name, l.Epoch)
	}
	if pid := old.PostmasterPID(); pid == oldPID || pid == 0 {
		t.Errorf("postmaster pid %d after the crash (was %d): not restarted", pid, oldPID)
	}

	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost: %v", len(missing), missing)
	}
}

// (b) When the crashed postmaster cannot be restarted, the agent releases
// the leader key and a replica takes over well before the TTL.
func TestUnrestartablePrimaryReleasesLeader(t *testing.T) {
	timing := localcluster.DefaultTiming // ttl 10s: release must beat it clearly
	c := startCluster(t, localcluster.Options{Timing: timing})
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	// Make the data directory unusable: PostgreSQL cannot start without it.
	if err := renameControlFile(old); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := old.CrashPostgres(); err != nil {
		t.Fatal(err)
	}
	tl, err := c.ObserveFailover(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("release-driven failover: detected %v promoted %v (ttl %v)", tl.Detected, tl.Promoted, time.Duration(timing.TTL))
	// The old primary's agent lives and renews its lease, so its key could
	// not have expired: only its release let a replica take over. (No time
	// bound: a loaded machine may be slow while hamgr behaves correctly.)
	if !old.AgentRunning() {
		t.Fatalf("%s's agent died; the failover may have come from its lease expiring", old.Name)
	}
	if b, _ := os.ReadFile(old.AgentLog); !strings.Contains(string(b), "released leader key") {
		t.Errorf("%s never released the leader key; the failover did not come from the release", old.Name)
	}
	// The old primary stays down and says why. Which reason it shows
	// depends on whether it has seen the new leader yet: before that, its
	// database does not start; after, its attempt to rejoin by pg_rewind
	// fails on the same missing control file. Both name the cause.
	waitReason(t, c, old.Name, "does not start|pg_control", 20*time.Second)
}

// (c) The leader's agent loses etcd while the others keep it: it stops
// taking writes before another member is promoted.
func TestLeaderPartitionedFromEtcdSelfFences(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	mon := monitorPrimaries(t, c)
	old, _ := leader(t, c)
	t0 := time.Now()
	old.BlockEtcd()
	tl, err := c.ObserveFailover(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	fencedAt := mon.lastWritable(old.Name).Sub(t0)
	t.Logf("partition: old primary last writable at +%v, new primary %s promoted at +%v", fencedAt, tl.New, tl.Promoted)
	if fencedAt >= tl.Promoted {
		t.Errorf("old primary still writable at +%v, after the new one was promoted at +%v", fencedAt, tl.Promoted)
	}
	old.UnblockEtcd()
	// Healed, the old primary becomes a replica or stays stopped; the
	// monitor fails the test if it is ever writable again.
	waitRejoinedOrStopped(t, c, old.Name)
}

func waitRejoinedOrStopped(t *testing.T, c *localcluster.Cluster, name string) {
	t.Helper()
	var last string
	err := localcluster.WaitFor(ctxFor(t, 60*time.Second), func() bool {
		code, _ := c.Node(name).Check(context.Background(), "/replica?replication_state=streaming")
		if code == 200 {
			last = "streaming replica"
			return true
		}
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		if m := s.Member(name); m != nil {
			last = string(m.State) + ": " + m.Reason
			return m.State == cluster.StateCannotFollow
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s neither rejoined as a replica nor reported cannot_follow (last: %s)", name, last)
	}
	t.Logf("%s after returning: %s", name, last)
}

// (d) A replica dies: no failover.
func TestReplicaDeathNoFailover(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	w, _ := writer(t, c, "replica_death")
	victim := others(c, old.Name)[0]
	victim.KillNode()
	// Wait until the dead replica's member key has expired: its lease ran
	// out, so every agent has had a full TTL to react.
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		return err == nil && s.Member(victim.Name) == nil
	})
	if err != nil {
		t.Fatalf("member key of %s did not expire: %v", victim.Name, err)
	}
	n, l := leader(t, c)
	if n.Name != old.Name || l.Epoch != lead.Epoch {
		t.Errorf("leader changed to %s@%d after a replica died", n.Name, l.Epoch)
	}
	if err := w.WaitAcked(ctxFor(t, 10*time.Second), w.Acked()+50); err != nil {
		t.Errorf("writes stalled after a replica died: %v", err)
	}
	// Asynchronous replication: nothing waits for the dead replica. A gap
	// as long as a ttl would mean something did (a loaded machine makes
	// gaps of a second or so).
	if res := w.Stop(); res.LongestGap > time.Duration(localcluster.FastTiming.TTL) {
		t.Errorf("write gap of %v after a replica died", res.LongestGap)
	}
}

// (e) Replicas at different positions: the more advanced one wins.
func TestMostAdvancedReplicaWins(t *testing.T) {
	// n3 gets the higher priority so that only position can make n2 win.
	c := startCluster(t, localcluster.Options{Tags: map[string]cluster.Tags{"n3": {Priority: 10}}})
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	if old.Name != "n1" {
		t.Fatalf("expected n1 to bootstrap, leader is %s", old.Name)
	}
	lagging := c.Node("n3")
	// Freeze n3's WAL receiver so that it falls behind.
	wr := walReceiverPID(t, c, lagging)
	if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(wr, syscall.SIGCONT) })
	w, o := writer(t, c, "positions")
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+100); err != nil {
		t.Fatal(err)
	}
	res1 := w.Stop()
	waitCaughtUpOne(t, c, old, c.Node("n2"))
	t0 := time.Now()
	old.KillNode()
	tl, err := c.ObservePromotion(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.New != "n2" {
		t.Fatalf("%s won; want n2, the more advanced replica (n3's receiver was frozen)", tl.New)
	}
	syscall.Kill(wr, syscall.SIGCONT)
	if missing := verifyNoLoss(t, o, res1.AckedIDs); len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost although n2 had them all", len(missing))
	}
}

// (f) A nofailover member is never chosen.
func TestNoFailoverMemberNeverChosen(t *testing.T) {
	c := startCluster(t, localcluster.Options{Tags: map[string]cluster.Tags{"n2": {NoFailover: true, Priority: 100}}})
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	t0 := time.Now()
	old.KillNode()
	tl, err := c.ObserveFailover(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.New != "n3" {
		t.Fatalf("%s won; want n3 (n2 is tagged nofailover)", tl.New)
	}
	// With only the nofailover member left, there is no failover at all.
	c.Node("n3").KillNode()
	waitReason(t, c, "n2", "nofailover", 30*time.Second)
	if s, err := c.Snapshot(context.Background()); err != nil || s.Leader != nil {
		t.Fatalf("leader %v with only a nofailover member alive (err %v)", s.Leader, err)
	}
}

// (g) The old primary comes back: it joins as a replica or stays down,
// never writable.
func TestOldPrimaryReturns(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	w, _ := writer(t, c, "returning")
	t0 := time.Now()
	old.KillNode()
	if _, err := c.ObserveFailover(ctxFor(t, time.Minute), old.Name, t0); err != nil {
		t.Fatal(err)
	}
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
		t.Fatal(err)
	}
	if err := old.StartAgent(); err != nil {
		t.Fatal(err)
	}
	waitRejoinedOrStopped(t, c, old.Name)
	w.Stop()
}

// (h) Only the primary's agent dies (or is frozen) while its PostgreSQL
// keeps running: replicas do not promote away a live primary, and a
// restarted (or resumed) agent takes the leader key back, its database
// untouched.
func TestPrimaryAgentDeathKeepsSinglePrimary(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGSTOP} {
		t.Run(sig.String(), func(t *testing.T) {
			c := startCluster(t, localcluster.Options{})
			monitorPrimaries(t, c)
			old, lead := leader(t, c)
			pm := old.PostmasterPID()
			w, _ := writer(t, c, "agent_death")
			if err := old.KillAgent(sig); err != nil {
				t.Fatal(err)
			}
			// The key expires; the replicas see the old primary alive and wait.
			err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
				s, err := c.Snapshot(context.Background())
				return err == nil && s.Leader == nil
			})
			if err != nil {
				t.Fatalf("leader key did not expire: %v", err)
			}
			for _, n := range others(c, old.Name) {
				waitReason(t, c, n.Name, "still accepts writes|is the better candidate", 15*time.Second)
			}
			if err := w.WaitAcked(ctxFor(t, 10*time.Second), w.Acked()+20); err != nil {
				t.Errorf("the old primary stopped taking writes: %v", err)
			}
			if sig == syscall.SIGSTOP {
				if err := old.KillAgent(syscall.SIGCONT); err != nil {
					t.Fatal(err)
				}
			} else if err := old.StartAgent(); err != nil {
				t.Fatal(err)
			}
			n, l := leaderNot(t, c, "")
			switch {
			case sig == syscall.SIGKILL && (n.Name != old.Name || l.Epoch <= lead.Epoch):
				// A restarted agent finds its postgres still primary and no
				// newer epoch: it takes the key back.
				t.Fatalf("leader after the agent restarted: %s@%d, want %s with an epoch above %d", n.Name, l.Epoch, old.Name, lead.Epoch)
			case sig == syscall.SIGSTOP && (n.Name != old.Name || l.Epoch <= lead.Epoch || old.PostmasterPID() != pm):
				// A resumed agent finds its fence deadline long past: it
				// suspends its database, sees nobody took over (the
				// replicas heard its WAL and had no proof) and takes its
				// key back without stopping it (issue 7, point 6).
				t.Fatalf("leader after the agent resumed: %s@%d (postmaster %d, was %d); want %s again above epoch %d, its database never stopped",
					n.Name, l.Epoch, old.PostmasterPID(), pm, old.Name, lead.Epoch)
			}
			t.Logf("after the agent returned (%s): leader %s at epoch %d", sig, n.Name, l.Epoch)
			w.Stop()
		})
	}
}

func leaderNot(t *testing.T, c *localcluster.Cluster, except string) (*localcluster.Node, cluster.Leader) {
	t.Helper()
	n, err := c.WaitLeader(ctxFor(t, 60*time.Second), except)
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Snapshot(context.Background())
	if err != nil || s.Leader == nil {
		t.Fatalf("read leader: %v", err)
	}
	return n, *s.Leader
}
