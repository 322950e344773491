package integration

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// A firewall that rejects (TCP reset) the replicas' connections to a
// primary that lives forges the proof of death's refusals; the lease
// condition of the take-over (docs/design.md, "Failover before the ttl")
// must keep the replicas from taking over while the old agent renews.

// rejectPorts makes every new TCP packet to the given loopback ports get a
// reset, as a host firewall rejecting them would, until the test ends. It
// skips the test when iptables cannot be used here.
func rejectPorts(t *testing.T, ports ...int) {
	t.Helper()
	ipt, err := exec.LookPath("iptables")
	if err != nil {
		t.Skipf("iptables not found (install the iptables package): the rejecting firewall cannot be simulated: %v", err)
	}
	var added [][]string
	t.Cleanup(func() {
		for _, r := range added {
			del := append([]string{"-w", "-D"}, r...)
			if out, err := exec.Command(ipt, del...).CombinedOutput(); err != nil {
				t.Errorf("removing firewall rule %v: %v: %s", r, err, out)
			}
		}
	})
	for _, p := range ports {
		r := []string{"INPUT", "-i", "lo", "-p", "tcp", "--dport", fmt.Sprint(p), "-j", "REJECT", "--reject-with", "tcp-reset"}
		if out, err := exec.Command(ipt, append([]string{"-w", "-I"}, r...)...).CombinedOutput(); err != nil {
			t.Skipf("iptables cannot add a rule here (root and the nf_reject modules are needed): %v: %s", err, out)
		}
		added = append(added, r)
	}
}

// socketWriter inserts a row every 50 ms into the member's database over
// its unix socket (which the firewall does not touch) and counts the rows
// acknowledged, until ctx ends.
func socketWriter(ctx context.Context, t *testing.T, n *localcluster.Node) *atomic.Int64 {
	t.Helper()
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres connect_timeout=2", n.Dir, n.PGPort)
	cn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("connect to %s over its socket: %v", n.Name, err)
	}
	if _, err := cn.Exec(ctx, "CREATE TABLE IF NOT EXISTS behind_firewall (id bigserial PRIMARY KEY, at timestamptz DEFAULT now())"); err != nil {
		t.Fatalf("create table on %s: %v", n.Name, err)
	}
	var acked atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer cn.Close(context.Background())
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			qctx, cancel := context.WithTimeout(ctx, time.Second)
			if _, err := cn.Exec(qctx, "INSERT INTO behind_firewall DEFAULT VALUES"); err == nil {
				acked.Add(1)
			}
			cancel()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { <-done })
	return &acked
}

// The primary's host rejects the other members on its database and API
// ports while its agent keeps renewing its lease and its database keeps
// taking writes from a client that still reaches it. The replicas lose
// their streams and find both ports refusing, but the lease was renewed
// within loop_wait + 1s: nobody takes over, the key stays the primary's
// for three ttls, and no replica is promoted. Without the lease condition
// the best replica took the key within a second.
func TestNoTakeOverBehindRejectingFirewall(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	mon := monitorPrimaries(t, c)
	old, lead := leader(t, c)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	acked := socketWriter(ctx, t, old)
	rejectPorts(t, old.PGPort, old.APIPort)
	ttl, lw := time.Duration(localcluster.FastTiming.TTL), time.Duration(localcluster.FastTiming.LoopWait)

	// The replicas' receivers are reset at their next status message, and
	// their agents see it within a round.
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second+10*lw), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		for _, n := range others(c, old.Name) {
			if m := s.Member(n.Name); m == nil || m.Streaming {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("the replicas still stream from %s behind the firewall: %v", old.Name, err)
	}
	// The best replica checked the ports, found them refusing, and waits
	// for the lease: the take-over's path was taken, not skipped.
	var candidate string
	var moved *cluster.Leader
	err = localcluster.WaitFor(ctxFor(t, 10*lw+10*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		if s.Leader == nil || s.Leader.Epoch != lead.Epoch {
			moved = s.Leader
			return true
		}
		for _, m := range s.Members {
			if strings.Contains(m.Reason, "ports refuse connections; taking over once its lease") {
				candidate = m.Name
				return true
			}
		}
		return false
	})
	if moved != nil || err == nil && candidate == "" {
		t.Fatalf("the leader key of epoch %d (%s) changed to %+v while its agent renews its lease behind the firewall", lead.Epoch, old.Name, moved)
	}
	if err != nil {
		t.Fatalf("no replica found %s's ports refusing: %v", old.Name, err)
	}
	before := acked.Load()
	// Nothing may happen for three ttls: the store is read every quarter
	// loop_wait over that span.
	hold := time.NewTimer(3 * ttl)
	poll := time.NewTicker(lw / 4)
	defer poll.Stop()
	for held := false; !held; {
		select {
		case <-hold.C:
			held = true
		case <-poll.C:
		}
		s, err := c.Snapshot(context.Background())
		if err == nil && (s.Leader == nil || s.Leader.Epoch != lead.Epoch) {
			t.Fatalf("the leader key of epoch %d (%s) changed to %+v while its agent renews its lease behind the firewall", lead.Epoch, old.Name, s.Leader)
		}
	}
	if got := acked.Load(); got <= before {
		t.Fatalf("%s acknowledged no write over its socket in %s behind the firewall (%d before): the scenario needs a live primary", old.Name, 3*ttl, before)
	}
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hist {
		if h.Epoch >= lead.Epoch && h.Evidence != nil && h.Evidence.Kind == cluster.EvidenceRefusedEarly {
			t.Errorf("history entry %+v: a take-over while the old agent renews", h)
		}
	}
	for _, n := range others(c, old.Name) {
		if at := mon.lastWritable(n.Name); !at.IsZero() {
			t.Errorf("%s answered as a writable primary at %s", n.Name, at.Format("15:04:05.000"))
		}
	}
	t.Logf("%s behind a rejecting firewall for %s: %d writes acknowledged over its socket; %s saw its ports refuse and did not take over (key epoch %d kept)",
		old.Name, 3*ttl, acked.Load(), candidate, lead.Epoch)
}
