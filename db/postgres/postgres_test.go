package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

const (
	testBinDir   = "/usr/lib/postgresql/15/bin"
	testSuperPw  = "super-s3cret:x'y"
	testReplPw   = "repl-s3cret\\z:'q"
	testReplRole = "replicator"
)

func requirePG(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(testBinDir, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 not installed (%v): apt-get install -y postgresql-15", err)
	}
}

// testBase is a fresh directory the postgres OS user can traverse.
func testBase(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hamgr-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if os.Getenv("HAMGR_KEEP") == "" {
		t.Cleanup(func() { os.RemoveAll(dir) })
	}
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testOptions(base, name string, port int) Options {
	return Options{
		Name: name, DataDir: filepath.Join(base, name), BinDir: testBinDir,
		ListenHost: "127.0.0.1", Port: port, SocketDir: filepath.Join(base, name+"-sock"),
		LogFile:   filepath.Join(base, name+".log"),
		Superuser: "postgres", SuperuserPassword: testSuperPw,
		Replication: testReplRole, ReplicationPassword: testReplPw,
		Parameters: map[string]string{"fsync": "off"},
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
}

// member creates a Postgres whose server is stopped immediately at cleanup.
func member(t *testing.T, opts Options) *Postgres {
	t.Helper()
	p, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := p.Stop(ctx, db.StopImmediate); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		p.Close()
	})
	return p
}

func upstream(p *Postgres) db.Upstream {
	return db.Upstream{Name: p.opts.Name, Host: "127.0.0.1", Port: p.opts.Port}
}

func probe(t *testing.T, p *Postgres) db.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := p.Probe(ctx)
	if err != nil {
		t.Fatalf("probe %s: %v", p.opts.Name, err)
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

func waitStreaming(t *testing.T, p *Postgres, port int) {
	t.Helper()
	waitFor(t, 10*time.Second, p.opts.Name+" streaming from port "+strconv.Itoa(port), func() (bool, string) {
		st := probe(t, p)
		return st.Role == cluster.RoleReplica && st.Streaming && st.UpstreamPort == port, fmt.Sprintf("%+v", st)
	})
}

func waitCaughtUp(t *testing.T, p *Postgres, target cluster.LSN) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%s at %v", p.opts.Name, target), func() (bool, string) {
		st := probe(t, p)
		return lsnOf(st.Position) >= target && lsnOf(st.Replayed) >= target, fmt.Sprintf("%+v", st)
	})
}

func waitExited(t *testing.T, p *Postgres, within time.Duration) {
	t.Helper()
	select {
	case <-p.Exited():
	case <-time.After(within):
		t.Fatalf("%s: Exited() did not fire within %v", p.opts.Name, within)
	}
}

// execSQL runs statements on p's server through its unix socket.
func execSQL(t *testing.T, p *Postgres, stmts ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", p.opts.SocketDir, p.opts.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	for _, s := range stmts {
		if _, err := c.Exec(ctx, s); err != nil {
			t.Fatalf("%s: %s: %v", p.opts.Name, s, err)
		}
	}
}

// querySQL returns the single text value q yields on p's server.
func querySQL(t *testing.T, p *Postgres, q string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", p.opts.SocketDir, p.opts.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var v string
	if err := c.QueryRow(ctx, q).Scan(&v); err != nil {
		t.Fatalf("%s: %s: %v", p.opts.Name, q, err)
	}
	return v
}

func timed(t *testing.T, what string, f func() error) {
	t.Helper()
	start := time.Now()
	if err := f(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("%s: %v", what, time.Since(start).Round(time.Millisecond))
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// TestLifecycle drives three members through bootstrap, cloning, streaming,
// crash of the primary, promotion, repointing, adoption and a SIGKILLed
// postmaster, against real PostgreSQL 15 servers.
func TestLifecycle(t *testing.T) {
	requirePG(t)
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	n2 := member(t, testOptions(base, "n2", freePort(t)))
	n3 := member(t, testOptions(base, "n3", freePort(t)))

	// Bootstrap: initdb, start, replication role; primary on timeline 1.
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	st := probe(t, n1)
	if !st.Running || !st.Accepting || st.Role != cluster.RolePrimary || lsnOf(st.Position) == 0 || tlOf(st.Position) != 1 || !st.HasData {
		t.Fatalf("n1 after initialize: %+v", st)
	}
	if err := n1.StartPrimary(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("StartPrimary on a running primary: %v", err)
	}
	if a, err := n1.Ask(context.Background(), "127.0.0.1", n1.opts.Port); a != db.AnswerWritable || err != nil {
		t.Fatalf("Ask(n1) = %v, %v; want writable (SCRAM over TCP)", a, err)
	}

	// Clone two replicas; they stream from n1 through their slots and
	// catch up with a write.
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n2", "n3"}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Postgres{n2, n3} {
		up := upstream(n1)
		timed(t, r.opts.Name+" clone", func() error { return r.Clone(ctxT(t, 30*time.Second), up) })
		if st := probe(t, r); st.Running || !st.HasData || lsnOf(st.Position) == 0 {
			t.Fatalf("%s after clone: %+v", r.opts.Name, st)
		}
		timed(t, r.opts.Name+" start replica", func() error { return r.StartReplica(ctxT(t, 15*time.Second), &up) })
		waitStreaming(t, r, n1.opts.Port)
	}
	if err := n3.StartPrimary(ctxT(t, 5*time.Second)); err == nil || !strings.Contains(err.Error(), "promote") {
		t.Fatalf("StartPrimary on a running replica = %v, want an error telling to promote", err)
	}
	if a, err := n1.Ask(context.Background(), "127.0.0.1", n2.opts.Port); a != db.AnswerReadOnly || err != nil {
		t.Fatalf("Ask(n2 replica) = %v, %v; want read-only, nil", a, err)
	}
	// The replica's receiver reports its stream: connected, a recent
	// message, the reserved receiver timeout.
	if st := probe(t, n2); !st.Streaming || st.UpstreamPort != n1.opts.Port || st.LastMessageAge < 0 ||
		st.LastMessageAge > ReceiverTimeout || st.ReceiverTimeout != ReceiverTimeout {
		t.Fatalf("n2's stream: streaming %v from port %d, last message %v ago, receiver timeout %v; want streaming from %d, under %v, %v",
			st.Streaming, st.UpstreamPort, st.LastMessageAge, st.ReceiverTimeout, n1.opts.Port, ReceiverTimeout, ReceiverTimeout)
	}
	execSQL(t, n1, "CREATE TABLE t (id int PRIMARY KEY, v text)", "INSERT INTO t SELECT g, 'x' FROM generate_series(1, 1000) g")
	target := lsnOf(probe(t, n1).Position)
	waitCaughtUp(t, n2, target)
	waitCaughtUp(t, n3, target)
	checkNoPasswordLeak(t, base, n2, n3)

	// Crash the primary: Exited fires, a stopped member keeps a position.
	timed(t, "n1 stop immediate", func() error { return n1.Stop(ctxT(t, 5*time.Second), db.StopImmediate) })
	waitExited(t, n1, time.Second)
	st = probe(t, n1)
	if st.Running || st.Accepting || !st.HasData || lsnOf(st.Position) == 0 || tlOf(st.Position) != 1 {
		t.Fatalf("n1 after immediate stop: %+v", st)
	}
	if err := n1.Stop(ctxT(t, time.Second), db.StopFast); err != nil {
		t.Fatalf("Stop on a stopped server: %v", err)
	}
	if a, err := n2.Ask(ctxT(t, time.Second), "127.0.0.1", n1.opts.Port); a != db.AnswerRefused || err == nil {
		t.Fatalf("Ask(stopped n1) = %v, %v; want connection refused with an error", a, err)
	}
	// A port where something accepts but never answers is no answer, not
	// refused: a timeout proves nothing.
	silent, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if a, err := n2.Ask(ctxT(t, 5*time.Second), "127.0.0.1", silent.Addr().(*net.TCPAddr).Port); a != db.AnswerNone || err == nil {
		t.Fatalf("Ask(a listener that never answers) = %v, %v; want no answer with an error", a, err)
	}
	checkFailedStart(t, n1)

	testPromoteAndFollow(t, base, n2, n3)
	testAdoption(t, n3, n2)
	testSIGKILL(t, n2)
	testRolePassword(t, base, n2)
}

// testRolePassword re-runs Initialize on a running primary with a new,
// non-ASCII replication password (the plain-text fallback path) while the
// server logs every statement: the role accepts the new password and no
// log holds it.
func testRolePassword(t *testing.T, base string, primary *Postgres) {
	t.Helper()
	execSQL(t, primary, "ALTER SYSTEM SET log_statement = 'all'", "SELECT pg_reload_conf()")
	waitFor(t, 5*time.Second, "log_statement = all", func() (bool, string) {
		v := querySQL(t, primary, "SELECT current_setting('log_statement')")
		return v == "all", v
	})
	opts := primary.opts
	opts.ReplicationPassword = "pässwörd 'ü' \\ x"
	p := member(t, opts)
	if err := p.Initialize(ctxT(t, 10*time.Second)); err != nil {
		t.Fatalf("Initialize on a running primary: %v", err)
	}
	ctx := ctxT(t, 5*time.Second)
	cfg, err := pgx.ParseConfig(fmt.Sprintf("host=127.0.0.1 port=%d user=%s dbname=postgres sslmode=disable", opts.Port, testReplRole))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Password = opts.ReplicationPassword
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("log in with the new replication password: %v", err)
	}
	c.Close(ctx)
	b, _ := os.ReadFile(primary.opts.LogFile)
	if !strings.Contains(string(b), "current_setting('log_statement')") {
		t.Fatalf("statement logging did not take effect")
	}
	if strings.Contains(string(b), "pässwörd") || strings.Contains(string(b), "ROLE") {
		t.Fatalf("%s logged the role statement or its password", primary.opts.LogFile)
	}
}

// testPromoteAndFollow promotes n2 (timeline 2) and repoints n3 to it.
func testPromoteAndFollow(t *testing.T, base string, n2, n3 *Postgres) {
	t.Helper()
	timed(t, "n2 promote", func() error { return n2.Promote(ctxT(t, 10*time.Second)) })
	if st := probe(t, n2); st.Role != cluster.RolePrimary || tlOf(st.Position) != 2 {
		t.Fatalf("n2 after promote: %+v", st)
	}
	if err := n2.Promote(ctxT(t, 5*time.Second)); err != nil {
		t.Fatalf("Promote on a primary: %v", err)
	}
	if err := n2.CreateSlots(ctxT(t, 5*time.Second), []string{"n1", "n3"}); err != nil {
		t.Fatal(err)
	}
	timed(t, "n3 follow n2", func() error { return n3.Follow(ctxT(t, 5*time.Second), upstream(n2)) })
	waitStreaming(t, n3, n2.opts.Port)
	if err := n3.Follow(ctxT(t, 5*time.Second), upstream(n2)); err != nil {
		t.Fatalf("Follow to the same upstream: %v", err)
	}
	execSQL(t, n2, "INSERT INTO t VALUES (3002, 'after-failover')")
	target := lsnOf(probe(t, n2).Position)
	waitCaughtUp(t, n3, target)
	if st := probe(t, n3); tlOf(st.Position) != 2 {
		t.Fatalf("n3 after following n2: %+v, want timeline 2", st)
	}
	checkNoPasswordLeak(t, base, n2, n3)

}

// checkNoPasswordLeak looks for the passwords in every file hamgr or the
// servers wrote, except the passfiles.
func checkNoPasswordLeak(t *testing.T, base string, replicas ...*Postgres) {
	t.Helper()
	for _, r := range replicas {
		conf, err := os.ReadFile(r.path("postgresql.auto.conf"))
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(conf), testReplPw) || strings.Contains(string(conf), "password") {
			t.Fatalf("%s postgresql.auto.conf holds a password:\n%s", r.opts.Name, conf)
		}
		if !strings.Contains(string(conf), "passfile=") {
			t.Fatalf("%s postgresql.auto.conf has no passfile:\n%s", r.opts.Name, conf)
		}
		fi, err := os.Stat(r.passfile())
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s passfile: %v, %v; want mode 0600", r.opts.Name, fi, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && r.cred != nil && st.Uid != r.cred.Uid {
			t.Fatalf("%s passfile owned by uid %d, want %d", r.opts.Name, st.Uid, r.cred.Uid)
		}
	}
	logs, _ := filepath.Glob(filepath.Join(base, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		if strings.Contains(string(b), testReplPw) || strings.Contains(string(b), testSuperPw) {
			t.Fatalf("%s holds a password", l)
		}
	}
}

// checkFailedStart starts a stopped data dir with a bad setting: the error
// carries the server's own complaint from the log.
func checkFailedStart(t *testing.T, stopped *Postgres) {
	t.Helper()
	opts := stopped.opts
	opts.Parameters = map[string]string{"shared_buffers": "bogus"}
	p := member(t, opts)
	err := p.StartPrimary(ctxT(t, 10*time.Second))
	if err == nil || !strings.Contains(err.Error(), "shared_buffers") {
		t.Fatalf("StartPrimary with a bad setting = %v, want the log's complaint about shared_buffers", err)
	}
	waitExited(t, p, time.Second)
}

// testAdoption: a second Postgres on a running server's data dir (a
// restarted agent) sees it running and notices when it stops.
func testAdoption(t *testing.T, running, up *Postgres) {
	t.Helper()
	p := member(t, running.opts)
	st := probe(t, p)
	if !st.Running || !st.Accepting || st.Role != cluster.RoleReplica || !st.Streaming {
		t.Fatalf("adopted %s: %+v", p.opts.Name, st)
	}
	u := upstream(up)
	if err := p.StartReplica(ctxT(t, 5*time.Second), &u); err != nil {
		t.Fatalf("StartReplica on an adopted running replica: %v", err)
	}
	timed(t, running.opts.Name+" stop fast", func() error { return running.Stop(ctxT(t, 10*time.Second), db.StopFast) })
	waitExited(t, p, time.Second)
	if st := probe(t, p); st.Running || lsnOf(st.Position) == 0 || tlOf(st.Position) != 2 {
		t.Fatalf("adopted %s after stop: %+v", p.opts.Name, st)
	}
}

// testSIGKILL kills a primary's postmaster: Exited fires within a second,
// and StartPrimary brings it back through crash recovery.
func testSIGKILL(t *testing.T, p *Postgres) {
	t.Helper()
	s := p.running()
	if s == nil {
		t.Fatalf("%s not running", p.opts.Name)
	}
	killed := time.Now()
	if err := syscall.Kill(s.pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitExited(t, p, time.Second)
	t.Logf("Exited() after SIGKILL: %v", time.Since(killed).Round(time.Microsecond))
	timed(t, p.opts.Name+" restart after SIGKILL", func() error { return p.StartPrimary(ctxT(t, 20*time.Second)) })
	if st := probe(t, p); st.Role != cluster.RolePrimary || tlOf(st.Position) != 2 {
		t.Fatalf("%s after crash restart: %+v", p.opts.Name, st)
	}
}
