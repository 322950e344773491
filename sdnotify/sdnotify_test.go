package sdnotify

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
)

// listen creates the socket systemd would listen on, points $NOTIFY_SOCKET
// at it, and returns it.
func listen(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

// next reads the next notification (every send has been made when this
// is called; the deadline only bounds a bug).
func next(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, _, err := conn.ReadFromUnix(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

var timing = cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
	RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second)}

func TestProtocol(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "120000000") // WatchdogSec=2min
	n := New(slog.New(slog.DiscardHandler))
	if n.WatchdogInterval() != 2*time.Minute {
		t.Fatalf("WatchdogInterval = %v, want 2m", n.WatchdogInterval())
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	r := agent.RoundReport{Phase: agent.PhaseRound, At: t0, Member: "pg1", Leadership: agent.NotLeading, Epoch: 4, Leader: "pg2",
		Role: cluster.RoleReplica, DBRunning: true, State: cluster.StateRunning, StoreOK: true, Config: timing}
	ctx := t.Context()
	n.AfterRound(ctx, r)
	if got, want := next(t, conn), "READY=1\nSTATUS=role replica, following pg2 (epoch 4), state running\nWATCHDOG=1\n"; got != want {
		t.Errorf("first round sent %q, want %q", got, want)
	}
	// Same status, within half of WatchdogSec: nothing to send; then the
	// leader changes: STATUS alone.
	r.At = t0.Add(2 * time.Second)
	n.AfterRound(ctx, r)
	r.At, r.Leadership, r.Leader, r.Epoch, r.Role = t0.Add(4*time.Second), agent.Leading, "pg1", 5, cluster.RolePrimary
	n.AfterRound(ctx, r)
	if got, want := next(t, conn), "STATUS=role primary, leader (epoch 5), state running\n"; got != want {
		t.Errorf("new leader sent %q, want %q", got, want)
	}
	// Half of WatchdogSec after the last ping: WATCHDOG=1.
	r.At = t0.Add(time.Minute)
	n.AfterRound(ctx, r)
	if got, want := next(t, conn), "WATCHDOG=1\n"; got != want {
		t.Errorf("a minute later sent %q, want %q", got, want)
	}
	r.At, r.StoreOK = t0.Add(62*time.Second), false
	n.AfterRound(ctx, r)
	if got := next(t, conn); !strings.HasSuffix(got, ", etcd unreachable\n") || strings.Contains(got, "WATCHDOG") {
		t.Errorf("store lost sent %q", got)
	}
	fenced := r
	fenced.Phase, fenced.Leadership, fenced.Role, fenced.DBRunning = agent.PhaseFenced, agent.NotLeading, cluster.RoleUnknown, false
	n.AfterRound(ctx, fenced)
	if got, want := next(t, conn), "STATUS=role unknown, leader key (epoch 5) not renewed in time, state running, etcd unreachable (fenced)"; got != want {
		t.Errorf("fenced sent %q, want %q", got, want)
	}
	n.Stopping()
	if got := next(t, conn); !strings.HasPrefix(got, "STOPPING=1\n") {
		t.Errorf("Stopping sent %q", got)
	}
	n.Stopping() // once only: the next datagram is the stopping report's
	n.AfterRound(ctx, agent.RoundReport{Phase: agent.PhaseStopping})
	if got := next(t, conn); got != "STATUS=stopping the database" {
		t.Errorf("stopping sent %q", got)
	}
	n.AfterRound(ctx, agent.RoundReport{Phase: agent.PhaseStopped})
	if got := next(t, conn); got != "STATUS=stopped" {
		t.Errorf("stopped sent %q", got)
	}
}

// A stop the agent reports before Stopping was called (the signal's
// goroutine is late): STOPPING=1 comes first all the same, and once.
func TestStoppingBeforeTheSignal(t *testing.T) {
	conn := listen(t)
	n := New(slog.New(slog.DiscardHandler))
	n.AfterRound(t.Context(), agent.RoundReport{Phase: agent.PhaseStopping})
	if got := next(t, conn); got != "STOPPING=1\nSTATUS=stopping the database" {
		t.Errorf("stopping sent %q", got)
	}
	n.Stopping()
	n.AfterRound(t.Context(), agent.RoundReport{Phase: agent.PhaseStopped})
	if got := next(t, conn); got != "STATUS=stopped" {
		t.Errorf("stopped sent %q", got)
	}
}

// No WATCHDOG_USEC: no pings. No NOTIFY_SOCKET: nothing sent, no error.
func TestWithoutWatchdogOrSocket(t *testing.T) {
	conn := listen(t)
	t.Setenv("WATCHDOG_USEC", "")
	n := New(slog.New(slog.DiscardHandler))
	r := agent.RoundReport{Phase: agent.PhaseRound, At: time.Unix(0, 0), Leadership: agent.NotLeading, Config: timing}
	n.AfterRound(t.Context(), r)
	if got := next(t, conn); strings.Contains(got, "WATCHDOG") || !strings.HasPrefix(got, "READY=1\n") {
		t.Errorf("sent %q", got)
	}
	t.Setenv("NOTIFY_SOCKET", "")
	New(nil).AfterRound(t.Context(), r) // must not fail or block
}

func TestMinWatchdog(t *testing.T) {
	if got := MinWatchdog(timing); got != 104*time.Second {
		t.Errorf("MinWatchdog(default timing) = %v, want 104s", got)
	}
}
