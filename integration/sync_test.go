package integration

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// Synchronous replication, replication slots and rejoin, against real
// PostgreSQL, etcd and agents with the fast timing profile.

// syncFailovers is the number of failovers in a row of the failover loops
// (HAMGR_SYNC_FAILOVERS, default 20).
func syncFailovers(t *testing.T) int {
	t.Helper()
	v := os.Getenv("HAMGR_SYNC_FAILOVERS")
	if v == "" {
		return 20
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("HAMGR_SYNC_FAILOVERS=%q: want a positive whole number", v)
	}
	return n
}

// setConfig sets a dynamic config key through the operator.
func setConfig(t *testing.T, c *localcluster.Cluster, key, value string) {
	t.Helper()
	if _, err := newOperator(c).SetConfig(context.Background(), key, value); err != nil {
		t.Fatalf("config set %s=%s: %v", key, value, err)
	}
}

// waitSyncRecord waits until the store's sync record belongs to the
// current leader's epoch and names at least one member, and returns it.
func waitSyncRecord(t *testing.T, c *localcluster.Cluster, d time.Duration) cluster.SyncState {
	t.Helper()
	var rec cluster.SyncState
	var last string
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			last = fmt.Sprintf("no leader (err %v)", err)
			return false
		}
		if s.Sync == nil {
			last = fmt.Sprintf("leader %s@%d, no sync record", s.Leader.Name, s.Leader.Epoch)
			return false
		}
		last = fmt.Sprintf("leader %s@%d, sync record %+v", s.Leader.Name, s.Leader.Epoch, *s.Sync)
		if s.Sync.Epoch != s.Leader.Epoch || s.Sync.Leader != s.Leader.Name || len(s.Sync.Members) == 0 {
			return false
		}
		rec = *s.Sync
		return true
	})
	if err != nil {
		t.Fatalf("no synchronous standby recorded for the current epoch: %v (last: %s)", err, last)
	}
	return rec
}

// longWriter is writer with a write loop that may run for d (writer's
// own loop ends after 3 minutes).
func longWriter(t *testing.T, c *localcluster.Cluster, table string, d time.Duration) (*writeclient.Client, writeclient.Options) {
	t.Helper()
	o := writeclient.Options{Hosts: c.Hosts(), User: "postgres", Password: c.SuperPassword, Table: table,
		Logger: slog.New(slog.DiscardHandler)}
	w := writeclient.New(o)
	ctx := ctxFor(t, d)
	if err := w.Setup(ctxFor(t, 30*time.Second)); err != nil {
		t.Fatalf("write client setup: %v", err)
	}
	w.Start(ctx)
	t.Cleanup(func() { w.Stop() })
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	return w, o
}

// logOffset is the current size of a log file (where new lines start).
func logOffset(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logSince returns what was appended to path after offset.
func logSince(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < offset {
		return ""
	}
	return string(b[offset:])
}

// grepLines returns the lines of text containing any of subs.
func grepLines(text string, subs ...string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		for _, s := range subs {
			if strings.Contains(l, s) {
				out = append(out, l)
				break
			}
		}
	}
	return out
}

// tail returns the last n lines of text.
func tail(text string, n int) string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// clonePlanned reports the plan lines of an agent log that clone or
// re-clone the data directory.
func clonePlanned(log string) []string {
	return grepLines(log, "[clone upstream=", "reclone upstream=", ", clone upstream=")
}

// waitStreamingFrom waits until n answers /replica with 200 and its member
// record streams from the current leader. It fails at once, with the
// member's reason and its agent log, when n reports cannot_follow.
func waitStreamingFrom(t *testing.T, c *localcluster.Cluster, n *localcluster.Node, logOff int64, d time.Duration) string {
	t.Helper()
	var last, leaderName string
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			last = "no leader"
			return false
		}
		leaderName = s.Leader.Name
		m := s.Member(n.Name)
		if m == nil {
			last = "no member record"
			return false
		}
		last = fmt.Sprintf("%s %s upstream=%s streaming=%t: %s", m.Role, m.State, m.Upstream, m.Streaming, m.Reason)
		if m.State == cluster.StateCannotFollow {
			return true
		}
		code, _ := n.Check(context.Background(), "/replica")
		return code == 200 && m.Streaming && m.Upstream == s.Leader.Name
	})
	if err != nil || strings.Contains(last, string(cluster.StateCannotFollow)) {
		t.Fatalf("%s did not become a streaming replica of %s within %v: %v; last: %s\nagent log since restart:\n%s",
			n.Name, leaderName, d, err, last, tail(logSince(n.AgentLog, logOff), 40))
	}
	return leaderName
}

// waitRejoinedByRewind waits until the restarted former primary n streams
// from the leader and checks in its agent log that it got there by
// pg_rewind, not by a re-clone. It returns the rewind's log line.
func waitRejoinedByRewind(t *testing.T, c *localcluster.Cluster, n *localcluster.Node, logOff int64, d time.Duration) string {
	t.Helper()
	waitStreamingFrom(t, c, n, logOff, d)
	log := logSince(n.AgentLog, logOff)
	if cl := clonePlanned(log); len(cl) > 0 {
		t.Fatalf("%s rejoined by cloning, not by pg_rewind: %s", n.Name, cl[0])
	}
	rw := grepLines(log, "rewound from upstream")
	if len(rw) == 0 {
		t.Fatalf("%s streams again but its agent log shows no pg_rewind; log since restart:\n%s", n.Name, tail(log, 40))
	}
	return rw[len(rw)-1]
}

// pgConnect connects to n's PostgreSQL as the superuser, trying again
// (each attempt bounded by 5s) until ctx ends: on a loaded machine one
// connection may take seconds, and that is no failure of hamgr's.
func pgConnect(ctx context.Context, c *localcluster.Cluster, n *localcluster.Node) (*pgx.Conn, error) {
	dsn := fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=5 sslmode=disable",
		n.PGPort, c.SuperPassword)
	for {
		conn, err := pgx.Connect(ctx, dsn)
		if err == nil || ctx.Err() != nil {
			return conn, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// mustExec runs sql on n.
func mustExec(t *testing.T, c *localcluster.Cluster, n *localcluster.Node, sql string, args ...any) {
	t.Helper()
	ctx := ctxFor(t, 60*time.Second)
	conn, err := pgConnect(ctx, c, n)
	if err != nil {
		t.Fatalf("connect to %s: %v", n.Name, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s on %s: %v", sql, n.Name, err)
	}
}

// countRows runs a count(*) query on n.
func countRows(ctx context.Context, c *localcluster.Cluster, n *localcluster.Node, sql string, args ...any) (int64, error) {
	conn, err := pgConnect(ctx, c, n)
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	var k int64
	err = conn.QueryRow(ctx, sql, args...).Scan(&k)
	return k, err
}

// waitRowCount waits until the query on n returns want.
func waitRowCount(t *testing.T, c *localcluster.Cluster, n *localcluster.Node, want int64, d time.Duration, sql string, args ...any) {
	t.Helper()
	var got int64
	var lastErr error
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		qctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		got, lastErr = countRows(qctx, c, n, sql, args...)
		return lastErr == nil && got == want
	})
	if err != nil {
		t.Fatalf("%s on %s: got %d (err %v), want %d", sql, n.Name, got, lastErr, want)
	}
}

// runFailovers kills the primary n times in a row under a write load,
// restarting each killed node's agent, which must rejoin by pg_rewind. In
// synchronous mode each new primary must be a recorded synchronous standby
// of the lost epoch. It returns the writer's result.
func runFailovers(t *testing.T, c *localcluster.Cluster, w *writeclient.Client, n int, syncMode bool) writeclient.Result {
	t.Helper()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	var faults []time.Time
	var iters []time.Duration
	for i := 1; i <= n; i++ {
		start := time.Now()
		old, lead := leader(t, c)
		var rec cluster.SyncState
		if syncMode {
			rec = waitSyncRecord(t, c, 60*time.Second)
			if rec.Epoch != lead.Epoch {
				t.Fatalf("failover %d: sync record of epoch %d, leader epoch %d", i, rec.Epoch, lead.Epoch)
			}
		}
		off := logOffset(old.AgentLog)
		t0 := time.Now()
		old.KillNode()
		tl, err := c.ObservePromotion(ctxFor(t, ttl+30*time.Second), old.Name, t0)
		if err != nil {
			t.Fatalf("failover %d (killed %s): %v", i, old.Name, err)
		}
		if tl.Epoch <= lead.Epoch {
			t.Errorf("failover %d: new epoch %d not above %d", i, tl.Epoch, lead.Epoch)
		}
		if syncMode && !rec.Has(tl.New) {
			t.Fatalf("failover %d: %s was promoted but the synchronous standbys of epoch %d were %v", i, tl.New, rec.Epoch, rec.Members)
		}
		if err := old.StartAgent(); err != nil {
			t.Fatal(err)
		}
		rw := waitRejoinedByRewind(t, c, old, off, 60*time.Second)
		if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatalf("failover %d: %v", i, err)
		}
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
			t.Fatalf("failover %d: writes did not resume: %v", i, err)
		}
		faults = append(faults, t0)
		iters = append(iters, time.Since(start))
		rewound := "rewind_required=?"
		if j := strings.Index(rw, "rewind_required="); j >= 0 {
			rewound = strings.Fields(rw[j:])[0]
		}
		t.Logf("failover %d/%d: %s -> %s (epoch %d) elected +%v promoted +%v; %s rejoined by pg_rewind (%s); iteration %v",
			i, n, old.Name, tl.New, tl.Epoch, tl.Elected.Round(time.Millisecond), tl.Promoted.Round(time.Millisecond),
			old.Name, rewound, iters[len(iters)-1].Round(time.Millisecond))
	}
	res := w.Stop()
	var total time.Duration
	for _, g := range res.Gaps {
		total += g.Duration
	}
	for i, t0 := range faults {
		t.Logf("failover %d: write unavailability %v", i+1, res.OutageAround(t0).Round(time.Millisecond))
	}
	med, lo, hi := writeclient.Stats(iters)
	t.Logf("%d failovers: %d writes acknowledged, %d gaps, total write unavailability %v (longest %v); iteration median %v min %v max %v",
		n, res.Acked, len(res.Gaps), total.Round(time.Millisecond), res.LongestGap.Round(time.Millisecond),
		med.Round(time.Millisecond), lo.Round(time.Millisecond), hi.Round(time.Millisecond))
	return res
}

// 1. Synchronous mode: N failovers in a row under load lose no
// acknowledged write, and every old primary rejoins by pg_rewind.
func TestSyncModeFailoversLoseNothing(t *testing.T) {
	n := syncFailovers(t)
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	setConfig(t, c, "synchronous_mode", "on")
	rec := waitSyncRecord(t, c, 30*time.Second)
	if len(rec.Members) != 1 {
		t.Fatalf("sync record %+v: want exactly 1 member (synchronous_node_count 1)", rec)
	}
	w, o := longWriter(t, c, "sync_failovers", time.Duration(n)*45*time.Second+2*time.Minute)
	res := runFailovers(t, c, w, n, true)
	missing := verifyNoLoss(t, o, res.AckedIDs)
	t.Logf("synchronous mode: %d of %d acknowledged writes lost over %d failovers", len(missing), res.Acked, n)
	if len(missing) > 0 {
		t.Fatalf("synchronous mode lost %d acknowledged writes: %v", len(missing), missing[:min(len(missing), 20)])
	}
}

// 2. Asynchronous mode: the same loop; loss is reported, not asserted,
// but every failover happens and every old primary rejoins by pg_rewind.
func TestAsyncModeFailoversReportLoss(t *testing.T) {
	n := syncFailovers(t)
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	if s, _ := c.Snapshot(context.Background()); s.Config != nil && s.Config.SynchronousMode.Enabled() {
		t.Fatalf("cluster started in synchronous mode %q", s.Config.SynchronousMode)
	}
	w, o := longWriter(t, c, "async_failovers", time.Duration(n)*45*time.Second+2*time.Minute)
	res := runFailovers(t, c, w, n, false)
	missing := verifyNoLoss(t, o, res.AckedIDs)
	t.Logf("asynchronous mode: %d of %d acknowledged writes lost over %d failovers", len(missing), res.Acked, n)
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	failovers := 0
	var lossBytes int64
	for _, h := range hist {
		if h.Kind == "failover" {
			failovers++
			lossBytes += h.DataLossBytes
		}
	}
	t.Logf("history: %d failovers, %d bytes of WAL estimated lost", failovers, lossBytes)
	if failovers < n {
		t.Errorf("history records %d failovers, want %d", failovers, n)
	}
}

// 3. Strict mode: with no standby left, a commit never completes; it
// completes again once a standby returns.
func TestStrictModeBlocksWithoutStandby(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	prim, lead := leader(t, c)
	mustExec(t, c, prim, "CREATE TABLE strict_t (id int PRIMARY KEY)")
	setConfig(t, c, "synchronous_mode", "strict")
	rec := waitSyncRecord(t, c, 30*time.Second)
	t.Logf("strict mode: synchronous standbys %v at epoch %d", rec.Members, rec.Epoch)
	mustExec(t, c, prim, "INSERT INTO strict_t VALUES (1)")

	reps := others(c, prim.Name)
	for _, r := range reps {
		r.KillNode()
	}
	// Wait until the leader has noticed: no standby left and "any standby"
	// required (the reason says so).
	waitReason(t, c, prim.Name, "commits wait until one returns", 30*time.Second)

	conn, err := pgConnect(ctxFor(t, 10*time.Second), c, prim)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var backend int
	if err := conn.QueryRow(ctxFor(t, 5*time.Second), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	t0 := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := conn.Exec(ctx, "INSERT INTO strict_t VALUES (2)")
		done <- err
	}()
	// While it waits, it waits for synchronous replication, and its row
	// is not visible, not even on the primary.
	var waitEvent string
	visible := int64(-1)
	err = localcluster.WaitFor(ctxFor(t, 2500*time.Millisecond), func() bool {
		qctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		mc, err := pgConnect(qctx, c, prim)
		if err != nil {
			return false
		}
		defer mc.Close(context.Background())
		_ = mc.QueryRow(qctx, "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE pid = $1", backend).Scan(&waitEvent)
		if waitEvent != "SyncRep" {
			return false
		}
		return mc.QueryRow(qctx, "SELECT count(*) FROM strict_t WHERE id = 2").Scan(&visible) == nil
	})
	if err != nil {
		t.Errorf("the INSERT's backend does not wait for synchronous replication (wait_event %q)", waitEvent)
	} else if visible != 0 {
		t.Errorf("row 2 visible on the primary while its commit waits for a standby")
	}
	err = <-done
	took := time.Since(t0)
	if err == nil {
		t.Fatalf("INSERT succeeded after %v with no standby in strict mode", took)
	}
	if !errors.Is(err, context.DeadlineExceeded) && took < 2900*time.Millisecond {
		t.Fatalf("INSERT failed after %v, not by blocking until its deadline: %v", took, err)
	}
	t.Logf("strict mode, no standby: INSERT did not complete within its 3s deadline (%v): %v", took.Round(time.Millisecond), err)
	// pgx gives up by sending a cancel request, which ends the wait: the
	// row, committed locally, becomes visible on the primary (PostgreSQL's
	// documented behaviour) although no standby has it.
	if n, l := leader(t, c); n.Name != prim.Name || l.Epoch != lead.Epoch {
		t.Fatalf("leader changed to %s@%d", n.Name, l.Epoch)
	}

	// A standby returns: commits complete again.
	back := reps[0]
	if err := back.StartAgent(); err != nil {
		t.Fatal(err)
	}
	t1 := time.Now()
	ctx := ctxFor(t, 30*time.Second)
	conn2, err := pgConnect(ctx, c, prim)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close(context.Background())
	if _, err := conn2.Exec(ctx, "INSERT INTO strict_t VALUES (3)"); err != nil {
		t.Fatalf("INSERT did not complete within 30s after %s's agent restarted: %v", back.Name, err)
	}
	t.Logf("strict mode: writes resumed %v after %s's agent restarted", time.Since(t1).Round(time.Millisecond), back.Name)
	rec = waitSyncRecord(t, c, 30*time.Second)
	if !slices.Equal(rec.Members, []string{back.Name}) {
		t.Errorf("sync record %v after %s returned, want [%s]", rec.Members, back.Name, back.Name)
	}
	// The row committed locally before the wait is visible now that the wait ended.
	waitRowCount(t, c, prim, 1, 10*time.Second, "SELECT count(*) FROM strict_t WHERE id = 2")
	waitRowCount(t, c, back, 3, 10*time.Second, "SELECT count(*) FROM strict_t")
}

// 4. Synchronous mode: a failover promotes the recorded synchronous
// standby even when the other replica is as advanced and has a higher
// priority.
func TestSyncFailoverNeverPromotesAsyncMember(t *testing.T) {
	c := startCluster(t, localcluster.Options{Tags: map[string]cluster.Tags{"n3": {Priority: 100}}})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	if old.Name != "n1" {
		t.Fatalf("expected n1 to bootstrap, leader is %s", old.Name)
	}
	setConfig(t, c, "synchronous_node_count", "1")
	n2, n3 := c.Node("n2"), c.Node("n3")
	// Freeze n3's WAL receiver and write, so that n2 is the less lagging
	// replica when synchronous mode is switched on.
	wr := walReceiverPID(t, c, n3)
	if err := syscall.Kill(wr, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(wr, syscall.SIGCONT) })
	w1, o := writer(t, c, "sync_candidates")
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		m2, m3 := s.Member("n2"), s.Member("n3")
		return m2 != nil && m3 != nil && m3.LagBytes > m2.LagBytes && m2.LagBytes >= 0
	})
	if err != nil {
		t.Fatalf("n3 does not lag behind n2 with its WAL receiver frozen: %v", err)
	}
	setConfig(t, c, "synchronous_mode", "on")
	rec := waitSyncRecord(t, c, 30*time.Second)
	if !slices.Equal(rec.Members, []string{"n2"}) {
		t.Fatalf("sync record %v, want [n2] (n3's receiver is frozen)", rec.Members)
	}
	if err := syscall.Kill(wr, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := w1.WaitAcked(ctxFor(t, 30*time.Second), w1.Acked()+50); err != nil {
		t.Fatal(err)
	}
	res := w1.Stop()
	// Both replicas hold everything: without the sync record n3 would win
	// on priority.
	waitCaughtUpOne(t, c, old, n2, n3)
	s, err := c.Snapshot(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if s.Sync == nil || s.Sync.Epoch != lead.Epoch || !slices.Equal(s.Sync.Members, []string{"n2"}) {
		t.Fatalf("sync record before the kill: %+v, want [n2] at epoch %d", s.Sync, lead.Epoch)
	}
	t0 := time.Now()
	old.KillNode()
	tl, err := c.ObservePromotion(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.New != "n2" {
		t.Fatalf("%s was promoted; want n2, the only synchronous standby of epoch %d (n3 has priority 100 but is asynchronous)", tl.New, lead.Epoch)
	}
	t.Logf("n2 promoted after %v despite n3's higher priority", tl.Promoted.Round(time.Millisecond))
	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Errorf("%d acknowledged writes lost", len(missing))
	}
	// The new leader keeps synchronous mode: it records its own standby.
	rec = waitSyncRecord(t, c, 30*time.Second)
	if rec.Leader != "n2" || !slices.Equal(rec.Members, []string{"n3"}) {
		t.Errorf("sync record after failover %+v, want n2 leading with [n3]", rec)
	}
}

// walSenderPIDs returns the pids of n's WAL senders.
func walSenderPIDs(t *testing.T, c *localcluster.Cluster, n *localcluster.Node) []int {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	conn, err := pgConnect(ctx, c, n)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(ctx, "SELECT pid FROM pg_stat_replication")
	if err != nil {
		t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// 5. A former primary with WAL the new primary never received rejoins by
// pg_rewind: its divergent rows are gone, the new primary's are there.
func TestOldPrimaryRejoinsByRewind(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	old, lead := leader(t, c)
	mustExec(t, c, old, "CREATE TABLE diverge (id int PRIMARY KEY, src text)")
	mustExec(t, c, old, "INSERT INTO diverge VALUES (1, 'common')")
	waitCaughtUp(t, c, old)
	reps := others(c, old.Name)

	// Freeze the replicas' WAL receivers, and the primary's WAL senders
	// too: a stopped receiver alone would still find the rows in its socket
	// buffer when resumed, since the killed sender's data is delivered.
	var frozen []int
	for _, r := range reps {
		frozen = append(frozen, walReceiverPID(t, c, r))
	}
	senders := walSenderPIDs(t, c, old)
	if len(senders) != len(reps) {
		t.Fatalf("%s has %d WAL senders, want %d", old.Name, len(senders), len(reps))
	}
	for _, p := range append(append([]int(nil), frozen...), senders...) {
		if err := syscall.Kill(p, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, p := range frozen {
			syscall.Kill(p, syscall.SIGCONT)
		}
	})
	mustExec(t, c, old, "INSERT INTO diverge SELECT g, 'old-only' FROM generate_series(100, 199) g")
	for _, r := range reps {
		k, err := countRows(ctxFor(t, 5*time.Second), c, r, "SELECT count(*) FROM diverge WHERE src = 'old-only'")
		if err != nil || k != 0 {
			t.Fatalf("%s: %d divergent rows (err %v), want 0: the WAL reached it", r.Name, k, err)
		}
	}
	off := logOffset(old.AgentLog)
	t0 := time.Now()
	old.KillNode()
	for _, p := range frozen {
		if err := syscall.Kill(p, syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	tl, err := c.ObservePromotion(ctxFor(t, time.Minute), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.Epoch <= lead.Epoch {
		t.Fatalf("new epoch %d not above %d", tl.Epoch, lead.Epoch)
	}
	np := c.Node(tl.New)
	mustExec(t, c, np, "INSERT INTO diverge VALUES (2, 'new-primary')")
	if err := old.StartAgent(); err != nil {
		t.Fatal(err)
	}
	rw := waitRejoinedByRewind(t, c, old, off, 60*time.Second)
	t.Logf("%s: %s", old.Name, rw)
	if !strings.Contains(rw, "rewind_required=true") {
		t.Errorf("pg_rewind found nothing to rewind although %s had WAL %s never received: %s", old.Name, tl.New, rw)
	}
	if code, _ := old.Check(context.Background(), "/replica?replication_state=streaming"); code != 200 {
		t.Fatalf("%s /replica?replication_state=streaming = %d", old.Name, code)
	}
	waitRowCount(t, c, old, 1, 30*time.Second, "SELECT count(*) FROM diverge WHERE id = 2 AND src = 'new-primary'")
	waitRowCount(t, c, old, 0, 5*time.Second, "SELECT count(*) FROM diverge WHERE src = 'old-only'")
	t.Logf("%s rejoined %s by pg_rewind: sees the new primary's row, its 100 divergent rows are gone", old.Name, tl.New)
}

// 6. A replica that was down while the primary recycled WAL comes back
// through its replication slot, without a re-clone.
func TestReplicaCatchesUpThroughSlot(t *testing.T) {
	c := startCluster(t, localcluster.Options{Parameters: map[string]string{"wal_keep_size": "0", "max_wal_size": "32MB"}})
	prim, _ := leader(t, c)
	for _, n := range c.Nodes {
		var v string
		conn, err := pgConnect(ctxFor(t, 10*time.Second), c, n)
		if err != nil {
			t.Fatal(err)
		}
		err = conn.QueryRow(ctxFor(t, 5*time.Second), "SHOW wal_keep_size").Scan(&v)
		conn.Close(context.Background())
		if err != nil || v != "0" {
			t.Fatalf("%s: wal_keep_size %q (err %v): the Parameters did not override hamgr's default", n.Name, v, err)
		}
	}
	victim := others(c, prim.Name)[1]
	slot := strings.ToLower(victim.Name)
	mustExec(t, c, prim, "CREATE TABLE slot_t (id int PRIMARY KEY, pad text)")
	waitCaughtUp(t, c, prim)
	pgVersion := filepath.Join(victim.DataDir, "PG_VERSION")
	fi0, err := os.Stat(pgVersion)
	if err != nil {
		t.Fatal(err)
	}
	victim.KillNode()

	ctx := ctxFor(t, 2*time.Minute)
	conn, err := pgConnect(ctx, c, prim)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var restart string
	if err := conn.QueryRow(ctx, "SELECT restart_lsn::text FROM pg_replication_slots WHERE slot_name = $1", slot).Scan(&restart); err != nil {
		t.Fatalf("slot %s of %s on %s: %v", slot, victim.Name, prim.Name, err)
	}
	for i := 0; i < 4; i++ {
		if _, err := conn.Exec(ctx, "INSERT INTO slot_t SELECT g, repeat('x', 1000) FROM generate_series($1::int, $1::int + 9999) g", i*10000); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := conn.Exec(ctx, "INSERT INTO slot_t VALUES (1000000, 'latest')"); err != nil {
		t.Fatal(err)
	}
	// The slot held WAL that the checkpoints would otherwise have removed:
	// the segment of its restart_lsn precedes that of the last redo point,
	// and it is still in pg_wal.
	var restartSeg, redoSeg, walStatus string
	var segKept bool
	err = conn.QueryRow(ctx, `SELECT pg_walfile_name(s.restart_lsn), pg_walfile_name(cp.redo_lsn), s.wal_status,
		EXISTS (SELECT 1 FROM pg_ls_waldir() WHERE name = pg_walfile_name(s.restart_lsn))
		FROM pg_replication_slots s, pg_control_checkpoint() cp WHERE s.slot_name = $1`, slot).Scan(&restartSeg, &redoSeg, &walStatus, &segKept)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("slot %s: restart_lsn %s in %s, last redo in %s, wal_status %s, segment kept %t", slot, restart, restartSeg, redoSeg, walStatus, segKept)
	if restartSeg >= redoSeg {
		t.Fatalf("the checkpoints did not pass the slot's segment (%s >= %s): the test would not show anything", restartSeg, redoSeg)
	}
	if !segKept || walStatus == "lost" || walStatus == "unreserved" {
		t.Fatalf("slot %s did not keep its WAL: segment %s kept %t, wal_status %s", slot, restartSeg, segKept, walStatus)
	}

	off := logOffset(victim.AgentLog)
	if err := victim.StartAgent(); err != nil {
		t.Fatal(err)
	}
	waitStreamingFrom(t, c, victim, off, 60*time.Second)
	waitRowCount(t, c, victim, 1, 30*time.Second, "SELECT count(*) FROM slot_t WHERE id = 1000000")
	waitRowCount(t, c, victim, 40001, 10*time.Second, "SELECT count(*) FROM slot_t")
	fi1, err := os.Stat(pgVersion)
	if err != nil {
		t.Fatal(err)
	}
	if !fi1.ModTime().Equal(fi0.ModTime()) {
		t.Errorf("%s's PG_VERSION changed (%v -> %v): it was re-cloned", victim.Name, fi0.ModTime(), fi1.ModTime())
	}
	if cl := clonePlanned(logSince(victim.AgentLog, off)); len(cl) > 0 {
		t.Errorf("%s was cloned again: %s", victim.Name, cl[0])
	}
}

// 7. A member whose data directory was wiped clones itself from the
// primary and streams.
func TestEmptyMemberJoinsByItself(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	prim, _ := leader(t, c)
	mustExec(t, c, prim, "CREATE TABLE empty_t (id int PRIMARY KEY)")
	victim := others(c, prim.Name)[0]
	victim.KillNode()
	if err := victim.WipeData(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(victim.DataDir); !os.IsNotExist(err) {
		t.Fatalf("%s's data directory still exists after WipeData: %v", victim.Name, err)
	}
	mustExec(t, c, prim, "INSERT INTO empty_t VALUES (42)")
	off := logOffset(victim.AgentLog)
	t0 := time.Now()
	if err := victim.StartAgent(); err != nil {
		t.Fatal(err)
	}
	waitStreamingFrom(t, c, victim, off, 90*time.Second)
	log := logSince(victim.AgentLog, off)
	if len(grepLines(log, "[clone upstream="+prim.Name)) == 0 {
		t.Errorf("%s streams but its agent log shows no clone from %s:\n%s", victim.Name, prim.Name, tail(log, 30))
	}
	waitRowCount(t, c, victim, 1, 30*time.Second, "SELECT count(*) FROM empty_t WHERE id = 42")
	t.Logf("%s cloned itself from %s and streams after %v", victim.Name, prim.Name, time.Since(t0).Round(time.Millisecond))
}
