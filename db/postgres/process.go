package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/db"
)

// server is one postmaster process, started by us or adopted.
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

// running returns the live server, adopting one that another agent (or an
// earlier incarnation of this one) started, or nil when none runs.
func (p *Postgres) running() *server {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.srv != nil && p.srv.alive() {
		return p.srv
	}
	pid, ok := p.livePostmaster()
	if !ok {
		return nil
	}
	s := &server{pid: pid, done: make(chan struct{})}
	p.srv = s
	p.log.Info("adopted running server", "pid", pid)
	go p.watchAdopted(s)
	return s
}

// livePostmaster reads postmaster.pid and reports its pid when that process
// is alive and is a postgres process.
func (p *Postgres) livePostmaster() (int, bool) {
	b, err := os.ReadFile(p.path("postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || !processAlive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte("postgres")) {
		return 0, false
	}
	return pid, true
}

// processAlive reports whether pid exists and is not a zombie.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// Format: pid (comm) state ...; comm may hold spaces and parentheses.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}

// watchAdopted polls an adopted server every 100 ms until it dies or Close.
func (p *Postgres) watchAdopted(s *server) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.closed:
			return
		case <-t.C:
			if !processAlive(s.pid) {
				close(s.done)
				p.logExit(s, "adopted server gone")
				p.notifyExit(time.Now())
				return
			}
		}
	}
}

func (p *Postgres) logExit(s *server, status string) {
	if s.stopping.Load() {
		p.log.Info("server stopped", "pid", s.pid, "status", status)
	} else {
		p.log.Warn("server exited unexpectedly", "pid", s.pid, "status", status)
	}
}

// serverArgs is the postgres command line: identity first, then the
// replication settings and Parameters (which may override the defaults
// that are not reserved) in name order.
func (p *Postgres) serverArgs() []string {
	o := p.opts
	args := []string{"-D", o.DataDir,
		"-c", "port=" + strconv.Itoa(o.Port),
		"-c", "listen_addresses=" + o.ListenHost,
		"-c", "unix_socket_directories=" + o.SocketDir,
		"-c", "cluster_name=" + o.Name,
	}
	// wal_retrieve_retry_interval: a replica whose WAL receiver failed
	// (upstream down, or its slot not created yet on a new primary)
	// retries after this long; PostgreSQL's default is 5s.
	//
	// wal_receiver_timeout (reserved, see ReceiverTimeout): a replica's
	// receiver pings a silent sender after half of it and drops the
	// connection after all of it, so on a live primary, even an idle one
	// whose agent is frozen, the last message is never older than about
	// half of it. That is what makes a silent stream evidence for the
	// liveness rule (detector.OldPrimary).
	settings := map[string]string{
		"hot_standby": "on", "wal_level": "replica", "max_wal_senders": "10",
		"max_replication_slots": "10", "wal_log_hints": "on", "wal_keep_size": "128MB",
		"wal_retrieve_retry_interval": "1s",
		"max_slot_wal_keep_size":      o.MaxSlotWALKeepSize,
		"wal_receiver_timeout":        strconv.Itoa(int(ReceiverTimeout/time.Millisecond)) + "ms",
	}
	for k, v := range o.Parameters {
		settings[k] = v
	}
	names := make([]string, 0, len(settings))
	for k := range settings {
		names = append(names, k)
	}
	sort.Strings(names)
	for _, k := range names {
		args = append(args, "-c", k+"="+settings[k])
	}
	return args
}

// startServer starts the postmaster as a child process. The caller holds
// opMu and has checked that no server runs.
func (p *Postgres) startServer(ctx context.Context) (*server, error) {
	if err := p.reapOrphans(ctx); err != nil {
		return nil, err
	}
	if p.opts.SocketDir != "" {
		if err := p.mkdirOwned(p.opts.SocketDir, 0o755); err != nil {
			return nil, err
		}
	}
	logf, err := p.openLog()
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(p.bin("postgres"), p.serverArgs()...)
	cmd.Dir = p.opts.DataDir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	// No Setpgid (stay in the agent's process group) and no Pdeathsig
	// (survive the agent's death): see the package comment.
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	s := &server{pid: cmd.Process.Pid, cmd: cmd, done: make(chan struct{})}
	p.log.Info("started server", "pid", s.pid, "port", p.opts.Port)
	go func() {
		s.err = cmd.Wait()
		close(s.done)
		p.logExit(s, fmt.Sprint(s.err))
		p.notifyExit(time.Now())
	}()
	p.mu.Lock()
	p.srv = s
	p.mu.Unlock()
	return s, nil
}

// orphanGrace is how long backends of a dead postmaster get to notice its
// death and exit before they are killed.
const orphanGrace = 2 * time.Second

// reapOrphans waits until no process of a previous, dead postmaster (a
// postgres process whose working directory is DataDir) is left: they keep
// its shared memory attached, and a new postmaster then refuses to start
// ("pre-existing shared memory block is still in use"). Backends exit on
// their own soon after their postmaster dies; those still there after
// orphanGrace are sent SIGKILL. The caller has checked no postmaster runs.
func (p *Postgres) reapOrphans(ctx context.Context) error {
	start := time.Now()
	killed := false
	for {
		pids := p.orphans()
		if len(pids) == 0 {
			p.clearStaleLock()
			return nil
		}
		if !killed && time.Since(start) > orphanGrace {
			p.log.Warn("killing processes left by a dead server", "pids", fmt.Sprint(pids))
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			killed = true
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("processes %v of a dead server still use %s: %w", pids, p.opts.DataDir, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// clearStaleLock removes postmaster.pid when the process it names is not
// a live postgres: a zombie (a killed postmaster its new parent has not
// reaped yet — init reaps late, or not at all in a container without one)
// or an unrelated process that reused the pid. PostgreSQL's own check
// (kill(pid, 0)) takes either for a running postmaster and refuses to
// start, or to finish pg_rewind's crash recovery, although nothing uses
// the data directory. The caller has checked that no process of a
// previous server is left (orphans); a live postmaster is never touched.
func (p *Postgres) clearStaleLock() {
	b, err := os.ReadFile(p.path("postmaster.pid"))
	if err != nil {
		return
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || pid <= 0 || syscall.Kill(pid, 0) != nil {
		return // PostgreSQL itself ignores a lock naming no process
	}
	if _, live := p.livePostmaster(); live {
		return
	}
	if err := os.Remove(p.path("postmaster.pid")); err != nil {
		p.log.Warn("cannot remove the stale postmaster.pid", "pid", pid, "err", err)
		return
	}
	p.log.Info("removed a stale postmaster.pid: the process it names is not a live postgres (a zombie, or its pid was reused)", "pid", pid)
}

// orphans lists postgres processes whose working directory is DataDir.
func (p *Postgres) orphans() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	dir := p.opts.DataDir
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil || cwd != dir {
			continue
		}
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			continue
		}
		switch filepath.Base(strings.TrimSuffix(exe, " (deleted)")) {
		case "postgres", "postmaster":
			if processAlive(pid) {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// exitError describes a server that exited while we waited for it.
func (p *Postgres) exitError(s *server) error {
	status := "exited"
	if s.err != nil {
		status = s.err.Error()
	}
	return fmt.Errorf("server (pid %d) %s during start; last lines of %s:\n%s",
		s.pid, status, p.opts.LogFile, p.logTail(10))
}

// Stop stops the server. StopFast sends SIGINT (fast shutdown, with a
// checkpoint) and waits until the postmaster is gone or ctx ends (an
// error). StopImmediate sends SIGQUIT and, if the server is not gone
// within immediateGrace (a hung or stopped postmaster never reacts),
// kills every process of the server. StopFence sends SIGINT, kills every
// process at once if the postmaster does not start shutting down within
// fenceReactTime, and otherwise waits for the shutdown until shortly
// before ctx's deadline, then kills everything. A stopped server is not an
// error.
func (p *Postgres) Stop(ctx context.Context, mode db.StopMode) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	return p.stop(ctx, mode)
}

// Timing of Stop's escalation.
const (
	// immediateGrace is how long an immediate shutdown may take before
	// every process is killed.
	immediateGrace = time.Second
	// fenceReactTime is how soon a postmaster told to shut down must say
	// so in postmaster.pid; fenceMargin is how long before the deadline a
	// fence stops waiting for the fast shutdown.
	fenceReactTime = 200 * time.Millisecond
	fenceMargin    = 200 * time.Millisecond
)

// stop is Stop; the caller holds opMu.
func (p *Postgres) stop(ctx context.Context, mode db.StopMode) error {
	s := p.running()
	if s == nil {
		return nil
	}
	defer p.dropConn()
	s.stopping.Store(true)
	switch mode {
	case db.StopFast:
		if err := p.signal(s, syscall.SIGINT); err != nil {
			return err
		}
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return p.errorf("stop", "server (pid %d) still running: %w", s.pid, ctx.Err())
		}
	case db.StopImmediate:
		if err := p.signal(s, syscall.SIGQUIT); err != nil {
			return err
		}
		return p.waitOrKill(ctx, s, time.Now().Add(immediateGrace))
	case db.StopFence:
		if err := p.signal(s, syscall.SIGINT); err != nil {
			return err
		}
		if !p.shuttingDown(ctx, s) {
			p.log.Error("postmaster does not react to the shutdown request; killing every process of the server", "pid", s.pid)
			return p.waitOrKill(ctx, s, time.Now())
		}
		deadline := time.Now().Add(immediateGrace)
		if dl, ok := ctx.Deadline(); ok {
			deadline = dl.Add(-fenceMargin)
		}
		return p.waitOrKill(ctx, s, deadline)
	}
	return p.errorf("stop", "unknown stop mode %d", mode)
}

func (p *Postgres) signal(s *server, sig syscall.Signal) error {
	p.log.Info("stopping server", "pid", s.pid, "signal", sig.String())
	if err := syscall.Kill(s.pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return p.errorf("stop", "signal pid %d: %v", s.pid, err)
	}
	return nil
}

// shuttingDown waits up to fenceReactTime for the postmaster to record
// that it is shutting down; a stopped (SIGSTOP) or hung postmaster does
// not.
func (p *Postgres) shuttingDown(ctx context.Context, s *server) bool {
	until := time.Now().Add(fenceReactTime)
	for {
		if !s.alive() || p.pidFileStatus() == "stopping" {
			return true
		}
		if time.Now().After(until) || processStopped(s.pid) {
			return false
		}
		select {
		case <-s.done:
			return true
		case <-ctx.Done():
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// waitOrKill waits for s to exit until deadline (or ctx's end), then kills
// every process of the server and waits for the postmaster to be gone.
func (p *Postgres) waitOrKill(ctx context.Context, s *server, deadline time.Time) error {
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
	if pids := p.killAll(s); len(pids) > 0 {
		p.log.Warn("killed every process of the server", "pids", fmt.Sprint(pids))
	}
	select {
	case <-s.done:
		return nil
	case <-time.After(2 * time.Second):
		return p.errorf("stop", "server (pid %d) survived SIGKILL", s.pid)
	}
}

// killAll sends SIGKILL to every process of the server (serverPIDs; a
// stopped process dies too) and returns their pids.
func (p *Postgres) killAll(s *server) []int {
	pids := p.serverPIDs(s)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return pids
}

// serverPIDs lists the postmaster, its children and any other postgres
// process working in the data directory.
func (p *Postgres) serverPIDs(s *server) []int {
	pids := []int{s.pid}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", s.pid, s.pid)); err == nil {
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	for _, pid := range p.orphans() {
		if !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// suspendWait bounds how long Suspend waits for the processes it
// signalled to be seen stopped.
const suspendWait = 200 * time.Millisecond

// Suspend sends SIGSTOP to every process of the server: it acknowledges
// nothing until Resume (or Stop, whose SIGKILL reaches stopped processes).
// The postmaster is stopped first, and its children are listed only once
// it is seen stopped: a fork under way when the signal arrives still
// completes (a connection accepted as the machine thaws), and a backend
// forked after an earlier listing was missed and went on committing (the
// container drills' thawed primary, docs/drills.md). The children are
// then signalled until a listing finds every one stopped, or suspendWait
// passes (a process in uninterruptible sleep stops when it leaves it).
func (p *Postgres) Suspend(ctx context.Context) error {
	s := p.running()
	if s == nil {
		return nil
	}
	if err := syscall.Kill(s.pid, syscall.SIGSTOP); err != nil && !errors.Is(err, syscall.ESRCH) {
		return p.errorf("suspend", "signal pid %d: %v", s.pid, err)
	}
	deadline := time.Now().Add(suspendWait)
	wait := func() bool {
		select {
		case <-ctx.Done():
			return false
		case <-time.After(time.Millisecond):
			return time.Now().Before(deadline)
		}
	}
	for !suspended(s.pid) && wait() {
	}
	var signalled []int
	for {
		running := 0
		for _, pid := range p.serverPIDs(s) {
			if suspended(pid) {
				continue
			}
			running++
			_ = syscall.Kill(pid, syscall.SIGSTOP)
			if !slices.Contains(signalled, pid) {
				signalled = append(signalled, pid)
			}
		}
		if running == 0 || !wait() {
			break
		}
	}
	p.log.Info("suspended every process of the server", "pids", fmt.Sprint(p.serverPIDs(s)), "signalled", fmt.Sprint(signalled))
	return nil
}

// suspended tells whether process pid is stopped, a zombie or gone.
func suspended(pid int) bool {
	state, ok := procState(pid)
	return !ok || strings.IndexByte("TtZX", state) >= 0
}

// Resume sends SIGCONT to every process of the server.
func (p *Postgres) Resume(context.Context) error { return p.signalAll(syscall.SIGCONT) }

func (p *Postgres) signalAll(sig syscall.Signal) error {
	s := p.running()
	if s == nil {
		return nil
	}
	pids := p.serverPIDs(s)
	for _, pid := range pids {
		_ = syscall.Kill(pid, sig)
	}
	p.log.Info("signalled every process of the server", "signal", sig.String(), "pids", fmt.Sprint(pids))
	return nil
}

// pidFileStatus is the postmaster's status line in postmaster.pid
// ("starting", "stopping", "ready", "standby"; "" when unreadable).
func (p *Postgres) pidFileStatus() string {
	b, err := os.ReadFile(p.path("postmaster.pid"))
	if err != nil {
		return ""
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) < 8 {
		return ""
	}
	return strings.TrimSpace(lines[7])
}

// command returns a PostgreSQL tool command that runs as the data dir owner.
func (p *Postgres) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, p.bin(name), args...)
	cmd.Dir = "/"
	cmd.Env = cleanEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	return cmd
}

// cleanEnv is the environment without libpq's PG* variables, which would
// otherwise redirect or authenticate the tools behind our back.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "PG") {
			env = append(env, kv)
		}
	}
	return env
}

// chown gives path to the data dir owner when running as root.
func (p *Postgres) chown(path string) error {
	if p.cred == nil {
		return nil
	}
	return os.Lchown(path, int(p.cred.Uid), int(p.cred.Gid))
}

// mkdirOwned creates dir (and missing parents, left to root) with mode,
// owned by the data dir owner. An existing dir is left as it is.
func (p *Postgres) mkdirOwned(dir string, mode os.FileMode) error {
	if exists(dir) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(dir), err)
	}
	if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	if err := p.chown(dir); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	return nil
}

// writeFileOwned atomically replaces path with data, owned by the data dir
// owner with mode.
func (p *Postgres) writeFileOwned(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".hamgr-tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = p.chown(tmp)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// openLog opens LogFile for appending, creating it owned by the data dir owner.
func (p *Postgres) openLog() (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(p.opts.LogFile), 0o755); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	created := !exists(p.opts.LogFile)
	f, err := os.OpenFile(p.opts.LogFile, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	if created {
		if err := p.chown(p.opts.LogFile); err != nil {
			f.Close()
			return nil, fmt.Errorf("chown log file: %w", err)
		}
	}
	return f, nil
}

// logTail returns the last n lines of LogFile.
func (p *Postgres) logTail(n int) string {
	f, err := os.Open(p.opts.LogFile)
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
