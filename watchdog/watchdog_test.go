package watchdog

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
)

// recorder is the test double of a watchdog device: it records the
// protocol ("open", "timeout 4s", "keepalive", "disarm") and arms nothing.
type recorder struct {
	calls   []string
	setErr  error         // returned by SetTimeout
	takes   time.Duration // what SetTimeout reports in effect (0: as asked)
	openErr error
}

func (r *recorder) open(path string) (Device, error) {
	if r.openErr != nil {
		return nil, r.openErr
	}
	r.calls = append(r.calls, "open "+path)
	return recDevice{r}, nil
}

type recDevice struct{ r *recorder }

func (d recDevice) SetTimeout(t time.Duration) (time.Duration, error) {
	d.r.calls = append(d.r.calls, "timeout "+t.String())
	if d.r.setErr != nil {
		return 0, d.r.setErr
	}
	if d.r.takes != 0 {
		return d.r.takes, nil
	}
	return t, nil
}

func (d recDevice) Keepalive() error {
	d.r.calls = append(d.r.calls, "keepalive")
	return nil
}

func (d recDevice) Disarm() error {
	d.r.calls = append(d.r.calls, "disarm")
	return nil
}

// take returns the calls recorded since the last take.
func (r *recorder) take() string {
	s := strings.Join(r.calls, ", ")
	r.calls = nil
	return s
}

var (
	defaults = cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second)}
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func TestTimeout(t *testing.T) {
	for _, c := range []struct {
		ttl, lw, rt int
		want        time.Duration // 0: refused
	}{
		{10, 2, 5, 4 * time.Second},    // default timing: 10 - 2 - 2.5 - 1 = 4.5
		{30, 10, 10, 14 * time.Second}, // Patroni's defaults
		{5, 1, 3, 0},                   // the fast profile: 1.5s → 1s, not above loop_wait + 1s
		{7, 1, 3, 3 * time.Second},
		{6, 1, 3, 0}, // 2s: exactly loop_wait + Margin
		{3, 1, 1, 0},
	} {
		cfg := cluster.DynamicConfig{TTL: cluster.Duration(time.Duration(c.ttl) * time.Second),
			LoopWait: cluster.Duration(time.Duration(c.lw) * time.Second), RetryTimeout: cluster.Duration(time.Duration(c.rt) * time.Second)}
		got, err := Timeout(cfg)
		if c.want == 0 {
			if !errors.Is(err, ErrTimingTooShort) {
				t.Errorf("Timeout(ttl %d, loop_wait %d, retry_timeout %d) = %v, %v; want ErrTimingTooShort", c.ttl, c.lw, c.rt, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("Timeout(ttl %d, loop_wait %d, retry_timeout %d) = %v, %v; want %v", c.ttl, c.lw, c.rt, got, err, c.want)
			continue
		}
		// The steady state passes the kick rule: a renewal at most
		// loop_wait + retry_timeout/2 old.
		lw, rt := time.Duration(cfg.LoopWait), time.Duration(cfg.RetryTimeout)
		if !KickSafe(t0.Add(lw+rt/2), t0, got, cfg) {
			t.Errorf("timing %+v: a kick with a renewal loop_wait + retry_timeout/2 old is refused", c)
		}
		// And whatever kick the rule admits fires Margin before the lease.
		if KickSafe(t0.Add(time.Duration(cfg.TTL)-Margin-got+time.Millisecond), t0, got, cfg) {
			t.Errorf("timing %+v: a kick that would fire within Margin of the lease's expiry is admitted", c)
		}
	}
}

func report(at time.Time, lead agent.Leadership, role cluster.Role, renewed time.Time) agent.RoundReport {
	return agent.RoundReport{Phase: agent.PhaseRound, At: at, Member: "pg1", Leadership: lead, Epoch: 3, Leader: "pg1",
		Role: role, DBRunning: role != cluster.RoleUnknown, LastRenewSent: renewed, Config: defaults}
}

func TestLifecycle(t *testing.T) {
	rec := &recorder{}
	var logs bytes.Buffer
	w := New(Options{Mode: ModeAutomatic, Path: "/test/watchdog", Open: rec.open, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx := t.Context()
	steps := []struct {
		what string
		r    agent.RoundReport
		want string
	}{
		{"a replica's round", report(t0, agent.NotLeading, cluster.RoleReplica, t0), ""},
		{"became leader", report(t0.Add(time.Second), agent.Leading, cluster.RoleReplica, t0.Add(500*time.Millisecond)), "open /test/watchdog, timeout 4s, keepalive"},
		{"leads on", report(t0.Add(3*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(2500*time.Millisecond)), "keepalive"},
		// Renewed 5.5s ago: 4s more would pass ttl - Margin (9s).
		{"renewals late", report(t0.Add(8*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(2500*time.Millisecond)), ""},
		{"renewed again", report(t0.Add(8500*time.Millisecond), agent.Leading, cluster.RolePrimary, t0.Add(8*time.Second)), "keepalive"},
		{"timing changed", func() agent.RoundReport {
			r := report(t0.Add(9*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(9*time.Second))
			r.Config.TTL = cluster.Duration(20 * time.Second)
			return r
		}(), "timeout 14s, keepalive"},
		{"lost the lead, still primary", report(t0.Add(20*time.Second), agent.NotLeading, cluster.RolePrimary, t0.Add(9*time.Second)), ""},
		{"demoted", report(t0.Add(22*time.Second), agent.NotLeading, cluster.RoleReplica, t0.Add(22*time.Second)), "disarm"},
		{"replica again", report(t0.Add(24*time.Second), agent.NotLeading, cluster.RoleReplica, t0.Add(24*time.Second)), ""},
		{"leads again", report(t0.Add(26*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(26*time.Second)), "open /test/watchdog, timeout 4s, keepalive"},
		{"fenced", agent.RoundReport{Phase: agent.PhaseFenced, At: t0.Add(33 * time.Second), Leadership: agent.NotLeading, Config: defaults}, "disarm"},
		// A round's report made just before the fence, delivered after it.
		{"stale round", report(t0.Add(32*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(31*time.Second)), ""},
		{"leads after the fence", report(t0.Add(40*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(40*time.Second)), "open /test/watchdog, timeout 4s, keepalive"},
		// The clean stop: no more rounds while the database stops.
		{"stopping", agent.RoundReport{Phase: agent.PhaseStopping, At: t0.Add(41 * time.Second), Leadership: agent.Leading, Role: cluster.RolePrimary, DBRunning: true}, "disarm"},
		{"stopped", agent.RoundReport{Phase: agent.PhaseStopped, At: t0.Add(42 * time.Second), Leadership: agent.NotLeading}, ""},
	}
	for _, s := range steps {
		w.AfterRound(ctx, s.r)
		if got := rec.take(); got != s.want {
			t.Errorf("%s: device calls %q, want %q", s.what, got, s.want)
		}
	}
	if w.Armed() {
		t.Error("armed after the stop")
	}
	for _, want := range []string{"watchdog armed", "too old to cover another watchdog period", "still answers as a primary", "watchdog disarmed",
		"the fence stopped the database", "the agent is stopping the database"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
}

func TestModeOffOpensNothing(t *testing.T) {
	rec := &recorder{}
	w := New(Options{Mode: ModeOff, Path: "/test/watchdog", Open: rec.open})
	w.AfterRound(t.Context(), report(t0, agent.Leading, cluster.RolePrimary, t0))
	w.AfterRound(t.Context(), agent.RoundReport{Phase: agent.PhaseStopped})
	if got := rec.take(); got != "" {
		t.Errorf("mode off: device calls %q", got)
	}
}

// A device whose timeout cannot be set (the ioctl fails, as on a file
// that is no watchdog) or that would fire later than asked is disarmed at
// once; automatic logs it, required tells its caller, once.
func TestArmFailure(t *testing.T) {
	for _, c := range []struct {
		name     string
		rec      *recorder
		mode     Mode
		calls    string
		required int
	}{
		{"ioctl fails, automatic", &recorder{setErr: syscall.ENOTTY}, ModeAutomatic, "open /test/watchdog, timeout 4s, disarm", 0},
		{"ioctl fails, required", &recorder{setErr: syscall.ENOTTY}, ModeRequired, "open /test/watchdog, timeout 4s, disarm", 1},
		{"device keeps a longer timeout", &recorder{takes: time.Minute}, ModeRequired, "open /test/watchdog, timeout 4s, disarm", 1},
		{"open fails", &recorder{openErr: syscall.EBUSY}, ModeRequired, "", 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			var failures []error
			w := New(Options{Mode: c.mode, Path: "/test/watchdog", Open: c.rec.open, Logger: slog.New(slog.NewTextHandler(&logs, nil)),
				OnRequiredFailure: func(err error) { failures = append(failures, err) }})
			w.AfterRound(t.Context(), report(t0, agent.Leading, cluster.RolePrimary, t0))
			if got := c.rec.take(); got != c.calls {
				t.Errorf("device calls %q, want %q", got, c.calls)
			}
			w.AfterRound(t.Context(), report(t0.Add(2*time.Second), agent.Leading, cluster.RolePrimary, t0.Add(2*time.Second)))
			if w.Armed() {
				t.Error("armed after a failure")
			}
			if len(failures) != c.required {
				t.Errorf("OnRequiredFailure called %d times, want %d (%v)", len(failures), c.required, failures)
			}
			if n := strings.Count(logs.String(), "not protected by the watchdog"); n != 1 {
				t.Errorf("failure logged %d times over two rounds, want once:\n%s", n, logs.String())
			}
		})
	}
}

// Timing too short for a watchdog: never armed; required says so.
func TestTimingTooShort(t *testing.T) {
	rec := &recorder{}
	var failures []error
	w := New(Options{Mode: ModeRequired, Path: "/test/watchdog", Open: rec.open, Logger: slog.New(slog.DiscardHandler), OnRequiredFailure: func(err error) { failures = append(failures, err) }})
	r := report(t0, agent.Leading, cluster.RolePrimary, t0)
	r.Config.TTL, r.Config.LoopWait, r.Config.RetryTimeout = cluster.Duration(5*time.Second), cluster.Duration(time.Second), cluster.Duration(3*time.Second)
	w.AfterRound(t.Context(), r)
	if got := rec.take(); got != "" || len(failures) != 1 || !errors.Is(failures[0], ErrTimingTooShort) {
		t.Errorf("fast profile, required: device calls %q, failures %v", got, failures)
	}
}
