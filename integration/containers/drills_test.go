package containers

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/integration/history"
)

// convergeTarget is issue 9's target: every member streams from one
// primary within 30 s of the heal.
const convergeTarget = 30 * time.Second

// autoFailoverLimit bounds the wait for an automatic failover: the lease
// (ttl), the replicas' receiver timeout (4 s) and the election, with room
// for a loaded machine.
func autoFailoverLimit(p profile) time.Duration { return 3*p.ttl + 15*time.Second }

// replication is the replication mode a drill sets (synchronous_mode).
type replication int

// The replication modes.
const (
	syncMode  replication = iota // synchronous_mode=on
	asyncMode                    // synchronous_mode=off
)

func (r replication) String() string {
	if r == asyncMode {
		return "async"
	}
	return "sync"
}

// setting is the synchronous_mode value of r.
func (r replication) setting() string {
	if r == asyncMode {
		return "off"
	}
	return "on"
}

// fault is one way to take the primary out, and to bring it back.
type fault struct {
	name string
	// prepare, when set, configures the cluster for the fault once it is
	// up (primary n) and before the writers start.
	prepare func(c *cluster, n *member)
	// inject takes node n out.
	inject func(c *cluster, n *member)
	// holdTTLs is how long after the injection (after inject returned) the
	// heal waits at least, in ttls of the drill's timing profile (besides
	// waiting for the failover); hold, when longer, is that time in full.
	holdTTLs int
	hold     time.Duration
	// heal brings node n back.
	heal func(c *cluster, n *member)
	// healOff, when set, is what of the heal still applies to a node its
	// BMC powered off (fenced drills), done before the power comes back:
	// a network to connect it to again, a CPU quota to lift (both are the
	// container's settings). Nil when the fault went with the power
	// (frozen processes, iptables rules in the container's network
	// namespace, which a restart replaces).
	healOff func(c *cluster, n *member)
	// failovers is how many the fault must cause: 1, or 0 when the primary
	// keeps its lease (a failover then is a false one).
	failovers int
	// maxFailovers, when above failovers, is how many the fault may cause
	// at most: a fault after which either outcome is safe (a throttled
	// primary keeps its lease or fences itself and is failed over).
	maxFailovers int
	// verify, when set, checks what is particular to the fault once the
	// common checks ran.
	verify func(t *testing.T, r drillResult)
}

// drillResult is what one drill saw, for a fault's own checks.
type drillResult struct {
	acks []history.Ack
	// old is the primary the fault hit, primary the one the cluster
	// converged on after the heal.
	old, primary string
	// healed is just before the heal.
	healed time.Time
	// timing is the cluster's timing profile.
	timing profile
	// cluster is the drill's cluster.
	cluster *cluster
}

// cut drops every packet between node n and the given peers, both ways.
func cut(c *cluster, n *member, peers []*member) {
	for _, p := range peers {
		c.iptables(n, "-A", "OUTPUT", "-d", p.ip.String(), "-j", "DROP")
		c.iptables(n, "-A", "INPUT", "-s", p.ip.String(), "-j", "DROP")
	}
}

// uncut removes every rule cut added.
func uncut(c *cluster, n *member) {
	c.iptables(n, "-F", "OUTPUT")
	c.iptables(n, "-F", "INPUT")
}

// drillOptions are the settings a drill runs with besides its fault.
type drillOptions struct {
	timing  profile
	mode    replication
	fencing fencing
}

// defaultDrill is what every TestDrill* runs with: the fast timing
// profile, synchronous mode.
var defaultDrill = drillOptions{timing: fastProfile, mode: syncMode}

// others returns the nodes other than n.
func (c *cluster) others(n *member) []*member {
	var o []*member
	for _, m := range c.nodes {
		if m != n {
			o = append(o, m)
		}
	}
	return o
}

// TestDrillKill: docker kill (SIGKILL to every process) of the primary's
// container, then docker start.
//
// It fails today, so it runs only with HAMGR_CONTAINER_DRILLS=all: the
// kill closes the old primary's sockets (the replicas' WAL streams end
// with a FIN, not silence) and its address vanishes with the container
// (connections time out instead of being refused), so the liveness rule
// finds no proof that the old primary takes no writes and nobody promotes
// (problem old_primary_not_proven_dead) until an operator runs
// hamgrctl failover --confirm-down. The drill then takes that path so that
// its other checks still run.
func TestDrillKill(t *testing.T) {
	if os.Getenv("HAMGR_CONTAINER_DRILLS") != "all" {
		t.Skip("docker kill of the primary is not failed over automatically yet (no proof the old primary stopped: old_primary_not_proven_dead); HAMGR_CONTAINER_DRILLS=all runs this drill")
	}
	runDrill(t, killFault())
}

// killFault is TestDrillKill's fault.
func killFault() fault {
	return fault{
		name:      "docker kill",
		inject:    func(c *cluster, n *member) { docker(c.t, "kill", n.id()) },
		heal:      func(c *cluster, n *member) { docker(c.t, "start", n.id()) },
		failovers: 1,
	}
}

// TestDrillPause: docker pause (cgroup freezer) of the primary past twice
// the TTL, then docker unpause: the frozen primary must not take writes
// once it thaws.
func TestDrillPause(t *testing.T) { runDrill(t, pauseFault()) }

// pauseFault is TestDrillPause's fault.
func pauseFault() fault {
	return fault{
		name:      "docker pause",
		inject:    func(c *cluster, n *member) { docker(c.t, "pause", n.id()) },
		holdTTLs:  2,
		heal:      func(c *cluster, n *member) { docker(c.t, "unpause", n.id()) },
		failovers: 1,
	}
}

// TestDrillDisconnect: the primary's container is disconnected from the
// drill network (cut off from etcd, replicas and clients), then connected
// again with the address it had.
func TestDrillDisconnect(t *testing.T) { runDrill(t, disconnectFault()) }

// disconnectFault is TestDrillDisconnect's fault.
func disconnectFault() fault {
	return fault{
		name:      "network disconnect",
		inject:    func(c *cluster, n *member) { docker(c.t, "network", "disconnect", c.netName, n.id()) },
		holdTTLs:  2,
		heal:      reconnect,
		healOff:   reconnect,
		failovers: 1,
	}
}

// reconnect connects node n to the drill network again, with the address
// and alias it had.
func reconnect(c *cluster, n *member) {
	docker(c.t, "network", "connect", "--ip", n.ip.String(), "--alias", n.name, c.netName, n.id())
}

// TestDrillCutFromEtcd: iptables inside the primary's container drops
// everything between it and the three etcd members (both ways) while its
// replicas and clients still reach it; the rules are then removed. Its agent
// cannot renew the lease, so it must stop taking writes before the lease
// can expire, and the replicas then have their proof.
func TestDrillCutFromEtcd(t *testing.T) { runDrill(t, cutFromEtcdFault()) }

// cutFromEtcdFault is TestDrillCutFromEtcd's fault.
func cutFromEtcdFault() fault {
	return fault{
		name:      "cut from etcd",
		inject:    func(c *cluster, n *member) { cut(c, n, c.etcds) },
		holdTTLs:  2,
		heal:      uncut,
		failovers: 1,
	}
}

// TestDrillCutFromAllButClients: the primary reaches neither etcd nor its
// replicas, only the clients (the test process): as above, it must fence
// itself, and the replicas fail over among themselves.
func TestDrillCutFromAllButClients(t *testing.T) { runDrill(t, cutFromAllButClientsFault()) }

// cutFromAllButClientsFault is TestDrillCutFromAllButClients's fault.
func cutFromAllButClientsFault() fault {
	return fault{
		name:      "cut from etcd and replicas",
		inject:    func(c *cluster, n *member) { cut(c, n, append(c.others(n), c.etcds...)) },
		holdTTLs:  2,
		heal:      uncut,
		failovers: 1,
	}
}

// TestDrillCutFromReplicas: the primary loses its replicas only; it keeps
// etcd and so its lease, and nobody may take over: no failover. In
// synchronous mode its commits wait for a synchronous standby meanwhile.
func TestDrillCutFromReplicas(t *testing.T) { runDrill(t, cutFromReplicasFault()) }

// cutFromReplicasFault is TestDrillCutFromReplicas's fault.
func cutFromReplicasFault() fault {
	return fault{
		name:      "cut from replicas",
		inject:    func(c *cluster, n *member) { cut(c, n, c.others(n)) },
		holdTTLs:  2,
		heal:      uncut,
		failovers: 0,
	}
}

// cutOneWay drops the packets of one direction only between node n and
// the given peers: chain "OUTPUT" drops what n sends them, "INPUT" what
// it receives from them.
func cutOneWay(c *cluster, n *member, peers []*member, chain string) {
	for _, p := range peers {
		if chain == "OUTPUT" {
			c.iptables(n, "-A", "OUTPUT", "-d", p.ip.String(), "-j", "DROP")
		} else {
			c.iptables(n, "-A", "INPUT", "-s", p.ip.String(), "-j", "DROP")
		}
	}
}

// TestDrillOneWayToEtcd: iptables inside the primary's container drops
// what it sends to the etcd members (OUTPUT only) while it still receives
// what they send. With TCP that is a cut both ways soon enough: etcd never
// sees the agent's lease renewals (nor its acknowledgements of etcd's own
// segments, so etcd retransmits watch events the agent may still read), the
// agent never gets a reply to a request, and new connections die at the
// SYN. The agent's last renewal confirmed is its last before the cut, so
// its fence timer stops PostgreSQL loop_wait + retry_timeout after it,
// before the lease expires; the replicas, once the key is gone, have
// their proof (the old primary refuses connections) and one of them is
// promoted: one failover, no split-brain write, nothing acknowledged lost.
func TestDrillOneWayToEtcd(t *testing.T) { runDrill(t, oneWayFault("OUTPUT")) }

// TestDrillOneWayFromEtcd: the reverse: the primary's packets reach etcd
// but etcd's never reach it (INPUT only). The renewal requests already in
// flight on established connections still arrive (etcd receives the
// segments; only its acknowledgements and replies are lost), so etcd may
// extend the lease once or twice after the cut; then the agent's TCP,
// getting no acknowledgements, retransmits its oldest segment and sends
// nothing new, and new connections never complete the handshake. The agent
// sees no reply, so its last confirmed renewal is from before the cut and
// its fence timer stops PostgreSQL before any lease etcd extended can
// expire (each extension runs from a send that came after that renewal).
// The expected end is the same as the OUTPUT cut's: the old primary
// fenced, one failover once the lease expires, no split-brain write,
// nothing acknowledged lost.
func TestDrillOneWayFromEtcd(t *testing.T) { runDrill(t, oneWayFault("INPUT")) }

// oneWayFault is the one-way cut between the primary and etcd in chain
// "OUTPUT" (to etcd) or "INPUT" (from etcd).
func oneWayFault(chain string) fault {
	name := "one-way cut to etcd (OUTPUT)"
	if chain == "INPUT" {
		name = "one-way cut from etcd (INPUT)"
	}
	return fault{
		name:      name,
		inject:    func(c *cluster, n *member) { cutOneWay(c, n, c.etcds, chain) },
		holdTTLs:  2,
		heal:      uncut,
		failovers: 1,
	}
}

// TestDrillCPUThrottle: the primary's container is throttled to 5 % of a
// CPU (a CFS quota of 5 ms per 100 ms period) for three ttls with docker
// update --cpu-period --cpu-quota, then the quota is removed (--cpus
// cannot be reset on this engine once set, a quota of -1 can). Either
// outcome is safe: the agent still renews its lease in time (no failover),
// or it misses renewals and its fence timer stops PostgreSQL before the
// lease expires (one failover). Never a split-brain write, never a lost
// acknowledgement; the drill logs which happened. Skipped, with the
// engine's error, where docker update cannot set a CPU quota.
func TestDrillCPUThrottle(t *testing.T) {
	runDrill(t, cpuThrottle(100*time.Millisecond, 5*time.Millisecond))
}

// TestDrillCPUThrottleHard: the same at 0.1 % of a CPU: the smallest quota
// (1 ms) in the longest period (1 s), so the container's processes are
// stopped for most of each second, in one piece.
func TestDrillCPUThrottleHard(t *testing.T) {
	runDrill(t, cpuThrottle(time.Second, time.Millisecond))
}

// cpuThrottle is the fault of the CPU drills: the primary's container held
// to quota of CPU time per period for three ttls.
func cpuThrottle(period, quota time.Duration) fault {
	us := func(d time.Duration) string { return fmt.Sprint(d.Microseconds()) }
	return fault{
		name: fmt.Sprintf("CPU throttled to %v per %v", quota, period),
		inject: func(c *cluster, n *member) {
			if _, err := dockerErr("update", "--cpu-period", us(period), "--cpu-quota", us(quota), n.id()); err != nil {
				c.t.Skipf("this engine cannot throttle a container's CPU: %v", err)
			}
		},
		holdTTLs:     3,
		heal:         unthrottle,
		healOff:      unthrottle,
		failovers:    0,
		maxFailovers: 1,
	}
}

// unthrottle lifts node n's CPU quota.
func unthrottle(c *cluster, n *member) { docker(c.t, "update", "--cpu-quota", "-1", n.id()) }

// drillRecord is what one drill measured, a row of the fault matrix.
type drillRecord struct {
	fault  string
	timing string
	mode   replication
	// unavailability is the longest interval without an acknowledged
	// write through the multi-host string around the fault; measured is
	// false when it could not be measured.
	unavailability time.Duration
	measured       bool
	// splitBrain and lost count split-brain writes and acknowledged
	// writes lost; falseFailovers the failovers no fault explains and
	// failovers every timeline change.
	splitBrain, lost, falseFailovers, failovers int
	// converge is from the heal until every member streams from one
	// primary.
	converge time.Duration
}

// runDrill runs f with defaultDrill (fast profile, synchronous mode).
func runDrill(t *testing.T, f fault) {
	runDrillWith(t, f, defaultDrill)
}

// runDrillWith starts a cluster with o's timing and replication mode,
// writes, injects f into the primary, waits for the failover, heals, waits
// for convergence and checks the history: no split-brain write, no
// acknowledged write lost (synchronous mode only; asynchronous mode
// reports the count), no failover the fault does not explain, convergence
// within 30 s. It returns what it measured; a fatal failure ends the test
// before it returns.
func runDrillWith(t *testing.T, f fault, o drillOptions) drillRecord {
	begin := time.Now()
	c := startClusterWith(t, o.timing, o.fencing)
	// 4 min at the fast profile, more for longer ttls.
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute+10*(o.timing.ttl-drillTTL)+f.hold)
	defer cancel()
	old := c.node("n1")
	c.hamgrctl(old, "config", "set", "synchronous_mode="+o.mode.setting())
	if o.mode == syncMode {
		c.waitSyncStandby(ctx, old)
	}
	if f.prepare != nil {
		f.prepare(c, old)
	}
	w := c.startWriters(ctx)
	if err := w.waitFor(ctx, "100 acknowledgements", func(a []history.Ack) bool { return len(a) >= 100 }); err != nil {
		t.Fatal(err)
	}
	oldTL := w.snapshot()[0].Timeline
	t.Logf("cluster up in %v: primary %s on timeline %d, %s timing, synchronous_mode=%s",
		time.Since(begin).Round(time.Millisecond), old.name, oldTL, o.timing.name, o.mode.setting())

	start := time.Now()
	failedOver := injectAndHold(ctx, t, c, w, f, old, oldTL)
	heal := time.Now()
	f.heal(c, old)
	samples, primary := c.sampleConvergence(ctx, heal, convergeTarget+10*time.Second)
	converge, convErr := history.ConvergeTime(heal, samples)
	// Writes after the heal, then the final state.
	if err := w.waitFor(ctx, "writes after the heal", func(a []history.Ack) bool {
		return len(a) > 0 && a[len(a)-1].At.After(heal.Add(time.Second))
	}); err != nil {
		t.Error(err)
	}
	w.stop()
	acks := w.snapshot()
	if path, err := writeAckLog(t.ArtifactDir(), acks); err != nil {
		t.Errorf("acknowledgement log: %v", err)
	} else {
		t.Logf("acknowledgement log: %s (kept with go test -artifacts)", path)
	}
	if convErr != nil {
		c.dumpLogs()
		t.Fatalf("%s of %s: %v", f.name, old.name, convErr)
	}
	present, err := c.presentIDs(ctx, c.node(primary))
	if err != nil {
		t.Fatal(err)
	}
	rec := check(t, f, o, acks, present, start, heal, converge)
	if f.verify != nil {
		f.verify(t, drillResult{acks: acks, old: old.name, primary: primary, healed: heal, timing: o.timing, cluster: c})
	}
	if t.Failed() {
		c.dumpLogs()
	}
	t.Logf("%s of %s: %s, healed at +%v, converged on %s %v after the heal; %d acknowledgements (%s); drill %v",
		f.name, old.name, failedOver, heal.Sub(start).Round(time.Millisecond), primary,
		converge.Round(time.Millisecond), len(acks), byNode(acks), time.Since(begin).Round(time.Millisecond))
	return rec
}

// injectAndHold injects f into old, waits for the failover f must cause
// and holds the fault at least f.holdTTLs ttls from the end of the
// injection; it returns how the failover went, for the log.
func injectAndHold(ctx context.Context, t *testing.T, c *cluster, w *writers, f fault, old *member, oldTL int64) string {
	t.Helper()
	start := time.Now()
	f.inject(c, old)
	injected := time.Now()
	newTL := func(a []history.Ack) bool {
		for _, x := range a {
			if x.Timeline > oldTL && x.Path == history.PathMultiHost {
				return true
			}
		}
		return false
	}
	failedOver := "no failover expected"
	if f.maxFailovers > f.failovers {
		failedOver = fmt.Sprintf("%d to %d failovers safe", f.failovers, f.maxFailovers)
	}
	if f.failovers > 0 {
		waitFailover(ctx, t, c, w, f, old, newTL)
		failedOver = fmt.Sprintf("failover seen by the clients after %v", time.Since(start).Round(time.Millisecond))
	}
	if hold := max(time.Duration(f.holdTTLs)*c.timing.ttl, f.hold) - time.Since(injected); hold > 0 {
		// The fault lasts at least holdTTLs from the end of its injection
		// (stopping etcd members takes seconds); the condition here is time
		// itself.
		select {
		case <-time.After(hold):
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		}
	}
	return failedOver
}

// waitFailover waits for a write on a new timeline through the
// multi-host string. Without one within autoFailoverLimit it reports the
// miss and takes the operator's path (failover --confirm-down), so that
// the rest of the drill still runs.
func waitFailover(ctx context.Context, t *testing.T, c *cluster, w *writers, f fault, old *member, newTL func([]history.Ack) bool) {
	t.Helper()
	limit := autoFailoverLimit(c.timing)
	autoCtx, cancel := context.WithTimeout(ctx, limit)
	err := w.waitFor(autoCtx, "a write on a new timeline through the multi-host string", newTL)
	cancel()
	if err == nil {
		return
	}
	t.Errorf("%s of %s: no automatic failover within %v: %v; hamgrctl list says:\n%s",
		f.name, old.name, limit, err, c.hamgrctl(c.node("n2"), "list"))
	c.confirmDownFailover(old)
	if err := w.waitFor(ctx, "a write on a new timeline after failover --confirm-down", newTL); err != nil {
		c.dumpLogs()
		t.Fatalf("%s of %s: no failover even with --confirm-down: %v", f.name, old.name, err)
	}
}

// check asserts issue 9's targets on the history of one drill and returns
// what it measured. Lost acknowledgements fail the drill in synchronous
// mode only (asynchronous replication may lose the last ones by design);
// split-brain writes fail it in both.
func check(t *testing.T, f fault, o drillOptions, acks []history.Ack, present map[int64]bool, start, heal time.Time, converge time.Duration) drillRecord {
	t.Helper()
	rec := drillRecord{fault: f.name, timing: o.timing.name, mode: o.mode, converge: converge}
	sb := history.SplitBrain(acks)
	if rec.splitBrain = len(sb); rec.splitBrain > 0 {
		t.Errorf("%d split-brain writes (acknowledged by an old primary after the new one's first), first: %+v", len(sb), sb[0])
	}
	lost := history.Lost(acks, present)
	switch rec.lost = len(lost); {
	case rec.lost > 0 && o.mode == syncMode:
		t.Errorf("%d acknowledged writes lost in synchronous mode: %v", len(lost), lost[:min(len(lost), 10)])
	case rec.lost > 0:
		t.Logf("%d acknowledged writes lost in asynchronous mode (reported, not a failure): %v", len(lost), lost[:min(len(lost), 10)])
	}
	var multi []history.Ack
	for _, a := range acks {
		if a.Path == history.PathMultiHost {
			multi = append(multi, a)
		}
	}
	if out, err := history.Unavailability(multi, history.Fault{Name: f.name, Start: start, End: heal}); err != nil {
		t.Errorf("write unavailability: %v", err)
	} else {
		rec.unavailability, rec.measured = out.Duration, true
		t.Logf("%s: write unavailability through the multi-host string %v", f.name, out.Duration.Round(time.Millisecond))
	}
	var explaining []history.Fault
	if max(f.failovers, f.maxFailovers) > 0 {
		explaining = []history.Fault{{Name: f.name, Start: start, End: heal}}
	}
	ff := history.FalseFailovers(acks, explaining, 2*o.timing.ttl)
	if rec.falseFailovers = len(ff); len(ff) > 0 {
		t.Errorf("failovers no fault explains: %+v", ff)
	}
	fs := history.Failovers(acks)
	rec.failovers = len(fs)
	checkFailoverCount(t, f, fs, start, heal)
	if converge > convergeTarget {
		t.Errorf("converged %v after the heal, target %v", converge, convergeTarget)
	}
	return rec
}

// checkFailoverCount asserts that the drill saw as many failovers as f
// must (or may) cause.
func checkFailoverCount(t *testing.T, f fault, fs []history.Failover, start, heal time.Time) {
	t.Helper()
	switch hi := max(f.failovers, f.maxFailovers); {
	case hi == f.failovers && len(fs) != hi:
		t.Errorf("failovers = %+v, want %d", fs, hi)
	case len(fs) < f.failovers || len(fs) > hi:
		t.Errorf("failovers = %+v, want %d to %d", fs, f.failovers, hi)
	case hi > f.failovers:
		var at []string
		for _, x := range fs {
			at = append(at, fmt.Sprintf("to %s at +%v (heal at +%v)", x.Node, x.At.Sub(start).Round(time.Millisecond), heal.Sub(start).Round(time.Millisecond)))
		}
		t.Logf("%s: %d failovers (%d to %d are safe) %s", f.name, len(fs), f.failovers, hi, strings.Join(at, ", "))
	}
}

// byNode summarizes acknowledgements per node and path.
func byNode(acks []history.Ack) string {
	n := map[string]int{}
	var keys []string
	for _, a := range acks {
		k := a.Node + "/" + a.Path.String()
		if n[k] == 0 {
			keys = append(keys, k)
		}
		n[k]++
	}
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %d", k, n[k]))
	}
	return strings.Join(parts, ", ")
}
