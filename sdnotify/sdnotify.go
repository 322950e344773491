package sdnotify

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
)

// MinWatchdog is the least WatchdogSec= for cfg: 2 × (2 × ttl +
// primary_start_timeout + loop_wait). A working loop completes a round
// within the /liveness bound (2 × ttl + primary_start_timeout, see
// api.LivenessBound) plus loop_wait; with pings at most every half of
// WatchdogSec, two pings are then at most WatchdogSec/2 + that apart, which
// is below WatchdogSec when WatchdogSec/2 covers it. 104s with the default
// timing (ttl 10s, primary_start_timeout 30s, loop_wait 2s).
func MinWatchdog(cfg cluster.DynamicConfig) time.Duration {
	return 2 * (2*time.Duration(cfg.TTL) + time.Duration(cfg.PrimaryStartTimeout) + time.Duration(cfg.LoopWait))
}

// Notifier sends the agent's state to systemd (see the package comment).
// Its methods are safe for concurrent use.
type Notifier struct {
	log *slog.Logger
	// interval is WatchdogSec ($WATCHDOG_USEC), 0 without a watchdog.
	interval time.Duration

	mu         sync.Mutex
	ready      bool
	stopping   bool // STOPPING=1 sent
	lastPing   time.Time
	lastStatus string
	lastErr    string
	warnedFor  time.Duration // the MinWatchdog last warned about
}

// New reads $WATCHDOG_USEC (and $WATCHDOG_PID) as go-systemd's
// daemon.SdWatchdogEnabled does and returns a Notifier; a malformed value
// is logged and the watchdog ignored.
func New(log *slog.Logger) *Notifier {
	if log == nil {
		log = slog.Default()
	}
	interval, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		log.Error("systemd watchdog settings unreadable; not pinging it", "err", err)
		interval = 0
	}
	return &Notifier{log: log, interval: interval}
}

// WatchdogInterval is systemd's watchdog timeout for this service (0:
// none).
func (n *Notifier) WatchdogInterval() time.Duration { return n.interval }

// AfterRound sends READY=1 after the first round, STATUS when it changed,
// and WATCHDOG=1 when half of WatchdogSec has passed since the last ping.
func (n *Notifier) AfterRound(_ context.Context, r agent.RoundReport) {
	n.mu.Lock()
	defer n.mu.Unlock()
	switch r.Phase {
	case agent.PhaseStopped:
		n.send(n.stoppingOnce() + "STATUS=stopped")
		return
	case agent.PhaseStopping:
		n.send(n.stoppingOnce() + "STATUS=stopping the database")
		return
	case agent.PhaseFenced:
		// Not a round: no READY, no ping.
		if st := Status(r) + " (fenced)"; st != n.lastStatus {
			n.lastStatus = st
			n.send("STATUS=" + st)
		}
		return
	}
	n.checkInterval(r.Config)
	var msg string
	if st := Status(r); st != n.lastStatus {
		n.lastStatus = st
		msg = "STATUS=" + st + "\n"
	}
	if !n.ready {
		n.ready = true
		msg = "READY=1\n" + msg
	}
	if n.interval > 0 && (n.lastPing.IsZero() || r.At.Sub(n.lastPing) >= n.interval/2) {
		n.lastPing = r.At
		msg += "WATCHDOG=1\n"
	}
	if msg != "" {
		n.send(msg)
	}
}

// Stopping tells systemd the clean stop has begun (once: the agent's own
// PhaseStopping and PhaseStopped reports send it too if it has not been
// sent, so that it always comes before them).
func (n *Notifier) Stopping() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if msg := n.stoppingOnce(); msg != "" {
		n.send(msg + "STATUS=stopping (on_stop)")
	}
}

// stoppingOnce returns "STOPPING=1\n" the first time, then "".
func (n *Notifier) stoppingOnce() string {
	if n.stopping {
		return ""
	}
	n.stopping = true
	return "STOPPING=1\n"
}

// checkInterval warns (once per timing) when WatchdogSec is below
// MinWatchdog: systemd would then kill an agent whose rounds are slow but
// within the /liveness bound.
func (n *Notifier) checkInterval(cfg cluster.DynamicConfig) {
	want := MinWatchdog(cfg)
	if n.interval == 0 || n.interval >= want || n.warnedFor == want {
		return
	}
	n.warnedFor = want
	n.log.Warn("systemd's WatchdogSec is shorter than this timing needs: a slow but working agent may be killed; raise it",
		"watchdog_sec", n.interval, "want_at_least", want)
}

// send sends one notification; errors are logged once each.
func (n *Notifier) send(state string) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		if msg := err.Error(); msg != n.lastErr {
			n.lastErr = msg
			n.log.Warn("cannot notify systemd", "err", err)
		}
		return
	}
	n.lastErr = ""
}

// Status is the STATUS= line for r: role, leader and epoch, state.
func Status(r agent.RoundReport) string {
	lead := "no leader"
	switch {
	case r.Leadership == agent.Leading:
		lead = fmt.Sprintf("leader (epoch %d)", r.Epoch)
	case r.Leader != "" && r.Leader == r.Member:
		lead = fmt.Sprintf("leader key (epoch %d) not renewed in time", r.Epoch)
	case r.Leader != "":
		lead = fmt.Sprintf("following %s (epoch %d)", r.Leader, r.Epoch)
	}
	s := fmt.Sprintf("role %s, %s, state %s", r.Role, lead, r.State)
	if !r.StoreOK {
		s += ", etcd unreachable"
	}
	return s
}
