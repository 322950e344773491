package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs/memstore"
	"github.com/hamgr/hamgr/watchdog"
)

// These tests run a real agent (package agent's loop, renewer and fence
// timer, on real time) against the in-memory store and a database twin:
// what they check is the agent's conversation with systemd (a unixgram
// socket this test listens on, as systemd does) and with the watchdog
// device (a double that records the protocol; the machine's real watchdog
// is never opened). The database's own behaviour is not under test, so a
// twin stands in for PostgreSQL.

// twinDB is a database that does what it is told at once: empty until
// Initialize, then a running primary until Stop.
type twinDB struct {
	mu      sync.Mutex
	hasData bool
	running bool
	probes  int
	exited  chan time.Time
}

func newTwinDB() *twinDB { return &twinDB{exited: make(chan time.Time)} }

func (d *twinDB) Probe(context.Context) (db.Status, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.probes++
	st := db.Status{HasData: d.hasData, Running: d.running, Accepting: d.running, Position: cluster.PGPosition(1, 0x1000000)}
	if d.running {
		st.Role = cluster.RolePrimary
	} else {
		st.WasPrimary = d.hasData
	}
	return st, nil
}

func (d *twinDB) probed() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.probes
}

func (d *twinDB) set(hasData, running bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.hasData, d.running = hasData, running
	return nil
}

func (d *twinDB) Ask(context.Context, string, int) (db.Answer, error) { return db.AnswerNone, nil }
func (d *twinDB) Initialize(context.Context) error                    { return d.set(true, true) }
func (d *twinDB) Clone(context.Context, db.Upstream) error            { return errors.New("twin: no clone") }
func (d *twinDB) StartPrimary(context.Context) error                  { return d.set(true, true) }
func (d *twinDB) StartReplica(context.Context, *db.Upstream) error {
	return errors.New("twin: no replica")
}
func (d *twinDB) Stop(context.Context, db.StopMode) error   { return d.set(true, false) }
func (d *twinDB) Promote(context.Context) error             { return nil }
func (d *twinDB) Follow(context.Context, db.Upstream) error { return errors.New("twin: no follow") }
func (d *twinDB) Suspend(context.Context) error             { return nil }
func (d *twinDB) Resume(context.Context) error              { return nil }
func (d *twinDB) Exited() <-chan time.Time                  { return d.exited }
func (d *twinDB) Close()                                    {}

// recorder is the watchdog device double: it records the protocol.
type recorder struct {
	mu    sync.Mutex
	calls []string
}

func (r *recorder) add(c string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, c)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) open(string) (watchdog.Device, error) {
	r.add("open")
	return recDevice{r}, nil
}

type recDevice struct{ r *recorder }

func (d recDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	d.r.add("timeout " + t.String())
	return t, nil
}
func (d recDevice) Keepalive() error { d.r.add("keepalive"); return nil }
func (d recDevice) Disarm() error    { d.r.add("disarm"); return nil }

// testConfig is a valid agent config with a timing that a watchdog
// accepts (timeout 7 - 1 - 1 - 1 = 4s) and fast rounds.
func testConfig(t *testing.T, mode string, device string) *config.Config {
	c := config.Default()
	c.Cluster, c.Name = "wd", "pg1"
	c.Timing.TTL, c.Timing.LoopWait, c.Timing.RetryTimeout = config.Duration(7*time.Second), config.Duration(time.Second), config.Duration(2*time.Second)
	c.Watchdog = config.Watchdog{Mode: mode, Device: device}
	if err := c.Dynamic().Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

// notifySocket listens where $NOTIFY_SOCKET points, as systemd does.
func notifySocket(t *testing.T) *net.UnixConn {
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

// running is an agent started by runAgentWith.
type running struct {
	db    *twinDB
	store *memstore.Client
	// stop stops the agent and returns the cause its context ended with.
	stop func() error
}

// runAgentWith starts a real agent with cfg's observers (lifecycle) on a
// twin database and an in-memory store.
func runAgentWith(t *testing.T, cfg *config.Config, open watchdog.Opener) running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	ctx, stop := context.WithCancelCause(t.Context())
	observers, tags, err := lifecycle(ctx, cfg, log, open, stop)
	if err != nil {
		t.Fatal(err)
	}
	d := newTwinDB()
	client := memstore.New(time.Now).Client(cfg.Name)
	ag := agent.New(agent.Options{
		Cluster: cfg.Cluster, Name: cfg.Name, Tags: tags, Config: cfg.Dynamic(), DB: d,
		Store: client, ConnHost: "127.0.0.1", ConnPort: 5432,
		Logger: log, Observers: observers,
	})
	done := make(chan error, 1)
	go func() { done <- ag.Run(ctx) }()
	return running{db: d, store: client, stop: func() error {
		stop(nil)
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(time.Minute):
			t.Fatal("the agent did not stop within a minute")
		}
		return context.Cause(ctx)
	}}
}

// TestAgentTalksToSystemdAndWatchdog: a real agent bootstraps a one-member
// cluster and leads it; systemd hears READY=1 after the first round,
// STATUS with role and epoch, and WATCHDOG=1 pings; the watchdog is armed
// with the derived timeout, kicked while the member leads, and disarmed
// (magic close) by the clean stop.
func TestAgentTalksToSystemdAndWatchdog(t *testing.T) {
	conn := notifySocket(t)
	t.Setenv("WATCHDOG_USEC", "2000000") // WatchdogSec=2s: a ping every second at most
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil { // Check passes; the double is what opens
		t.Fatal(err)
	}
	cfg := testConfig(t, config.WatchdogAutomatic, dev)
	rec := &recorder{}
	r := runAgentWith(t, cfg, rec.open)
	d, stop := r.db, r.stop

	// Bounded by the timing: bootstrap and election take a few rounds of
	// loop_wait (1s); ten ttl leave a wide margin on a loaded machine.
	deadline := time.Now().Add(10 * time.Duration(cfg.Timing.TTL))
	var ready, leaderStatus bool
	pings := 0
	buf := make([]byte, 4096)
	for !(ready && leaderStatus && pings >= 3 && count(rec.list(), "keepalive") >= 3) {
		if err := conn.SetReadDeadline(deadline); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("waiting for READY, a leader's STATUS, 3 pings and 3 kicks (ready %v, leader status %v, pings %d, device %v): %v",
				ready, leaderStatus, pings, rec.list(), err)
		}
		msg := string(buf[:n])
		if strings.Contains(msg, "READY=1") {
			if ready {
				t.Errorf("READY=1 sent twice: %q", msg)
			}
			ready = true
			if d.probed() == 0 {
				t.Error("READY=1 before the first round probed the database")
			}
			if !strings.Contains(msg, "STATUS=") {
				t.Errorf("READY without a STATUS: %q", msg)
			}
		} else if !ready {
			t.Fatalf("%q sent before READY=1", msg)
		}
		if m := leaderStatusRE.FindStringSubmatch(msg); m != nil {
			leaderStatus = true
			if m[1] == "0" {
				t.Errorf("STATUS with epoch 0: %q", msg)
			}
		}
		if strings.Contains(msg, "WATCHDOG=1") {
			pings++
		}
	}
	if cause := stop(); cause != nil && !errors.Is(cause, context.Canceled) {
		t.Errorf("stop cause %v", cause)
	}
	calls := rec.list()
	if len(calls) < 5 || calls[0] != "open" || calls[1] != "timeout 4s" || calls[2] != "keepalive" {
		t.Fatalf("device protocol %v: want open, timeout 4s, keepalive, ...", calls)
	}
	if calls[len(calls)-1] != "disarm" || count(calls, "disarm") != 1 || count(calls, "open") != 1 {
		t.Errorf("device protocol %v: want one arming and the magic close last", calls)
	}
	// After the stop: STOPPING=1, then, last, STATUS=stopped (sent before
	// Run returned; the deadline only bounds a bug).
	var rest []string
	for len(rest) == 0 || !strings.Contains(rest[len(rest)-1], "STATUS=stopped") {
		if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, _, err := conn.ReadFromUnix(buf)
		if err != nil {
			t.Fatalf("after the stop systemd heard %q and then nothing: %v", rest, err)
		}
		rest = append(rest, string(buf[:n]))
	}
	all := strings.Join(rest, "|")
	if i := strings.Index(all, "STOPPING=1"); i < 0 || strings.Count(all, "STOPPING=1") != 1 {
		t.Errorf("after the stop systemd heard %q: want STOPPING=1 once before STATUS=stopped", rest)
	}
}

// leaderStatusRE matches the STATUS of a leading primary.
var leaderStatusRE = regexp.MustCompile(`STATUS=role primary, leader \(epoch (\d+)\), state running`)

// TestFencedPrimaryDisarms: a leader cut off from the store fences its
// database at its fence deadline, and the watchdog is disarmed right
// then (no reset of a machine whose database is already stopped), with
// no kick after the renewals stopped covering one.
func TestFencedPrimaryDisarms(t *testing.T) {
	notifySocket(t)
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, config.WatchdogAutomatic, dev)
	rec := &recorder{}
	r := runAgentWith(t, cfg, rec.open)
	defer r.stop()
	deadline := time.Now().Add(10 * time.Duration(cfg.Timing.TTL))
	for count(rec.list(), "keepalive") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the watchdog was not kicked twice: %v", rec.list())
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.store.SetReachable(false)
	cut := time.Now()
	for count(rec.list(), "disarm") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the watchdog was not disarmed after the fence: %v", rec.list())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The fence deadline is loop_wait + retry_timeout (3s) after the last
	// renewal sent; the disarm comes with the fence, not a round later.
	if took, bound := time.Since(cut), time.Duration(cfg.Timing.TTL); took > bound {
		t.Errorf("disarmed %s after the cut, want within ttl (%s)", took, bound)
	}
	r.db.mu.Lock()
	running := r.db.running
	r.db.mu.Unlock()
	if running {
		t.Error("disarmed while the database runs")
	}
	calls := rec.list()
	if calls[len(calls)-1] != "disarm" {
		t.Errorf("device protocol %v: the disarm must be last", calls)
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

// TestRequiredWatchdogNotArmableStopsTheAgent: mode required, and the
// device is a regular file (so the real watchdog.Open is used and its
// WDIOC_SETTIMEOUT fails): the member bootstraps and leads, cannot arm the
// watchdog, closes the device with the magic 'V' at once, and the agent
// stops (releasing the key) with the cause that exits with status 78.
func TestRequiredWatchdogNotArmableStopsTheAgent(t *testing.T) {
	notifySocket(t)
	dev := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(dev, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, config.WatchdogRequired, dev)
	r := runAgentWith(t, cfg, watchdog.Open)
	d, stop := r.db, r.stop
	// The agent stops itself: wait for the magic close, bounded by the
	// timing as above.
	deadline := time.Now().Add(10 * time.Duration(cfg.Timing.TTL))
	for {
		got, err := os.ReadFile(dev)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(got), "V") {
			if string(got) != "V" {
				t.Errorf("device received %q: want only the magic close (never a keepalive)", got)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the watchdog was never opened and closed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cause := stop()
	if !errors.Is(cause, errWatchdogRequired) || !errors.Is(cause, syscall.ENOTTY) {
		t.Fatalf("stop cause %v: want errWatchdogRequired wrapping ENOTTY", cause)
	}
	if st := exitStatus(&exitError{code: exitWatchdogRequired, err: cause}); st != 78 {
		t.Errorf("exit status %d", st)
	}
	d.mu.Lock()
	running := d.running
	d.mu.Unlock()
	if running {
		t.Error("the database still runs after the agent stopped")
	}
}

// Mode required with no device: the member advertises nofailover.
// Automatic: it says so, and leads unprotected.
func TestLifecycleWithoutDevice(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "none")
	ctx, stop := context.WithCancelCause(t.Context())
	defer stop(nil)
	log := slog.New(slog.DiscardHandler)
	_, tags, err := lifecycle(ctx, testConfig(t, config.WatchdogRequired, missing), log, watchdog.Open, stop)
	if err != nil || !tags.NoFailover {
		t.Errorf("required without a device: tags %+v, err %v; want nofailover", tags, err)
	}
	_, tags, err = lifecycle(ctx, testConfig(t, config.WatchdogAutomatic, missing), log, watchdog.Open, stop)
	if err != nil || tags.NoFailover {
		t.Errorf("automatic without a device: tags %+v, err %v", tags, err)
	}
	obs, _, err := lifecycle(ctx, testConfig(t, config.WatchdogOff, missing), log, watchdog.Open, stop)
	if err != nil || len(obs) != 1 {
		t.Errorf("off: %d observers, err %v; want the notifier alone", len(obs), err)
	}
	fast := testConfig(t, config.WatchdogRequired, missing)
	fast.Timing.TTL, fast.Timing.RetryTimeout = config.Duration(5*time.Second), config.Duration(3*time.Second)
	if _, _, err := lifecycle(ctx, fast, log, watchdog.Open, stop); err == nil || !strings.Contains(err.Error(), "watchdog.mode: required") {
		t.Errorf("required with the fast profile: %v", err)
	}
}

func TestExitStatus(t *testing.T) {
	if exitStatus(nil) != 0 || exitStatus(errors.New("x")) != 1 {
		t.Error("exitStatus of nil or a plain error")
	}
	if exitStatus(&exitError{code: 78, err: errWatchdogRequired}) != 78 {
		t.Error("exitStatus of an exitError")
	}
}
