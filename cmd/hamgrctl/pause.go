package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

func (a *app) pauseCmd(pause bool) *cobra.Command {
	var wait bool
	var waitTimeout time.Duration
	use, short, long := "pause", "Suspend automatic failover (maintenance mode)", `Suspend automatic failover.

While paused, the agents keep running and keep managing their databases:
a replica whose PostgreSQL stops is restarted, the primary's PostgreSQL is
restarted in place if it stops, and a switchover or failover you ask for
still happens. What stops is the automatic election: if the leader key
expires (the primary's host or agent dies), no replica takes over until
you resume or run 'hamgrctl failover --to MEMBER'.

Use it before maintenance that may make the primary look dead (network
work, etcd maintenance, restarting the primary's agent). Remember to
resume: a paused cluster does not heal itself. 'hamgrctl list' shows
"Paused: yes" while it lasts.

With --wait, hamgrctl waits until every member has published a record
after the change (each agent has then read it; that compares the agents'
clocks to this host's).`
	if !pause {
		use, short, long = "resume", "Re-enable automatic failover after pause", `Re-enable automatic failover after 'hamgrctl pause'.

From the next agent loop round on, a lost leader key is followed by an
election as usual. If there is no leader at the moment you resume, the
replicas hold an election right away (the most advanced caught-up one
wins). Check 'hamgrctl list' first if you paused because of a problem.

With --wait, hamgrctl waits until every member has published a record
after the change.`
	}
	c := &cobra.Command{
		Use:   use + " [--wait]",
		Short: short,
		Long:  long,
		Args:  args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			op, err := a.operator()
			if err != nil {
				return err
			}
			written := a.now()
			rctx, done := a.reqCtx(ctx)
			if pause {
				err = op.Pause(rctx)
			} else {
				err = op.Resume(rctx)
			}
			done()
			if err != nil {
				return a.storeErr(err)
			}
			if wait {
				if err := a.waitMembersSeen(ctx, written, waitTimeout); err != nil {
					return err
				}
			}
			snap, err := a.load(ctx)
			if err != nil {
				return err
			}
			paused := snap.Config != nil && snap.Config.Paused
			if paused {
				fmt.Fprintf(a.stdout, "Cluster %s is paused: automatic failover is suspended until 'hamgrctl resume'.\n", a.target.Cluster)
			} else {
				fmt.Fprintf(a.stdout, "Cluster %s is not paused: automatic failover is on.\n", a.target.Cluster)
			}
			if paused != pause {
				return fmt.Errorf("the config says paused=%t, not %t: someone changed it at the same time", paused, pause)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&wait, "wait", false, "wait until every member has published a record after the change")
	c.Flags().DurationVar(&waitTimeout, "wait-timeout", 30*time.Second, "how long --wait waits")
	return c
}

// waitMembersSeen waits until every live member's record is newer than t.
func (a *app) waitMembersSeen(ctx context.Context, t time.Time, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	var behind []string
	for {
		if snap, err := a.load(ctx); err == nil {
			behind = behind[:0]
			for _, m := range snap.Members {
				if !m.UpdatedAt.After(t) {
					behind = append(behind, m.Name)
				}
			}
			if len(behind) == 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("written, but not every member published a record since within %s (still waiting for %v)", timeout, behind)
		case <-tick.C:
		}
	}
}
