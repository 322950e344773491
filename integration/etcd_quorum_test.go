package integration

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
	"github.com/hamgr/hamgr/localcluster"
)

// Issue 7's etcd outages on a real 3-member etcd (localcluster with
// EtcdMembers 3, the agents listing every member): the etcd leader and one
// more member stop, or all three, for three ttls while writers run, then
// come back on their data. Whatever etcd then does to the leases (keeps
// them, lets them expire, revokes them), hamgr must stay safe: the primary
// fences itself by loop_wait + retry_timeout, nobody is writable while etcd
// is out, never two writable primaries, a leader again soon after the
// return, no acknowledged write lost, and no needless failover (the old
// primary holds the most WAL, so it keeps the lead).

// etcdOutage says which etcd members an outage stops.
type etcdOutage int

const (
	// quorumLoss stops the etcd leader and one more member: 1 of 3 runs.
	quorumLoss etcdOutage = iota + 1
	// fullOutage stops all three members.
	fullOutage
)

// Bounds of an outage test, from the fast timing profile.
var (
	// fenceBound is when the primary must have stopped taking writes after
	// etcd lost its quorum: its fence timer fires at loop_wait +
	// retry_timeout after its last renewal, before the quorum loss; the
	// margin covers the fast shutdown and the monitor's polling on a busy
	// machine (the design kills every process before last renewal + ttl).
	fenceBound = time.Duration(localcluster.FastTiming.LoopWait+localcluster.FastTiming.RetryTimeout) + 3*time.Second
	// outageHold is how long etcd stays out: three ttls, so every lease
	// would have expired on an etcd that kept running.
	outageHold = 3 * time.Duration(localcluster.FastTiming.TTL)
	// leaderBackBound is when a leader must serve again after every
	// member runs again: an etcd election, then leases left over from
	// before the outage may take a ttl to expire, an agent's next rounds
	// (two loop_waits plus a retry_timeout) take the key, and its database
	// may take primary_start_timeout to start; doubled for a busy machine.
	leaderBackBound = 2 * (time.Duration(etcdembed.ClusterElectionMs)*time.Millisecond +
		time.Duration(localcluster.FastTiming.TTL+2*localcluster.FastTiming.LoopWait+localcluster.FastTiming.RetryTimeout+localcluster.FastTiming.PrimaryStartTimeout))
)

// etcd loses its quorum (its leader and one more member stop) for three
// ttls while writers run, then the two members come back.
func TestEtcdQuorumLossOnThreeMembersIsSafe(t *testing.T) {
	runEtcdOutage(t, quorumLoss, "async", "etcd_quorum")
}

// Every etcd member stops for three ttls while writers run, then all come
// back.
func TestEtcdFullOutageOnThreeMembersIsSafe(t *testing.T) {
	runEtcdOutage(t, fullOutage, "async", "etcd_full")
}

// In synchronous mode etcd loses its quorum for three ttls while writers
// run, then the two members come back: no acknowledged write is lost.
func TestEtcdQuorumLossOnThreeMembersInSyncModeLosesNothing(t *testing.T) {
	runEtcdOutage(t, quorumLoss, "sync", "etcd_quorum_sync")
}

// runEtcdOutage runs one outage on a cluster with a 3-member etcd, in
// synchronous mode when mode is "sync", and asserts its safety.
func runEtcdOutage(t *testing.T, outage etcdOutage, mode, table string) {
	c := startCluster(t, localcluster.Options{EtcdMembers: 3})
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

	stopped := stopEtcd(t, c.EtcdCluster, outage)
	t0 := time.Now() // etcd has no quorum from here on
	err := localcluster.WaitFor(ctxFor(t, fenceBound+20*time.Second), func() bool {
		return time.Since(mon.lastWritable(old.Name)) > time.Second
	})
	if err != nil {
		t.Fatalf("%s did not fence itself while etcd had no quorum: %v", old.Name, err)
	}
	fenced := mon.lastWritable(old.Name)
	if d := fenced.Sub(t0); d > fenceBound {
		t.Errorf("%s was last writable %v after etcd lost its quorum, want at most %v (loop_wait + retry_timeout + margin)",
			old.Name, d.Round(time.Millisecond), fenceBound)
	}
	nobodyWritable(t, c, mon, fenced, outageHold-time.Since(t0))

	back, n := restartEtcd(t, c, stopped)
	s, err := c.Snapshot(context.Background())
	if err != nil || s.Leader == nil {
		t.Fatalf("read the leader after etcd's return: %v", err)
	}
	t.Logf("%s: %s last writable %v after the quorum loss; etcd out %v; leader %s@%d (was %s@%d) %v after etcd's return",
		mode, old.Name, fenced.Sub(t0).Round(time.Millisecond), back.Sub(t0).Round(time.Millisecond),
		n.Name, s.Leader.Epoch, old.Name, lead.Epoch, time.Since(back).Round(time.Millisecond))
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	a := w.stop()
	assertOutageSafe(t, c, a, w, outageFacts{old: old.Name, leader: n.Name, leadEpoch: lead.Epoch, t0: t0, back: back, mode: mode})
}

// stopEtcd stops the members an outage names, the etcd leader first, and
// returns their indices.
func stopEtcd(t *testing.T, ec *etcdembed.Cluster, outage etcdOutage) []int {
	t.Helper()
	var lead int
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		var ok bool
		lead, ok = ec.Leader()
		return ok
	})
	if err != nil {
		t.Fatalf("no etcd leader: %v", err)
	}
	stop := []int{lead, (lead + 1) % ec.Size()}
	if outage == fullOutage {
		stop = append(stop, (lead+2)%ec.Size())
	}
	var names []string
	for _, i := range stop {
		ec.Stop(i)
		names = append(names, ec.Name(i))
	}
	t.Logf("stopped etcd members %v (the etcd leader first)", names)
	return stop
}

// restartEtcd restarts the members stopEtcd stopped and waits, within
// leaderBackBound, for a leader to serve again; it returns when etcd was
// restarted and the leader.
func restartEtcd(t *testing.T, c *localcluster.Cluster, stopped []int) (time.Time, *localcluster.Node) {
	t.Helper()
	back := time.Now()
	if err := c.EtcdCluster.Restart(ctxFor(t, time.Minute), stopped...); err != nil {
		t.Fatalf("restart etcd members %v: %v", stopped, err)
	}
	n, err := c.WaitLeader(ctxFor(t, leaderBackBound), "")
	if err != nil {
		t.Fatalf("no leader within %v of etcd's return: %v", leaderBackBound, err)
	}
	return back, n
}

// nobodyWritable fails the test if, for the whole of d, any member
// answers the monitor as a writable primary after fenced: without an etcd
// quorum nobody may hold the key. It polls every 200ms (an observation
// window, not a wait for a condition).
func nobodyWritable(t *testing.T, c *localcluster.Cluster, mon *primaryMonitor, fenced time.Time, d time.Duration) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		for _, n := range c.Nodes {
			if at := mon.lastWritable(n.Name); at.After(fenced) {
				t.Fatalf("%s was writable at %s while etcd had no quorum", n.Name, at.Format("15:04:05.000"))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// outageFacts are what an outage test observed.
type outageFacts struct {
	old, leader string        // the primary before, the leader after
	leadEpoch   cluster.Epoch // the epoch before
	t0, back    time.Time
	mode        string
}

// assertOutageSafe checks the writes and the history after an outage.
func assertOutageSafe(t *testing.T, c *localcluster.Cluster, a acks, w *writers, f outageFacts) {
	t.Helper()
	if n := a.between(f.old, f.t0.Add(fenceBound), f.back); n > 0 {
		t.Errorf("%s acknowledged %d writes while etcd had no quorum, after its fence deadline", f.old, n)
	}
	if f.leader != f.old {
		// The old primary holds the most WAL: taking the lead from it is
		// a needless failover. Still, it must not have split the brain.
		t.Errorf("leader after etcd's return is %s, want %s again (it holds the most WAL)", f.leader, f.old)
		if n, first := a.splitBrain(f.old, f.leader, f.t0); n > 0 {
			t.Errorf("%d writes acknowledged by %s after %s's first at %s", n, f.old, f.leader, first.Format("15:04:05.000"))
		}
	} else {
		for _, m := range others(c, f.old) {
			if k := a.byMember[m.Name]; len(k) > 0 {
				t.Errorf("%s acknowledged %d writes: it was never to be writable", m.Name, len(k))
			}
		}
	}
	if missing := verifyNoLoss(t, w.allOpt, a.all.AckedIDs); len(missing) > 0 {
		t.Errorf("%s mode: %d acknowledged writes lost (multi-host writer): %v", f.mode, len(missing), missing)
	}
	for name, r := range a.direct {
		o := w.opts[name]
		o.Hosts = c.Hosts()
		if missing := verifyNoLoss(t, o, r.AckedIDs); len(missing) > 0 {
			t.Errorf("%s mode: %d writes acknowledged by %s lost: %v", f.mode, len(missing), name, missing)
		}
	}
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Epoch > f.leadEpoch && h.Kind == "failover" {
			t.Errorf("needless failover recorded: %s", fmt.Sprintf("%+v", h))
		}
	}
}
