package postgres

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Suspend stops every process of the server even while clients keep
// connecting: a backend forked as the postmaster is signalled is stopped
// too, so no row is written (by the server's clock) between Suspend's
// return and Resume, and writes go on after Resume. Writers on new connections (four at a time,
// bounded in count and time) make the postmaster fork all along; when
// Suspend listed the children before the postmaster had stopped, such a
// backend was missed and went on committing (the container drills'
// thawed primary).
func TestSuspendWhileConnecting(t *testing.T) {
	requirePG(t)
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	if err := n1.Initialize(ctxT(t, 30*time.Second)); err != nil {
		t.Fatal(err)
	}
	execSQL(t, n1, "CREATE TABLE s (id bigserial PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())")
	dsn := fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", n1.opts.SocketDir, n1.opts.Port)
	var commits atomic.Int64
	ctx, stop := context.WithTimeout(context.Background(), time.Minute)
	defer stop()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5000 && ctx.Err() == nil; i++ {
				cctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				if c, err := pgx.Connect(cctx, dsn); err == nil {
					if _, err := c.Exec(cctx, "INSERT INTO s DEFAULT VALUES"); err == nil {
						commits.Add(1)
					}
					c.Close(context.Background())
				}
				cancel()
			}
		}()
	}
	waitFor(t, 10*time.Second, "commits on new connections", func() (bool, string) {
		return commits.Load() >= 50, fmt.Sprintf("%d commits", commits.Load())
	})
	// As a machine thaws: the postmaster, stopped while clients kept
	// connecting, runs again with connections waiting to be accepted,
	// and Suspend comes at once.
	s := n1.running()
	if err := syscall.Kill(s.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // connections queue meanwhile; not a wait for a state
	if err := syscall.Kill(s.pid, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if err := n1.Suspend(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	suspendedAt := time.Now()
	waitFor(t, 5*time.Second, "every process of the server stopped", func() (bool, string) {
		var running []int
		for _, pid := range n1.serverPIDs(s) {
			if !suspended(pid) {
				running = append(running, pid)
			}
		}
		return len(running) == 0, fmt.Sprintf("running: %v", running)
	})
	// The writers' attempts time out after 300 ms: a second covers three
	// rounds of them against the stopped server.
	time.Sleep(time.Second) // the span in which nothing may run, not a wait for a state
	resumedAt := time.Now()
	before := commits.Load()
	if err := n1.Resume(ctxT(t, 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "commits after Resume", func() (bool, string) {
		return commits.Load() > before, fmt.Sprintf("%d commits, %d before Resume", commits.Load(), before)
	})
	stop()
	wg.Wait()
	// The server's own clock says when each row was written: none while
	// it was suspended (a client may see an earlier commit's answer late).
	var n int
	q := "SELECT count(*) FROM s WHERE at > $1 AND at < $2"
	c, err := pgx.Connect(ctxT(t, 5*time.Second), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(ctxT(t, 5*time.Second), q, suspendedAt, resumedAt).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n > 0 {
		t.Errorf("%d rows written between Suspend's return and Resume", n)
	}
}
