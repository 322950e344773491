package watchdog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
)

// Mode is how the agent uses the watchdog (config key watchdog.mode).
type Mode int

// Modes.
const (
	// ModeOff never opens the device.
	ModeOff Mode = 1 + iota
	// ModeAutomatic arms the device while this member leads where it can,
	// and logs an error where it cannot.
	ModeAutomatic
	// ModeRequired refuses to lead without an armed device.
	ModeRequired
)

// String is the mode's name in the config file.
func (m Mode) String() string {
	switch m {
	case ModeOff:
		return "off"
	case ModeAutomatic:
		return "automatic"
	case ModeRequired:
		return "required"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Margin is how long before the lease can expire the device must have
// fired: the reset itself, a driver's rounding, the store's clock running a
// little faster than this machine's.
const Margin = time.Second

// ErrTimingTooShort is returned by Timeout when the timing leaves no
// watchdog timeout that both fires before the lease expires and outlasts
// the loop's rhythm.
var ErrTimingTooShort = errors.New("timing too short for a watchdog")

// Timeout is the device's timeout for cfg (see the package comment):
// ttl - loop_wait - retry_timeout/2 - Margin, rounded down to whole
// seconds, which must exceed loop_wait + Margin.
func Timeout(cfg cluster.DynamicConfig) (time.Duration, error) {
	ttl, lw, rt := time.Duration(cfg.TTL), time.Duration(cfg.LoopWait), time.Duration(cfg.RetryTimeout)
	t := (ttl - lw - rt/2 - Margin).Truncate(time.Second)
	if t <= lw+Margin {
		return 0, fmt.Errorf("%w: ttl %s, loop_wait %s, retry_timeout %s give a timeout of %s (ttl - loop_wait - retry_timeout/2 - %s), which must exceed loop_wait + %s; raise ttl",
			ErrTimingTooShort, ttl, lw, rt, max(t, 0), Margin, Margin)
	}
	return t, nil
}

// KickSafe reports whether a kick at now with timeout t lets the device
// fire at least Margin before the lease renewed at lastRenewSent can
// expire (see the package comment).
func KickSafe(now, lastRenewSent time.Time, t time.Duration, cfg cluster.DynamicConfig) bool {
	if lastRenewSent.IsZero() {
		return false
	}
	return !now.Add(t).After(lastRenewSent.Add(time.Duration(cfg.TTL) - Margin))
}

// Options configure a Watchdog.
type Options struct {
	Mode Mode
	// Path is the device (DefaultDevice).
	Path string
	// Open opens the device (default Open). Tests pass a double.
	Open   Opener
	Logger *slog.Logger
	// OnRequiredFailure is called once, in ModeRequired, when this member
	// leads and the device cannot be armed (or kept armed); the caller
	// stops the agent. The error says why.
	OnRequiredFailure func(error)
}

// Watchdog arms, kicks and disarms the device as the agent's rounds
// report (it implements agent.RoundObserver). Its methods are safe for
// concurrent use.
type Watchdog struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	dev      Device        // nil: disarmed
	timeout  time.Duration // in effect on dev
	failed   bool          // OnRequiredFailure was called
	lastAt   time.Time     // the latest report's time
	lastErr  string
	lastSkip string
}

// New returns a Watchdog; it opens nothing until a round reports this
// member leading.
func New(opts Options) *Watchdog {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Open == nil {
		opts.Open = Open
	}
	if opts.Path == "" {
		opts.Path = DefaultDevice
	}
	return &Watchdog{opts: opts, log: opts.Logger.With("watchdog", opts.Path)}
}

// Armed reports whether the device is open (armed).
func (w *Watchdog) Armed() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.dev != nil
}

// AfterRound arms, kicks or disarms the device for r (see the package
// comment).
func (w *Watchdog) AfterRound(_ context.Context, r agent.RoundReport) {
	if w.opts.Mode == ModeOff {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if r.Phase == agent.PhaseRound && r.At.Before(w.lastAt) {
		// Made before a report already acted on (the fence timer's
		// runs beside the loop): stale, it must not re-arm.
		return
	}
	w.lastAt = r.At
	switch {
	case r.Phase == agent.PhaseStopping:
		// The database stop that follows finishes without the agent;
		// kicks cannot go on while it runs.
		w.disarm("the agent is stopping the database")
	case r.Phase == agent.PhaseStopped:
		w.disarm("the agent stopped")
	case r.Phase == agent.PhaseFenced:
		w.disarm("the fence stopped the database")
	case r.Leadership == agent.Leading:
		w.lead(r)
	case r.Role == cluster.RolePrimary && r.DBRunning:
		if w.dev != nil {
			w.skip(r, "this member no longer leads but its database still answers as a primary: not kicking; the machine resets unless the database stops first")
		}
	default:
		w.disarm("this member no longer leads")
	}
}

// lead arms the device if it is not, adapts its timeout to the timing,
// and kicks it, each only when KickSafe.
func (w *Watchdog) lead(r agent.RoundReport) {
	t, err := Timeout(r.Config)
	if err != nil {
		w.fail(r, err)
		return
	}
	if !KickSafe(r.At, r.LastRenewSent, t, r.Config) {
		w.skip(r, "the lease's last renewal is too old to cover another watchdog period: not kicking",
			"renewal_age", r.At.Sub(r.LastRenewSent).Round(time.Millisecond))
		return
	}
	w.lastSkip = ""
	if w.dev == nil {
		if err := w.arm(t); err != nil {
			w.fail(r, err)
			return
		}
		w.lastErr = ""
		w.log.Info("watchdog armed: the machine resets if this primary's agent stops kicking it", "timeout", t, "epoch", r.Epoch)
		return
	}
	if t != w.timeout {
		got, err := w.dev.SetTimeout(t)
		if err == nil && got > t {
			err = fmt.Errorf("the device took a timeout of %s for %s", got, t)
		}
		if err != nil {
			w.fail(r, fmt.Errorf("watchdog: new timing: %w", err))
			return
		}
		w.timeout = got
		w.log.Info("watchdog timeout changed with the timing", "timeout", got)
	}
	if err := w.dev.Keepalive(); err != nil {
		w.fail(r, err)
	}
}

// arm opens the device and sets its timeout; a device that would fire
// later than t (its timeout not settable) is disarmed again.
func (w *Watchdog) arm(t time.Duration) error {
	dev, err := w.opts.Open(w.opts.Path)
	if err != nil {
		return err
	}
	got, err := dev.SetTimeout(t)
	if err == nil && got > t {
		err = fmt.Errorf("watchdog %s: the device took a timeout of %s for %s", w.opts.Path, got, t)
	}
	if err == nil {
		err = dev.Keepalive()
	}
	if err != nil {
		if derr := dev.Disarm(); derr != nil {
			err = errors.Join(err, derr)
		}
		return err
	}
	w.dev, w.timeout = dev, got
	return nil
}

// fail handles a device that cannot be armed or kicked while this member
// leads: logged once per distinct error; in ModeRequired the caller is
// told (once) to stop leading.
func (w *Watchdog) fail(r agent.RoundReport, err error) {
	if msg := err.Error(); msg != w.lastErr {
		w.lastErr = msg
		w.log.Error("watchdog: this primary is not protected by the watchdog", "mode", w.opts.Mode, "epoch", r.Epoch, "err", err)
	}
	if w.opts.Mode == ModeRequired && !w.failed && w.opts.OnRequiredFailure != nil {
		w.failed = true
		w.opts.OnRequiredFailure(err)
	}
}

// skip logs (once per reason, until a kick or a disarm) why a round did
// not kick the device.
func (w *Watchdog) skip(r agent.RoundReport, why string, attrs ...any) {
	if why == w.lastSkip {
		return
	}
	w.lastSkip = why
	w.log.Warn("watchdog: "+why, append([]any{"epoch", r.Epoch, "timeout", w.timeout}, attrs...)...)
}

// disarm does the magic close, if the device is armed.
func (w *Watchdog) disarm(why string) {
	w.lastSkip, w.lastErr = "", ""
	if w.dev == nil {
		return
	}
	dev := w.dev
	w.dev, w.timeout = nil, 0
	if err := dev.Disarm(); err != nil {
		w.log.Error("watchdog: could not disarm; the machine will reset", "why", why, "err", err)
		return
	}
	w.log.Info("watchdog disarmed", "why", why)
}
