package containers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/integration/history"
	"github.com/hamgr/hamgr/localcluster"
)

// Bounds of the rolling restart, from the fast timing.
const (
	// switchoverLimit bounds a switchover until the old primary streams
	// from the new one: the request is acted on in the leader's next round,
	// the handoff and promotion take well under a second, the old primary's
	// restart as a replica primary_start_timeout at most; doubled and more
	// for a loaded machine.
	switchoverLimit = 2*(drillLoopWait+10*time.Second) + 10*time.Second
	// restartLimit bounds a container restart until the node streams again:
	// the agent's clean stop (within docker restart's -t), its start,
	// PostgreSQL's start as a replica (primary_start_timeout), with room
	// for a loaded machine.
	restartLimit = restartStopTimeout + 2*10*time.Second + 30*time.Second
	// restartStopTimeout is docker restart's -t: the agent's clean stop has
	// that long before the container is killed.
	restartStopTimeout = 20 * time.Second
)

// TestDrillRollingRestart is the rolling restart runbook
// (examples/rolling-upgrade.md, "Rolling restart of containers") under
// writers in synchronous mode: every node in turn, in name order from the
// primary n1, is restarted with docker restart; when its turn comes while
// it is the primary, hamgrctl switchover first hands the lead to a node
// already restarted (or, for the first, to the next in order). That is
// two switchovers (n1 to n2, then n2 to n1) and three restarts. Asserted:
// no acknowledged write lost, no split-brain write, exactly one timeline
// change per switchover and none outside one, every node streaming from
// one primary at the end; logged: each switchover's write unavailability
// (median, min, max) and each restart's.
func TestDrillRollingRestart(t *testing.T) {
	begin := time.Now()
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	c.hamgrctl(c.node("n1"), "config", "set", "synchronous_mode=on")
	c.waitSyncStandby(ctx, c.node("n1"))
	w := c.startWriters(ctx)
	if err := w.waitFor(ctx, "100 acknowledgements", func(a []history.Ack) bool { return len(a) >= 100 }); err != nil {
		t.Fatal(err)
	}
	var switchovers, restarts []history.Fault
	var done []*member
	for _, n := range c.nodes {
		primary := c.currentPrimary(ctx)
		if primary == n {
			to := c.switchoverTarget(n, done)
			switchovers = append(switchovers, c.switchover(ctx, n, to))
		}
		role := "replica"
		if slices.Contains(c.syncStandbys(ctx, c.currentPrimary(ctx)), n.name) {
			role = "synchronous standby"
		}
		restarts = append(restarts, c.restartNode(ctx, n, role))
		done = append(done, n)
	}
	if err := w.waitFor(ctx, "writes after the last restart", func(a []history.Ack) bool {
		return len(a) > 0 && a[len(a)-1].At.After(restarts[len(restarts)-1].End.Add(time.Second))
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
	primary, ok := c.converged(ctx, nodeCount)
	if !ok {
		c.dumpLogs()
		t.Fatalf("not every node streams from one primary after the rolling restart:\n%s", c.hamgrctl(c.nodes[0], "list"))
	}
	present, err := c.presentIDs(ctx, c.node(primary))
	if err != nil {
		t.Fatal(err)
	}
	checkRolling(t, acks, present, switchovers, restarts)
	t.Logf("rolling restart: %d switchovers, %d restarts, primary %s at the end; %d acknowledgements (%s); drill %v",
		len(switchovers), len(restarts), primary, len(acks), byNode(acks), time.Since(begin).Round(time.Millisecond))
}

// currentPrimary waits until every node streams from one primary and
// returns it.
func (c *cluster) currentPrimary(ctx context.Context) *member {
	c.t.Helper()
	wctx, cancel := context.WithTimeout(ctx, restartLimit)
	defer cancel()
	p, err := c.waitConverged(wctx, nodeCount)
	if err != nil {
		c.t.Fatalf("the cluster has not converged: %v; hamgrctl list says:\n%s", err, c.hamgrctl(c.nodes[0], "list"))
	}
	return c.node(p)
}

// switchoverTarget is the node a switchover from primary hands the lead
// to: the last node already restarted, else the next node after primary
// in name order.
func (c *cluster) switchoverTarget(primary *member, done []*member) *member {
	if len(done) > 0 {
		return done[len(done)-1]
	}
	i := slices.Index(c.nodes, primary)
	return c.nodes[(i+1)%len(c.nodes)]
}

// switchover runs hamgrctl switchover --to to --force on from (the
// primary) and waits until every node streams from to; the fault it
// returns spans the request to that.
func (c *cluster) switchover(ctx context.Context, from, to *member) history.Fault {
	c.t.Helper()
	start := time.Now()
	out := c.hamgrctl(from, "switchover", "--to", to.name, "--force")
	done := time.Now()
	wctx, cancel := context.WithTimeout(ctx, switchoverLimit)
	defer cancel()
	p, err := c.waitConverged(wctx, nodeCount)
	if err != nil || p != to.name {
		c.dumpLogs()
		c.t.Fatalf("switchover from %s to %s: converged on %q (%v) within %v; hamgrctl list says:\n%s",
			from.name, to.name, p, err, switchoverLimit, c.hamgrctl(to, "list"))
	}
	c.t.Logf("switchover %s -> %s: hamgrctl returned after %v (%s); every node streams from %s after %v",
		from.name, to.name, done.Sub(start).Round(time.Millisecond), doneLine(out), to.name, time.Since(start).Round(time.Millisecond))
	return history.Fault{Name: fmt.Sprintf("switchover %s -> %s", from.name, to.name), Start: start, End: time.Now()}
}

// syncStandbys returns the application names primary n lists as
// synchronous standbys (pg_stat_replication), nil when it cannot tell.
func (c *cluster) syncStandbys(ctx context.Context, n *member) []string {
	conn, err := c.connect(ctx, n.ip.String())
	if err != nil {
		return nil
	}
	defer closeConn(conn)
	qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	rows, err := conn.Query(qctx, "SELECT application_name FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')")
	if err != nil {
		return nil
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil
	}
	return names
}

// restartNode restarts node n's container (docker restart) and waits until
// every node streams from one primary again, n included; role (replica or
// synchronous standby) names the restart in the history.
func (c *cluster) restartNode(ctx context.Context, n *member, role string) history.Fault {
	c.t.Helper()
	start := time.Now()
	docker(c.t, "restart", "-t", fmt.Sprint(int(restartStopTimeout/time.Second)), n.id())
	restarted := time.Now()
	wctx, cancel := context.WithTimeout(ctx, restartLimit)
	defer cancel()
	err := localcluster.Poll(wctx, 250*time.Millisecond, func() bool {
		p, ok := c.converged(wctx, nodeCount)
		return ok && p != n.name
	})
	if err != nil {
		c.dumpLogs()
		c.t.Fatalf("%s does not stream again within %v of its restart: %v; hamgrctl list says:\n%s",
			n.name, restartLimit, err, c.hamgrctl(c.nodes[0], "list"))
	}
	c.t.Logf("restart of %s: docker restart took %v; streaming again %v after it began",
		n.name, restarted.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return history.Fault{Name: fmt.Sprintf("restart %s (%s)", n.name, role), Start: start, End: time.Now()}
}

// checkRolling asserts the rolling restart's targets on its history and
// logs the write unavailability of each switchover and restart.
func checkRolling(t *testing.T, acks []history.Ack, present map[int64]bool, switchovers, restarts []history.Fault) {
	t.Helper()
	if sb := history.SplitBrain(acks); len(sb) > 0 {
		t.Errorf("%d split-brain writes, first: %+v", len(sb), sb[0])
	}
	if lost := history.Lost(acks, present); len(lost) > 0 {
		t.Errorf("%d acknowledged writes lost in synchronous mode: %v", len(lost), lost[:min(len(lost), 10)])
	}
	if fs := history.Failovers(acks); len(fs) != len(switchovers) {
		t.Errorf("timeline changes = %+v, want %d (one per switchover)", fs, len(switchovers))
	}
	if ff := history.FalseFailovers(acks, switchovers, 2*drillTTL); len(ff) > 0 {
		t.Errorf("timeline changes outside every switchover: %+v", ff)
	}
	var multi []history.Ack
	for _, a := range acks {
		if a.Path == history.PathMultiHost {
			multi = append(multi, a)
		}
	}
	t.Logf("switchovers: write unavailability through the multi-host string %s", outages(t, multi, switchovers))
	t.Logf("restarts: write unavailability through the multi-host string %s", outages(t, multi, restarts))
}

// outages measures the write unavailability of each fault and summarizes
// it: each, then median, min and max.
func outages(t *testing.T, acks []history.Ack, faults []history.Fault) string {
	t.Helper()
	var ds []time.Duration
	var each []string
	for _, f := range faults {
		o, err := history.Unavailability(acks, f)
		if err != nil {
			t.Errorf("write unavailability of %s: %v", f.Name, err)
			continue
		}
		ds = append(ds, o.Duration)
		each = append(each, fmt.Sprintf("%s %v", f.Name, o.Duration.Round(time.Millisecond)))
	}
	if len(ds) == 0 {
		return "none measured"
	}
	slices.Sort(ds)
	median := (ds[(len(ds)-1)/2] + ds[len(ds)/2]) / 2
	return fmt.Sprintf("%s; median %v, min %v, max %v", strings.Join(each, ", "),
		median.Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
}

// doneLine returns the line of hamgrctl's output that starts with
// "Done:", else its last line.
func doneLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for _, l := range lines {
		if strings.HasPrefix(l, "Done:") {
			return l
		}
	}
	return lines[len(lines)-1]
}
