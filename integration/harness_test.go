package integration

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

var (
	hamgrBin string
	pgBin    = envOr("HAMGR_PG_BIN", "/usr/lib/postgresql/15/bin")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "hamgr-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	hamgrBin = filepath.Join(dir, "hamgr")
	out, err := exec.Command("go", "build", "-o", hamgrBin, "github.com/hamgr/hamgr/cmd/hamgr").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build hamgr: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startCluster starts a 3-member cluster with the fast timing profile
// unless timing is given, and stops it when the test ends. On failure the
// agents' logs are printed.
func startCluster(t *testing.T, opts localcluster.Options) *localcluster.Cluster {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBin, "postgres")); err != nil {
		t.Skipf("PostgreSQL 15 server binaries not found in %s (install postgresql-15 or set HAMGR_PG_BIN): %v", pgBin, err)
	}
	dir, err := os.MkdirTemp("", "hamgr-it-")
	if err != nil {
		t.Fatal(err)
	}
	opts.Dir, opts.HamgrBin, opts.BinDir = dir, hamgrBin, pgBin
	if opts.Timing.TTL == 0 {
		opts.Timing = localcluster.FastTiming
	}
	opts.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := localcluster.Start(ctx, opts)
	if err != nil {
		dumpLogs(t, dir)
		os.RemoveAll(dir)
		t.Fatalf("start cluster: %v", err)
	}
	t.Cleanup(func() {
		c.Close()
		if t.Failed() {
			dumpLogs(t, dir)
		}
		os.RemoveAll(dir)
	})
	return c
}

func dumpLogs(t *testing.T, dir string) {
	files, _ := filepath.Glob(filepath.Join(dir, "n*", "agent.log"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		lines := strings.Split(string(b), "\n")
		if len(lines) > 80 {
			lines = lines[len(lines)-80:]
		}
		t.Logf("==== %s (last lines)\n%s", f, strings.Join(lines, "\n"))
	}
}

func ctxFor(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// writer starts a write client over all members.
func writer(t *testing.T, c *localcluster.Cluster, table string) (*writeclient.Client, writeclient.Options) {
	t.Helper()
	o := writeclient.Options{Hosts: c.Hosts(), User: "postgres", Password: c.SuperPassword, Table: table,
		Logger: slog.New(slog.DiscardHandler)}
	w := writeclient.New(o)
	ctx := ctxFor(t, 3*time.Minute)
	if err := w.Setup(ctx); err != nil {
		t.Fatalf("write client setup: %v", err)
	}
	w.Start(ctx)
	t.Cleanup(func() { w.Stop() })
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	return w, o
}

func verifyNoLoss(t *testing.T, o writeclient.Options, acked []int64) []int64 {
	t.Helper()
	var missing []int64
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		var err error
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		missing, err = writeclient.VerifyNoLoss(ctx, o, acked)
		return err == nil
	})
	if err != nil {
		t.Fatalf("verify acknowledged writes: %v", err)
	}
	return missing
}

// primaryMonitor polls every member's PostgreSQL every 20 ms and records
// any moment when more than one answers as a writable primary.
type primaryMonitor struct {
	mu         sync.Mutex
	violations []string
	writable   map[string]time.Time // last time each member answered writable
	stop       context.CancelFunc
	done       chan struct{}
}

func monitorPrimaries(t *testing.T, c *localcluster.Cluster) *primaryMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &primaryMonitor{writable: map[string]time.Time{}, stop: cancel, done: make(chan struct{})}
	conns := map[string]*pgx.Conn{}
	go func() {
		defer close(m.done)
		defer func() {
			for _, cn := range conns {
				cn.Close(context.Background())
			}
		}()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var prim []string
			for _, n := range c.Nodes {
				if w := isWritable(ctx, conns, n, c.SuperPassword); w {
					prim = append(prim, n.Name)
					m.mu.Lock()
					m.writable[n.Name] = time.Now()
					m.mu.Unlock()
				}
			}
			if len(prim) > 1 {
				m.mu.Lock()
				m.violations = append(m.violations, fmt.Sprintf("%s: writable primaries %v", time.Now().Format("15:04:05.000"), prim))
				m.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { m.check(t) })
	return m
}

func isWritable(ctx context.Context, conns map[string]*pgx.Conn, n *localcluster.Node, pass string) bool {
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	cn := conns[n.Name]
	if cn == nil || cn.IsClosed() {
		var err error
		cn, err = pgx.Connect(qctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=1 sslmode=disable", n.PGPort, pass))
		if err != nil {
			return false
		}
		conns[n.Name] = cn
	}
	var rw bool
	if err := cn.QueryRow(qctx, "SELECT NOT pg_is_in_recovery()").Scan(&rw); err != nil {
		cn.Close(context.Background())
		delete(conns, n.Name)
		return false
	}
	return rw
}

// lastWritable is the last time name answered as a writable primary.
func (m *primaryMonitor) lastWritable(name string) time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.writable[name]
}

// check stops the monitor and fails the test on any violation.
func (m *primaryMonitor) check(t *testing.T) {
	m.stop()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.violations) > 0 {
		t.Errorf("two writable primaries at once, %d times; first: %s", len(m.violations), m.violations[0])
	}
}

// leader returns the current leader record (fails the test if none).
func leader(t *testing.T, c *localcluster.Cluster) (*localcluster.Node, cluster.Leader) {
	t.Helper()
	n, err := c.WaitLeader(ctxFor(t, 30*time.Second), "")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Snapshot(context.Background())
	if err != nil || s.Leader == nil {
		t.Fatalf("read leader: %v", err)
	}
	return n, *s.Leader
}

// replicasOf returns the members other than the named one.
func others(c *localcluster.Cluster, name string) []*localcluster.Node {
	var out []*localcluster.Node
	for _, n := range c.Nodes {
		if n.Name != name {
			out = append(out, n)
		}
	}
	return out
}

// waitCaughtUp waits until every running replica has replayed the
// primary's current WAL position.
func waitCaughtUp(t *testing.T, c *localcluster.Cluster, primary *localcluster.Node) {
	t.Helper()
	waitCaughtUpOne(t, c, primary, others(c, primary.Name)...)
}

// waitCaughtUpOne waits until the given replicas have replayed the
// primary's current WAL position.
func waitCaughtUpOne(t *testing.T, c *localcluster.Cluster, primary *localcluster.Node, replicas ...*localcluster.Node) {
	t.Helper()
	ctx := ctxFor(t, 30*time.Second)
	conn := func(n *localcluster.Node) (*pgx.Conn, error) { return pgConnect(ctx, c, n) }
	pc, err := conn(primary)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close(ctx)
	var target string
	if err := pc.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&target); err != nil {
		t.Fatal(err)
	}
	for _, n := range replicas {
		if !n.AgentRunning() {
			continue
		}
		rc, err := conn(n)
		if err != nil {
			t.Fatal(err)
		}
		err = localcluster.WaitFor(ctx, func() bool {
			var ok bool
			return rc.QueryRow(ctx, "SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn", target).Scan(&ok) == nil && ok
		})
		rc.Close(ctx)
		if err != nil {
			t.Fatalf("%s did not replay up to %s: %v", n.Name, target, err)
		}
	}
}

// waitReason waits until member name's reason contains want, or one of
// its "|"-separated alternatives.
func waitReason(t *testing.T, c *localcluster.Cluster, name, want string, d time.Duration) {
	t.Helper()
	var last string
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		if m := s.Member(name); m != nil {
			last = string(m.State) + ": " + m.Reason
			for _, w := range strings.Split(want, "|") {
				if strings.Contains(m.Reason, w) {
					return true
				}
			}
			return false
		}
		return false
	})
	if err != nil {
		t.Fatalf("%s never reported %q (last: %q)", name, want, last)
	}
}

// waitProblem waits up to d for member name's record to report problem.
func waitProblem(t *testing.T, c *localcluster.Cluster, name string, problem cluster.Problem, d time.Duration) {
	t.Helper()
	var last string
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil {
			return false
		}
		m := s.Member(name)
		if m == nil {
			return false
		}
		last = fmt.Sprintf("%s, problem %q: %s", m.State, m.Problem, m.Reason)
		return m.Problem == problem
	})
	if err != nil {
		t.Fatalf("%s never reported problem %s (last: %s)", name, problem, last)
	}
}

// walReceiverPID returns the pid of n's WAL receiver process.
func walReceiverPID(t *testing.T, c *localcluster.Cluster, n *localcluster.Node) int {
	t.Helper()
	ctx := ctxFor(t, 10*time.Second)
	conn, err := pgConnect(ctx, c, n)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pid FROM pg_stat_wal_receiver").Scan(&pid); err != nil {
		t.Fatalf("find the WAL receiver of %s: %v", n.Name, err)
	}
	return pid
}

// renameControlFile moves global/pg_control away so PostgreSQL cannot start.
func renameControlFile(n *localcluster.Node) error {
	p := filepath.Join(n.DataDir, "global", "pg_control")
	return os.Rename(p, p+".hidden-by-test")
}
