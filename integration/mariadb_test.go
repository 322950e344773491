package integration

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/localcluster"
)

const mariadbServer = "/usr/sbin/mariadbd"

// startMariaDBCluster starts three real agents, each running its own
// MariaDB server (the first bootstraps, the others clone it), with the
// fast timing profile.
func startMariaDBCluster(t *testing.T) *localcluster.Cluster {
	t.Helper()
	if _, err := os.Stat(mariadbServer); err != nil {
		t.Skipf("MariaDB not installed (%v): apt-get install -y mariadb-server", err)
	}
	dir, err := os.MkdirTemp("", "hamgr-it-my-")
	if err != nil {
		t.Fatal(err)
	}
	opts := localcluster.Options{Dir: dir, HamgrBin: hamgrBin, Engine: localcluster.EngineMariaDB,
		Timing: localcluster.FastTiming, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		dumpLogs(t, dir)
		if os.Getenv("HAMGR_KEEP") == "" {
			os.RemoveAll(dir)
		}
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			dumpLogs(t, dir)
		}
		if os.Getenv("HAMGR_KEEP") == "" {
			os.RemoveAll(dir)
		}
	})
	return c
}

// mariadbSocket opens a pool to n's server over its unix socket as root.
func mariadbSocket(t *testing.T, c *localcluster.Cluster, n *localcluster.Node) *sql.DB {
	t.Helper()
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "unix", filepath.Join(n.Dir, "my.sock")
	cfg.User, cfg.Passwd, cfg.Timeout = "root", c.SuperPassword, 2*time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := sql.OpenDB(conn)
	t.Cleanup(func() { d.Close() })
	return d
}

// Three agents bootstrap a MariaDB cluster (Initialize, then Clone by a
// logical dump); the primary's node crashes (agent and mysqld killed at
// once); a replica is promoted and the other follows it; every row
// committed before the crash (with the replicas caught up) is on the new
// primary.
func TestMariaDBNodeCrashFailover(t *testing.T) {
	c := startMariaDBCluster(t)
	old, lead := leader(t, c)
	pdb := mariadbSocket(t, c, old)
	ctx := ctxFor(t, 2*time.Minute)
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS it", "CREATE TABLE it.t (id INT PRIMARY KEY)"} {
		if _, err := pdb.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := 1; i <= 50; i++ {
		if _, err := pdb.ExecContext(ctx, fmt.Sprintf("INSERT INTO it.t VALUES (%d)", i)); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	var gtid string
	if err := pdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	for _, r := range others(c, old.Name) {
		var res sql.NullInt64
		if err := mariadbSocket(t, c, r).QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 20)", gtid).Scan(&res); err != nil || res.Int64 != 0 {
			t.Fatalf("%s did not reach %s: %v, %v", r.Name, gtid, res, err)
		}
	}

	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObserveFailover(ctxFor(t, ttl+60*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("timeline: detected %v elected %v (%s, epoch %d) promoted %v following %v",
		tl.Detected, tl.Elected, tl.New, tl.Epoch, tl.Promoted, tl.Following)
	if tl.Epoch <= lead.Epoch {
		t.Errorf("new epoch %d not greater than old %d", tl.Epoch, lead.Epoch)
	}
	nn := c.Node(tl.New)
	ndb := mariadbSocket(t, c, nn)
	var n int
	if err := ndb.QueryRowContext(ctx, "SELECT COUNT(*) FROM it.t").Scan(&n); err != nil || n != 50 {
		t.Errorf("new primary %s holds %d rows (%v), want 50", nn.Name, n, err)
	}
	if _, err := ndb.ExecContext(ctx, "INSERT INTO it.t VALUES (51)"); err != nil {
		t.Errorf("write on the new primary: %v", err)
	}
}

// mysqld of the primary is killed while its agent lives: the agent sees the
// exit at once and restarts it in place (same leader, same epoch), and
// nothing committed is lost.
func TestMariaDBServerCrashRestartsInPlace(t *testing.T) {
	c := startMariaDBCluster(t)
	old, lead := leader(t, c)
	pdb := mariadbSocket(t, c, old)
	ctx := ctxFor(t, 2*time.Minute)
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS it", "CREATE TABLE it.t (id INT PRIMARY KEY)", "INSERT INTO it.t VALUES (1)"} {
		if _, err := pdb.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	b, err := os.ReadFile(filepath.Join(old.DataDir, "mysqld.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		t.Fatalf("pid file %q: %v", b, err)
	}
	t0 := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var back time.Duration
	err = localcluster.Poll(ctxFor(t, 60*time.Second), 20*time.Millisecond, func() bool {
		wctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		if _, err := pdb.ExecContext(wctx, "INSERT INTO it.t VALUES (2) ON DUPLICATE KEY UPDATE id = id"); err != nil {
			return false
		}
		back = time.Since(t0)
		return true
	})
	if err != nil {
		t.Fatalf("the primary takes no writes after its mysqld was killed: %v", err)
	}
	t.Logf("mysqld killed: writable again after %v", back)
	n, l := leader(t, c)
	if n.Name != old.Name || l.Epoch != lead.Epoch {
		t.Errorf("leader changed from %s@%d to %s@%d: want a restart in place", old.Name, lead.Epoch, n.Name, l.Epoch)
	}
	var rows int
	if err := pdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM it.t").Scan(&rows); err != nil || rows != 2 {
		t.Errorf("rows after the restart: %d, %v", rows, err)
	}
}

// A replica that was down while the primary took 300 transactions comes
// back (its agent restarted: mysqld started read-only, replication
// repointed by GTID) and catches up: it reaches the primary's GTID
// position and holds every row.
func TestMariaDBReplicaCatchesUp(t *testing.T) {
	c := startMariaDBCluster(t)
	p, _ := leader(t, c)
	r := others(c, p.Name)[0]
	pdb := mariadbSocket(t, c, p)
	ctx := ctxFor(t, 3*time.Minute)
	r.KillNode()
	for _, q := range []string{"CREATE DATABASE IF NOT EXISTS it", "CREATE TABLE it.behind (id INT PRIMARY KEY)"} {
		if _, err := pdb.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	for i := 1; i <= 300; i++ {
		if _, err := pdb.ExecContext(ctx, "INSERT INTO it.behind VALUES (?)", i); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	var gtid string
	if err := pdb.QueryRowContext(ctx, "SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	if err := r.StartAgent(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctxFor(t, 2*time.Minute)); err != nil {
		t.Fatalf("%s does not stream again: %v", r.Name, err)
	}
	rdb := mariadbSocket(t, c, r)
	var res sql.NullInt64
	if err := rdb.QueryRowContext(ctx, "SELECT MASTER_GTID_WAIT(?, 30)", gtid).Scan(&res); err != nil || !res.Valid || res.Int64 != 0 {
		t.Fatalf("%s did not reach the primary's %s: %v, %v", r.Name, gtid, res, err)
	}
	var n int
	if err := rdb.QueryRowContext(ctx, "SELECT COUNT(*) FROM it.behind").Scan(&n); err != nil || n != 300 {
		t.Fatalf("%s holds %d rows (%v), want 300", r.Name, n, err)
	}
	t.Logf("%s caught up with 300 transactions %v after its agent restarted", r.Name, time.Since(t0).Round(time.Millisecond))
}
