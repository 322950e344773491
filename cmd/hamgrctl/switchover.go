package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
)

// errAborted is returned when the user does not confirm.
var errAborted = errors.New("aborted: nothing was written")

// confirm asks question on the terminal unless force is set. Without a
// terminal on stdin it refuses rather than guess.
func (a *app) confirm(question string, force bool) error {
	if force {
		return nil
	}
	if !a.stdinTTY {
		return errors.New("stdin is not a terminal, so there is no one to confirm; pass --force to proceed without confirmation (nothing was written)")
	}
	fmt.Fprintf(a.stdout, "%s [y/N] ", question)
	line, err := bufio.NewReader(a.stdin).ReadString('\n')
	if err != nil && line == "" {
		fmt.Fprintln(a.stdout)
		return errAborted
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return nil
	}
	return errAborted
}

func (a *app) switchoverCmd() *cobra.Command {
	var to, at string
	var force, cancel, wait bool
	var waitTimeout time.Duration
	c := &cobra.Command{
		Use:   "switchover [--to MEMBER] [--at TIME] [--force] [--wait=false] | --cancel",
		Short: "Move the primary role to a replica, now or at a set time, without losing data",
		Long: `Move the primary role from the current leader to a healthy replica.

Use it for planned work on the primary's host (upgrades, reboots, moving
hardware). The leader stops PostgreSQL with a fast shutdown (every session
is disconnected), records its final WAL position and releases the leader
key; the target takes the key only once it has received everything up to
that position, then promotes. Nothing acknowledged is lost; writes are
unavailable for a few seconds. The old primary then follows the new one
as a replica.

  --to MEMBER   the replica to hand over to; without it the leader picks
                the best streaming, caught-up replica not tagged nofailover
  --at TIME     schedule it: an RFC 3339 time (2025-03-01T02:30:00+01:00)
                or HH:MM / HH:MM:SS for today in local time (an error if
                that time has passed today). hamgrctl returns at once; the
                leader acts at that time. A schedule survives hamgrctl
                exiting: it is kept in etcd until done or cancelled.
  --cancel      drop a pending (scheduled or not yet started) switchover or
                failover request. A switchover whose handoff has started
                cannot be cancelled.
  --force       do not ask for confirmation (needed without a terminal)
  --wait        wait (up to --wait-timeout) until the new leader holds the
                key and runs as primary, and print the result (default on)

The request is checked before anything is written: it is refused when
there is no leader (see failover), another request is pending, or the
target is not a running replica streaming from the leader within
maximum_lag_on_failover. The leader checks again when it acts and drops
the request, with a reason in 'hamgrctl list', if things changed.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if cancel {
				if to != "" || at != "" {
					return usagef("--cancel takes no --to or --at")
				}
				return a.cancelRequest(ctx)
			}
			var when time.Time
			if at != "" {
				t, err := parseAt(at, a.now())
				if err != nil {
					return usageError{err}
				}
				when = t
			}
			op, err := a.operator()
			if err != nil {
				return err
			}
			snap, err := a.load(ctx)
			if err != nil {
				return err
			}
			from, target := "the leader", to
			var oldEpoch cluster.Epoch
			if snap.Leader != nil {
				from, oldEpoch = snap.Leader.Name, snap.Leader.Epoch
			}
			if target == "" {
				target = "the best replica"
			}
			q := fmt.Sprintf("Switch over from %s to %s now?", from, target)
			if !when.IsZero() {
				q = fmt.Sprintf("Switch over from %s to %s at %s (in %s)?", from, target,
					when.Format("2006-01-02 15:04:05 MST"), when.Sub(a.now()).Round(time.Second))
			}
			if err := a.confirm(q, force); err != nil {
				return err
			}
			rctx, done := a.reqCtx(ctx)
			r, err := op.Switchover(rctx, to, when)
			done()
			if err != nil {
				return a.storeErr(err)
			}
			if !when.IsZero() {
				fmt.Fprintf(a.stdout, "Scheduled: switchover from %s to %s at %s.\nThe leader acts at that time; cancel before then with: hamgrctl switchover --cancel\n",
					r.From, targetOrBest(to), when.Format("2006-01-02 15:04:05 MST"))
				return nil
			}
			fmt.Fprintf(a.stdout, "Requested: switchover from %s to %s.\n", r.From, r.To)
			if !wait {
				fmt.Fprintln(a.stdout, "Not waiting (--wait=false); follow it with: hamgrctl list --watch")
				return nil
			}
			return a.waitLeaderChange(ctx, "switchover", r.From, oldEpoch, to, waitTimeout)
		},
	}
	f := c.Flags()
	f.StringVar(&to, "to", "", "member to hand over to (default: the best replica)")
	f.StringVar(&at, "at", "", "when: RFC 3339, or HH:MM[:SS] today in local time (default: now)")
	f.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	f.BoolVar(&cancel, "cancel", false, "cancel the pending request instead")
	f.BoolVar(&wait, "wait", true, "wait for the new leader and print the result")
	f.DurationVar(&waitTimeout, "wait-timeout", 60*time.Second, "how long --wait waits")
	return c
}

func targetOrBest(to string) string {
	if to == "" {
		return "the best replica"
	}
	return to
}

func (a *app) cancelRequest(ctx context.Context) error {
	op, err := a.operator()
	if err != nil {
		return err
	}
	rctx, done := a.reqCtx(ctx)
	defer done()
	r, err := op.Cancel(rctx)
	if err != nil {
		return a.storeErr(err)
	}
	fmt.Fprintf(a.stdout, "Cancelled: %s.\n", describeRequest(&r, a.now()))
	return nil
}

func (a *app) failoverCmd() *cobra.Command {
	var to, confirmDown string
	var force, wait bool
	var waitTimeout time.Duration
	c := &cobra.Command{
		Use:   "failover --to MEMBER [--confirm-down OLD] [--force] [--wait=false]",
		Short: "Promote a chosen replica when there is no healthy primary",
		Long: `Make MEMBER the new primary when the cluster has no healthy primary.

Use it when automatic failover did not happen and you have decided which
replica should take over: the cluster is paused, or no replica was caught
up enough (maximum_lag_on_failover), or you want a specific member.
It is refused while a healthy primary holds the leader key — use
switchover for planned changes, it loses nothing.

What is and is not checked: MEMBER must be a running replica and not
tagged nofailover. The lag limit is NOT applied: WAL the old primary had
and MEMBER lacks is lost, and the old primary will need a re-clone or
pg_rewind if it comes back with it. The fencing rule still holds: MEMBER
promotes only once there is proof that the old primary takes no writes (a
refused connection, a read-only answer, or the replicas' WAL streams gone
silent while its agent could still fence it).

When there is no such proof (the old primary's machine vanished after the
replicas' agents restarted, or its agent was dead before its machine went
silent) and you know it cannot write (you powered it off, or cut it off),
say so with --confirm-down OLD, naming the old primary: the promotion then
relies on your word, recorded in the history. It is still refused while the
old primary answers as a writable primary.

It asks for confirmation unless --force is given (needed without a
terminal), then waits (--wait, up to --wait-timeout) for the new leader.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, err := a.operator()
			if err != nil {
				return err
			}
			snap, err := a.load(ctx)
			if err != nil {
				return err
			}
			var oldEpoch cluster.Epoch
			old := ""
			if snap.Leader != nil {
				oldEpoch, old = snap.Leader.Epoch, snap.Leader.Name
			} else if snap.LastLeader != nil {
				oldEpoch, old = snap.LastLeader.Epoch, snap.LastLeader.Name
			}
			q := fmt.Sprintf("Fail over to %s? It is promoted even if it lags behind the old primary: WAL it lacks is lost.", to)
			if confirmDown != "" {
				q += fmt.Sprintf(" You confirm that %s can no longer take writes: if it can, two primaries take writes.", confirmDown)
			}
			if err := a.confirm(q, force); err != nil {
				return err
			}
			rctx, done := a.reqCtx(ctx)
			err = op.Failover(rctx, to, confirmDown)
			done()
			if err != nil {
				return a.storeErr(err)
			}
			fmt.Fprintf(a.stdout, "Requested: failover to %s.\n", to)
			if !wait {
				fmt.Fprintln(a.stdout, "Not waiting (--wait=false); follow it with: hamgrctl list --watch")
				return nil
			}
			return a.waitLeaderChange(ctx, "failover", old, oldEpoch, to, waitTimeout)
		},
	}
	f := c.Flags()
	f.StringVar(&to, "to", "", "the replica to promote (required)")
	f.StringVar(&confirmDown, "confirm-down", "", "the old primary, which you confirm can no longer take writes (powered off, cut off)")
	f.BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	f.BoolVar(&wait, "wait", true, "wait for the new leader and print the result")
	f.DurationVar(&waitTimeout, "wait-timeout", 60*time.Second, "how long --wait waits")
	_ = c.MarkFlagRequired("to")
	return c
}

// load reads one snapshot within --timeout.
func (a *app) load(ctx context.Context) (cluster.Snapshot, error) {
	s, err := a.open()
	if err != nil {
		return cluster.Snapshot{}, err
	}
	rctx, done := a.reqCtx(ctx)
	defer done()
	snap, err := s.Load(rctx)
	if err != nil {
		return snap, a.storeErr(fmt.Errorf("read the cluster: %w", err))
	}
	return snap, nil
}

// waitLeaderChange waits until a leadership newer than oldEpoch holds the
// key and its member runs as primary, then prints who and how long it took.
// It fails when the request disappears with the leader unchanged (the
// leader refused it) or when the old leader takes the role back.
func (a *app) waitLeaderChange(ctx context.Context, kind, old string, oldEpoch cluster.Epoch, want string, timeout time.Duration) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var last cluster.Snapshot
	var lastErr error
	droppedSeen := 0
	var lastReason string
	for {
		snap, err := a.load(ctx)
		if err == nil {
			last, lastErr = snap, nil
			if l := snap.Leader; l != nil && l.Epoch > oldEpoch {
				m := snap.Member(l.Name)
				if m != nil && m.Role == cluster.RolePrimary && m.State == cluster.StateRunning {
					took := time.Since(start).Round(10 * time.Millisecond)
					if l.Name == old {
						return fmt.Errorf("%s failed: %s took the primary role back (epoch %d) after %s; see 'hamgrctl list' and its agent's log", kind, old, l.Epoch, took)
					}
					fmt.Fprintf(a.stdout, "Done: %s is the new leader (epoch %d), was %s; took %s.\n", l.Name, l.Epoch, dash(old), took)
					if want != "" && l.Name != want {
						fmt.Fprintf(a.stdout, "Note: %s was asked for, but %s took over.\n", want, l.Name)
					}
					fmt.Fprintln(a.stdout, "Check the others follow it with: hamgrctl list")
					return nil
				}
			}
			if l := snap.Leader; l != nil && l.Epoch == oldEpoch && snap.Request == nil {
				if m := snap.Member(l.Name); m != nil && m.Reason != "" {
					lastReason = m.Reason
				}
				// Two reads in a row: the leader dropped the request.
				if droppedSeen++; droppedSeen >= 2 {
					why := "see its agent's log"
					if lastReason != "" {
						why = "its agent says: " + lastReason
					}
					return fmt.Errorf("%s did not happen: the request was dropped and %s still leads (epoch %d); %s", kind, l.Name, l.Epoch, why)
				}
			} else {
				droppedSeen = 0
			}
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return fmt.Errorf("no new leader seen within %s (last read failed: %v); check with hamgrctl list", timeout, lastErr)
			}
			state := "no leader"
			if l := last.Leader; l != nil {
				state = fmt.Sprintf("%s leads at epoch %d", l.Name, l.Epoch)
			}
			return fmt.Errorf("no new leader within %s (%s; request: %s); the request may still complete: check with hamgrctl list",
				timeout, state, describeRequest(last.Request, a.now()))
		case <-tick.C:
		}
	}
}
