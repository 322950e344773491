package writeclient_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/writeclient"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.DiscardHandler)
}

// TestOutageAndNoLoss crashes the only server (immediate shutdown) while the
// client writes, restarts it, and checks the reported outage and that no
// acknowledged write was lost.
func TestOutageAndNoLoss(t *testing.T) {
	srv := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	opts := writeclient.Options{
		Hosts:            []string{srv.addr()},
		User:             "postgres",
		Password:         testPassword,
		Table:            "drill_writes",
		ConnectTimeout:   500 * time.Millisecond,
		StatementTimeout: time.Second,
		Logger:           testLogger(t),
	}
	c := writeclient.New(opts)
	if err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	t.Cleanup(func() { c.Stop() })
	if err := c.WaitAcked(ctx, 50); err != nil {
		t.Fatal(err)
	}
	if got := c.LastAckedPort(); got != srv.port {
		t.Fatalf("LastAckedPort = %d, want %d", got, srv.port)
	}

	// Fault: immediate shutdown. The hold below is the fault's duration,
	// not synchronization: the server is known dead once stop returns.
	faultAt := time.Now()
	srv.stop(syscall.SIGQUIT)
	deadAt := time.Now()
	const hold = 500 * time.Millisecond
	time.Sleep(hold)
	failedWhileDown := c.Failed()
	restartAt := time.Now()
	srv.start()
	if err := c.WaitAcked(ctx, c.Acked()+20); err != nil {
		t.Fatal(err)
	}
	resumedAt := time.Now()
	res := c.Stop()

	t.Logf("attempts=%d acked=%d failed=%d longest=%v gaps=%+v", res.Attempts, res.Acked, res.Failed, res.LongestGap, res.Gaps)
	if res.Acked <= 0 || res.Acked != len(res.AckedIDs) || res.Attempts != res.Acked+res.Failed {
		t.Fatalf("inconsistent counts: %+v", res)
	}
	if failedWhileDown == 0 || res.Failed == 0 {
		t.Fatalf("no failed attempts recorded while the server was down (failedWhileDown=%d)", failedWhileDown)
	}
	outage := res.OutageAround(faultAt)
	observed := resumedAt.Sub(faultAt)
	const slack = 200 * time.Millisecond
	if outage <= 0 {
		t.Fatalf("no gap reported around the fault; gaps=%+v", res.Gaps)
	}
	// No ack can happen while the server is down, so the gap covers at
	// least [deadAt, restartAt]; it ends at the first ack after restart,
	// which is before resumedAt, and starts at the last ack before the
	// fault, at most about one Interval+insert before faultAt.
	if down := restartAt.Sub(deadAt); outage < down {
		t.Errorf("outage %v shorter than the time the server was down (%v)", outage, down)
	}
	if outage > observed+slack {
		t.Errorf("outage %v longer than observed downtime %v + %v", outage, observed, slack)
	}
	if res.LongestGap < outage {
		t.Errorf("LongestGap %v < outage %v", res.LongestGap, outage)
	}
	if len(res.Gaps) == 0 || res.Gaps[len(res.Gaps)-1].Open {
		t.Errorf("expected a closed gap, got %+v", res.Gaps)
	}
	for _, g := range res.Gaps {
		if g.FromPort != srv.port || g.ToPort != srv.port {
			t.Errorf("gap ports %d->%d, want %d", g.FromPort, g.ToPort, srv.port)
		}
	}
	t.Logf("outage=%v observed=%v server down=%v", outage, observed, restartAt.Sub(deadAt))

	missing, err := writeclient.VerifyNoLoss(ctx, opts, res.AckedIDs)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Fatalf("%d acknowledged writes missing: %v", len(missing), missing)
	}

	// Stop is idempotent and WaitAcked reports the stopped loop.
	if again := c.Stop(); again.Acked != res.Acked {
		t.Errorf("second Stop returned Acked=%d, want %d", again.Acked, res.Acked)
	}
	if err := c.WaitAcked(ctx, res.Acked+1); !errors.Is(err, writeclient.ErrStopped) {
		t.Errorf("WaitAcked after Stop: %v, want ErrStopped", err)
	}

	// A second client continues after the existing ids (Setup reads max id).
	c2 := writeclient.New(opts)
	if err := c2.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	c2.Start(ctx)
	if err := c2.WaitAcked(ctx, 5); err != nil {
		t.Fatal(err)
	}
	res2 := c2.Stop()
	if res2.Failed != 0 {
		t.Errorf("second client had %d failed writes", res2.Failed)
	}
	maxAcked := res.AckedIDs[len(res.AckedIDs)-1]
	for _, id := range res2.FailedIDs {
		maxAcked = max(maxAcked, id)
	}
	if res2.AckedIDs[0] <= maxAcked {
		t.Errorf("second client's first id %d does not follow %d", res2.AckedIDs[0], maxAcked)
	}
}

// TestDeadFirstHost lists a port nothing listens on before the live server:
// target_session_attrs=read-write must skip it and write to the live one.
func TestDeadFirstHost(t *testing.T) {
	srv := startPG(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	dead := freePort(t)
	opts := writeclient.Options{
		Hosts:    []string{"127.0.0.1:" + strconv.Itoa(dead), srv.addr()},
		User:     "postgres",
		Password: testPassword,
		Logger:   testLogger(t),
	}
	c := writeclient.New(opts)
	if err := c.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	c.Start(ctx)
	t.Cleanup(func() { c.Stop() })
	if err := c.WaitAcked(ctx, 30); err != nil {
		t.Fatal(err)
	}
	if got := c.LastAckedPort(); got != srv.port {
		t.Fatalf("LastAckedPort = %d, want live server %d (dead %d)", got, srv.port, dead)
	}
	res := c.Stop()
	if res.Acked < 30 {
		t.Fatalf("Acked = %d", res.Acked)
	}
	missing, err := writeclient.VerifyNoLoss(ctx, opts, res.AckedIDs)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != 0 {
		t.Fatalf("missing acknowledged writes: %v", missing)
	}
}

// TestMaxWritesAndNoServer checks that the loop is bounded by MaxWrites and
// that attempts against no live host fail (never ack) within their timeouts.
func TestMaxWritesAndNoServer(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := writeclient.New(writeclient.Options{
		Hosts:          []string{"127.0.0.1:" + strconv.Itoa(freePort(t))},
		User:           "postgres",
		MaxWrites:      5,
		Interval:       time.Millisecond,
		ConnectTimeout: 200 * time.Millisecond,
		Logger:         testLogger(t),
	})
	c.Start(ctx)
	err := c.WaitAcked(ctx, 1)
	if !errors.Is(err, writeclient.ErrStopped) {
		t.Fatalf("WaitAcked = %v, want ErrStopped after MaxWrites", err)
	}
	res := c.Stop()
	if res.Attempts != 5 || res.Failed != 5 || res.Acked != 0 || len(res.FailedIDs) != 0 {
		t.Fatalf("result %+v", res)
	}
}
