package mysql

import (
	"context"
	"database/sql"
	sqldriver "database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Initialize creates a new server in an empty data directory
// (mariadb-install-db, or mysqld --initialize-insecure), starts it
// without networking, creates the replication account and the heartbeat
// table outside the binary log (so a new cluster's GTID history starts
// empty; clones copy them with the data) and stops it.
func (m *MySQL) Initialize(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.initialize(ctx); err != nil {
		return m.errorf("initialize", "%w", err)
	}
	return nil
}

func (m *MySQL) initialize(ctx context.Context) error {
	staging, err := m.initStaging(ctx)
	if err != nil {
		return err
	}
	return m.publishStaging(staging)
}

// stagingDir is where Initialize and Clone build a new server, inside the
// data directory (so publishing it is a rename on one file system, even
// when the data directory is a mount point); hasData ignores it, so a
// step that failed or crashed half-way leaves "no data" and is simply
// tried again.
func (m *MySQL) stagingDir() string { return m.path(".hamgr-staging") }

// initStaging creates a new server in the staging directory
// (mariadb-install-db, or mysqld --initialize-insecure), starts it
// without networking, creates the replication account and the heartbeat
// table outside the binary log, sets the superuser's password and stops
// it. A staging directory left by an earlier attempt is removed first
// (with the server a dead agent left running on it).
func (m *MySQL) initStaging(ctx context.Context) (string, error) {
	if m.running() != nil {
		return "", errors.New("a server runs on the data directory")
	}
	if err := m.requireEmptyDataDir(); err != nil {
		return "", err
	}
	staging := m.stagingDir()
	if pid, ok := liveServerOn(staging); ok {
		m.log.Warn("killing the server an earlier attempt left on the staging directory", "pid", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && processAlive(pid); i++ {
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return "", fmt.Errorf("remove an earlier staging directory: %w", err)
	}
	if err := m.mkdirOwned(staging); err != nil {
		return "", err
	}
	f, err := m.binaryFlavour(ctx)
	if err != nil {
		return "", err
	}
	// The server options go to the bootstrap server too (InnoDB's log
	// and buffer sizes, say).
	args := []string{"--no-defaults", "--datadir=" + staging, "--auth-root-authentication-method=normal", "--skip-test-db"}
	name := "mariadb-install-db"
	if f == FlavourMySQL {
		args, name = []string{"--no-defaults", "--initialize-insecure", "--datadir=" + staging}, m.opts.ServerBin
	}
	args = append(args, m.parameterArgs()...)
	if out, err := m.command(ctx, name, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w: %s", filepath.Base(name), err, errorLines(string(out), 10))
	}
	s, err := m.startServerOn(ctx, staging, "--skip-networking")
	if err != nil {
		return "", err
	}
	m.withoutPassword(true)
	err = m.waitAnswering(ctx, s)
	if err == nil {
		err = m.setupAccounts(ctx)
	}
	if serr := m.stop(ctx, db.StopFast); err == nil {
		err = serr
	}
	m.withoutPassword(false)
	return staging, err
}

// publishStaging moves the stopped staging server's files into the data
// directory, the system schema ("mysql", which hasData looks for) last.
func (m *MySQL) publishStaging(staging string) error {
	entries, err := os.ReadDir(staging)
	if err != nil {
		return fmt.Errorf("read the staging directory: %w", err)
	}
	for _, last := range []bool{false, true} {
		for _, e := range entries {
			if (e.Name() == "mysql") != last || e.Name() == "mysqld.pid" {
				continue
			}
			if err := os.Rename(filepath.Join(staging, e.Name()), m.path(e.Name())); err != nil {
				return fmt.Errorf("move %s into the data directory: %w", e.Name(), err)
			}
		}
	}
	if err := os.RemoveAll(staging); err != nil {
		return fmt.Errorf("remove the staging directory: %w", err)
	}
	return nil
}

// setupAccounts creates the replication account (allowed to replicate,
// and to read everything for a logical clone) and the heartbeat table,
// with the binary log off for the session.
func (m *MySQL) setupAccounts(ctx context.Context) error {
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	c, err := pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	stmts := append([]string{"SET SESSION sql_log_bin = 0"}, d.SetupStatements(m.opts.Replication, m.opts.ReplicationPassword)...)
	stmts = append(stmts, heartbeatSchema, heartbeatTable)
	if m.opts.SuperuserPassword != "" {
		stmts = append(stmts, d.SetOwnPassword(m.opts.SuperuserPassword))
	}
	for _, q := range stmts {
		if _, err := c.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("set up accounts: %w", redact(err, m.opts.ReplicationPassword, m.opts.SuperuserPassword))
		}
	}
	return nil
}

// requireEmptyDataDir creates the data directory when missing and fails
// when it holds anything but a staging directory.
func (m *MySQL) requireEmptyDataDir() error {
	entries, err := os.ReadDir(m.opts.DataDir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return m.mkdirOwned(m.opts.DataDir)
	case err != nil:
		return fmt.Errorf("read data dir: %w", err)
	}
	for _, e := range entries {
		if e.Name() != filepath.Base(m.stagingDir()) {
			return fmt.Errorf("data dir %s is not empty (%s)", m.opts.DataDir, e.Name())
		}
	}
	return m.chown(m.opts.DataDir)
}

// StartPrimary starts the server (read-only, see serverArgs), waits until
// it answers and makes it writable. It refuses a data directory last
// configured as a replica: that must be started as one and promoted. A
// running writable server is left as it is.
func (m *MySQL) StartPrimary(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.startPrimary(ctx); err != nil {
		return m.errorf("start primary", "%w", m.stillStarting(ctx, err))
	}
	return nil
}

func (m *MySQL) stillStarting(ctx context.Context, err error) error {
	if ctx.Err() != nil && m.running() != nil {
		return fmt.Errorf("%w: %w", db.ErrStillStarting, err)
	}
	return err
}

func (m *MySQL) startPrimary(ctx context.Context) error {
	if !m.hasData() {
		return fmt.Errorf("no database in %s", m.opts.DataDir)
	}
	if exists(m.path(replicaMarker)) {
		return fmt.Errorf("%s was last configured as a replica: start it as a replica and promote it", m.opts.DataDir)
	}
	s := m.running()
	if s == nil {
		var err error
		if s, err = m.startServer(ctx); err != nil {
			return err
		}
	}
	if err := m.waitAnswering(ctx, s); err != nil {
		return err
	}
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	if m.waitAsked.Load() {
		// The restarted server forgot it (SET GLOBAL): commits wait
		// again before the first one is taken.
		if err := execAll(ctx, pool, d.SemiSyncSourceOn()); err != nil {
			return fmt.Errorf("make commits wait for an acknowledgement: %w", err)
		}
	}
	return execAll(ctx, pool, d.SetWritable())
}

// StartReplica starts the server as a replica of up (nil: read-only with
// no upstream) and waits until it answers. A running server is made a
// replica in place: a writable one is demoted first (Demote), then
// repointed to up when given (Follow).
func (m *MySQL) StartReplica(ctx context.Context, up *db.Upstream) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.startReplica(ctx, up); err != nil {
		return m.errorf("start replica", "%w", m.stillStarting(ctx, err))
	}
	return nil
}

func (m *MySQL) startReplica(ctx context.Context, up *db.Upstream) error {
	if !m.hasData() {
		return fmt.Errorf("no database in %s", m.opts.DataDir)
	}
	wasReplica := exists(m.path(replicaMarker))
	s := m.running()
	if s == nil {
		var err error
		if s, err = m.startServer(ctx); err != nil {
			return err
		}
	}
	if err := m.waitAnswering(ctx, s); err != nil {
		return err
	}
	if err := m.demote(ctx, !wasReplica); err != nil {
		return err
	}
	if err := m.writeMarker(); err != nil {
		return err
	}
	if up == nil {
		return nil
	}
	return m.follow(ctx, *up)
}

const markerText = "written by hamgr: this data directory belongs to a replica\n"

func (m *MySQL) writeMarker() error {
	if exists(m.path(replicaMarker)) {
		return nil
	}
	if err := os.WriteFile(m.path(replicaMarker), []byte(markerText), 0o640); err != nil {
		return fmt.Errorf("mark the data directory as a replica's: %w", err)
	}
	return nil
}

var _ db.Demoter = (*MySQL)(nil)

// Demote makes a running server a replica in place: read-only at once
// (MySQL: super_read_only, which binds SUPER users too), semi-sync's
// source side off (a replica that waits for acknowledgements stalls its
// applier), and every client session ended, so no transaction of a
// session that began while it was writable commits after the demotion
// (MariaDB's read_only does not bind users with READ_ONLY ADMIN, and a
// transaction in progress could still commit). Replication and the
// agent's own sessions are left alone. It returns once the ended sessions
// are gone (a killed session may still commit until it notices), so the
// server's GTID set is then final: a switchover's handoff reads it. The
// agent's own heartbeat write checks read_only in the statement itself
// (heartbeatWrite), and setting read_only waits for commits in progress.
// On a replica it only makes sure of read-only and the semi-sync setting.
// Retrying is safe.
func (m *MySQL) Demote(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf("demote", "%w", db.ErrNotRunning)
	}
	if err := m.demoteInPlace(ctx); err != nil {
		return m.errorf("demote", "%w", err)
	}
	return nil
}

// demoteInPlace demotes the running server (demote) and marks its data
// directory a replica's; the caller holds opMu.
func (m *MySQL) demoteInPlace(ctx context.Context) error {
	if err := m.demote(ctx, !exists(m.path(replicaMarker))); err != nil {
		return err
	}
	return m.writeMarker()
}

// demote sets read-only (setReadOnly, which ends the client sessions
// first when a commit waits for an acknowledgement) and turns semi-sync's
// source side off; it ends the client sessions when the server was
// writable, or when fromPrimary (the data directory is not marked as a
// replica's yet: the marker is written only after the sessions ended, so
// a demotion that crashed half-way ends them when retried).
func (m *MySQL) demote(ctx context.Context, fromPrimary bool) error {
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	var ro bool
	if err := pool.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err != nil {
		return fmt.Errorf("read read_only: %w", err)
	}
	if err := m.setReadOnly(ctx, pool, d); err != nil {
		return err
	}
	m.waitOnPromote.Store(false)
	m.waitAsked.Store(false)
	// MySQL's plugin may not be loaded (1193: unknown system variable).
	if _, err := pool.ExecContext(ctx, d.SemiSyncSourceOff()); err != nil && !isErrno(err, 1193) {
		return fmt.Errorf("turn semi-sync off: %w", err)
	}
	if ro && !fromPrimary {
		return nil
	}
	n, err := m.killClients(ctx, pool)
	if err != nil {
		return err
	}
	m.log.Info("demoted: read-only, client sessions ended", "sessions", n)
	return nil
}

// readOnlyLockWait bounds each wait of setReadOnly for the commits in
// progress, in seconds (lock_wait_timeout).
const readOnlyLockWait = 1

// setReadOnly makes the server read-only. Setting it waits for the
// commits in progress, and for ever for one that waits for a semi-sync
// acknowledgement no replica sends: so each try waits at most
// readOnlyLockWait, and after a try that timed out the client sessions
// and the sessions whose commit holds it (CommitBlockers: waiting for an
// acknowledgement, or the agent's own heartbeat write queued behind one)
// are ended before the next. Their transactions are in the binary log
// already, so part of the final position; their clients got no OK.
func (m *MySQL) setReadOnly(ctx context.Context, pool *sql.DB, d Dialect) error {
	c, err := pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// The session's lock_wait_timeout is not the pool's: drop it.
		_ = c.Raw(func(any) error { return sqldriver.ErrBadConn })
		_ = c.Close()
	}()
	if _, err := c.ExecContext(ctx, fmt.Sprintf("SET SESSION lock_wait_timeout = %d", readOnlyLockWait)); err != nil {
		return fmt.Errorf("set lock_wait_timeout: %w", err)
	}
	for {
		err := execAll(ctx, c, d.SetReadOnly())
		if err == nil || !isErrno(err, 1205) || ctx.Err() != nil { // 1205: lock wait timeout
			return err
		}
		ids, err := m.clientSessions(ctx, pool)
		if err != nil {
			return err
		}
		blockers, err := sessionIDs(ctx, pool, CommitBlockers)
		if err != nil {
			return err
		}
		n, err := killSessions(ctx, pool, append(ids, blockers...))
		if err != nil {
			return err
		}
		m.log.Warn("setting read-only waited for commits in progress: ended the sessions holding it", "sessions", n)
	}
}

// killClients ends every client session (IsClientSession) and returns
// how many it ended.
func (m *MySQL) killClients(ctx context.Context, pool *sql.DB) (int, error) {
	ids, err := m.clientSessions(ctx, pool)
	if err != nil {
		return 0, err
	}
	return killSessions(ctx, pool, ids)
}

// clientSessions lists the ids of the client sessions (IsClientSession).
func (m *MySQL) clientSessions(ctx context.Context, pool *sql.DB) ([]int64, error) {
	rows, err := pool.QueryContext(ctx, ProcessList)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		var user, command sql.NullString
		if err := rows.Scan(&id, &user, &command); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		if IsClientSession(user.String, command.String, m.opts.Superuser) {
			ids = append(ids, id)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return ids, nil
}

// sessionIDs runs query, which selects session ids.
func sessionIDs(ctx context.Context, pool *sql.DB, query string) ([]int64, error) {
	rows, err := pool.QueryContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("list sessions: %w", err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list sessions: %w", err)
	}
	return ids, nil
}

// killSessions ends the sessions ids, waits until they are gone and
// returns how many it ended (one that ended by itself is not counted).
func killSessions(ctx context.Context, pool *sql.DB, ids []int64) (int, error) {
	n := 0
	for _, id := range ids {
		if _, err := pool.ExecContext(ctx, KillConnection(id)); err != nil {
			if isErrno(err, 1094) { // unknown thread: it ended by itself
				continue
			}
			return n, fmt.Errorf("end session %d: %w", id, err)
		}
		n++
	}
	if err := awaitGone(ctx, pool, ids); err != nil {
		return n, err
	}
	return n, nil
}

// awaitGone waits until none of the sessions ids is listed any more. KILL
// only marks a session: it ends at its next check, and a transaction it
// was committing may still commit until then; once it is gone, nothing of
// it can.
func awaitGone(ctx context.Context, pool *sql.DB, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	killed := make(map[int64]bool, len(ids))
	for _, id := range ids {
		killed[id] = true
	}
	for {
		left, err := listedOf(ctx, pool, killed)
		if err != nil {
			return err
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d ended sessions still listed: %w", left, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// listedOf counts the sessions of ids still in the process list.
func listedOf(ctx context.Context, pool *sql.DB, ids map[int64]bool) (int, error) {
	rows, err := pool.QueryContext(ctx, ProcessList)
	if err != nil {
		return 0, fmt.Errorf("list sessions: %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var id int64
		var user, command sql.NullString
		if err := rows.Scan(&id, &user, &command); err != nil {
			return 0, fmt.Errorf("list sessions: %w", err)
		}
		if ids[id] {
			n++
		}
	}
	return n, rows.Err()
}

// Promote turns a running replica into a primary: it turns semi-sync's
// replica side off (and the source side, until the end:
// semiSyncBeforePromote), starts a stopped applier (startApplier), stops
// the IO thread, lets the applier apply everything received (up to the
// context's deadline), stops replication, forgets the upstream (RESET
// REPLICA ALL), makes commits wait for an acknowledgement when
// SetSynchronousStandbys asked it, and makes the server writable. On a
// primary it only makes sure the replica side is off; after a crash
// mid-way, calling it again finishes the job.
func (m *MySQL) Promote(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf("promote", "%w", db.ErrNotRunning)
	}
	start := time.Now()
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, promoteLimit)
		defer cancel()
	}
	if err := m.promote(ctx); err != nil {
		return m.errorf("promote", "%w", err)
	}
	m.log.Info("promoted", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// promoteLimit bounds a promotion without a deadline (the applier's
// catch-up, mostly).
const promoteLimit = 60 * time.Second

func (m *MySQL) promote(ctx context.Context) error {
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	s, err := m.readState(ctx, pool, d)
	if err != nil {
		return err
	}
	wait, err := m.semiSyncBeforePromote(ctx, pool, d, s)
	if err != nil {
		return err
	}
	if s.replica.Configured {
		if err := m.startApplier(ctx, pool, d, s); err != nil {
			return err
		}
		if _, err := pool.ExecContext(ctx, d.StopReplica()+" IO_THREAD"); err != nil {
			return fmt.Errorf("stop the IO thread: %w", err)
		}
		if err := m.awaitApplied(ctx, pool, d); err != nil {
			return err
		}
		for _, q := range []string{d.StopReplica(), d.ResetReplicaAll()} {
			if _, err := pool.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	if wait {
		if err := execAll(ctx, pool, d.SemiSyncSourceOn()); err != nil {
			return fmt.Errorf("make commits wait for an acknowledgement: %w", err)
		}
		m.waitOnPromote.Store(false)
	}
	if err := execAll(ctx, pool, d.SetWritable()); err != nil {
		return err
	}
	if err := os.Remove(m.path(replicaMarker)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove the replica marker: %w", err)
	}
	return nil
}

// semiSyncBeforePromote turns the replica side off (a promoted server
// must not acknowledge as a replica when it is later demoted and
// repointed; the IO thread the promotion stops then acknowledges
// nothing) and, on a read-only server, the source side off, which would
// make the applier's catch-up wait. It reports whether commits must wait
// once the server takes writes: SetSynchronousStandbys asked it
// (waitOnPromote), or the source side was on.
func (m *MySQL) semiSyncBeforePromote(ctx context.Context, pool *sql.DB, d Dialect, s state) (bool, error) {
	if s.ack == cluster.AckOn {
		if _, err := pool.ExecContext(ctx, d.SemiSyncReplica(false)); err != nil {
			return false, fmt.Errorf("turn the semi-sync replica side off: %w", err)
		}
	}
	if !s.readOnly {
		return false, nil
	}
	ss, err := readSyncStatus(ctx, pool, d)
	if err != nil {
		return false, err
	}
	if ss.source.Enabled {
		if _, err := pool.ExecContext(ctx, d.SemiSyncSourceOff()); err != nil {
			return false, fmt.Errorf("turn the semi-sync source side off: %w", err)
		}
	}
	return ss.source.Enabled || m.waitOnPromote.Load(), nil
}

// startApplier starts a stopped applier so that it applies what was
// received — only while the IO thread runs: MariaDB (GTID mode) discards
// the relay log when the applier starts with the IO thread stopped, so
// then what was received but not applied is lost to the promotion, which
// is logged.
func (m *MySQL) startApplier(ctx context.Context, pool *sql.DB, d Dialect, s state) error {
	if s.replica.SQLRunning == "Yes" {
		return nil
	}
	if o := s.executed.Compare(s.received); o == cluster.Equal || o == cluster.Ahead {
		return nil
	}
	if s.replica.IORunning == "No" {
		lost, _ := s.received.Beyond(s.executed)
		m.log.Warn("promoting with received transactions unapplied: the applier and the IO thread are both stopped",
			"executed", s.executed, "unapplied", lost)
		return nil
	}
	if _, err := pool.ExecContext(ctx, d.StartReplica()+" SQL_THREAD"); err != nil {
		return fmt.Errorf("start the applier: %w", err)
	}
	return nil
}

// awaitApplied waits until the applier has executed everything the IO
// thread received, or the applier stopped (an error: what it could not
// apply is lost to this promotion, which the caller's position shows), or
// ctx ends.
func (m *MySQL) awaitApplied(ctx context.Context, pool *sql.DB, d Dialect) error {
	for i := 0; ; i++ {
		s, err := m.readState(ctx, pool, d)
		if err != nil {
			return err
		}
		if o := s.executed.Compare(s.received); o == cluster.Equal || o == cluster.Ahead {
			return nil
		}
		if s.replica.SQLRunning != "Yes" {
			m.log.Warn("applier stopped before applying everything received", "executed", s.executed,
				"received", s.received, "errno", s.replica.SQLErrno, "error", s.replica.SQLError)
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("applier still behind (executed %s, received %s): %w", s.executed, s.received, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// Follow repoints a running replica at up with GTID auto-positioning. It
// does nothing when the replica already replicates from there, and fails
// on a writable server (demote it first: StartReplica).
func (m *MySQL) Follow(ctx context.Context, up db.Upstream) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf("follow", "%w", db.ErrNotRunning)
	}
	return m.follow(ctx, up)
}

func (m *MySQL) follow(ctx context.Context, up db.Upstream) error {
	if up.Host == "" || up.Port <= 0 {
		return m.errorf("follow", "upstream %q has no host or port", up.Name)
	}
	m.waitOnPromote.Store(false) // it stays a replica
	m.waitAsked.Store(false)
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return m.errorf("follow", "%w", err)
	}
	s, err := m.readState(ctx, pool, d)
	if err != nil {
		return m.errorf("follow", "%w", err)
	}
	if !s.readOnly {
		return m.errorf("follow", "server is writable (a primary): it cannot follow")
	}
	rs := s.replica
	if rs.Configured && rs.SourceHost == up.Host && rs.SourcePort == up.Port && rs.AutoPosition {
		if rs.IORunning != "No" && rs.SQLRunning == "Yes" {
			return nil
		}
	}
	err = m.repoint(ctx, pool, d, up)
	if err != nil {
		return m.errorf("follow", "upstream %s (%s:%d): %w", up.Name, up.Host, up.Port, redact(err, m.opts.ReplicationPassword))
	}
	m.log.Info("following new upstream", "upstream", up.Name, "host", up.Host, "port", up.Port)
	return nil
}

func (m *MySQL) repoint(ctx context.Context, pool *sql.DB, d Dialect, up db.Upstream) error {
	c, err := pool.Conn(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	if _, err := c.ExecContext(ctx, d.StopReplica()); err != nil {
		return fmt.Errorf("stop replication: %w", err)
	}
	if d.Flavour == FlavourMariaDB {
		var binlogPos, slavePos string
		if err := c.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_pos, @@GLOBAL.gtid_slave_pos").Scan(&binlogPos, &slavePos); err != nil {
			return fmt.Errorf("read GTID positions: %w", err)
		}
		want, change, err := d.SeedReplicaPosition(binlogPos, slavePos)
		if err != nil {
			return err
		}
		if change {
			if _, err := c.ExecContext(ctx, SetSlavePos(want)); err != nil {
				return fmt.Errorf("seed gtid_slave_pos: %w", err)
			}
			m.log.Info("seeded the replica position from the binary log", "gtid_slave_pos", want, "was", slavePos)
		}
	}
	if _, err := c.ExecContext(ctx, d.ChangeSource(Source{Host: up.Host, Port: up.Port,
		User: m.opts.Replication, Password: m.opts.ReplicationPassword})); err != nil {
		return fmt.Errorf("change source: %w", err)
	}
	if _, err := c.ExecContext(ctx, d.StartReplica()); err != nil {
		return fmt.Errorf("start replication: %w", err)
	}
	return nil
}

// RemoveData deletes the stopped server's data directory contents.
func (m *MySQL) RemoveData(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() != nil {
		return m.errorf("remove data", "the server runs")
	}
	entries, err := os.ReadDir(m.opts.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return m.errorf("remove data", "%w", err)
	}
	for _, e := range entries {
		if err := os.RemoveAll(m.path(e.Name())); err != nil {
			return m.errorf("remove data", "%w", err)
		}
	}
	return nil
}

func execAll(ctx context.Context, q querier, stmts []string) error {
	for _, s := range stmts {
		if _, err := q.ExecContext(ctx, s); err != nil {
			return fmt.Errorf("%s: %w", s, err)
		}
	}
	return nil
}

var _ db.Detacher = (*MySQL)(nil)

// Detach keeps the running server read-only (demoting it first when it
// is writable) and removes its replication (stop, then RESET REPLICA
// ALL): a member whose history diverged from the leader's takes no
// writes and applies nothing, while an operator can still read what it
// holds (its position, including its errant transactions, is kept). A
// server with no replication configured is only made sure of read-only.
func (m *MySQL) Detach(ctx context.Context) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf("detach", "%w", db.ErrNotRunning)
	}
	if err := m.demoteInPlace(ctx); err != nil {
		return m.errorf("detach", "%w", err)
	}
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return m.errorf("detach", "%w", err)
	}
	if err := execAll(ctx, pool, []string{d.StopReplica(), d.ResetReplicaAll()}); err != nil {
		return m.errorf("detach", "%w", err)
	}
	m.log.Info("detached: read-only, replication removed")
	return nil
}
