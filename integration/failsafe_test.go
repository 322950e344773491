package integration

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// Failsafe mode (issue 9, point 4) on a real 3-member etcd with real
// agents: with failsafe_mode on, a full etcd outage of 60 s while every
// member is up leaves the primary taking writes throughout (no failover,
// no lost acknowledgement); a quorum loss with one replica's agent also
// down makes the primary fence itself as without failsafe.

// failsafeOutage is how long etcd stays out with failsafe on: twelve
// ttls of the fast profile.
const failsafeOutage = 60 * time.Second

// startFailsafeCluster starts a cluster with a 3-member etcd and the API
// token failsafe requests carry, turns failsafe_mode on and waits until
// the leader's failsafe record names every member.
func startFailsafeCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	c := startCluster(t, localcluster.Options{EtcdMembers: 3, APIToken: "failsafe-test-token"})
	setConfig(t, c, "failsafe_mode", "true")
	var last *cluster.FailsafeState
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			return false
		}
		last = s.Failsafe
		return last != nil && last.Epoch == s.Leader.Epoch && len(last.Members) == len(c.Nodes)
	})
	if err != nil {
		t.Fatalf("no failsafe record naming the %d members (last %+v): %v", len(c.Nodes), last, err)
	}
	return c
}

// With failsafe_mode on and every member up, every etcd member stops for
// 60 s while writers run: the primary never stops being writable, nobody
// else is, writes keep being acknowledged, and after etcd's return the
// same member leads with no failover and no lost write.
func TestEtcdFullOutageWithFailsafeKeepsWriting(t *testing.T) {
	runFailsafeFullOutage(t, "async", "failsafe_full")
}

// The same in synchronous mode: no acknowledged write is lost either.
func TestEtcdFullOutageWithFailsafeInSyncModeLosesNothing(t *testing.T) {
	runFailsafeFullOutage(t, "sync", "failsafe_full_sync")
}

// runFailsafeFullOutage runs the full outage with failsafe_mode on, in
// synchronous mode when mode is "sync".
func runFailsafeFullOutage(t *testing.T, mode, table string) {
	c := startFailsafeCluster(t)
	if mode == "sync" {
		setConfig(t, c, "synchronous_mode", "on")
		waitSyncRecord(t, c, 30*time.Second)
	}
	mon := monitorPrimaries(t, c)
	old, lead := leader(t, c)
	w := startWriters(t, c, table)
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+50); err != nil {
		t.Fatal(err)
	}

	stopped := stopEtcd(t, c.EtcdCluster, fullOutage)
	t0 := time.Now()
	ackedAt0 := w.all.Acked()
	// Every 200 ms for the whole outage (an observation window, not a wait
	// for a condition): the old primary answered writable within the last
	// 3 s, and nobody else did. The monitor polls every 20 ms, but on a
	// loaded machine a poll of the three members can take a second or
	// more; a fenced primary cannot come back without etcd, so it would
	// stay unwritable for the rest of the outage whatever the margin.
	worst := time.Duration(0)
	for time.Since(t0) < failsafeOutage {
		time.Sleep(200 * time.Millisecond)
		gap := time.Since(mon.lastWritable(old.Name))
		worst = max(worst, gap)
		if gap > 3*time.Second {
			t.Fatalf("%s stopped being writable %v into the etcd outage (last writable %v ago) with failsafe_mode on and every member up",
				old.Name, time.Since(t0).Round(time.Millisecond), gap.Round(time.Millisecond))
		}
		for _, n := range others(c, old.Name) {
			if at := mon.lastWritable(n.Name); at.After(t0) {
				t.Fatalf("%s was writable at %s during the outage", n.Name, at.Format("15:04:05.000"))
			}
		}
	}
	during := w.all.Acked() - ackedAt0
	if during < 100 {
		t.Errorf("only %d writes acknowledged through the %v outage, want writes to go on", during, failsafeOutage)
	}

	back, n := restartEtcd(t, c, stopped)
	s, err := c.Snapshot(context.Background())
	if err != nil || s.Leader == nil {
		t.Fatalf("read the leader after etcd's return: %v", err)
	}
	t.Logf("failsafe, %s: %d writes acknowledged during the %v outage; %s writable throughout (largest gap between the monitor's answers %v); leader %s@%d (was %s@%d) %v after etcd's return",
		mode, during, failsafeOutage, old.Name, worst.Round(time.Millisecond), n.Name, s.Leader.Epoch, old.Name, lead.Epoch, time.Since(back).Round(time.Millisecond))
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	a := w.stop()
	if n.Name != old.Name {
		t.Errorf("leader after etcd's return is %s, want %s (it never stopped)", n.Name, old.Name)
	}
	for _, m := range others(c, old.Name) {
		if k := a.byMember[m.Name]; len(k) > 0 {
			t.Errorf("%s acknowledged %d writes: it was never to be writable", m.Name, len(k))
		}
	}
	assertNoLossNoFailover(t, c, a, w, lead.Epoch)
}

// With failsafe_mode on, etcd loses its quorum and one replica's agent is
// killed at the same moment (its record still in the failsafe record):
// the primary cannot have every confirmation, so it fences itself within
// loop_wait + retry_timeout (plus margin), nobody is writable while etcd
// is out, and after etcd's return nothing acknowledged is lost.
func TestEtcdQuorumLossWithFailsafeAndAgentDownFences(t *testing.T) {
	c := startFailsafeCluster(t)
	mon := monitorPrimaries(t, c)
	old, lead := leader(t, c)
	w := startWriters(t, c, "failsafe_quorum")
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+50); err != nil {
		t.Fatal(err)
	}
	down := others(c, old.Name)[0]
	if err := down.KillAgent(syscall.SIGKILL); err != nil {
		t.Fatalf("kill %s's agent: %v", down.Name, err)
	}
	stopped := stopEtcd(t, c.EtcdCluster, quorumLoss)
	t0 := time.Now()
	err := localcluster.WaitFor(ctxFor(t, fenceBound+20*time.Second), func() bool {
		return time.Since(mon.lastWritable(old.Name)) > time.Second
	})
	if err != nil {
		t.Fatalf("%s did not fence itself with %s's agent down: %v", old.Name, down.Name, err)
	}
	fenced := mon.lastWritable(old.Name)
	if d := fenced.Sub(t0); d > fenceBound {
		t.Errorf("%s was last writable %v after etcd lost its quorum, want at most %v", old.Name, d.Round(time.Millisecond), fenceBound)
	}
	nobodyWritable(t, c, mon, fenced, outageHold-time.Since(t0))

	back, n := restartEtcd(t, c, stopped)
	t.Logf("failsafe, %s's agent down: %s last writable %v after the quorum loss; leader %s %v after etcd's return",
		down.Name, old.Name, fenced.Sub(t0).Round(time.Millisecond), n.Name, time.Since(back).Round(time.Millisecond))
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	a := w.stop()
	assertOutageSafe(t, c, a, w, outageFacts{old: old.Name, leader: n.Name, leadEpoch: lead.Epoch, t0: t0, back: back, mode: "async"})
}

// assertNoLossNoFailover: every acknowledged write is there, and the
// history records no failover after epoch lead.
func assertNoLossNoFailover(t *testing.T, c *localcluster.Cluster, a acks, w *writers, lead cluster.Epoch) {
	t.Helper()
	if missing := verifyNoLoss(t, w.allOpt, a.all.AckedIDs); len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost (multi-host writer): %v", len(missing), missing)
	}
	for name, r := range a.direct {
		o := w.opts[name]
		o.Hosts = c.Hosts()
		if missing := verifyNoLoss(t, o, r.AckedIDs); len(missing) > 0 {
			t.Errorf("%d writes acknowledged by %s lost: %v", len(missing), name, missing)
		}
	}
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Epoch > lead && h.Kind == cluster.HistoryFailover {
			t.Errorf("failover recorded: %+v", h)
		}
	}
}
