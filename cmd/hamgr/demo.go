//go:build !agentonly

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	var o demoOptions
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run a local 3-node cluster with embedded etcd and watch a failover",
		Long: `Run a local three-member PostgreSQL cluster (an embedded etcd, and one
hamgr agent process per member), write to it continuously, kill the
primary's whole node (agent and every postgres process, as a dying host
would), and print a timeline of the failover. Everything is removed at the
end unless --keep (or --dir) is given; --keep leaves the cluster running
until Ctrl-C and prints how to use it (config files, etcd, API token,
hamgrctl, curl and psql command lines). --engine mariadb does the same
with three MariaDB servers (the system's mariadbd), writing as a user
without READ_ONLY ADMIN to the first member whose read_only is off.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, cmd.OutOrStdout(), o)
		},
	}
	c.Flags().StringVar(&o.BinDir, "bin-dir", config.DefaultBinDir, "directory holding PostgreSQL's server binaries")
	c.Flags().StringVar(&o.Dir, "dir", "", "working directory (default: a new temporary directory)")
	c.Flags().BoolVar(&o.Keep, "keep", false, "keep the cluster running after the failover, until Ctrl-C, and print how to use it")
	c.Flags().BoolVar(&o.Fast, "fast", false, "use the fast timing profile (ttl 5s) instead of the defaults (ttl 10s)")
	c.Flags().StringVar(&o.Engine, "engine", "postgresql", "database engine: postgresql (PostgreSQL 15 from --bin-dir) or mariadb (the system's "+mariadbServer+")")
	return c
}

// mariadbServer is the MariaDB server `hamgr demo --engine mariadb` runs.
const mariadbServer = "/usr/sbin/mariadbd"

// demoEngine resolves --engine and checks that its server is installed.
func demoEngine(o demoOptions) (localcluster.Engine, error) {
	switch o.Engine {
	case "", "postgresql":
		for _, b := range config.PostgreSQLBinaries {
			if _, err := os.Stat(filepath.Join(o.BinDir, b)); err != nil {
				return 0, fmt.Errorf("PostgreSQL server binaries not found: %s is missing.\n"+
					"Install PostgreSQL 15 (Debian/Ubuntu: apt-get install postgresql-15) or pass --bin-dir DIR", filepath.Join(o.BinDir, b))
			}
		}
		return localcluster.EnginePostgreSQL, nil
	case "mariadb":
		if _, err := os.Stat(mariadbServer); err != nil {
			return 0, fmt.Errorf("MariaDB server not found: %s is missing.\n"+
				"Install MariaDB 10.6 or later (Debian/Ubuntu: apt-get install mariadb-server)", mariadbServer)
		}
		return localcluster.EngineMariaDB, nil
	}
	return 0, fmt.Errorf("--engine %q: want postgresql or mariadb", o.Engine)
}

// demoOptions are the demo's command-line settings.
type demoOptions struct {
	// BinDir holds PostgreSQL's server binaries; Dir is the working
	// directory ("" for a new temporary one, removed at the end unless Keep).
	BinDir, Dir string
	// Keep leaves the cluster running until ctx ends; Fast selects
	// localcluster.FastTiming.
	Keep, Fast bool
	// Engine is --engine: "postgresql" (or "") or "mariadb".
	Engine string
}

// runDemo starts the cluster, fails it over, prints what happened and,
// with o.Keep, how to use the cluster, which it leaves running until ctx
// ends.
func runDemo(ctx context.Context, out io.Writer, o demoOptions) error {
	engine, err := demoEngine(o)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find the hamgr binary: %w", err)
	}
	remove := false
	if o.Dir == "" {
		if o.Dir, err = os.MkdirTemp("", "hamgr-demo-"); err != nil {
			return fmt.Errorf("create the demo's directory: %w", err)
		}
		remove = !o.Keep
	}
	timing := localcluster.DefaultTiming
	if o.Fast {
		timing = localcluster.FastTiming
	}
	sayf(out, "starting embedded etcd and 3 members in %s (ttl %s, loop_wait %s)", o.Dir, time.Duration(timing.TTL), time.Duration(timing.LoopWait))
	sctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	c, err := localcluster.Start(sctx, localcluster.Options{
		Dir: o.Dir, RemoveOnClose: remove, HamgrBin: self, BinDir: o.BinDir, Timing: timing,
		APIToken: randomToken(), Logger: slog.New(slog.DiscardHandler), Engine: engine,
	})
	cancel()
	if err != nil {
		return fmt.Errorf("start the demo cluster (agent logs are in %s/n*/agent.log): %w", o.Dir, err)
	}
	defer c.Close()
	printCluster(ctx, out, c)

	rep, err := failOver(ctx, out, c, engine)
	if rep != nil {
		if perr := writeFailoverReport(out, *rep); perr != nil {
			return perr
		}
	}
	if err != nil {
		return err
	}
	printCluster(ctx, out, c)
	if !o.Keep {
		return nil
	}
	if err := writeKeepInstructions(out, keepInfoOf(ctx, c, o.Dir, self, o.BinDir, engine)); err != nil {
		return err
	}
	<-ctx.Done()
	sayf(out, "stopping the cluster (its files stay in %s)", o.Dir)
	return nil
}

// failOver writes to the cluster through the write client, kills the
// primary's node and reports what the observer and the write client saw.
// The report is nil when there was no failover to report.
func failOver(ctx context.Context, out io.Writer, c *localcluster.Cluster, engine localcluster.Engine) (*failoverReport, error) {
	wopts := writeclient.Options{Hosts: c.Hosts(), User: "postgres", Password: c.SuperPassword, Table: "demo_writes",
		Logger: slog.New(slog.DiscardHandler)}
	how, server := "through target_session_attrs=read-write", "postgres"
	if engine == localcluster.EngineMariaDB {
		user, pw, err := demoAppUser(ctx, c)
		if err != nil {
			return nil, err
		}
		wopts.Engine, wopts.User, wopts.Password = writeclient.MySQL, user, pw
		how, server = "to the first member with read_only off, as "+user, "mysqld"
	}
	w := writeclient.New(wopts)
	if err := w.Setup(ctx); err != nil {
		return nil, fmt.Errorf("create the demo table: %w", err)
	}
	w.Start(ctx)
	defer w.Stop()
	actx, acancel := context.WithTimeout(ctx, 30*time.Second)
	err := w.WaitAcked(actx, 100)
	acancel()
	if err != nil {
		return nil, fmt.Errorf("writes do not flow: %w", err)
	}
	old, err := c.WaitLeader(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("find the primary to kill: %w", err)
	}
	sayf(out, "writing %s; %d writes acknowledged so far", how, w.Acked())
	sayf(out, "killing %s: SIGKILL to its agent and every %s process at once", old.Name, server)
	t0 := time.Now()
	old.KillNode()
	octx, ocancel := context.WithTimeout(ctx, 2*time.Minute)
	tl, err := c.ObserveFailover(octx, old.Name, t0)
	ocancel()
	if err != nil {
		return nil, fmt.Errorf("watch the failover: %w", err)
	}
	actx, acancel = context.WithTimeout(ctx, 30*time.Second)
	resumeErr := w.WaitAcked(actx, w.Acked()+50)
	acancel()
	res := w.Stop()
	rep := &failoverReport{Timeline: tl, Writes: outageAfterKill(res.Gaps, t0), Members: map[int]string{}, Acked: res.Acked}
	for _, n := range c.Nodes {
		rep.Members[n.PGPort] = n.Name
	}
	if resumeErr != nil {
		return rep, fmt.Errorf("writes did not resume after the failover to %s: %w", tl.New, resumeErr)
	}
	vctx, vcancel := context.WithTimeout(ctx, 10*time.Second)
	missing, verr := writeclient.VerifyNoLoss(vctx, wopts, res.AckedIDs)
	vcancel()
	rep.Missing, rep.VerifyErr = len(missing), verr
	rep.History = failoverHistory(ctx, c, tl.Epoch)
	return rep, nil
}

// historyWait bounds the wait for the failover's history entry, which the
// new leader writes as the last step of its promotion, after it took
// writes.
const historyWait = 10 * time.Second

// failoverHistory waits (up to historyWait) for the history entry of the
// failover to epoch and returns it, else the latest entry, else nil.
func failoverHistory(ctx context.Context, c *localcluster.Cluster, epoch cluster.Epoch) *cluster.HistoryEntry {
	var latest *cluster.HistoryEntry
	hctx, cancel := context.WithTimeout(ctx, historyWait)
	defer cancel()
	_ = localcluster.Poll(hctx, 100*time.Millisecond, func() bool {
		qctx, qcancel := context.WithTimeout(hctx, 2*time.Second)
		hist, err := c.Store.History(qctx)
		qcancel()
		if err != nil || len(hist) == 0 {
			return false
		}
		latest = &hist[len(hist)-1]
		return latest.Epoch >= epoch
	})
	return latest
}

// sayf prints one progress line, prefixed with the time of day.
func sayf(out io.Writer, format string, args ...any) {
	fmt.Fprintf(out, "%s  "+format+"\n", append([]any{time.Now().Format("15:04:05.000")}, args...)...)
}

// randomToken returns a new random API bearer token (32 hex characters).
func randomToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails on Linux
	return hex.EncodeToString(b)
}

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
	fmt.Fprintln(tw, "MEMBER\tROLE\tSTATE\tADDRESS\tTIMELINE\tLSN/GTID\tLAG\tUPSTREAM")
	for _, m := range s.Members {
		role := m.Role.String()
		if s.Leader != nil && s.Leader.Name == m.Name {
			role = fmt.Sprintf("leader (epoch %d)", s.Leader.Epoch)
		}
		lag := "-"
		if m.LagBytes >= 0 {
			lag = fmt.Sprintf("%d B", m.LagBytes)
			if e := m.Position.Engine(); e == cluster.EngineMariaDB || e == cluster.EngineMySQL {
				lag = fmt.Sprintf("%d %s", m.LagBytes, e.LagUnit())
			}
		}
		pos := "-\t" + m.Position.String() // a GTID set
		if t, lsn, ok := m.Position.PostgreSQL(); ok || m.Position.IsZero() {
			pos = fmt.Sprintf("%d\t%s", t, lsn)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s:%d\t%s\t%s\t%s\n", m.Name, role, m.State, m.ConnHost, m.ConnPort,
			pos, lag, m.Upstream)
	}
	return tw.Flush()
}
