package postgres

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// startupWaitEvent is the wait event of c's server's startup process.
func startupWaitEvent(t *testing.T, c *pgx.Conn) string {
	t.Helper()
	var ev string
	q := "SELECT coalesce(wait_event, '') FROM pg_stat_activity WHERE backend_type = 'startup'"
	if err := c.QueryRow(ctxT(t, 5*time.Second), q).Scan(&ev); err != nil {
		t.Fatalf("startup process wait event: %v", err)
	}
	return ev
}

// TestPromoteDoesNotWaitOutRetryInterval: a replica whose upstream has
// just gone away is promoted while its startup process has asked for a
// new WAL receiver that has not started yet. PostgreSQL 15's startup
// process, told to promote in that state, cancels the receiver request and
// then sleeps out what is left of wal_retrieve_retry_interval since the
// last failure before it looks at the promote request again: nothing
// wakes it (a receiver that ran would have, as it exited). Promote must
// wake it.
//
// The state is made deterministic by stopping the replica's postmaster
// (SIGSTOP) while the startup process sleeps between retries: when the
// sleep ends, the startup process requests a receiver that the postmaster
// cannot start, and the promote request (pg_promote signals the
// postmaster) waits too. On SIGCONT the postmaster starts the receiver and
// forwards the promote request in the same breath.
//
// The interval is PostgreSQL's default of 5s (an operator may set it: it
// is not reserved), so a promotion that waited takes about 5s after
// SIGCONT. The bound, half the interval, leaves a loaded machine more than
// two seconds for a promotion that takes tens of milliseconds on an idle
// one; the measured time is logged.
func TestPromoteDoesNotWaitOutRetryInterval(t *testing.T) {
	requirePG(t)
	const retry = 5 * time.Second
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	o2 := testOptions(base, "n2", freePort(t))
	o2.Parameters["wal_retrieve_retry_interval"] = strconv.Itoa(int(retry/time.Millisecond)) + "ms"
	n2 := member(t, o2)
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n2"}); err != nil {
		t.Fatal(err)
	}
	up1 := upstream(n1)
	timed(t, "n2 clone", func() error { return n2.Clone(ctxT(t, 30*time.Second), up1) })
	timed(t, "n2 start replica", func() error { return n2.StartReplica(ctxT(t, 15*time.Second), &up1) })
	waitStreaming(t, n2, up1.Port)

	// The upstream goes away; n2's receiver fails and its startup process
	// sleeps between retries.
	if err := n1.Stop(ctxT(t, 10*time.Second), db.StopFast); err != nil {
		t.Fatal(err)
	}
	watch, err := pgx.Connect(ctxT(t, 5*time.Second), fmt.Sprintf("host=%s port=%d user=postgres dbname=postgres sslmode=disable", o2.SocketDir, o2.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close(context.Background())
	waitFor(t, 3*retry, "n2's startup process sleeping between receiver retries", func() (bool, string) {
		ev := startupWaitEvent(t, watch)
		return ev == "RecoveryRetrieveRetryInterval", ev
	})
	probe(t, n2) // Promote's connection exists before the postmaster stops.
	pm := n2.running().pid
	if err := syscall.Kill(pm, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(pm, syscall.SIGCONT) //nolint:errcheck // a no-op unless the test failed early
	waitFor(t, 2*retry, "n2's startup process waiting for a receiver the stopped postmaster cannot start", func() (bool, string) {
		ev := startupWaitEvent(t, watch)
		return ev == "RecoveryWalStream", ev
	})
	promoted := make(chan error, 1)
	go func() { promoted <- n2.Promote(context.Background()) }()
	waitFor(t, 5*time.Second, "the promote signal file", func() (bool, string) {
		_, err := os.Stat(filepath.Join(o2.DataDir, "promote"))
		return err == nil, fmt.Sprint(err)
	})
	start := time.Now()
	if err := syscall.Kill(pm, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-promoted:
		if err != nil {
			t.Fatalf("promote n2: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("promote n2 did not return within 30s")
	}
	took := time.Since(start)
	t.Logf("promote of a replica between receiver retries (wal_retrieve_retry_interval %v): %v after the postmaster resumed", retry, took.Round(time.Millisecond))
	if st := probe(t, n2); st.Role != cluster.RolePrimary {
		t.Fatalf("n2 after Promote: %+v", st)
	}
	if took >= retry/2 {
		t.Fatalf("promote took %v: it waited out wal_retrieve_retry_interval (%v)", took.Round(time.Millisecond), retry)
	}
}
