package containers

import (
	"context"
	"fmt"
	"testing"
	"time"

	hacluster "github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/localcluster"
)

// Failsafe mode (issue 9, point 4; docs/design.md, "Failsafe mode") on
// containers: with failsafe_mode on, a primary whose agent cannot reach
// etcd keeps writing while every other member's agent, asked over the
// drill network, confirms it; a primary that cannot reach its replicas
// either gets no confirmation and fences itself as without failsafe. These
// are integration/failsafe_test.go's claims on separate hosts, and rows of
// the fault matrix.

// failsafeOutage is how long the failsafe drills keep etcd out, or the
// primary cut from it: the target is writes going on through a
// 60 s etcd outage with every member up.
const failsafeOutage = 60 * time.Second

// TestDrillEtcdFullOutageFailsafe: failsafe_mode on, every etcd member
// stopped for 60 s (the leader first): the primary keeps acknowledging
// writes throughout, nobody else does, and after etcd's return it still
// leads: no failover, nothing lost.
func TestDrillEtcdFullOutageFailsafe(t *testing.T) {
	runDrill(t, failsafeEtcdOutage("etcd full outage (3 stopped)", 3))
}

// TestDrillCutFromAllButClientsFailsafe: failsafe_mode on, the primary
// cut from etcd and from its replicas (its clients still reach it): no
// member can confirm it, so it fences itself by loop_wait + retry_timeout
// as without failsafe, and the replicas fail over among themselves. In
// asynchronous mode, where nothing but that fence stops its clients'
// commits (in synchronous mode they wait for the standby it lost).
func TestDrillCutFromAllButClientsFailsafe(t *testing.T) {
	runDrillWith(t, failsafeCutFromAllButClients(), drillOptions{timing: fastProfile, mode: asyncMode})
}

// failsafeCutFromAllButClients is TestDrillCutFromAllButClientsFailsafe's
// fault: cutFromAllButClientsFault with failsafe_mode on, which also
// asserts that the old primary acknowledged nothing later than
// etcdFenceBound after the cut.
func failsafeCutFromAllButClients() fault {
	f := withFailsafe(cutFromAllButClientsFault())
	inject := f.inject
	var cutAt time.Time
	f.inject = func(c *cluster, n *member) {
		cutAt = time.Now()
		inject(c, n)
	}
	f.verify = func(t *testing.T, r drillResult) {
		bound := etcdFenceBound(r.timing)
		if d := lastAck(r.acks, r.old, r.healed).Sub(cutAt); d > bound {
			t.Errorf("%s acknowledged a write %v after it was cut from etcd and its replicas with failsafe_mode on, want at most %v (no member can confirm it: it fences itself as without failsafe)",
				r.old, d.Round(time.Millisecond), bound)
		} else {
			t.Logf("failsafe: %s last acknowledged a write %v after the cut (bound %v)", r.old, d.Round(time.Millisecond), bound)
		}
	}
	return f
}

// withFailsafe is fault f with failsafe_mode turned on first.
func withFailsafe(f fault) fault {
	f.name = "failsafe: " + f.name
	f.prepare = func(c *cluster, n *member) { c.enableFailsafe(n) }
	return f
}

// failsafeEtcdOutage is the fault that stops k etcd members, the leader
// first, for failsafeOutage with failsafe_mode on; it asserts that the
// primary kept writing and leads after etcd's return
// (verifyFailsafeKeptWriting).
func failsafeEtcdOutage(name string, k int) fault {
	f := withFailsafe(stopEtcdFault(name, k, verifyFailsafeKeptWriting))
	f.hold = failsafeOutage
	return f
}

// failsafeCutFromEtcd is the fault that cuts the primary from every etcd
// member, both ways, for failsafeOutage with failsafe_mode on: its
// replicas still know it as the leader and confirm it, so it keeps
// writing and nobody is elected.
func failsafeCutFromEtcd() fault {
	var cutAt time.Time
	return withFailsafe(fault{
		name: "cut from etcd",
		inject: func(c *cluster, n *member) {
			cut(c, n, c.etcds)
			cutAt = time.Now()
		},
		hold:      failsafeOutage,
		heal:      uncut,
		failovers: 0,
		verify:    func(t *testing.T, r drillResult) { verifyFailsafeKeptWriting(t, r, cutAt) },
	})
}

// verifyFailsafeKeptWriting checks a failsafe drill in which every member
// stayed up: the old primary acknowledged writes from the fault (from)
// until the heal with no gap longer than loop_wait + retry_timeout (its
// fence deadline: had a round gone unconfirmed it would have stopped, and
// without etcd it could not have come back), nobody else acknowledged any
// in that span, and it leads after the heal.
func verifyFailsafeKeptWriting(t *testing.T, r drillResult, from time.Time) {
	t.Helper()
	bound := r.timing.loopWait + r.timing.retryTimeout
	last, during, gap := from, 0, time.Duration(0)
	for _, a := range r.acks {
		if a.At.Before(from) || !a.At.Before(r.healed) {
			continue
		}
		if a.Node != r.old {
			t.Errorf("%s acknowledged a write at %s, during the fault, while %s was the failsafe primary",
				a.Node, a.At.Format("15:04:05.000"), r.old)
			continue
		}
		during++
		gap = max(gap, a.At.Sub(last))
		last = a.At
	}
	gap = max(gap, r.healed.Sub(last))
	if gap > bound {
		t.Errorf("%s went %v without acknowledging a write during the fault with failsafe_mode on and every member up, want at most %v (loop_wait + retry_timeout)",
			r.old, gap.Round(time.Millisecond), bound)
	}
	if r.primary != r.old {
		t.Errorf("primary after the heal is %s, want %s (it never stopped)", r.primary, r.old)
	}
	t.Logf("failsafe: %s acknowledged %d writes in the %v of the fault, its longest gap %v (bound %v)",
		r.old, during, r.healed.Sub(from).Round(time.Millisecond), gap.Round(time.Millisecond), bound)
}

// enableFailsafe turns failsafe_mode on through primary n's hamgrctl and
// waits until the failsafe record names the leader's epoch and every
// node: from then on a failsafe round has every member to ask.
func (c *cluster) enableFailsafe(n *member) {
	c.t.Helper()
	c.hamgrctl(n, "config", "set", "failsafe_mode=true")
	store := c.store()
	// The leader writes the record in its next round or two.
	ctx, cancel := context.WithTimeout(context.Background(), 10*c.timing.loopWait+20*time.Second)
	defer cancel()
	var last *hacluster.FailsafeState
	err := localcluster.Poll(ctx, 200*time.Millisecond, func() bool {
		sctx, scancel := context.WithTimeout(ctx, 2*time.Second)
		defer scancel()
		s, err := store.Load(sctx)
		if err != nil || s.Leader == nil {
			return false
		}
		last = s.Failsafe
		return last != nil && last.Epoch == s.Leader.Epoch && len(last.Members) == nodeCount
	})
	if err != nil {
		c.t.Fatalf("no failsafe record naming the %d nodes after failsafe_mode=true (last %+v): %v", nodeCount, last, err)
	}
	c.t.Logf("failsafe_mode on: the record names %d members at epoch %d", len(last.Members), last.Epoch)
}

// store is a client of the drill's etcd from the host (the test reaches
// the drill network), closed when the test ends.
func (c *cluster) store() *etcd.Store {
	c.t.Helper()
	var endpoints []string
	for _, m := range c.etcds {
		endpoints = append(endpoints, fmt.Sprintf("http://%s:2379", m.ip))
	}
	s, err := etcd.New(etcd.Options{Endpoints: endpoints, Cluster: "drill"})
	if err != nil {
		c.t.Fatalf("etcd client for the drill cluster: %v", err)
	}
	c.t.Cleanup(func() { _ = s.Close() })
	return s
}
