package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

func demoCmd() *cobra.Command {
	var binDir, dir string
	var keep, fast bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a local 3-node cluster with embedded etcd and watch a failover",
		Long: `Run a local three-member PostgreSQL cluster (an embedded etcd, and one
hamgr agent process per member), write to it continuously, kill the
primary's whole node (agent and every postgres process, as a dying host
would), and print a timeline of the failover. Everything is removed at the
end unless --keep is given.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), binDir, dir, keep, fast)
		},
	}
	c.Flags().StringVar(&binDir, "bin-dir", config.DefaultBinDir, "directory holding PostgreSQL's server binaries")
	c.Flags().StringVar(&dir, "dir", "", "working directory (default: a new temporary directory)")
	c.Flags().BoolVar(&keep, "keep", false, "keep the cluster running after the failover, until Ctrl-C")
	c.Flags().BoolVar(&fast, "fast", false, "use the fast timing profile (ttl 5s) instead of the defaults (ttl 10s)")
	return c
}

func runDemo(ctx context.Context, out io.Writer, binDir, dir string, keep, fast bool) error {
	for _, b := range config.PostgreSQLBinaries {
		if _, err := os.Stat(filepath.Join(binDir, b)); err != nil {
			return fmt.Errorf("PostgreSQL server binaries not found: %s is missing.\n"+
				"Install PostgreSQL 15 (Debian/Ubuntu: apt-get install postgresql-15) or pass --bin-dir DIR", filepath.Join(binDir, b))
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the hamgr binary: %w", err)
	}
	remove := false
	if dir == "" {
		if dir, err = os.MkdirTemp("", "hamgr-demo-"); err != nil {
			return err
		}
		remove = !keep
	}
	timing := localcluster.DefaultTiming
	if fast {
		timing = localcluster.FastTiming
	}
	say := func(format string, args ...any) {
		fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
	}
	say("starting embedded etcd and 3 members in %s (ttl %s, loop_wait %s)", dir, time.Duration(timing.TTL), time.Duration(timing.LoopWait))
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	c, err := localcluster.Start(sctx, localcluster.Options{
		Dir: dir, RemoveOnClose: remove, HamgrBin: self, BinDir: binDir, Timing: timing,
		Logger: slog.New(slog.DiscardHandler),
	})
	cancel()
	if err != nil {
		return fmt.Errorf("start the demo cluster (agent logs are in %s/n*/agent.log): %w", dir, err)
	}
	defer c.Close()
	printCluster(ctx, out, c)

	wopts := writeclient.Options{Hosts: c.Hosts(), User: "postgres", Password: c.SuperPassword, Table: "demo_writes",
		Logger: slog.New(slog.DiscardHandler)}
	w := writeclient.New(wopts)
	if err := w.Setup(ctx); err != nil {
		return fmt.Errorf("create the demo table: %w", err)
	}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	w.Start(wctx)
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	err = w.WaitAcked(actx, 100)
	acancel()
	if err != nil {
		return fmt.Errorf("writes do not flow: %w", err)
	}
	old, err := c.WaitLeader(ctx, "")
	if err != nil {
		return err
	}
	say("writing through target_session_attrs=read-write; %d writes acknowledged so far", w.Acked())
	say("killing %s: SIGKILL to its agent and every postgres process at once", old.Name)
	t0 := time.Now()
	old.KillNode()
	octx, ocancel := context.WithTimeout(ctx, 2*time.Minute)
	tl, err := c.ObserveFailover(octx, old.Name, t0)
	ocancel()
	if err != nil {
		return err
	}
	actx, acancel = context.WithTimeout(ctx, 30*time.Second)
	err = w.WaitAcked(actx, w.Acked()+50)
	acancel()
	res := w.Stop()
	if err != nil {
		return fmt.Errorf("writes did not resume after the failover: %w", err)
	}
	firstWrite := time.Duration(0)
	for _, g := range res.Gaps {
		if !t0.Before(g.Start) && !t0.After(g.End) {
			firstWrite = g.End.Sub(t0)
		}
	}
	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	missing, verr := writeclient.VerifyNoLoss(vctx, wopts, res.AckedIDs)
	vcancel()

	fmt.Fprintf(out, "\nFailover timeline (from the kill of %s):\n", old.Name)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  leader loss detected\t+%s\t(leader key of %s expired)\n", round(tl.Detected), old.Name)
	fmt.Fprintf(tw, "  new leader elected\t+%s\t(%s took the leader key, epoch %d)\n", round(tl.Elected), tl.New, tl.Epoch)
	fmt.Fprintf(tw, "  promoted\t+%s\t(%s answers /primary 200)\n", round(tl.Promoted), tl.New)
	fmt.Fprintf(tw, "  replica following\t+%s\t(the other replica streams from %s)\n", round(tl.Following), tl.New)
	fmt.Fprintf(tw, "  first write accepted\t+%s\t(write unavailability %s)\n", round(firstWrite), round(res.OutageAround(t0)))
	tw.Flush()
	switch {
	case verr != nil:
		fmt.Fprintf(out, "\ncould not verify acknowledged writes: %v\n", verr)
	default:
		fmt.Fprintf(out, "\n%d writes acknowledged, %d of them lost (asynchronous replication loses at most what had not reached a replica)\n",
			res.Acked, len(missing))
	}
	if hist, err := c.Store.History(ctx); err == nil && len(hist) > 0 {
		h := hist[len(hist)-1]
		fmt.Fprintf(out, "history: epoch %d %s %s -> %s: %s; steps:", h.Epoch, h.Kind, h.OldPrimary, h.NewPrimary, h.Reason)
		for _, s := range h.Steps {
			fmt.Fprintf(out, " %s %s", s.Name, round(time.Duration(s.Duration)))
		}
		fmt.Fprintln(out)
	}
	fmt.Fprintln(out)
	printCluster(ctx, out, c)
	if keep {
		fmt.Fprintf(out, "\nThe cluster keeps running (data in %s). Connect with:\n  psql 'host=127.0.0.1 port=%d,%d,%d user=postgres target_session_attrs=read-write' (password in %s)\nPress Ctrl-C to stop it.\n",
			dir, c.Nodes[0].PGPort, c.Nodes[1].PGPort, c.Nodes[2].PGPort, filepath.Join(dir, "superuser.password"))
		<-ctx.Done()
	}
	return nil
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

func printCluster(ctx context.Context, out io.Writer, c *localcluster.Cluster) {
	s, err := c.Snapshot(ctx)
	if err != nil {
		fmt.Fprintln(out, "cluster: cannot read etcd:", err)
		return
	}
	if err := writeClusterTable(out, s); err != nil && !errors.Is(err, io.EOF) {
		fmt.Fprintln(out, "cluster:", err)
	}
}

// writeClusterTable prints the members of a snapshot as a table.
func writeClusterTable(out io.Writer, s cluster.Snapshot) error {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tADDRESS\tTIMELINE\tLSN\tLAG\tUPSTREAM")
	for _, m := range s.Members {
		role := m.Role.String()
		if s.Leader != nil && s.Leader.Name == m.Name {
			role = fmt.Sprintf("leader (epoch %d)", s.Leader.Epoch)
		}
		lag := "-"
		if m.LagBytes >= 0 {
			lag = fmt.Sprintf("%d B", m.LagBytes)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%d\t%s\t%s\t%s\n", m.Name, role, m.State, m.ConnHost, m.ConnPort,
			m.Position.Timeline, m.Position.LSN, lag, m.Upstream)
	}
	return tw.Flush()
}
