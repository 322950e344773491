package mysql

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/db"
)

// server is one mysqld process, started by us or adopted.
type server struct {
	pid  int
	cmd  *exec.Cmd     // nil when adopted
	done chan struct{} // closed when the process has exited
	err  error         // the child's exit status, set before done closes
	// stopping is set when Stop signalled the process, so its exit is
	// logged as expected rather than as a crash.
	stopping atomic.Bool
}

func (s *server) alive() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// running returns the live server, adopting one that an earlier
// incarnation of the agent started, or nil when none runs.
func (m *MySQL) running() *server {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil && m.srv.alive() {
		return m.srv
	}
	pid, ok := m.liveServer()
	if !ok {
		return nil
	}
	s := &server{pid: pid, done: make(chan struct{})}
	m.srv = s
	m.log.Info("adopted running server", "pid", pid)
	go m.watchAdopted(s)
	return s
}

// liveServer reads the pid file and reports its pid when that process is
// alive and is a server on this data directory.
func (m *MySQL) liveServer() (int, bool) { return liveServerOn(m.opts.DataDir) }

// liveServerOn reads datadir's pid file and reports its pid when that
// process is alive and is a server on datadir.
func liveServerOn(datadir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(datadir, "mysqld.pid"))
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("--datadir="+datadir+"\x00")) {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	st := procState(pid)
	return st != 0 && st != 'Z' && st != 'X'
}

// procState is the state letter of /proc/pid/stat (0 when unreadable).
func procState(pid int) byte {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 || i+2 >= len(stat) {
		return 0
	}
	return stat[i+2]
}

// watchAdopted polls an adopted server every 100 ms until it dies or Close.
func (m *MySQL) watchAdopted(s *server) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-m.closed:
			return
		case <-t.C:
			if !processAlive(s.pid) {
				close(s.done)
				m.logExit(s, "adopted server gone")
				m.notifyExit(time.Now())
				return
			}
		}
	}
}

func (m *MySQL) logExit(s *server, status string) {
	if s.stopping.Load() {
		m.log.Info("server stopped", "pid", s.pid, "status", status)
	} else {
		m.log.Warn("server exited unexpectedly", "pid", s.pid, "status", status)
	}
}

// binaryFlavour tells the flavour of ServerBin from its --version.
func (m *MySQL) binaryFlavour(ctx context.Context) (Flavour, error) {
	out, err := exec.CommandContext(ctx, m.opts.ServerBin, "--version").Output()
	if err != nil {
		return 0, fmt.Errorf("%s --version: %w", m.opts.ServerBin, err)
	}
	if bytes.Contains(bytes.ToLower(out), []byte("mariadb")) {
		return FlavourMariaDB, nil
	}
	return FlavourMySQL, nil
}

// binaryDialect tells the flavour and version of ServerBin from its
// --version (BinaryDialect).
func (m *MySQL) binaryDialect(ctx context.Context) (Dialect, error) {
	out, err := exec.CommandContext(ctx, m.opts.ServerBin, "--version").Output()
	if err != nil {
		return Dialect{}, fmt.Errorf("%s --version: %w", m.opts.ServerBin, err)
	}
	d, err := BinaryDialect(string(out))
	if err != nil {
		return Dialect{}, fmt.Errorf("%s --version: %w", m.opts.ServerBin, err)
	}
	return d, nil
}

// BinaryDialect reads the flavour and version from a server binary's
// --version output ("mariadbd  Ver 10.11.6-MariaDB-0+deb12u1 for
// debian-linux-gnu on x86_64 (Debian 12)", "mysqld  Ver 8.0.36 for Linux
// on x86_64 (MySQL Community Server - GPL)").
func BinaryDialect(out string) (Dialect, error) {
	_, rest, ok := strings.Cut(out, " Ver ")
	if !ok {
		return Dialect{}, fmt.Errorf("version output %q: no \"Ver\"", strings.TrimSpace(out))
	}
	return DetectDialect(strings.TrimSpace(rest), out)
}

// serverArgs is the server command line. Every server starts read-only
// and without its replication threads: StartPrimary and StartReplica
// make it writable or start replication once it answers, so a restarted
// server never takes writes or applies events before the agent decided.
// The binary log holds every transaction (log_slave_updates), which the
// GTID position of a MariaDB member relies on (cluster.MariaDBPosition).
// Semi-sync starts off on both sides (SemiSyncServerOptions, last, so no
// parameter overrides them).
func (m *MySQL) serverArgs(d Dialect, datadir string) []string {
	o := m.opts
	args := []string{"--no-defaults",
		"--datadir=" + datadir, "--socket=" + o.Socket, "--port=" + strconv.Itoa(o.Port),
		"--bind-address=" + o.ListenHost, "--pid-file=" + filepath.Join(datadir, "mysqld.pid"),
		"--server-id=" + strconv.FormatUint(uint64(o.ServerID), 10),
		"--log-bin=mysql-bin", "--binlog-format=ROW", "--skip-name-resolve",
	}
	if d.Flavour == FlavourMariaDB {
		args = append(args, "--log-slave-updates", "--gtid-strict-mode=1", "--skip-slave-start", "--read-only=1")
	} else {
		args = append(args, "--log-replica-updates", "--gtid-mode=ON", "--enforce-gtid-consistency=ON",
			"--skip-replica-start", "--super-read-only=ON")
	}
	args = append(args, m.parameterArgs()...)
	return append(args, d.SemiSyncServerOptions()...)
}

// parameterArgs are Options.Parameters as --name=value, in name order.
func (m *MySQL) parameterArgs() []string {
	names := make([]string, 0, len(m.opts.Parameters))
	for k := range m.opts.Parameters {
		names = append(names, k)
	}
	sort.Strings(names)
	args := make([]string, 0, len(names))
	for _, k := range names {
		args = append(args, "--"+k+"="+m.opts.Parameters[k])
	}
	return args
}

// errorLines are the lines of a tool's output that report errors, or its
// last n lines when none does.
func errorLines(out string, n int) string {
	var errs []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "ERROR") || strings.Contains(l, "[ERROR]") {
			errs = append(errs, l)
		}
	}
	if len(errs) == 0 {
		return lastLines(out, n)
	}
	return lastLines(strings.Join(errs, "\n"), n)
}

// startServer starts mysqld on DataDir as a child process. The caller
// holds opMu and has checked that no server runs.
func (m *MySQL) startServer(ctx context.Context, extra ...string) (*server, error) {
	return m.startServerOn(ctx, m.opts.DataDir, extra...)
}

// startServerOn starts mysqld on datadir (DataDir, or the staging
// directory of Initialize and Clone).
func (m *MySQL) startServerOn(ctx context.Context, datadir string, extra ...string) (*server, error) {
	d, err := m.binaryDialect(ctx)
	if err != nil {
		return nil, err
	}
	if err := m.mkdirOwned(filepath.Dir(m.opts.Socket)); err != nil {
		return nil, err
	}
	logf, err := m.openLog()
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	m.dropConn()
	cmd := exec.Command(m.opts.ServerBin, append(m.serverArgs(d, datadir), extra...)...)
	cmd.Dir = datadir
	cmd.Stdout, cmd.Stderr = logf, logf
	// Like PostgreSQL's postmaster: in the agent's process group, and not
	// tied to the agent's life (a restarted agent adopts it).
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: m.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", filepath.Base(m.opts.ServerBin), err)
	}
	s := &server{pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	m.log.Info("started server", "pid", s.pid, "port", m.opts.Port)
	go func() {
		s.err = cmd.Wait()
		close(s.done)
		m.logExit(s, fmt.Sprint(s.err))
		m.notifyExit(time.Now())
	}()
	m.mu.Lock()
	m.srv = s
	m.mu.Unlock()
	return s, nil
}

// waitAnswering waits until the server answers a query, or fails when it
// exits or ctx ends.
func (m *MySQL) waitAnswering(ctx context.Context, s *server) error {
	var lastErr error
	for {
		if !s.alive() {
			return m.exitError(s)
		}
		pool, _, err := m.localDB(ctx)
		if err == nil {
			if err = pool.PingContext(ctx); err == nil {
				return nil
			}
		}
		if isErrno(err, 1045) { // access denied: waiting will not help
			return fmt.Errorf("server (pid %d) refuses the agent's account: %w", s.pid, err)
		}
		lastErr = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("server (pid %d) not answering: %w (last: %v)", s.pid, ctx.Err(), lastErr)
		case <-s.done:
			return m.exitError(s)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (m *MySQL) exitError(s *server) error {
	status := "exited"
	if s.err != nil {
		status = s.err.Error()
	}
	return fmt.Errorf("server (pid %d) %s during start; last lines of %s:\n%s", s.pid, status, m.opts.LogFile, m.logTail(10))
}

// Stop timing.
const (
	// killGrace is how long StopImmediate and an unreacting fence wait
	// for the process to be gone after SIGKILL.
	killGrace = 2 * time.Second
	// fenceMargin is how long before ctx's deadline a fence stops waiting
	// for a clean shutdown and kills the server.
	fenceMargin = 200 * time.Millisecond
	// fenceDefault is a fence's wait without a deadline.
	fenceDefault = time.Second
)

// Stop stops the server. StopFast sends SIGTERM (a clean shutdown) and
// waits until the process is gone or ctx ends (an error). StopImmediate
// sends SIGKILL: InnoDB recovers on the next start, and nothing is
// acknowledged after the signal. StopFence sends SIGTERM (the server
// ends client sessions at once and refuses new ones) and kills it at once
// if it is suspended, else shortly before ctx's deadline. A stopped
// server is not an error.
func (m *MySQL) Stop(ctx context.Context, mode db.StopMode) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.stop(ctx, mode)
}

func (m *MySQL) stop(ctx context.Context, mode db.StopMode) error {
	s := m.running()
	if s == nil {
		return nil
	}
	defer m.dropConn()
	s.stopping.Store(true)
	switch mode {
	case db.StopFast:
		m.signal(s, syscall.SIGTERM)
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return m.errorf("stop", "server (pid %d) still running: %w", s.pid, ctx.Err())
		}
	case db.StopImmediate:
		return m.waitOrKill(ctx, s, time.Now())
	case db.StopFence:
		if procState(s.pid) == 'T' {
			m.log.Error("server is suspended; killing it", "pid", s.pid)
			return m.waitOrKill(ctx, s, time.Now())
		}
		m.signal(s, syscall.SIGTERM)
		deadline := time.Now().Add(fenceDefault)
		if dl, ok := ctx.Deadline(); ok {
			deadline = dl.Add(-fenceMargin)
		}
		return m.waitOrKill(ctx, s, deadline)
	}
	return m.errorf("stop", "unknown stop mode %d", mode)
}

func (m *MySQL) signal(s *server, sig syscall.Signal) {
	m.log.Info("stopping server", "pid", s.pid, "signal", sig.String())
	_ = syscall.Kill(s.pid, sig)
}

// waitOrKill waits for s to exit until deadline (or ctx's end), then
// kills it and waits for it to be gone.
func (m *MySQL) waitOrKill(ctx context.Context, s *server, deadline time.Time) error {
	if d := time.Until(deadline); d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-s.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
		}
	}
	m.signal(s, syscall.SIGKILL)
	select {
	case <-s.done:
		return nil
	case <-time.After(killGrace):
		return m.errorf("stop", "server (pid %d) survived SIGKILL", s.pid)
	}
}

// Suspend sends SIGSTOP to the server (one process): it acknowledges
// nothing until Resume, or Stop.
func (m *MySQL) Suspend(context.Context) error { return m.signalServer(syscall.SIGSTOP) }

// Resume sends SIGCONT to the server.
func (m *MySQL) Resume(context.Context) error { return m.signalServer(syscall.SIGCONT) }

func (m *MySQL) signalServer(sig syscall.Signal) error {
	s := m.running()
	if s == nil {
		return nil
	}
	if err := syscall.Kill(s.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return m.errorf("signal", "pid %d: %v", s.pid, err)
	}
	m.log.Info("signalled the server", "signal", sig.String(), "pid", s.pid)
	return nil
}

// command returns a command that runs as the data dir owner: a client
// tool of ToolDir, or the binary at an absolute path.
func (m *MySQL) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	if !filepath.IsAbs(name) {
		name = filepath.Join(m.opts.ToolDir, name)
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: m.cred}
	return cmd
}

func (m *MySQL) chown(path string) error {
	if m.cred == nil {
		return nil
	}
	return os.Lchown(path, int(m.cred.Uid), int(m.cred.Gid))
}

// mkdirOwned creates dir (parents left to root) owned by the data dir
// owner; an existing dir is left as it is.
func (m *MySQL) mkdirOwned(dir string) error {
	if exists(dir) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, 0o750); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := m.chown(dir); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}

func (m *MySQL) openLog() (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(m.opts.LogFile), 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	f, err := os.OpenFile(m.opts.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return f, nil
}

// logTail returns the last n lines of LogFile.
func (m *MySQL) logTail(n int) string {
	f, err := os.Open(m.opts.LogFile)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	const max = 64 << 10
	if fi, err := f.Stat(); err == nil && fi.Size() > max {
		_, _ = f.Seek(fi.Size()-max, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	return lastLines(string(b), n)
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
