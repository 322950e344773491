// Command hamgrctl is the operator's command line for a hamgr cluster: it
// shows the cluster (list, history, config show) and asks for changes
// (switchover, failover, pause, resume, config set and edit) by writing
// them to etcd, where the hamgr agents act on them. Every request is
// validated by package operator, exactly as the agents' API does, so a
// refused request writes nothing. bootstrap reset, which only an operator
// may decide, releases the bootstrap claim of a new cluster nobody has led
// (dcs.ConfigStore.ResetBootstrap checks that in the same transaction).
//
// hamgrctl talks to etcd only, never to the agents or to PostgreSQL. It
// finds etcd through an agent's config file (--config, or the
// HAMGRCTL_CONFIG environment variable) or through --cluster and --etcd.
//
// Exit status: 0 on success, 1 when a request is refused or fails, 2 on a
// usage error (unknown command or flag, malformed argument).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], newEnv())
	stop()
	os.Exit(code)
}

// env is everything a command touches outside the store, so tests can
// replace it.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	// stdinTTY and stdoutTTY report whether stdin and stdout are terminals.
	stdinTTY, stdoutTTY bool
	getenv              func(string) string
	now                 func() time.Time
}

func newEnv() env {
	return env{
		stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr,
		stdinTTY: isTerminal(os.Stdin), stdoutTTY: isTerminal(os.Stdout),
		getenv: os.Getenv, now: time.Now,
	}
}

// isTerminal reports whether f is a terminal (not merely a character
// device: /dev/null is one too).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// usageError marks a mistake in the command line: exit status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// args wraps a cobra argument check so that its failure is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

// run executes the command line a and returns the exit status.
func run(ctx context.Context, a []string, e env) int {
	root, ap := newRoot(e)
	defer ap.close()
	root.SetArgs(a)
	root.SetIn(e.stdin)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	msg := strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", "; ")), " ")
	fmt.Fprintln(e.stderr, "hamgrctl:", msg)
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		return 2
	}
	return 1
}

// isCobraUsage recognizes the usage errors cobra makes itself (it has no
// error types for them).
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument",
		"invalid argument", "accepts ", "requires at least", "requires at most", "required flag"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func newRoot(e env) (*cobra.Command, *app) {
	a := &app{env: e}
	root := &cobra.Command{
		Use:   "hamgrctl",
		Short: "Operate a hamgr PostgreSQL cluster: status, switchover, failover, pause, config",
		Long: `hamgrctl shows and steers a hamgr PostgreSQL high-availability cluster.

It reads and writes the cluster's keys in etcd; the hamgr agents running
beside each PostgreSQL server act on what it writes. It never connects to
PostgreSQL or to the agents directly.

Tell it where the cluster is, either with an agent's config file:

    hamgrctl -c /etc/hamgr/hamgr.yml list
    export HAMGRCTL_CONFIG=/etc/hamgr/hamgr.yml   # then just: hamgrctl list

or with flags (which also override the file):

    hamgrctl --cluster main --etcd https://etcd1:2379,https://etcd2:2379 \
        --etcd-cacert ca.pem list

Safe to run at any time: list, history, config show, dsn (they only read).
Changes the cluster: switchover, failover, pause, resume, config set,
config edit, bootstrap reset. Each of those is checked against the
cluster's current state first; a refused request prints why and writes
nothing.

Exit status: 0 success, 1 refused or failed, 2 usage error.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cmd.Help()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	a.conn.register(root)
	root.AddCommand(a.listCmd(), a.switchoverCmd(), a.failoverCmd(), a.pauseCmd(true), a.pauseCmd(false),
		a.historyCmd(), a.configCmd(), a.bootstrapCmd(), a.dsnCmd(), a.fenceCmd())
	return root, a
}
