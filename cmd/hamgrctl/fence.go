package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/fromconfig"
)

// fenceCmd is hamgrctl fence: the operator powers a member off through the
// driver that the fencing section of an agent's config file gives for it,
// and records the fence in etcd.
//
// Why hamgrctl uses the driver itself rather than asking an agent to:
// an operator fences when the cluster is in trouble — no leader, the old
// primary neither proven dead nor answering, agents dead or hung — which
// is exactly when there may be no live agent to serve a request, and a
// request nobody serves is worse than an error. The fence has to work
// with etcd and a BMC alone; the result is written to etcd so that the
// agents act on it (a fenced last leader is proof for the election and
// never leads again under that record).
func (a *app) fenceCmd() *cobra.Command {
	var yes bool
	c := &cobra.Command{
		Use:   "fence MEMBER [--yes]",
		Short: "Power a member's machine off through its BMC and record it",
		Long: `Power MEMBER's machine off through the fencing driver that the fencing
section of the agent config file given by the global --config (or
$HAMGRCTL_CONFIG: the agents' hamgr.yml, which holds the BMC addresses and
password files, so run this where that file is) gives for MEMBER, read the power state back, and record the fence in
etcd (fenced/MEMBER and a history entry of kind fence).

When MEMBER is the last leader (the primary whose key expired, or the
current primary), the record is tied to its epoch: the candidates count
the confirmed power-off as proof that it takes no writes (evidence
"fenced") and elect a new primary, and MEMBER's agent, when its machine
comes back, never takes the key back or runs its database as a primary;
it waits for the new leader and rejoins as a replica. Use it when the
cluster reports old_primary_not_proven_dead or old_primary_writable.

Fencing the current primary stops every write until a replica is promoted
(about ttl). It asks for confirmation unless --yes is given (needed
without a terminal). Nothing is recorded when the power-off cannot be
confirmed.`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, argv []string) error {
			path := a.conn.configPath
			if path == "" {
				path = a.getenv(configEnv)
			}
			if path == "" {
				return usagef("fence needs an agent config file (--config FILE or $%s) whose fencing section says how to power %s off", configEnv, argv[0])
			}
			return a.fence(cmd.Context(), argv[0], path, yes)
		},
	}
	c.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	c.Flags().BoolVarP(&yes, "force", "f", false, "the same as --yes (as for the other commands that ask)")
	return c
}

// fence runs hamgrctl fence target.
func (a *app) fence(ctx context.Context, target, cfgPath string, yes bool) error {
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return err
	}
	m, ok := cfg.Fencing.Members[target]
	if !ok {
		return fmt.Errorf("%s has no fencing.members.%s (configured: %s): nothing was done", cfgPath, target, strings.Join(cfg.Fencing.Names(), ", "))
	}
	snap, err := a.load(ctx)
	if err != nil {
		return err
	}
	q := fmt.Sprintf("Power off %s's machine now (%s, %s)? Its agent and database stop at once, without a clean shutdown.", target, m.Driver, fenceWhere(m))
	if snap.Leader != nil && snap.Leader.Name == target {
		q += fmt.Sprintf(" %s is the current primary (epoch %d): writes stop until a replica is promoted.", target, snap.Leader.Epoch)
	}
	if err := a.confirm(q, yes); err != nil {
		return err
	}
	fencer, err := fromconfig.Build(config.Fencing{Members: map[string]config.FenceMember{target: m}}, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	start := a.now()
	fctx, cancel := context.WithTimeout(ctx, m.FenceTimeout()+5*time.Second)
	t := stonith.Target{Name: target}
	if mr := snap.Member(target); mr != nil {
		t.Host, t.Port = mr.ConnHost, mr.ConnPort
	}
	conf, err := fencer.Fence(fctx, t)
	cancel()
	if err != nil {
		return fmt.Errorf("fence %s: %w (nothing was recorded)", target, err)
	}
	f := cluster.FenceOutcome{Target: target, Driver: conf.Method, Result: cluster.FenceConfirmed, Detail: conf.Detail,
		Attempts: 1, At: a.now().UTC(), Duration: cluster.Duration(a.now().Sub(start)), By: requester()}
	fmt.Fprintf(a.stdout, "Fenced %s: %s.\n", target, conf)
	if err := a.recordFence(ctx, f); err != nil {
		return fmt.Errorf("%s is powered off, but the fence could not be recorded in etcd: %w", target, err)
	}
	return nil
}

// fenceWhere says where the driver of m reaches the machine.
func fenceWhere(m config.FenceMember) string {
	switch {
	case m.Address != "":
		return "BMC " + m.Address
	case m.Command != "":
		return "command " + m.Command
	}
	return "agent " + m.Agent
}

// recordFence records f, tied to the last leader's epoch when f's target
// is the last leader; a leadership change in between is read again, at
// most three times.
func (a *app) recordFence(ctx context.Context, f cluster.FenceOutcome) error {
	s, err := a.open()
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		snap, err := a.load(ctx)
		if err != nil {
			return err
		}
		f.Epoch = 0
		if ll := snap.LastLeader; ll != nil && ll.Name == f.Target {
			f.Epoch = ll.Epoch
		}
		rctx, done := a.reqCtx(ctx)
		err = s.RecordFence(rctx, f, snap.Revision)
		done()
		switch {
		case err == nil:
			if f.Epoch > 0 {
				fmt.Fprintf(a.stdout, "Recorded: %s, the last leader (epoch %d), is fenced; a replica may now be elected, and %s will not lead again under that epoch.\n",
					f.Target, f.Epoch, f.Target)
			} else {
				fmt.Fprintf(a.stdout, "Recorded: %s is fenced.\n", f.Target)
			}
			return nil
		case errors.Is(err, dcs.ErrEpochChanged) && attempt < 2:
			continue
		default:
			return a.storeErr(err)
		}
	}
}
