package postgres

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// queuedClients is how many clients connect while the postmaster is
// stopped: each waits in the listen queue, and the postmaster forks a
// backend for every one as soon as it runs again.
const queuedClients = 32

// suspendRounds is how many times TestSuspendWhileConnecting thaws the
// postmaster and suspends it: the race it looks for showed in about five
// of six rounds against the old Suspend.
const suspendRounds = 3

// Suspend stops every process of the server even as the postmaster forks
// backends for connections queued while it was stopped (a machine that
// thaws), and those backends commit nothing until Resume. When Suspend
// listed the children before the postmaster was stopped, backends forked
// between the listing and the signal were missed and went on committing
// (the container drills' thawed primary): this test then finds them
// running, and rows written while suspended. The clients hold their
// connections, as the drills' writers do, so a missed backend stays to be
// seen.
func TestSuspendWhileConnecting(t *testing.T) {
	requirePG(t)
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	if err := n1.Initialize(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	execSQL(t, n1, "CREATE TABLE s (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	for round := 1; round <= suspendRounds && !t.Failed(); round++ {
		suspendThawed(t, n1, round)
	}
}

// suspendThawed runs one round: the postmaster stopped while clients
// queue, continued, and suspended as soon as it forks for them; then it
// checks that every process is stopped (or has its SIGSTOP pending), that
// no row is written by the server's clock until Resume and that writes go
// on after it.
func suspendThawed(t *testing.T, n1 *Postgres, round int) {
	s := n1.running()
	if err := syscall.Kill(s.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the postmaster stopped", func() (bool, string) {
		return suspended(s.pid), fmt.Sprintf("pid %d", s.pid)
	})
	w := startQueuedWriters(t, n1)
	defer w.stop()
	waitFor(t, 10*time.Second, "every client queued on the stopped postmaster", func() (bool, string) {
		return w.dialed.Load() >= queuedClients, fmt.Sprintf("%d of %d connected", w.dialed.Load(), queuedClients)
	})
	// The thaw, and Suspend as soon as the postmaster has forked its
	// first backend for the queue (the others are being forked), as the
	// agent does within milliseconds of its own thaw.
	before := len(n1.serverPIDs(s))
	if err := syscall.Kill(s.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); len(n1.serverPIDs(s)) <= before && time.Now().Before(deadline); {
	}
	if err := n1.Suspend(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	suspendedAt := time.Now()
	if running := runningPIDs(n1.serverPIDs(s)); len(running) > 0 {
		t.Errorf("round %d: processes of the server still running after Suspend returned: %v", round, running)
	}
	// The writers' statements time out after 300 ms: a second covers
	// three rounds of them against the stopped server.
	time.Sleep(time.Second) // the span in which nothing may commit, not a wait for a state
	resumedAt := time.Now()
	committed := w.commits.Load()
	if err := n1.Resume(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "commits after Resume", func() (bool, string) {
		return w.commits.Load() > committed, fmt.Sprintf("%d commits, %d before Resume", w.commits.Load(), committed)
	})
	w.stop()
	// The server's own clock says when each row was written: none while
	// it was suspended (a client may see an earlier commit's answer late).
	var n int
	q := "SELECT count(*) FROM s WHERE at > $1 AND at < $2"
	c, err := pgx.Connect(ctxT(t, 5*time.Second), w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctxT(t, 5*time.Second), q, suspendedAt, resumedAt).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Errorf("round %d: %d rows written between Suspend's return and Resume", round, n)
	}
}

// runningPIDs returns the pids that are neither stopped (or gone) nor
// have a SIGSTOP pending: a process with one pending runs none of its own
// code again until SIGCONT, however long a busy machine takes to schedule
// it into the stopped state.
func runningPIDs(pids []int) []int {
	var running []int
	for _, pid := range pids {
		if !suspended(pid) && !stopPending(pid) {
			running = append(running, pid)
		}
	}
	return running
}

// stopPending tells whether process pid has SIGSTOP pending, for the
// thread or the whole process (/proc/<pid>/status SigPnd, ShdPnd).
func stopPending(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "SigPnd" && k != "ShdPnd") {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err == nil && mask&(1<<(uint(syscall.SIGSTOP)-1)) != 0 {
			return true
		}
	}
	return false
}

// queuedWriters are clients that connect once and then insert rows on
// their connection every 10 ms (connecting again when a statement timed
// out and closed it), bounded in count and time.
type queuedWriters struct {
	dsn     string
	dialed  atomic.Int64 // sockets connected (queued until accepted)
	commits atomic.Int64
	stop    func()
}

// startQueuedWriters starts queuedClients writers on n's Unix socket; its
// stop ends them and waits for them.
func startQueuedWriters(t *testing.T, n *Postgres) *queuedWriters {
	t.Helper()
	w := &queuedWriters{dsn: fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", n.opts.SocketDir, n.opts.Port)}
	cfg, err := pgx.ParseConfig(w.dsn)
	if err != nil {
		t.Fatal(err)
	}
	var d net.Dialer
	cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			w.dialed.Add(1)
		}
		return c, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	var wg sync.WaitGroup
	w.stop = func() { cancel(); wg.Wait() }
	t.Cleanup(w.stop)
	for range queuedClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *pgx.Conn
			defer func() {
				if c != nil {
					c.Close(context.Background())
				}
			}()
			for i := 0; i < 10000 && ctx.Err() == nil; i++ {
				if c == nil || c.IsClosed() {
					// The first connection waits in the listen queue while
					// the postmaster is stopped; a statement that timed out
					// closed the connection, and the writer connects again.
					cctx, ccancel := context.WithTimeout(ctx, 30*time.Second)
					c, _ = pgx.ConnectConfig(cctx, cfg)
					ccancel()
				}
				if c != nil {
					ectx, ecancel := context.WithTimeout(ctx, 300*time.Millisecond)
					if _, err := c.Exec(ectx, "INSERT INTO s DEFAULT VALUES"); err == nil {
						w.commits.Add(1)
					}
					ecancel()
				}
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}
	return w
}
