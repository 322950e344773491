package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/sdnotify"
	"github.com/hamgr/hamgr/watchdog"
)

// exitWatchdogRequired is the exit status of an agent that stopped because
// watchdog.mode is required and the device could not be armed while it led
// (EX_CONFIG of sysexits.h). The example unit's RestartPreventExitStatus
// keeps systemd from restarting it into the same failure, and another
// failover.
const exitWatchdogRequired = 78

// errWatchdogRequired is the cause of such a stop.
var errWatchdogRequired = errors.New("watchdog.mode is required but the watchdog could not be armed on this primary; the agent handed over and stopped")

// exitError is an error with the process exit status it calls for.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitStatus is the exit status for err from a command: 0 for nil, an
// exitError's own, else 1.
func exitStatus(err error) int {
	if err == nil {
		return 0
	}
	if e, ok := errors.AsType[*exitError](err); ok {
		return e.code
	}
	return 1
}

// lifecycle builds the agent's observers: the systemd notifier (READY,
// STATUS, WATCHDOG, and STOPPING once ctx ends) and, unless watchdog.mode
// is off, the watchdog device, opened with open (watchdog.Open). It
// returns the tags the member advertises: with mode required and no usable
// device, nofailover, so that it is never elected. stop is called, with
// errWatchdogRequired in its cause, when a required device cannot be armed
// on a leader (the agent then stops as on_stop says).
func lifecycle(ctx context.Context, cfg *config.Config, log *slog.Logger, open watchdog.Opener, stop context.CancelCauseFunc) ([]agent.RoundObserver, cluster.Tags, error) {
	tags := cfg.Tags.Cluster()
	n := sdnotify.New(log)
	if iv := n.WatchdogInterval(); iv > 0 {
		log.Info("systemd watchdog enabled: pinged after the loop's rounds", "watchdog_sec", iv, "want_at_least", sdnotify.MinWatchdog(cfg.Dynamic()))
	}
	go func() {
		<-ctx.Done()
		n.Stopping()
	}()
	w := cfg.Watchdog
	mode := watchdogMode(w.Mode)
	if mode == watchdog.ModeOff {
		return []agent.RoundObserver{n}, tags, nil
	}
	if _, err := watchdog.Timeout(cfg.Dynamic()); err != nil {
		if mode == watchdog.ModeRequired {
			return nil, tags, fmt.Errorf("watchdog.mode: required: %w", err)
		}
		log.Error("watchdog: the timing leaves no safe timeout; the watchdog stays unarmed while it does", "err", err)
	}
	if err := watchdog.Check(w.Device); err != nil {
		if mode == watchdog.ModeRequired {
			tags.NoFailover = true
			log.Error("WATCHDOG REQUIRED BUT NOT USABLE: this member advertises nofailover and will never be elected primary until the device is fixed and the agent restarted",
				"device", w.Device, "err", err)
		} else {
			log.Warn("watchdog: no usable device; a primary on this machine is not protected by one", "device", w.Device, "err", err)
		}
	} else {
		log.Info("watchdog device found; armed while this member is the primary", "device", w.Device, "mode", mode)
	}
	wd := watchdog.New(watchdog.Options{
		Mode: mode, Path: w.Device, Open: open, Logger: log,
		OnRequiredFailure: func(err error) {
			log.Error("WATCHDOG REQUIRED BUT NOT ARMED on this primary: stopping the agent (a primary hands over first)", "err", err)
			stop(fmt.Errorf("%w: %w", errWatchdogRequired, err))
		},
	})
	// The watchdog first: its kick is the one with a deadline.
	return []agent.RoundObserver{wd, n}, tags, nil
}

// watchdogMode maps the config file's watchdog.mode to the package's.
func watchdogMode(s string) watchdog.Mode {
	switch s {
	case config.WatchdogAutomatic:
		return watchdog.ModeAutomatic
	case config.WatchdogRequired:
		return watchdog.ModeRequired
	}
	return watchdog.ModeOff
}
