package mysql

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"math/rand"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// testServer is the server binary the real-server tests run (a variable:
// TestMySQL8Server points it at a MySQL 8 mysqld).
var testServer = "/usr/sbin/mariadbd"

const (
	testReplPw = "repl-s3cret:'q"
	testAppPw  = "app-pw"
)

// requireMariaDB skips when MariaDB is not installed. No MySQL 8 server
// can run here (Debian 12 packages none), so the MySQL paths are covered
// by the dialect tests only.
func requireMariaDB(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(testServer); err != nil {
		t.Skipf("MariaDB not installed (%v): apt-get install -y mariadb-server", err)
	}
	if testing.Short() {
		t.Skip("real-server test skipped in -short mode")
	}
}

// testBase is a fresh directory owned by the mysql OS user (when root).
func testBase(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hamgr-my-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("mysql")
		if err != nil {
			t.Skipf("no mysql OS user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("HAMGR_KEEP") == "" {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

// freePort picks a free loopback port below 32768 (outside the
// ephemeral range, which the servers' own outgoing connections use).
func freePort(t *testing.T) int {
	t.Helper()
	for i := 0; i < 200; i++ {
		port := 20000 + rand.Intn(12000)
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port below 32768")
	return 0
}

func testOptions(base, name string, id uint32) Options {
	o := Options{
		Name: name, DataDir: filepath.Join(base, name), ServerBin: testServer, ListenHost: "127.0.0.1",
		ServerID: id, LogFile: filepath.Join(base, name+".log"),
		Replication: "repl", ReplicationPassword: testReplPw, SuperuserPassword: "root-pw",
		Parameters: map[string]string{"innodb-buffer-pool-size": "32M", "innodb-log-file-size": "16M",
			"innodb-flush-log-at-trx-commit": "2", "performance-schema": "OFF"},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if !strings.Contains(testServer, "mariadb") {
		// MySQL reads its variables through performance_schema.
		delete(o.Parameters, "performance-schema")
	}
	return o
}

// member creates a MySQL whose server is killed at cleanup.
func member(t *testing.T, opts Options) *MySQL {
	t.Helper()
	if opts.Port == 0 {
		opts.Port = freePort(t)
	}
	m, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Stop(ctx, db.StopImmediate); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		m.Close()
	})
	return m
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func upstream(m *MySQL) db.Upstream {
	return db.Upstream{Name: m.opts.Name, Host: "127.0.0.1", Port: m.opts.Port}
}

func probe(t *testing.T, m *MySQL) db.Status {
	t.Helper()
	st, err := m.Probe(ctxT(t, 3*time.Second))
	if err != nil {
		t.Fatalf("probe %s: %v", m.opts.Name, err)
	}
	return st
}

// waitFor polls cond every 20 ms until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state: %s", timeout, what, state)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// gtids reads m's executed GTIDs without a probe (whose heartbeat write
// on a primary would add one).
func gtids(t *testing.T, m *MySQL) cluster.Position {
	t.Helper()
	ctx := ctxT(t, 5*time.Second)
	pool, d, err := m.localDB(ctx)
	must(t, "connect", err)
	s, err := m.readState(ctx, pool, d)
	must(t, "read state of "+m.opts.Name, err)
	return s.executed
}

// waitCaughtUp waits until r streams and has applied everything p holds.
func waitCaughtUp(t *testing.T, r, p *MySQL) db.Status {
	t.Helper()
	var st db.Status
	waitFor(t, 20*time.Second, r.opts.Name+" caught up with "+p.opts.Name, func() (bool, string) {
		st = probe(t, r)
		pp := gtids(t, p)
		o := st.Replayed.Compare(pp)
		return st.Streaming && (o == cluster.Equal || o == cluster.Ahead),
			fmt.Sprintf("streaming %t, replayed %s vs %s (%s), diverged %q", st.Streaming, st.Replayed, pp, o, st.Diverged)
	})
	return st
}

// sqlAs opens a TCP connection pool to m as user.
func sqlAs(t *testing.T, m *MySQL, userName, pw string) *sql.DB {
	t.Helper()
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(m.opts.Port))
	cfg.User, cfg.Passwd, cfg.Timeout = userName, pw, 2*time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	d := sql.OpenDB(conn)
	t.Cleanup(func() { d.Close() })
	return d
}

// local runs statements as the agent over the socket.
func local(t *testing.T, m *MySQL, stmts ...string) {
	t.Helper()
	pool, _, err := m.localDB(ctxT(t, 5*time.Second))
	must(t, "connect", err)
	for _, s := range stmts {
		if _, err := pool.ExecContext(ctxT(t, 10*time.Second), s); err != nil {
			t.Fatalf("%s on %s: %v", s, m.opts.Name, err)
		}
	}
}

func count(t *testing.T, m *MySQL) int {
	t.Helper()
	pool, _, err := m.localDB(ctxT(t, 5*time.Second))
	must(t, "connect", err)
	var n int
	must(t, "count rows", pool.QueryRowContext(ctxT(t, 5*time.Second), "SELECT COUNT(*) FROM appdb.t").Scan(&n))
	return n
}

// threeMembers initializes n1 as the primary with an app schema and user,
// n2 and n3 as its replicas, and waits until both caught up.
func threeMembers(t *testing.T) (n1, n2, n3 *MySQL) {
	ms := primaryWithReplicas(t, 2)
	return ms[0], ms[1], ms[2]
}

// primaryWithReplicas initializes n1 as the primary with an app schema
// and user, n2... as its replicas (replicas of them), and waits until
// they caught up.
func primaryWithReplicas(t *testing.T, replicas int) []*MySQL {
	base := testBase(t)
	ms := make([]*MySQL, replicas+1)
	for i := range ms {
		ms[i] = member(t, testOptions(base, fmt.Sprintf("n%d", i+1), uint32(i+1)))
		must(t, "initialize "+ms[i].opts.Name, ms[i].Initialize(ctxT(t, 60*time.Second)))
	}
	n1 := ms[0]
	must(t, "start primary", n1.StartPrimary(ctxT(t, 30*time.Second)))
	local(t, n1, "CREATE USER 'app'@'%' IDENTIFIED BY '"+testAppPw+"'", "GRANT ALL ON appdb.* TO 'app'@'%'",
		"CREATE DATABASE appdb", "CREATE TABLE appdb.t (id INT PRIMARY KEY, v VARCHAR(50))", "INSERT INTO appdb.t VALUES (1, 'one')")
	for _, r := range ms[1:] {
		up := upstream(n1)
		must(t, "start replica "+r.opts.Name, r.StartReplica(ctxT(t, 30*time.Second), &up))
	}
	for _, r := range ms[1:] {
		waitCaughtUp(t, r, n1)
	}
	return ms
}

func TestServerLifecycleAndFailover(t *testing.T) {
	requireMariaDB(t)
	n1, n2, n3 := threeMembers(t)

	st1 := probe(t, n1)
	if !st1.Running || !st1.Accepting || st1.Role != cluster.RolePrimary || st1.Position.Engine() != cluster.EngineMariaDB || st1.Stalled != "" {
		t.Fatalf("primary status %+v", st1)
	}
	st2 := probe(t, n2)
	if st2.Role != cluster.RoleReplica || st2.UpstreamPort != n1.opts.Port || st2.ReplayLagSeconds < 0 || st2.ReplayLagSeconds > 5 || st2.Diverged != "" {
		t.Fatalf("replica status %+v", st2)
	}
	// Each shows the binary log file and offset it writes, for operators.
	for _, st := range []db.Status{st1, st2} {
		if file, off, ok := strings.Cut(st.Coordinates, ":"); !ok || file == "" || off == "" || off == "0" {
			t.Errorf("coordinates %q, want file:offset", st.Coordinates)
		}
	}
	// Ask: writable primary, read-only replica, refused on a free port.
	if a, err := n2.Ask(ctxT(t, 2*time.Second), "127.0.0.1", n1.opts.Port); a != db.AnswerWritable {
		t.Errorf("ask primary: %s, %v", a, err)
	}
	if a, err := n1.Ask(ctxT(t, 2*time.Second), "127.0.0.1", n2.opts.Port); a != db.AnswerReadOnly {
		t.Errorf("ask replica: %s, %v", a, err)
	}
	if a, _ := n1.Ask(ctxT(t, 2*time.Second), "127.0.0.1", freePort(t)); a != db.AnswerRefused {
		t.Errorf("ask nothing: %s", a)
	}
	// The app user cannot write on a replica.
	if _, err := sqlAs(t, n2, "app", testAppPw).ExecContext(ctxT(t, 5*time.Second), "INSERT INTO appdb.t VALUES (9, 'x')"); !isErrno(err, 1290) {
		t.Errorf("write on a replica: %v", err)
	}

	// The primary crashes; its exit is seen at once.
	local(t, n1, "INSERT INTO appdb.t VALUES (2, 'two')")
	waitCaughtUp(t, n2, n1)
	waitCaughtUp(t, n3, n1)
	before := gtids(t, n1)
	select { // the exit of Initialize's server
	case <-n1.Exited():
	default:
	}
	killed := time.Now()
	must(t, "kill n1", syscall.Kill(n1.running().pid, syscall.SIGKILL))
	select {
	case at := <-n1.Exited():
		if d := at.Sub(killed); d > time.Second {
			t.Errorf("exit seen after %v", d)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("exit of the killed server not reported")
	}
	// Its position read from its binary log is what it had.
	down := probe(t, n1)
	if down.Running || !down.WasPrimary || down.Position != before {
		t.Errorf("stopped primary: running %t, was primary %t, position %s, want %s", down.Running, down.WasPrimary, down.Position, before)
	}

	// n2 and n3 are level; promote n2 (twice: idempotent), repoint n3.
	if o := probe(t, n2).Position.Compare(probe(t, n3).Position); o != cluster.Equal {
		t.Errorf("replicas not level: %s", o)
	}
	start := time.Now()
	must(t, "promote", n2.Promote(ctxT(t, 10*time.Second)))
	t.Logf("promote took %v", time.Since(start))
	must(t, "promote again", n2.Promote(ctxT(t, 10*time.Second)))
	if st := probe(t, n2); st.Role != cluster.RolePrimary || exists(n2.path(replicaMarker)) {
		t.Fatalf("promoted n2: %+v", st)
	}
	must(t, "follow", n3.Follow(ctxT(t, 10*time.Second), upstream(n2)))
	must(t, "follow again", n3.Follow(ctxT(t, 10*time.Second), upstream(n2)))
	if _, err := sqlAs(t, n2, "app", testAppPw).ExecContext(ctxT(t, 5*time.Second), "INSERT INTO appdb.t VALUES (3, 'after failover')"); err != nil {
		t.Fatalf("write on the new primary: %v", err)
	}
	waitCaughtUp(t, n3, n2)
	if got := count(t, n3); got != 3 {
		t.Errorf("n3 holds %d rows, want 3", got)
	}
	p2 := probe(t, n2).Position
	if o := p2.Compare(before); o != cluster.Ahead {
		t.Errorf("new primary %s vs old %s: %s, want ahead", p2, before, o)
	}
	// StartPrimary refuses the old primary? No: it was a primary. But
	// it must come back as a replica: its GTID position is seeded from
	// its binary log (it lost nothing, so it is behind, not diverged).
	if o := before.Compare(p2); o != cluster.Behind {
		t.Errorf("old primary %s vs new %s: %s, want behind", before, p2, o)
	}
	up := upstream(n2)
	must(t, "old primary rejoins", n1.StartReplica(ctxT(t, 30*time.Second), &up))
	st := waitCaughtUp(t, n1, n2)
	if st.Role != cluster.RoleReplica || count(t, n1) != 3 {
		t.Errorf("rejoined n1: %+v, %d rows", st, count(t, n1))
	}
	// A replica's data directory is not started as a primary.
	must(t, "stop n3", n3.Stop(ctxT(t, 30*time.Second), db.StopFast))
	if st := probe(t, n3); st.Running || st.WasPrimary || st.Position.IsZero() {
		t.Errorf("stopped replica: %+v", st)
	}
	if err := n3.StartPrimary(ctxT(t, 10*time.Second)); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Errorf("StartPrimary on a replica's data: %v", err)
	}
}

// Demote makes the primary read-only at once and ends client sessions,
// so an open transaction cannot commit afterwards.
func TestDemoteEndsClientSessions(t *testing.T) {
	requireMariaDB(t)
	n1, _, _ := threeMembers(t)
	app := sqlAs(t, n1, "app", testAppPw)
	tx, err := app.BeginTx(ctxT(t, 5*time.Second), nil)
	must(t, "begin", err)
	_, err = tx.ExecContext(ctxT(t, 5*time.Second), "INSERT INTO appdb.t VALUES (10, 'in flight')")
	must(t, "insert", err)
	must(t, "demote", n1.Demote(ctxT(t, 10*time.Second)))
	if err := tx.Commit(); err == nil {
		t.Fatal("a transaction begun before the demotion committed after it")
	}
	if _, err := app.ExecContext(ctxT(t, 5*time.Second), "INSERT INTO appdb.t VALUES (11, 'after')"); err == nil {
		t.Fatal("write accepted after the demotion")
	}
	if count(t, n1) != 1 {
		t.Errorf("rows after demotion: %d", count(t, n1))
	}
	if st := probe(t, n1); st.Role != cluster.RoleReplica {
		t.Errorf("demoted n1 role %s", st.Role)
	}
	must(t, "demote again", n1.Demote(ctxT(t, 10*time.Second)))
}

// Under a write load (clients as app, and the agent's own heartbeat
// write, which as root bypasses read_only, in a loop), the position read
// right after Demote returns is final: nothing commits after it.
func TestDemoteFinalPositionUnderLoad(t *testing.T) {
	requireMariaDB(t)
	n1, _, _ := threeMembers(t)
	app := sqlAs(t, n1, "app", testAppPw)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var acked atomic.Int64
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000 && ctx.Err() == nil; i++ {
				if _, err := app.ExecContext(ctx, "INSERT INTO appdb.t VALUES (?, 'load')", 1000+w*100000+i); err == nil {
					acked.Add(1)
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 100000 && ctx.Err() == nil; i++ {
			_, _ = n1.checkFresh(ctx)
		}
	}()
	waitFor(t, 20*time.Second, "writes to flow", func() (bool, string) { return acked.Load() > 50, "" })
	must(t, "demote", n1.Demote(ctxT(t, 10*time.Second)))
	final := probe(t, n1).Position
	before := acked.Load()
	// An observation window, not a wait for a condition: the load keeps
	// trying meanwhile, and nothing of it may commit.
	time.Sleep(500 * time.Millisecond)
	cancel()
	wg.Wait()
	if got := probe(t, n1).Position; got != final || acked.Load() != before {
		t.Fatalf("after the demotion: position %s (final %s), acks %d (then %d)", got, final, acked.Load(), before)
	}
	t.Logf("%d writes acknowledged before the demotion; final %s", before, final)
}

// A transaction written on a replica (root bypasses read_only) is errant:
// the positions say diverged, Beyond names it, and the replica's applier
// reports the divergence when the primary's next transaction arrives.
func TestErrantTransactionDetected(t *testing.T) {
	requireMariaDB(t)
	n1, n2, n3 := threeMembers(t)
	local(t, n2, "INSERT INTO appdb.t VALUES (100, 'errant')")
	local(t, n1, "INSERT INTO appdb.t VALUES (2, 'two')")
	waitCaughtUp(t, n3, n1)
	var st2 db.Status
	waitFor(t, 20*time.Second, "n2's applier to stop on the errant GTID", func() (bool, string) {
		st2 = probe(t, n2)
		return st2.Diverged != "", fmt.Sprintf("%+v", st2)
	})
	waitCaughtUp(t, n3, n1)
	p1, p2, p3 := gtids(t, n1), st2.Replayed, gtids(t, n3)
	if o := p2.Compare(p1); o != cluster.Diverged {
		t.Errorf("errant replica %s vs primary %s: %s, want diverged", p2, p1, o)
	}
	if o := p3.Compare(p1); o != cluster.Equal {
		t.Errorf("clean replica %s vs primary %s: %s", p3, p1, o)
	}
	// What the stopped applier received cannot be applied: it is not part
	// of the position an election would compare (it would pass for a
	// superset of the primary's otherwise).
	if st2.Position.Compare(st2.Replayed) != cluster.Equal || st2.Position.Compare(p1) != cluster.Diverged {
		t.Errorf("errant replica's position %s (applied %s): want what it applied, diverged from the primary's %s", st2.Position, st2.Replayed, p1)
	}
	errant, ok := p2.Beyond(p3)
	if !ok || !strings.HasPrefix(errant.String(), "0-2-") {
		t.Errorf("errant GTIDs of n2 = %s, %t; want n2's own (server 2)", errant, ok)
	}
	if lost, ok := p3.Beyond(p2); !ok || lost.IsZero() {
		t.Errorf("n3 holds nothing n2 lacks: %s", lost)
	}
}

// A new member cloned from a replica (logical dump) replicates from the
// primary, holds every row, and its position compares as equal, not
// diverged, with the others' (its GTID state names every server).
func TestCloneJoins(t *testing.T) {
	requireMariaDB(t)
	n1, n2, _ := threeMembers(t)
	// Some history from two servers: a failover from n1 to n2.
	must(t, "demote n1", n1.Demote(ctxT(t, 10*time.Second)))
	must(t, "promote n2", n2.Promote(ctxT(t, 10*time.Second)))
	local(t, n2, "INSERT INTO appdb.t VALUES (2, 'on n2')")
	up := upstream(n2)
	must(t, "n1 follows n2", n1.StartReplica(ctxT(t, 30*time.Second), &up))
	waitCaughtUp(t, n1, n2)

	n4 := member(t, testOptions(filepath.Dir(n1.opts.DataDir), "n4", 4))
	start := time.Now()
	must(t, "clone", n4.Clone(ctxT(t, 120*time.Second), upstream(n1)))
	t.Logf("clone took %v", time.Since(start))
	if st := probe(t, n4); st.Running || st.WasPrimary || !st.HasData || st.Position.Compare(gtids(t, n1)) != cluster.Equal {
		t.Errorf("cloned member: %+v (n1 at %s)", st, gtids(t, n1))
	}
	must(t, "clone again refused", func() error {
		if err := n4.Clone(ctxT(t, 10*time.Second), upstream(n1)); err == nil {
			return fmt.Errorf("a second clone into a full data directory succeeded")
		}
		return nil
	}())
	must(t, "start cloned replica", n4.StartReplica(ctxT(t, 30*time.Second), &up))
	local(t, n2, "INSERT INTO appdb.t VALUES (3, 'after the clone')")
	st := waitCaughtUp(t, n4, n2)
	if count(t, n4) != 3 {
		t.Errorf("cloned member holds %d rows, want 3", count(t, n4))
	}
	p2 := gtids(t, n2)
	if o := st.Replayed.Compare(p2); o != cluster.Equal {
		t.Errorf("clone %s vs primary %s: %s", st.Replayed, p2, o)
	}
	if o := gtids(t, n4).Compare(gtids(t, n1)); o != cluster.Equal {
		t.Errorf("clone %s vs replica %s: %s", gtids(t, n4), gtids(t, n1), o)
	}
	// The app account came with the copy.
	if _, err := sqlAs(t, n4, "app", testAppPw).ExecContext(ctxT(t, 5*time.Second), "SELECT 1"); err != nil {
		t.Errorf("app account on the clone: %v", err)
	}
}

// An Initialize or Clone that failed half-way leaves only its staging
// directory: the member has no data, and the next attempt starts over.
func TestInitializeOverLeftStaging(t *testing.T) {
	requireMariaDB(t)
	n1 := member(t, testOptions(testBase(t), "n1", 1))
	must(t, "mkdir", n1.mkdirOwned(n1.opts.DataDir))
	must(t, "mkdir staging", n1.mkdirOwned(n1.stagingDir()))
	must(t, "junk", os.WriteFile(filepath.Join(n1.stagingDir(), "ibdata1"), []byte("half written"), 0o600))
	if st := probe(t, n1); st.HasData {
		t.Fatalf("a staging directory counts as data: %+v", st)
	}
	must(t, "initialize", n1.Initialize(ctxT(t, 60*time.Second)))
	if exists(n1.stagingDir()) || !n1.hasData() {
		t.Errorf("after initialize: staging left %t, data %t", exists(n1.stagingDir()), n1.hasData())
	}
	if err := n1.Initialize(ctxT(t, 10*time.Second)); err == nil {
		t.Error("a second initialize over data succeeded")
	}
	must(t, "start", n1.StartPrimary(ctxT(t, 30*time.Second)))
	if st := probe(t, n1); st.Role != cluster.RolePrimary {
		t.Errorf("started: %+v", st)
	}
}

// A replica whose applier was stopped still promotes with everything it
// received: Promote starts the applier and waits for it.
func TestPromoteAppliesReceived(t *testing.T) {
	requireMariaDB(t)
	n1, n2, _ := threeMembers(t)
	local(t, n2, "STOP REPLICA SQL_THREAD")
	for i := 2; i <= 20; i++ {
		local(t, n1, fmt.Sprintf("INSERT INTO appdb.t VALUES (%d, 'x')", i))
	}
	want := gtids(t, n1)
	waitFor(t, 20*time.Second, "n2 to receive everything", func() (bool, string) {
		st := probe(t, n2)
		o := st.Received.Compare(want)
		return o == cluster.Equal || o == cluster.Ahead, fmt.Sprintf("received %s, primary %s", st.Received, want)
	})
	if st := probe(t, n2); st.Replayed.Compare(want) != cluster.Behind {
		t.Fatalf("n2 applied %s with its applier stopped (primary %s)", st.Replayed, want)
	}
	must(t, "stop n1", n1.Stop(ctxT(t, 10*time.Second), db.StopImmediate))
	must(t, "promote n2", n2.Promote(ctxT(t, 20*time.Second)))
	if got := count(t, n2); got != 20 {
		t.Errorf("promoted n2 holds %d rows, want 20", got)
	}
	if o := gtids(t, n2).Compare(want); o != cluster.Equal {
		t.Errorf("promoted n2 at %s vs the old primary's %s: %s", gtids(t, n2), want, o)
	}
}

// statusVar reads a global status variable of m.
func statusVar(t *testing.T, m *MySQL, name string) string {
	t.Helper()
	pool, _, err := m.localDB(ctxT(t, 5*time.Second))
	must(t, "connect", err)
	var n, v string
	must(t, "read "+name, pool.QueryRowContext(ctxT(t, 5*time.Second), "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v))
	return v
}

// replStatus is m's ReplicationStatus.
func replStatus(t *testing.T, m *MySQL) db.ReplicationStatus {
	t.Helper()
	rs, err := m.ReplicationStatus(ctxT(t, 5*time.Second))
	must(t, "replication status of "+m.opts.Name, err)
	return rs
}

// commitAsync inserts row id on m as the app user, without a deadline,
// and sends the outcome on the returned channel.
func commitAsync(t *testing.T, m *MySQL, id int) <-chan error {
	app := sqlAs(t, m, "app", testAppPw)
	ch := make(chan error, 1)
	go func() {
		_, err := app.ExecContext(context.Background(), "INSERT INTO appdb.t VALUES (?, 'semi-sync')", id)
		ch <- err
	}()
	return ch
}

// returns waits up to within for the commit of ch to return, and fails
// unless it returned without an error.
func returns(t *testing.T, ch <-chan error, within time.Duration, what string) {
	t.Helper()
	select {
	case err := <-ch:
		must(t, what, err)
	case <-time.After(within):
		t.Fatalf("%s: did not return within %v", what, within)
	}
}

// awaitWaitingForAck waits until m has n sessions whose commit waits for
// an acknowledgement.
func awaitWaitingForAck(t *testing.T, m *MySQL, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d commits waiting for an acknowledgement on %s", n, m.opts.Name), func() (bool, string) {
		got := waitingForAck(t, m)
		return got == n, fmt.Sprintf("%d waiting", got)
	})
}

// waitingForAck counts m's sessions whose commit waits for a semi-sync
// acknowledgement.
func waitingForAck(t *testing.T, m *MySQL) int {
	t.Helper()
	pool, _, err := m.localDB(ctxT(t, 5*time.Second))
	must(t, "connect", err)
	var n int
	must(t, "count waiting sessions", pool.QueryRowContext(ctxT(t, 5*time.Second),
		"SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE LIKE '"+WaitingForAck+"%'").Scan(&n))
	return n
}

// Semi-synchronous replication: commits wait for an acknowledging
// replica; a replica turned off stops acknowledging at once, so commits
// then wait; turning waiting off releases them; a promotion turns the
// replica side off and waiting on when asked before it.
func TestSemiSyncAcknowledging(t *testing.T) {
	requireMariaDB(t)
	ms := primaryWithReplicas(t, 1)
	n1, n2 := ms[0], ms[1]
	if rs := replStatus(t, n1); rs.SyncAny || rs.Current != gtids(t, n1) || rs.SyncNames != nil {
		t.Fatalf("at start: %+v (executed %s)", rs, gtids(t, n1))
	}
	if a1, a2 := probe(t, n1).Ack, probe(t, n2).Ack; a1 != cluster.AckOff || a2 != cluster.AckOff {
		t.Fatalf("acknowledging at start: n1 %q, n2 %q", a1, a2)
	}

	// (a) Waiting on, n2 acknowledging: a commit returns.
	for range 2 { // idempotent
		must(t, "n2 acknowledges", n2.SetAcknowledging(ctxT(t, 10*time.Second), cluster.AckOn))
		must(t, "n1 waits", n1.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, true))
	}
	if rs := replStatus(t, n1); !rs.SyncAny {
		t.Fatalf("waiting on: %+v", rs)
	}
	waitFor(t, 10*time.Second, "n2 to connect as an acknowledging replica", func() (bool, string) {
		c := statusVar(t, n1, "Rpl_semi_sync_master_clients")
		return c == "1", "clients " + c
	})
	returns(t, commitAsync(t, n1, 10), 10*time.Second, "a commit n2 acknowledges")
	if st := probe(t, n2); st.Ack != cluster.AckOn || statusVar(t, n2, "Rpl_semi_sync_slave_status") != "ON" {
		t.Fatalf("acknowledging n2: ack %q", st.Ack)
	}
	// The variable alone turned off: the running stream still
	// acknowledges, and the probe says so.
	local(t, n2, "SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
	returns(t, commitAsync(t, n1, 11), 10*time.Second, "a commit n2's running stream acknowledges")
	if st := probe(t, n2); st.Ack != cluster.AckOn {
		t.Fatalf("n2 with its variable off but its stream acknowledging: ack %q", st.Ack)
	}

	// (b) n2 stops acknowledging: at once off, and a commit waits.
	for range 2 { // idempotent
		must(t, "n2 stops acknowledging", n2.SetAcknowledging(ctxT(t, 10*time.Second), cluster.AckOff))
		if st := probe(t, n2); st.Ack != cluster.AckOff || statusVar(t, n2, "Rpl_semi_sync_slave_status") != "OFF" {
			t.Fatalf("n2 after AckOff: ack %q", st.Ack)
		}
	}
	blocked := commitAsync(t, n1, 12)
	awaitWaitingForAck(t, n1, 1)
	select { // an observation window: nothing may release it
	case err := <-blocked:
		t.Fatalf("a commit returned with no acknowledging replica: %v", err)
	case <-time.After(2 * time.Second):
	}

	// (c) Waiting off releases it.
	must(t, "n1 stops waiting", n1.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, false))
	returns(t, blocked, 5*time.Second, "the commit waiting when waiting was turned off")
	if rs := replStatus(t, n1); rs.SyncAny {
		t.Fatalf("waiting off: %+v", rs)
	}
	waitCaughtUp(t, n2, n1)

	// (d) Asked to wait before its promotion, n2 does not wait while it
	// is a replica (its applier would), then waits once promoted, with
	// its replica side off.
	must(t, "n2 acknowledges", n2.SetAcknowledging(ctxT(t, 10*time.Second), cluster.AckOn))
	must(t, "n2 to wait once promoted", n2.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, true))
	if rs := replStatus(t, n2); !rs.SyncAny {
		t.Errorf("asked to wait before its promotion: %+v", rs)
	}
	local(t, n1, "INSERT INTO appdb.t VALUES (13, 'applied by n2')")
	waitCaughtUp(t, n2, n1)
	must(t, "promote n2", n2.Promote(ctxT(t, 20*time.Second)))
	st := probe(t, n2)
	if st.Role != cluster.RolePrimary || st.Ack != cluster.AckOff || statusVar(t, n2, "Rpl_semi_sync_slave_status") != "OFF" {
		t.Fatalf("promoted n2: role %s, ack %q", st.Role, st.Ack)
	}
	if rs := replStatus(t, n2); !rs.SyncAny || rs.Current != gtids(t, n2) {
		t.Errorf("promoted n2 does not wait: %+v", rs)
	}
	must(t, "n2 stops waiting", n2.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, false))
	if count(t, n2) != 5 {
		t.Errorf("n2 holds %d rows, want 5", count(t, n2))
	}
}

// A primary whose commit waits for an acknowledgement no replica sends
// still demotes: the waiting session is ended (its client gets no OK) and
// the transaction, already in the binary log, is part of the final
// position. The probe's heartbeat write, which waits too, is not a stall
// but an overdue acknowledgement (db.Status.AckOverdue);
// the probe does not wait for the binary log (which the waiting commit
// holds once another commit queues behind it), and its heartbeat
// sessions do not pile up, one a probe.
func TestDemoteWithWaitingCommit(t *testing.T) {
	requireMariaDB(t)
	ms := primaryWithReplicas(t, 1)
	n1 := ms[0]
	must(t, "n1 waits", n1.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, true))
	blocked := commitAsync(t, n1, 20)
	awaitWaitingForAck(t, n1, 1)
	for range 3 {
		if st := probe(t, n1); st.Stalled != "" || st.AckOverdue == "" || st.Role != cluster.RolePrimary || st.Coordinates == "" {
			t.Fatalf("primary waiting for acknowledgements: %+v (want no stall, an overdue acknowledgement)", st)
		}
		pool, _, err := n1.localDB(ctxT(t, 5*time.Second))
		must(t, "connect", err)
		// The first heartbeat, queued in the waiting commit's group,
		// stays (killed) until that commit returns; each later one waits
		// for its row lock and leaves once the probe kills it, soon but
		// not at once on a loaded machine. Without the kill each would
		// wait out innodb_lock_wait_timeout, one more a probe.
		waitFor(t, 5*time.Second, "at most one heartbeat session left by the probes", func() (bool, string) {
			ids, err := sessionIDs(ctxT(t, 5*time.Second), pool, HeartbeatSessions)
			return err == nil && len(ids) <= 1, fmt.Sprintf("sessions %v, %v", ids, err)
		})
	}
	start := time.Now()
	must(t, "demote", n1.Demote(ctxT(t, 15*time.Second)))
	t.Logf("demote took %v", time.Since(start))
	select {
	case err := <-blocked:
		if err == nil {
			t.Fatal("a commit no replica acknowledged returned OK")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the waiting commit's session was not ended")
	}
	if st := probe(t, n1); st.Role != cluster.RoleReplica || count(t, n1) != 2 {
		t.Errorf("demoted n1: role %s, %d rows (the ended commit is in the binary log)", st.Role, count(t, n1))
	}
	if rs := replStatus(t, n1); rs.SyncAny {
		t.Errorf("demoted n1 still waits: %+v", rs)
	}
	// The coordinates read from the data directory are the server's own.
	pool, _, err := n1.localDB(ctxT(t, 5*time.Second))
	must(t, "connect", err)
	row, err := queryRow(ctxT(t, 5*time.Second), pool, "SHOW MASTER STATUS")
	must(t, "show master status", err)
	if got, want := n1.binlogCoordinates(), *row["File"]+":"+*row["Position"]; got != want {
		t.Errorf("coordinates %q, the server says %q", got, want)
	}
}

// TestMySQL8Server runs a primary and a replica of Oracle MySQL 8.0/8.4
// (the mysqld named by HAMGR_MYSQLD): the flavour is detected from the
// server, the replica streams by GTID auto-positioning and catches up,
// acknowledges semi-synchronously when asked, and is promoted. Debian 12
// packages no MySQL 8 server (its mysqld is MariaDB's), so here it skips
// and says so; the MySQL statements and status rows are covered by the
// dialect tests.
func TestMySQL8Server(t *testing.T) {
	bin := os.Getenv("HAMGR_MYSQLD")
	if bin == "" {
		t.Skip("no MySQL 8 server here: Debian 12 packages none (its mysqld is MariaDB's); set HAMGR_MYSQLD to a MySQL 8.0 or 8.4 mysqld to run this test")
	}
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil || !strings.Contains(string(out), " 8.") || strings.Contains(string(out), "MariaDB") {
		t.Fatalf("HAMGR_MYSQLD=%s is not a MySQL 8 server: %s (%v)", bin, out, err)
	}
	prev := testServer
	testServer = bin
	t.Cleanup(func() { testServer = prev })
	ms := primaryWithReplicas(t, 1)
	n1, n2 := ms[0], ms[1]
	if st := probe(t, n1); st.Role != cluster.RolePrimary || st.Position.Engine() != cluster.EngineMySQL {
		t.Fatalf("MySQL primary: %+v", st)
	}
	must(t, "n1 waits", n1.SetSynchronousStandbys(ctxT(t, 10*time.Second), nil, true))
	must(t, "n2 acknowledges", n2.SetAcknowledging(ctxT(t, 10*time.Second), cluster.AckOn))
	local(t, n1, "INSERT INTO appdb.t VALUES (2, 'two')")
	if st := waitCaughtUp(t, n2, n1); st.Ack != cluster.AckOn {
		t.Errorf("n2 acknowledging: %q", st.Ack)
	}
	must(t, "promote n2", n2.Promote(ctxT(t, 20*time.Second)))
	if st := probe(t, n2); st.Role != cluster.RolePrimary || st.Ack != cluster.AckOff {
		t.Errorf("promoted n2: role %s, ack %q", st.Role, st.Ack)
	}
}
