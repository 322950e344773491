package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

func TestSlotName(t *testing.T) {
	for in, want := range map[string]string{
		"n1":                    "n1",
		"Node-2.east":           "node_2_east",
		"a_b":                   "a_b",
		"é":                     "_",
		strings.Repeat("x", 70): strings.Repeat("x", 63),
	} {
		if got := slotName(in); got != want {
			t.Errorf("slotName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSyncStandbyNames(t *testing.T) {
	for _, c := range []struct {
		names []string
		any   bool
		want  string
	}{
		{nil, false, ""},
		{nil, true, "*"},
		{[]string{"n2"}, false, `FIRST 1 ("n2")`},
		{[]string{"n2", "n3", "N2"}, true, `FIRST 2 ("n2","n3")`},
		{[]string{`we"ird`}, false, `FIRST 1 ("we""ird")`},
	} {
		got, err := syncStandbyValue(c.names, c.any)
		if err != nil || got != c.want {
			t.Errorf("syncStandbyValue(%q, %v) = %q, %v; want %q", c.names, c.any, got, err, c.want)
		}
	}
	if _, err := syncStandbyValue([]string{""}, false); err == nil {
		t.Errorf("empty name accepted")
	}
	for in, want := range map[string]syncConfig{
		"":                         {},
		"*":                        {"FIRST", 1, []string{"*"}},
		"n2, n3":                   {"FIRST", 1, []string{"n2", "n3"}},
		`FIRST 2 ("n2","we""ird")`: {"FIRST", 2, []string{"n2", `we"ird`}},
		"any 1 (n2, n3)":           {"ANY", 1, []string{"n2", "n3"}},
		"2 (a, *)":                 {"FIRST", 2, []string{"a", "*"}},
		"first":                    {"FIRST", 1, []string{"first"}},
	} {
		got, err := parseSyncStandbyNames(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("parse(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"FIRST 1 (a", "a,", "(a)", `"a`, "a b", "ANY 1 ()"} {
		if got, err := parseSyncStandbyNames(in); err == nil {
			t.Errorf("parse(%q) = %+v, want an error", in, got)
		}
	}
}

// slotOptions are testOptions without wal_keep_size, so that only slots
// keep WAL for a stopped replica.
func slotOptions(t *testing.T, base, name string) Options {
	o := testOptions(base, name, freePort(t))
	o.Parameters["wal_keep_size"] = "0"
	return o
}

func slots(t *testing.T, p *Postgres) map[string]db.Slot {
	t.Helper()
	ss, err := p.Slots(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]db.Slot{}
	for _, s := range ss {
		m[s.Name] = s
	}
	return m
}

func waitSlotActive(t *testing.T, p *Postgres, name string, active bool) db.Slot {
	t.Helper()
	var s db.Slot
	waitFor(t, 10*time.Second, fmt.Sprintf("slot %s active=%v on %s", name, active, p.opts.Name), func() (bool, string) {
		var ok bool
		s, ok = slots(t, p)[name]
		return ok && s.Active == active, fmt.Sprintf("%+v", s)
	})
	return s
}

func replStatus(t *testing.T, p *Postgres) db.ReplicationStatus {
	t.Helper()
	rs, err := p.ReplicationStatus(ctxT(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// syncStates is "name=sync_state ..." of p's standbys.
func syncStates(rs db.ReplicationStatus) string {
	var s []string
	for _, sb := range rs.Standbys {
		s = append(s, sb.Name+"="+sb.SyncState)
	}
	return strings.Join(s, " ")
}

// insert runs one INSERT into t on p with statement_timeout (0: none) and
// returns how long it took and the notices the server sent.
func insert(ctx context.Context, p *Postgres, id int, timeout string) (time.Duration, []string, error) {
	var mu sync.Mutex
	var notices []string
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", p.opts.SocketDir, p.opts.Port))
	if err != nil {
		return 0, nil, err
	}
	cfg.OnNotice = func(_ *pgconn.PgConn, n *pgconn.Notice) {
		mu.Lock()
		defer mu.Unlock()
		notices = append(notices, n.Message)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return 0, nil, err
	}
	defer c.Close(context.Background())
	if _, err := c.Exec(ctx, "SET statement_timeout = '"+timeout+"'"); err != nil {
		return 0, nil, err
	}
	start := time.Now()
	_, err = c.Exec(ctx, fmt.Sprintf("INSERT INTO t VALUES (%d, 'x')", id), pgx.QueryExecModeSimpleProtocol)
	took := time.Since(start)
	mu.Lock()
	defer mu.Unlock()
	return took, notices, err
}

// checkBlocked: an INSERT waits for a synchronous standby. PostgreSQL 15
// disarms statement_timeout before the commit, so its 1 s does not end
// the wait: the client's own 2 s deadline does, by a cancel request, and
// the row is then committed locally ("canceling wait for synchronous
// replication" in the server log); until then no other session sees it.
func checkBlocked(t *testing.T, p *Postgres, id int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	took, notices, err := insert(ctx, p, id, "1s")
	if !errors.Is(err, context.DeadlineExceeded) || took < 2*time.Second-100*time.Millisecond {
		t.Fatalf("insert %d on %s: took %v, notices %q, err %v; want it blocked until the client's 2 s deadline", id, p.opts.Name, took, notices, err)
	}
	// Other sessions see the row once the cancel request ended the wait.
	waitFor(t, 5*time.Second, fmt.Sprintf("row %d committed locally on %s", id, p.opts.Name), func() (bool, string) {
		n := querySQL(t, p, fmt.Sprintf("SELECT count(*) FROM t WHERE id = %d", id))
		return n == "1", n
	})
}

func checkCommits(t *testing.T, p *Postgres, id int) {
	t.Helper()
	took, notices, err := insert(ctxT(t, 10*time.Second), p, id, "5s")
	if err != nil || len(notices) > 0 || took > time.Second {
		t.Fatalf("insert %d on %s: took %v, notices %q, err %v; want a prompt commit", id, p.opts.Name, took, notices, err)
	}
}

// TestSyncAndSlots: replicas streaming through slots, ReplicationStatus,
// synchronous standbys (named and any), WAL kept for a stopped replica,
// DropSlots.
func TestSyncAndSlots(t *testing.T) {
	requirePG(t)
	t.Parallel()
	base := testBase(t)
	n1 := member(t, slotOptions(t, base, "n1"))
	n2 := member(t, slotOptions(t, base, "n2"))
	n3 := member(t, slotOptions(t, base, "n3"))
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	up := upstream(n1)

	// n2's slot exists before n2 is cloned; the primary skips its own name.
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	ss := slots(t, n1)
	if s, ok := ss["n2"]; len(ss) != 1 || !ok || s.Active || s.RestartLSN == 0 || s.WALStatus != "reserved" {
		t.Fatalf("slots after CreateSlots(n1, n2): %+v", ss)
	}
	timed(t, "n2 clone", func() error { return n2.Clone(ctxT(t, 30*time.Second), up) })
	timed(t, "n2 start replica", func() error { return n2.StartReplica(ctxT(t, 15*time.Second), &up) })
	waitSlotActive(t, n1, "n2", true)
	waitStreaming(t, n2, n1.opts.Port)

	// n3 starts before its slot exists: its WAL receiver fails and retries
	// every wal_retrieve_retry_interval until CreateSlots.
	timed(t, "n3 clone", func() error { return n3.Clone(ctxT(t, 30*time.Second), up) })
	timed(t, "n3 start replica", func() error { return n3.StartReplica(ctxT(t, 15*time.Second), &up) })
	waitFor(t, 10*time.Second, "n3 complains about its missing slot", func() (bool, string) {
		b, _ := os.ReadFile(n3.opts.LogFile)
		return strings.Contains(string(b), `replication slot "n3" does not exist`), ""
	})
	created := time.Now()
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n1", "n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	waitSlotActive(t, n1, "n3", true)
	t.Logf("n3 streams through its slot %v after CreateSlots", time.Since(created).Round(time.Millisecond))
	if s := querySQL(t, n3, "SELECT slot_name FROM pg_stat_wal_receiver"); s != "n3" {
		t.Fatalf("n3 streams through slot %q", s)
	}

	// ReplicationStatus with two asynchronous standbys caught up.
	execSQL(t, n1, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	var rs db.ReplicationStatus
	waitFor(t, 10*time.Second, "n2 and n3 streaming and caught up", func() (bool, string) {
		rs = replStatus(t, n1)
		ok := len(rs.Standbys) == 2 && lsnOf(rs.Current) > 0
		for _, sb := range rs.Standbys {
			ok = ok && sb.State == "streaming" && sb.Flushed == rs.Current && sb.Replayed == rs.Current
		}
		return ok, fmt.Sprintf("%+v", rs)
	})
	if rs.Standbys[0].Name != "n2" || rs.Standbys[1].Name != "n3" || syncStates(rs) != "n2=async n3=async" || rs.SyncNames != nil || rs.SyncAny {
		t.Fatalf("replication status: %+v", rs)
	}
	if _, err := n2.ReplicationStatus(ctxT(t, 5*time.Second)); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("ReplicationStatus on a replica = %v, want an error", err)
	}

	// FIRST 1 ("n2"): commits wait for n2, and block while it is down
	// until the setting is cleared.
	for range 2 { // the second call is a no-op
		if err := n1.SetSynchronousStandbys(ctxT(t, 5*time.Second), []string{"n2"}, false); err != nil {
			t.Fatal(err)
		}
	}
	if v := querySQL(t, n1, "SHOW synchronous_standby_names"); v != `FIRST 1 ("n2")` {
		t.Fatalf("synchronous_standby_names = %s", v)
	}
	waitFor(t, 5*time.Second, "n2 sync, n3 async", func() (bool, string) {
		rs = replStatus(t, n1)
		return syncStates(rs) == "n2=sync n3=async", syncStates(rs)
	})
	if !reflect.DeepEqual(rs.SyncNames, []string{"n2"}) || rs.SyncAny {
		t.Fatalf("replication status: %+v", rs)
	}
	checkCommits(t, n1, 1)
	stopped := slots(t, n1)["n2"]
	timed(t, "n2 stop fast", func() error { return n2.Stop(ctxT(t, 10*time.Second), db.StopFast) })
	if st := probe(t, n2); st.Running || st.WasPrimary || !st.HasData {
		t.Fatalf("stopped replica n2: %+v", st)
	}
	checkBlocked(t, n1, 2)
	blocked := make(chan error, 1)
	go func() {
		_, notices, err := insert(context.Background(), n1, 3, "20s")
		if err == nil && len(notices) > 0 {
			err = fmt.Errorf("notices %q", notices)
		}
		blocked <- err
	}()
	waitFor(t, 5*time.Second, "an INSERT waiting for n2", func() (bool, string) {
		n := querySQL(t, n1, "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'")
		return n == "1", n
	})
	released := time.Now()
	if err := n1.SetSynchronousStandbys(ctxT(t, 5*time.Second), nil, false); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-blocked:
		if err != nil {
			t.Fatalf("blocked insert: %v", err)
		}
		t.Logf("blocked insert released %v after SetSynchronousStandbys(nil, false)", time.Since(released).Round(time.Millisecond))
	case <-time.After(3 * time.Second):
		t.Fatalf("insert still blocked after clearing synchronous_standby_names")
	}
	if v := querySQL(t, n1, "SHOW synchronous_standby_names"); v != "" {
		t.Fatalf("synchronous_standby_names = %q after reset", v)
	}

	// n2's slot keeps the WAL n2 needs while n2 is down, although
	// wal_keep_size is 0 and checkpoints remove every other segment.
	execSQL(t, n1, "INSERT INTO t SELECT g, 'y' FROM generate_series(1000, 20000) g",
		"SELECT pg_switch_wal()", "INSERT INTO t VALUES (20001, 'z')", "SELECT pg_switch_wal()", "CHECKPOINT")
	kept := slots(t, n1)["n2"]
	if kept.Active || kept.RestartLSN != stopped.RestartLSN || kept.WALStatus != "reserved" {
		t.Fatalf("n2's slot while n2 is down: %+v, before %+v", kept, stopped)
	}
	seg := querySQL(t, n1, fmt.Sprintf("SELECT pg_walfile_name('%s')", kept.RestartLSN))
	if !exists(filepath.Join(n1.opts.DataDir, "pg_wal", seg)) {
		t.Fatalf("segment %s holding n2's restart LSN was removed", seg)
	}
	if s := slots(t, n1)["n3"]; s.RestartLSN <= kept.RestartLSN {
		t.Fatalf("n3's slot did not advance: %+v", s)
	}
	target := lsnOf(probe(t, n1).Position)
	timed(t, "n2 restart and catch up through its slot", func() error {
		if err := n2.StartReplica(ctxT(t, 15*time.Second), &up); err != nil {
			return err
		}
		waitCaughtUp(t, n2, target)
		return nil
	})
	if s := waitSlotActive(t, n1, "n2", true); s.RestartLSN <= kept.RestartLSN {
		t.Fatalf("n2's slot after catching up: %+v", s)
	}

	// DropSlots drops the inactive slot, keeps the active one.
	timed(t, "n3 stop fast", func() error { return n3.Stop(ctxT(t, 10*time.Second), db.StopFast) })
	waitSlotActive(t, n1, "n3", false)
	if err := n1.DropSlots(ctxT(t, 5*time.Second), []string{"n2", "n3", "ghost"}); err != nil {
		t.Fatal(err)
	}
	if ss := slots(t, n1); len(ss) != 1 || !ss["n2"].Active {
		t.Fatalf("slots after DropSlots(n2, n3, ghost): %+v", ss)
	}

	// Any standby ("*") with every replica down blocks commits.
	timed(t, "n2 stop fast", func() error { return n2.Stop(ctxT(t, 10*time.Second), db.StopFast) })
	if err := n1.SetSynchronousStandbys(ctxT(t, 5*time.Second), nil, true); err != nil {
		t.Fatal(err)
	}
	if rs := replStatus(t, n1); !rs.SyncAny || rs.SyncNames != nil || len(rs.Standbys) != 0 {
		t.Fatalf("replication status with '*' and no standby: %+v", rs)
	}
	checkBlocked(t, n1, 4)
	if err := n1.SetSynchronousStandbys(ctxT(t, 5*time.Second), nil, false); err != nil {
		t.Fatal(err)
	}
	checkCommits(t, n1, 5)
}

// TestRewind: a primary that wrote after its replica was promoted is
// killed, rewound and rejoins the new primary as its synchronous standby;
// a crashed replica is rewound too.
func TestRewind(t *testing.T) {
	requirePG(t)
	t.Parallel()
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	n2 := member(t, testOptions(base, "n2", freePort(t)))
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n2"}); err != nil {
		t.Fatal(err)
	}
	up1 := upstream(n1)
	timed(t, "n2 clone", func() error { return n2.Clone(ctxT(t, 30*time.Second), up1) })
	timed(t, "n2 start replica", func() error { return n2.StartReplica(ctxT(t, 15*time.Second), &up1) })
	execSQL(t, n1, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t VALUES (1, 'before')")
	waitCaughtUp(t, n2, lsnOf(probe(t, n1).Position))

	// The candidate names its synchronous standby while still a replica.
	if err := n2.SetSynchronousStandbys(ctxT(t, 5*time.Second), []string{"n1"}, false); err != nil {
		t.Fatalf("SetSynchronousStandbys on a replica: %v", err)
	}
	timed(t, "n2 promote", func() error { return n2.Promote(ctxT(t, 10*time.Second)) })
	if v := querySQL(t, n2, "SHOW synchronous_standby_names"); v != `FIRST 1 ("n1")` {
		t.Fatalf("n2 synchronous_standby_names after promotion = %s", v)
	}
	if err := n2.CreateSlots(ctxT(t, 5*time.Second), []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}
	// Divergence: n1 goes on writing, then its postmaster is killed.
	execSQL(t, n1, "INSERT INTO t SELECT g, 'lost' FROM generate_series(100, 1100) g")
	if err := syscall.Kill(n1.running().pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, n1, time.Second)
	// A killed primary reports where its WAL ends (pg_waldump), past
	// its last checkpoint.
	if st := probe(t, n1); st.Running || !st.WasPrimary || tlOf(st.Position) != 1 || st.Checkpoint.IsZero() || lsnOf(st.Position) <= lsnOf(st.Checkpoint) {
		t.Fatalf("killed primary n1: %+v, want its WAL end past its checkpoint", st)
	}
	up2 := upstream(n2)
	if _, err := n2.Rewind(ctxT(t, 5*time.Second), up1); err == nil || !strings.Contains(err.Error(), "running") {
		t.Fatalf("Rewind on a running server = %v, want an error", err)
	}

	// A write on n2 waits for its synchronous standby n1 until n1 is back.
	committed := make(chan error, 1)
	go func() {
		_, notices, err := insert(context.Background(), n2, 2, "30s")
		if err == nil && len(notices) > 0 {
			err = fmt.Errorf("notices %q", notices)
		}
		committed <- err
	}()
	var res db.RewindResult
	timed(t, "n1 rewind after SIGKILL", func() (err error) { res, err = n1.Rewind(ctxT(t, 60*time.Second), up2); return err })
	if !res.Required || res.DivergedAt.IsZero() || res.WALEnd.IsZero() {
		t.Fatalf("rewind result %+v: want required, with where it diverged and where its WAL ended", res)
	}
	if st := probe(t, n1); st.Running || st.WasPrimary {
		t.Fatalf("n1 after rewind: %+v", st)
	}
	conf, _ := os.ReadFile(n1.path("postgresql.auto.conf"))
	if strings.Contains(string(conf), "synchronous_standby_names") || !strings.Contains(string(conf), "primary_slot_name = 'n1'") {
		t.Fatalf("n1 postgresql.auto.conf after rewind:\n%s", conf)
	}
	checkNoPasswordLeak(t, base, n1)
	b, _ := os.ReadFile(n1.opts.LogFile)
	if !strings.Contains(string(b), "crash recovery") || !strings.Contains(string(b), "Done!") {
		t.Fatalf("pg_rewind did not run crash recovery and rewind; log:\n%s", lastLines(string(b), 30))
	}
	timed(t, "n1 start replica of n2", func() error { return n1.StartReplica(ctxT(t, 15*time.Second), &up2) })
	waitStreaming(t, n1, n2.opts.Port)
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("insert on n2 waiting for n1: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("insert on n2 still waits for n1")
	}
	rs := replStatus(t, n2)
	if syncStates(rs) != "n1=sync" || !slots(t, n2)["n1"].Active {
		t.Fatalf("n2 replication status %+v, slots %+v", rs, slots(t, n2))
	}
	waitCaughtUp(t, n1, lsnOf(probe(t, n2).Position))
	if st := probe(t, n1); tlOf(st.Position) != 2 {
		t.Fatalf("n1 streaming from n2: %+v, want timeline 2", st)
	}
	if v := querySQL(t, n1, "SELECT string_agg(v, ',' ORDER BY id) FROM t"); v != "before,x" {
		t.Fatalf("n1 rows after rewind: %s", v)
	}

	// A replica killed on the new timeline: crash recovery in standby
	// mode, then "no rewind required".
	if err := syscall.Kill(n1.running().pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, n1, time.Second)
	if st := probe(t, n1); st.WasPrimary {
		t.Fatalf("killed replica n1: %+v", st)
	}
	if err := n2.SetSynchronousStandbys(ctxT(t, 5*time.Second), nil, false); err != nil {
		t.Fatal(err)
	}
	execSQL(t, n2, "INSERT INTO t VALUES (3, 'after')")
	timed(t, "n1 rewind after SIGKILL as a replica", func() (err error) { res, err = n1.Rewind(ctxT(t, 60*time.Second), up2); return err })
	if res.Required {
		t.Fatalf("rewind of a replica on the new timeline: %+v, want no rewind required", res)
	}
	b, _ = os.ReadFile(n1.opts.LogFile)
	if !strings.Contains(string(b), "no rewind required") {
		t.Fatalf("pg_rewind of the crashed replica; log:\n%s", lastLines(string(b), 30))
	}
	timed(t, "n1 start replica of n2 again", func() error { return n1.StartReplica(ctxT(t, 15*time.Second), &up2) })
	waitStreaming(t, n1, n2.opts.Port)
	waitCaughtUp(t, n1, lsnOf(probe(t, n2).Position))
	if v := querySQL(t, n1, "SELECT string_agg(v, ',' ORDER BY id) FROM t"); v != "before,x,after" {
		t.Fatalf("n1 rows after the second rewind: %s", v)
	}
	if st := probe(t, n1); st.Role != cluster.RoleReplica || tlOf(st.Position) != 2 {
		t.Fatalf("n1: %+v", st)
	}
}
