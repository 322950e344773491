package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/operator"
)

func (a *app) bootstrapCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "bootstrap",
		Short: "Recover a new cluster whose first member never started it",
		Long: `Recover the bootstrap of a new cluster.

The first agent to start claims the bootstrap (etcd's initialize key),
creates the first database and takes the leader key; the others wait for
that leader and clone it. If the claimant's first start fails, its agent
retries by itself. If the claimant is gone for good before anyone led (its
machine died), the others wait forever: 'bootstrap reset' releases its
claim so that another member bootstraps the cluster.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	c.AddCommand(a.bootstrapResetCmd())
	return c
}

func (a *app) bootstrapResetCmd() *cobra.Command {
	var force bool
	c := &cobra.Command{
		Use:   "reset [--force]",
		Short: "Release the bootstrap claim of a member that never led, so another bootstraps",
		Long: `Release the bootstrap claim of a new cluster that has never had a leader.

Use it when the member that claimed the bootstrap is gone for good (its
machine died, its disk is lost) before its first database ever ran as
leader, and the other members wait for a leader to clone from ('hamgrctl
list' shows them stopped with "waiting for a leader to clone from").

It says which member claimed the bootstrap, asks for confirmation unless
--force is given (needed without a terminal), and deletes the claim in one
etcd transaction that succeeds only if the claim is still that member's
and nobody has ever led the cluster. Within a loop_wait one of the other
members claims the bootstrap and creates the first database; the rest
clone it. The new claimant writes the dynamic config of its own config
file over the one in etcd.

The claimant's data directory may then hold a database no other member
has (the one its initdb created): empty it before its agent starts again,
or it cannot follow the new leader.

Refused, changing nothing: once the cluster has had a leader (a reset
would bootstrap a second database over its data), when no member has
claimed the bootstrap, while the claimant's agent is running (it retries
by itself; stop it first), and when the claim changed meanwhile.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.resetBootstrap(cmd.Context(), force)
		},
	}
	c.Flags().BoolVarP(&force, "force", "f", false, "do not ask for confirmation")
	return c
}

// resetBootstrap checks the claim, shows it, confirms and releases it.
func (a *app) resetBootstrap(ctx context.Context, force bool) error {
	s, err := a.open()
	if err != nil {
		return err
	}
	snap, err := a.load(ctx)
	if err != nil {
		return err
	}
	if err := a.resetRefusal(ctx, snap); err != nil {
		return err
	}
	claimant := snap.Initialized
	fmt.Fprintf(a.stdout, "Cluster %s: %s claimed the bootstrap and nobody has led the cluster yet; %s's agent is not running (it has no member record).\n",
		a.target.Cluster, claimant, claimant)
	fmt.Fprintln(a.stdout, waitingMembers(snap))
	q := fmt.Sprintf("Release %s's bootstrap claim, so that another member creates the cluster's first database? The database in %s's data directory is then abandoned.",
		claimant, claimant)
	if err := a.confirm(q, force); err != nil {
		return err
	}
	rctx, done := a.reqCtx(ctx)
	cur, err := s.ResetBootstrap(rctx, claimant)
	done()
	switch {
	case errors.Is(err, dcs.ErrLeaderExisted):
		// A leader appeared since the snapshot: say which, from a new one.
		if now, lerr := a.load(ctx); lerr == nil {
			if rerr := a.resetRefusal(ctx, now); rerr != nil {
				return rerr
			}
		}
		return fmt.Errorf("%w: a leader appeared meanwhile (%v) — nothing was changed", operator.ErrRefused, err)
	case errors.Is(err, dcs.ErrNotClaimed):
		return fmt.Errorf("%w: %s's bootstrap claim was released meanwhile (another reset?) — nothing was changed; see hamgrctl list", operator.ErrRefused, claimant)
	case errors.Is(err, dcs.ErrClaimChanged):
		return fmt.Errorf("%w: the bootstrap claim changed meanwhile: %s holds it now, not %s — nothing was changed; run hamgrctl bootstrap reset again to see the cluster as it is",
			operator.ErrRefused, cur, claimant)
	case err != nil:
		return a.storeErr(fmt.Errorf("release the bootstrap claim of %s: %w", claimant, err))
	}
	a.printResetNext(snap, claimant)
	return nil
}

// resetRefusal says why the claim in snap must not be released, or nil.
func (a *app) resetRefusal(ctx context.Context, snap cluster.Snapshot) error {
	if snap.Leader != nil || snap.LastLeader != nil {
		return ledRefusal(snap, nil)
	}
	s, err := a.open()
	if err != nil {
		return err
	}
	rctx, done := a.reqCtx(ctx)
	hist, err := s.History(rctx)
	done()
	if err != nil {
		return a.storeErr(fmt.Errorf("read the history: %w", err))
	}
	if len(hist) > 0 {
		return ledRefusal(snap, hist)
	}
	if snap.Initialized == "" {
		return fmt.Errorf("%w: nothing to reset: no member has claimed the bootstrap of cluster %s (the first agent to start claims it; or is the cluster name or prefix wrong?) — nothing was changed",
			operator.ErrRefused, a.target.Cluster)
	}
	if m := snap.Member(snap.Initialized); m != nil {
		state := string(m.State)
		if m.Reason != "" {
			state += ": " + m.Reason
		}
		ttl := "the ttl"
		if snap.Config != nil {
			ttl = fmt.Sprintf("the ttl, %s", time.Duration(snap.Config.TTL))
		}
		return fmt.Errorf("%w: %s's agent is running (its member record is live; state %s): it retries the bootstrap by itself and would claim it again for its own database. "+
			"Fix what stops its database (its state and log say why), or stop its agent and run this again once its member record is gone (within %s) — nothing was changed",
			operator.ErrRefused, m.Name, state, ttl)
	}
	return nil
}

// ledRefusal is the refusal for a cluster that has had a leader, naming
// the latest one the store knows of (hist is read only when neither leader
// nor last_leader exists).
func ledRefusal(snap cluster.Snapshot, hist []cluster.HistoryEntry) error {
	var who string
	var epoch cluster.Epoch
	switch {
	case snap.Leader != nil:
		who, epoch = snap.Leader.Name+", holding the leader key now", snap.Leader.Epoch
	case snap.LastLeader != nil:
		who, epoch = "last leader "+snap.LastLeader.Name, snap.LastLeader.Epoch
	case len(hist) > 0:
		e := hist[len(hist)-1]
		who, epoch = "recorded in the history: "+e.NewPrimary, e.Epoch
	}
	return fmt.Errorf("%w: the cluster has led since epoch %d (%s); a reset would bootstrap a second database over it — nothing was changed",
		operator.ErrRefused, epoch, who)
}

// waitingMembers describes the members other than the claimant.
func waitingMembers(snap cluster.Snapshot) string {
	var parts []string
	for _, m := range snap.Members {
		if m.Name == snap.Initialized {
			continue
		}
		p := m.Name + " (" + string(m.State)
		if m.Reason != "" {
			p += ": " + m.Reason
		}
		parts = append(parts, p+")")
	}
	if len(parts) == 0 {
		return "No other member's agent is running now."
	}
	return "Other members: " + strings.Join(parts, "; ") + "."
}

// printResetNext tells the operator what happens after the release of
// claimant's claim and what to do.
func (a *app) printResetNext(snap cluster.Snapshot, claimant string) {
	loop := "a loop_wait"
	if snap.Config != nil {
		loop = fmt.Sprintf("a loop_wait (%s)", time.Duration(snap.Config.LoopWait))
	}
	fmt.Fprintf(a.stdout, "Released %s's bootstrap claim of cluster %s.\nNext:\n", claimant, a.target.Cluster)
	// resetRefusal made sure the claimant has no member record: every
	// member listed is another one.
	if len(snap.Members) > 0 {
		fmt.Fprintf(a.stdout, "  - The other members bootstrap the cluster by themselves within %s: the first to claim it creates the first database and takes the leader key, the others clone it. Follow it with: hamgrctl list --watch\n", loop)
	} else {
		fmt.Fprintln(a.stdout, "  - No other member's agent is running: the first one to start bootstraps the cluster, the others clone it. Follow it with: hamgrctl list --watch")
	}
	fmt.Fprintf(a.stdout, "  - Before %s's agent starts again, empty its data directory: it may hold a database no other member has, which cannot follow the new leader "+
		"(pg_rewind refuses a database of another system; it is re-cloned only with postgresql.reclone_on_rewind_failure). Empty, it clones the new leader.\n", claimant)
	fmt.Fprintln(a.stdout, "  - The new claimant writes the dynamic config of its own config file over the one in etcd: check it afterwards with hamgrctl config show.")
}
