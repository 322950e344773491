package integration

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// The election on MariaDB, with real servers: one replica falls behind
// (its replication stopped while the primary commits 20 more transactions
// that the other replica applies), then the primary's node crashes.
//
//   - most advanced wins: the replica that fell behind is the one the
//     tie-breaks favour (the lower name), yet the replica that holds the
//     20 transactions is promoted.
//   - errant transactions lose: the replica that fell behind first commits
//     60 transactions of its own (GTID domain 5, which the primary never
//     had), so it counts more transactions (about 70 against 40) and would win a
//     ranking by count; the replica that holds every transaction of the
//     old primary is promoted, and the failover's history entry names the
//     errant GTIDs.
//
// Either way the new primary holds every row the old one committed, and
// none of the errant ones.
func TestMariaDBElectionRanksPositions(t *testing.T) {
	for _, tc := range []struct {
		name   string
		errant int
	}{{"most advanced wins", 0}, {"errant transactions lose", 60}} {
		t.Run(tc.name, func(t *testing.T) { mariadbRankedFailover(t, tc.errant) })
	}
}

func mariadbRankedFailover(t *testing.T, errant int) {
	c := startMariaDBCluster(t)
	if err := c.WaitHealthy(ctxFor(t, 2*time.Minute)); err != nil {
		t.Fatalf("replicas do not stream: %v", err)
	}
	old, lead := leader(t, c)
	reps := others(c, old.Name)
	sort.Slice(reps, func(i, j int) bool { return reps[i].Name < reps[j].Name })
	behind, ahead := reps[0], reps[1]
	pdb := mariadbSocket(t, c, old)
	ctx := ctxFor(t, 3*time.Minute)
	execAll(ctx, t, pdb, "CREATE DATABASE IF NOT EXISTS it", "CREATE TABLE it.t (id INT PRIMARY KEY)")
	insertRows(ctx, t, pdb, "", 1, 10)
	waitGTID(ctx, t, c, pdb, reps...)
	if errant > 0 {
		insertRows(ctx, t, mariadbSocket(t, c, behind), "SET SESSION gtid_domain_id = 5", 1001, 1000+errant)
	}

	// behind's agent is stopped (SIGSTOP, well within its lease's ttl) so
	// that it does not restart the replication stopped under it; a frozen
	// mysqld would not do: the kernel buffers what the primary sends it.
	agent := behind.AgentPID()
	if err := syscall.Kill(agent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	resumed := false
	resume := func() {
		if !resumed {
			resumed = true
			if err := syscall.Kill(agent, syscall.SIGCONT); err != nil {
				t.Errorf("resume %s's agent: %v", behind.Name, err)
			}
		}
	}
	t.Cleanup(resume)
	execAll(ctx, t, mariadbSocket(t, c, behind), "STOP SLAVE IO_THREAD")
	insertRows(ctx, t, pdb, "", 11, 30)
	final := waitGTID(ctx, t, c, pdb, ahead)
	waitPublished(t, c, old.Name, final)
	waitPublished(t, c, ahead.Name, final)

	if s, err := c.Snapshot(ctx); err == nil {
		for _, m := range s.Members {
			t.Logf("before the crash: %s %s at %s", m.Name, m.Role, m.Position)
		}
	}
	t0 := time.Now()
	old.KillNode()
	resume()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObservePromotion(ctxFor(t, ttl+60*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("promoted %s at +%v (epoch %d)", tl.New, tl.Promoted.Round(time.Millisecond), tl.Epoch)
	if tl.New != ahead.Name || tl.Epoch <= lead.Epoch {
		t.Fatalf("promoted %s (epoch %d), want %s, which holds the old primary's last 20 transactions (%s stopped before them)",
			tl.New, tl.Epoch, ahead.Name, behind.Name)
	}
	ndb := mariadbSocket(t, c, ahead)
	var rows, errantRows int
	if err := ndb.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(id > 1000), 0) FROM it.t").Scan(&rows, &errantRows); err != nil {
		t.Fatal(err)
	}
	if rows != 30 || errantRows != 0 {
		t.Errorf("new primary %s holds %d rows, %d of them errant; want the old primary's 30 only", ahead.Name, rows, errantRows)
	}
	checkErrantHistory(t, c, tl.Epoch, behind.Name, ahead.Name, errant > 0)
}

// checkErrantHistory: the history entry of epoch names behind's errant
// GTIDs (domain 5) against the new primary when want, and none otherwise.
func checkErrantHistory(t *testing.T, c *localcluster.Cluster, epoch cluster.Epoch, behind, newPrimary string, want bool) {
	t.Helper()
	entry := waitHistory(t, c, epoch)
	var named []string
	for _, e := range entry.Errant {
		named = append(named, e.String())
	}
	t.Logf("history entry of epoch %d: errant %v; reason %q", epoch, named, entry.Reason)
	found := len(entry.Errant) == 1 && entry.Errant[0].Member == behind && entry.Errant[0].Against == newPrimary &&
		strings.HasPrefix(entry.Errant[0].Holds.String(), "5-")
	switch {
	case want && !found:
		t.Errorf("history entry errant %v: want %s's domain-5 GTIDs against %s", named, behind, newPrimary)
	case !want && len(entry.Errant) > 0:
		t.Errorf("history entry errant %v: want none (the positions were ordered)", named)
	}
}

// execAll runs each statement on d.
func execAll(ctx context.Context, t *testing.T, d *sql.DB, stmts ...string) {
	t.Helper()
	for _, q := range stmts {
		if _, err := d.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

// insertRows inserts ids from..to into it.t, one transaction each, on one
// session of d that first runs setup (when not empty).
func insertRows(ctx context.Context, t *testing.T, d *sql.DB, setup string, from, to int) {
	t.Helper()
	conn, err := d.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if setup != "" {
		if _, err := conn.ExecContext(ctx, setup); err != nil {
			t.Fatalf("%s: %v", setup, err)
		}
	}
	for i := from; i <= to; i++ {
		if _, err := conn.ExecContext(ctx, "INSERT INTO it.t VALUES (?)", i); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
}

// waitGTID waits until every replica has applied the primary's GTID
// position, and returns the primary's whole GTID state as a position.
func waitGTID(ctx context.Context, t *testing.T, c *localcluster.Cluster, primary *sql.DB, replicas ...*localcluster.Node) cluster.Position {
	t.Helper()
	var gtid, state string
	if err := primary.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_binlog_state").Scan(&gtid, &state); err != nil {
		t.Fatal(err)
	}
	for _, r := range replicas {
		var res sql.NullInt64
		if err := mariadbSocket(t, c, r).QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 30)", gtid).Scan(&res); err != nil || !res.Valid || res.Int64 != 0 {
			t.Fatalf("%s did not reach %s: %v, %v", r.Name, gtid, res, err)
		}
	}
	pos, err := cluster.MariaDBPosition(state)
	if err != nil {
		t.Fatal(err)
	}
	return pos
}

// waitPublished waits until name's member record holds pos: the election
// compares what the members published (the old primary's last position is
// its reference).
func waitPublished(t *testing.T, c *localcluster.Cluster, name string, pos cluster.Position) {
	t.Helper()
	waitMember(t, c, name, "publish a position holding "+pos.String(), func(m *cluster.Member) bool {
		o := m.Position.Compare(pos)
		return o == cluster.Equal || o == cluster.Ahead
	})
}

// A former MariaDB primary comes back holding transactions the new
// primary never had (its last three commits reached no replica before its
// node crashed): its agent restarts it read-only as a replica of the new
// primary, MariaDB refuses its GTID position, and it is never silently
// re-attached: the member reports problem cannot_follow, naming the
// errant GTIDs (its own server's), and takes no part in the cluster: its
// server keeps running read-only with its replication removed; the new
// primary keeps everything it acknowledged.
func TestMariaDBReturningOldPrimaryWithErrantStaysOut(t *testing.T) {
	c := startMariaDBCluster(t)
	if err := c.WaitHealthy(ctxFor(t, 2*time.Minute)); err != nil {
		t.Fatalf("replicas do not stream: %v", err)
	}
	old, lead := leader(t, c)
	reps := others(c, old.Name)
	pdb := mariadbSocket(t, c, old)
	ctx := ctxFor(t, 4*time.Minute)
	execAll(ctx, t, pdb, "CREATE DATABASE IF NOT EXISTS it", "CREATE TABLE it.t (id INT PRIMARY KEY)")
	insertRows(ctx, t, pdb, "", 1, 5)
	waitGTID(ctx, t, c, pdb, reps...)
	// Both replicas' agents stopped (well within the ttl) so they do not
	// restart the replication stopped under them.
	for _, r := range reps {
		pid := r.AgentPID()
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
		execAll(ctx, t, mariadbSocket(t, c, r), "STOP SLAVE IO_THREAD")
	}
	insertRows(ctx, t, pdb, "", 6, 8) // on the old primary only
	t0 := time.Now()
	old.KillNode()
	for _, r := range reps {
		if err := syscall.Kill(r.AgentPID(), syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
	}
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObservePromotion(ctxFor(t, ttl+60*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	if tl.Epoch <= lead.Epoch {
		t.Fatalf("new epoch %d not above %d", tl.Epoch, lead.Epoch)
	}
	ndb := mariadbSocket(t, c, c.Node(tl.New))
	// More commits on the new primary than the old one had of its own, so
	// the old one's position is behind in sequence and ahead in content.
	insertRows(ctx, t, ndb, "", 101, 110)

	if err := old.StartAgent(); err != nil {
		t.Fatal(err)
	}
	var last cluster.Member
	errant := fmt.Sprintf("holds 0-%s-", strings.TrimPrefix(old.Name, "n")) // its own server's
	// The agent starts mysqld, repoints it and reads the refusal within a
	// few rounds.
	waitMember(t, c, old.Name, "report cannot_follow naming its errant GTIDs ("+errant+"...)", func(m *cluster.Member) bool {
		last = *m
		return m.Problem == cluster.ProblemCannotFollow && strings.Contains(m.Reason, errant)
	})
	t.Logf("%s: state %s, problem %s: %s", old.Name, last.State, last.Problem, last.Reason)
	// It stays running, read-only and replicating nothing, so an operator
	// can read what it holds.
	odb := mariadbSocket(t, c, old)
	var detail string
	err = localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		var ro bool
		if err := odb.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err != nil {
			detail = err.Error()
			return false
		}
		rows, err := odb.QueryContext(ctx, "SHOW SLAVE STATUS")
		if err != nil {
			detail = err.Error()
			return false
		}
		replicating := rows.Next()
		rows.Close()
		detail = fmt.Sprintf("read_only %v, replication configured %v", ro, replicating)
		return ro && !replicating
	})
	if err != nil {
		t.Errorf("%s is not running read-only with no replication: %s", old.Name, detail)
	}
	if err := syscall.Kill(mysqldPID(t, old), 0); err != nil {
		t.Errorf("%s's mysqld is not running: %v", old.Name, err)
	}
	s, err := c.Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Leader == nil || s.Leader.Name != tl.New || s.Leader.Epoch != tl.Epoch {
		t.Errorf("leader %+v, want %s at epoch %d", s.Leader, tl.New, tl.Epoch)
	}
	for _, m := range s.Members {
		if m.Name != tl.New && m.Role == cluster.RolePrimary {
			t.Errorf("%s runs as a primary besides %s", m.Name, tl.New)
		}
	}
	var rows int
	if err := ndb.QueryRowContext(ctx, "SELECT COUNT(*) FROM it.t WHERE id <= 5 OR id > 100").Scan(&rows); err != nil || rows != 15 {
		t.Errorf("new primary %s holds %d of the 15 rows it acknowledged or replicated (%v)", tl.New, rows, err)
	}
}
