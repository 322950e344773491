package integration

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/internal/ipmisim"
	"github.com/hamgr/hamgr/localcluster"
)

// The fencing policy against real BMC simulators: every member of a
// 3-member cluster has an ipmi_sim whose chassis power-off kills that
// member's agent and PostgreSQL (localcluster.Node.PowerOffScript), and
// every agent's fencing section reaches the others' BMCs through the ipmi
// driver (bmclib's ipmitool provider).

// fencedCluster starts the BMCs (or, with unreachable, points every
// member's fencing section at a UDP port nobody answers on) and a cluster
// with the fencing policy given; it returns the cluster and the BMCs by
// member name.
func fencedCluster(t *testing.T, policy cluster.FencingPolicy, unreachable bool) (*localcluster.Cluster, map[string]*ipmisim.BMC) {
	t.Helper()
	return fencedClusterTimed(t, policy, unreachable, localcluster.FastTiming)
}

// fencedClusterTimed is fencedCluster with the given timing.
func fencedClusterTimed(t *testing.T, policy cluster.FencingPolicy, unreachable bool, timing cluster.DynamicConfig) (*localcluster.Cluster, map[string]*ipmisim.BMC) {
	t.Helper()
	bmcs := map[string]*ipmisim.BMC{}
	ports := map[string]int{}
	names := []string{"n1", "n2", "n3"}
	for _, name := range names {
		if unreachable {
			ports[name] = silentUDPPort(t)
			continue
		}
		b := ipmisim.Start(t)
		bmcs[name], ports[name] = b, b.Port
	}
	pw := filepath.Join(t.TempDir(), "bmc.pw")
	if err := os.WriteFile(pw, []byte(ipmisim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	timing.Fencing = policy
	c := startCluster(t, localcluster.Options{Timing: timing, Fencing: func(n *localcluster.Node) string {
		var b strings.Builder
		b.WriteString("fencing:\n  members:\n")
		for _, other := range names {
			if other == n.Name {
				continue
			}
			fmt.Fprintf(&b, "    %s:\n      driver: ipmi\n      address: 127.0.0.1\n      port: %d\n      username: %s\n      password_file: %s\n      timeout: 5s\n",
				other, ports[other], ipmisim.User, pw)
		}
		return b.String()
	}})
	for _, n := range c.Nodes {
		if b := bmcs[n.Name]; b != nil {
			b.OnPowerOff(t, n.PowerOffScript())
		}
	}
	return c, bmcs
}

// silentUDPPort returns a loopback UDP port below 32768 bound by a
// socket that never answers (closed when the test ends): an unreachable
// BMC.
func silentUDPPort(t *testing.T) int {
	t.Helper()
	for p := 21000; p < 32000; p += 7 {
		c, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		t.Cleanup(func() { c.Close() })
		return p
	}
	t.Fatal("no free UDP port")
	return 0
}

// lastPromotion returns the newest history entry, which must be a
// failover away from old.
func lastPromotion(t *testing.T, c *localcluster.Cluster, old string) cluster.HistoryEntry {
	t.Helper()
	var h cluster.HistoryEntry
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		hist, err := c.Store.History(context.Background())
		if err != nil || len(hist) == 0 {
			return false
		}
		h = hist[len(hist)-1]
		return h.OldPrimary == old && h.Kind == cluster.HistoryFailover
	})
	if err != nil {
		t.Fatalf("no failover away from %s in the history (last: %+v)", old, h)
	}
	return h
}

// checkConfirmedFence: the history entry's fence step confirmed the
// power-off of old through the ipmi driver before the promotion, and
// old's BMC records the power off.
func checkConfirmedFence(t *testing.T, h cluster.HistoryEntry, old string, bmc *ipmisim.BMC) {
	t.Helper()
	f := h.Fence
	if f == nil || f.Result != cluster.FenceConfirmed || f.Target != old || !strings.Contains(f.Driver, "ipmi") {
		t.Fatalf("history entry's fence %+v: want %s confirmed by the ipmi driver", f, old)
	}
	if f.At.After(h.PromotedAt) {
		t.Errorf("fence confirmed at %s, after the promotion at %s", f.At, h.PromotedAt)
	}
	var steps []string
	for _, s := range h.Steps {
		steps = append(steps, s.Name)
	}
	if !strings.HasPrefix(strings.Join(steps, ","), "elect,fence,promote") {
		t.Errorf("history steps %v, want elect, fence, promote (then any publishers')", steps)
	}
	if p := bmc.Power(t); p != "off" {
		t.Errorf("%s's BMC reports power %s", old, p)
	}
	t.Logf("fence: %s (%d attempts, %s after the key); steps %+v", f, f.Attempts, time.Duration(f.Duration), h.Steps)
}

// A crashed primary under fencing require: the new leader powers it off
// through its BMC and has the confirmation before it promotes.
func TestFencingRequireNodeCrash(t *testing.T) {
	c, bmcs := fencedCluster(t, cluster.FencingRequire, false)
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObservePromotion(ctxFor(t, ttl+time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	h := lastPromotion(t, c, old.Name)
	checkConfirmedFence(t, h, old.Name, bmcs[old.Name])
	if !strings.Contains(bmcs[old.Name].ChassisLog(t), "set power 0") {
		t.Errorf("%s's BMC was never told to power off:\n%s", old.Name, bmcs[old.Name].ChassisLog(t))
	}
	t.Logf("node crash under require: %s promoted %v after the crash", tl.New, tl.Promoted)
}

// An unreachable BMC under require blocks the promotion: the new leader
// holds the key, stays a replica and says why (fencing_unconfirmed); once
// the policy is best-effort it promotes (the old primary was proven dead:
// its port refuses), recorded as unconfirmed.
func TestFencingUnreachableBMCBlocksThenBestEffortPromotes(t *testing.T) {
	c, _ := fencedCluster(t, cluster.FencingRequire, true)
	monitorPrimaries(t, c)
	old, _ := leader(t, c)
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	var holder string
	err := localcluster.WaitFor(ctxFor(t, ttl+time.Minute), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil || s.Leader.Name == old.Name {
			return false
		}
		m := s.Member(s.Leader.Name)
		holder = s.Leader.Name
		return m != nil && m.Problem == cluster.ProblemFencingUnconfirmed
	})
	if err != nil {
		t.Fatalf("no new leader reports %s (last holder %q)", cluster.ProblemFencingUnconfirmed, holder)
	}
	// Held, not promoted, for two ttls: no member answers as a primary.
	end := time.Now().Add(2 * ttl)
	for time.Now().Before(end) {
		for _, n := range c.Nodes {
			if n.Name == old.Name {
				continue
			}
			if code, _ := n.Check(context.Background(), "/primary"); code == 200 {
				t.Fatalf("%s promoted although its fence of %s was never confirmed (fencing require)", n.Name, old.Name)
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	s, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := s.Member(holder)
	if m == nil || !strings.Contains(m.Reason, "FENCING UNCONFIRMED") || !strings.Contains(m.Reason, old.Name) {
		t.Fatalf("the new leader's record does not say why: %+v", m)
	}
	t.Logf("%s holds the key: %s", holder, m.Reason)
	setConfig(t, c, "fencing", "best-effort")
	t1 := time.Now()
	tl, err := c.ObservePromotion(ctxFor(t, ttl+time.Minute), old.Name, t1)
	if err != nil {
		t.Fatal(err)
	}
	h := lastPromotion(t, c, old.Name)
	if h.Fence == nil || h.Fence.Result != cluster.FenceUnconfirmed || h.Fence.Target != old.Name || h.Fence.Attempts < 1 {
		t.Fatalf("history entry's fence %+v: want %s unconfirmed after failed attempts", h.Fence, old.Name)
	}
	t.Logf("best-effort: %s promoted %v after the policy change; fence %s", tl.New, tl.Promoted, h.Fence)
}

// The agent-dead, database-alive primary in synchronous mode: its agent
// is killed, its database keeps accepting writes. With fencing, a replica
// fences it (the fence is the only proof: it answers as writable) and
// fails over; no acknowledged write is lost and the old primary
// acknowledged nothing after the new primary's first write.
func TestFencingAgentDeadDatabaseAliveFailsOverInSyncMode(t *testing.T) {
	c, bmcs := fencedCluster(t, cluster.FencingRequire, false)
	setConfig(t, c, "synchronous_mode", "on")
	waitSyncRecord(t, c, 30*time.Second)
	old, _ := leader(t, c)
	w := startWriters(t, c, "agentdead")
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+50); err != nil {
		t.Fatal(err)
	}
	pm := old.PostmasterPID()
	t0 := time.Now()
	if err := old.KillAgent(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObservePromotion(ctxFor(t, ttl+time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	a := w.stop()
	h := lastPromotion(t, c, old.Name)
	checkConfirmedFence(t, h, old.Name, bmcs[old.Name])
	if h.Evidence == nil || h.Evidence.Kind != cluster.EvidenceFence {
		t.Errorf("evidence %v: want fence (the old primary answered as writable)", h.Evidence)
	}
	if pm > 0 && processAliveOrZombie(pm) {
		t.Errorf("the old primary's postmaster (pid %d) survived the power-off", pm)
	}
	if n, first := a.splitBrain(old.Name, tl.New, t0); n > 0 {
		t.Errorf("%d writes acknowledged by %s after %s's first at %s", n, old.Name, tl.New, first.Format("15:04:05.000"))
	}
	if missing := verifyNoLoss(t, w.allOpt, a.all.AckedIDs); len(missing) > 0 {
		t.Errorf("synchronous mode: %d acknowledged writes lost: %v", len(missing), missing)
	}
	t.Logf("agent dead, database alive: %s promoted %v after the agent's death; evidence %s", tl.New, tl.Promoted, h.Evidence)
}

// A frozen primary (SIGSTOP of every process past the ttl) under fencing
// require: a replica powers it off before promoting; thawed, it never
// acknowledges a write after the new primary's first.
func TestFencingFrozenPrimaryNeverAcknowledgesAfterFailover(t *testing.T) {
	tl, h := frozenUnderRequire(t, localcluster.FastTiming, "frozenfence")
	t.Logf("frozen primary: %s promoted %v after the freeze; evidence %s", tl.New, tl.Promoted, h.Evidence)
}

// The same at the default timing (ttl 10s): the best replica does not wait
// for the key to expire. Once the frozen primary's lease has gone
// unrenewed for loop_wait + 1s, its agent gives no answer and every
// replica heard its sender stop answering, it takes the key over (guarded
// by the key's epoch and lease) to fence it, and promotes after the
// confirmed power-off: evidence fence, taken while the key was still held.
func TestFencingTakeOverOfFrozenPrimaryBeforeTTL(t *testing.T) {
	tl, h := frozenUnderRequire(t, localcluster.DefaultTiming, "frozentakeover")
	if h.Evidence == nil || h.Evidence.Kind != cluster.EvidenceFence || !strings.Contains(h.Evidence.Detail, "was still held") {
		t.Fatalf("evidence %v: want fence, taken over while the frozen primary's key was still held", h.Evidence)
	}
	t.Logf("frozen primary, default timing: %s promoted %v after the freeze (ttl %s); evidence %s",
		tl.New, tl.Promoted, time.Duration(localcluster.DefaultTiming.TTL), h.Evidence)
}

// frozenUnderRequire freezes the primary of a cluster fenced under
// require at the given timing while writers run, waits for the failover,
// thaws it, and checks the fence was confirmed before the promotion and
// the thawed old primary acknowledged nothing after the new one's first.
func frozenUnderRequire(t *testing.T, timing cluster.DynamicConfig, table string) (localcluster.Timeline, cluster.HistoryEntry) {
	t.Helper()
	c, bmcs := fencedClusterTimed(t, cluster.FencingRequire, false, timing)
	old, _ := leader(t, c)
	w := startWriters(t, c, table)
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+50); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := old.SignalNode(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = old.SignalNode(syscall.SIGCONT) })
	tl, err := c.ObservePromotion(ctxFor(t, time.Duration(timing.TTL)+silenceBound()+time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.all.WaitAcked(ctxFor(t, 30*time.Second), w.all.Acked()+20); err != nil {
		t.Fatal(err)
	}
	_ = old.SignalNode(syscall.SIGCONT) // nothing left to thaw after the power-off
	// The direct writer of the old primary tries it again after the thaw
	// (every attempt fails: its processes were powered off).
	d := w.direct[old.Name]
	failed := d.Failed()
	if err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool { return d.Failed() >= failed+5 }); err != nil {
		t.Errorf("the direct writer of %s made no attempts after the thaw: %v", old.Name, err)
	}
	a := w.stop()
	h := lastPromotion(t, c, old.Name)
	checkConfirmedFence(t, h, old.Name, bmcs[old.Name])
	if n, first := a.splitBrain(old.Name, tl.New, t0); n > 0 {
		t.Errorf("%d writes acknowledged by the thawed %s after %s's first at %s", n, old.Name, tl.New, first.Format("15:04:05.000"))
	}
	return tl, h
}

// processAliveOrZombie reports whether pid exists and is not a zombie.
func processAliveOrZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
