package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Heartbeat table: the primary's probe writes its clock into it once per
// probe (and that write doubles as the probe's check that the primary
// still commits); a replica's lag in seconds is how old the row it
// applied is. An idle primary still writes it, so idle periods do not
// look like lag, and a stuck applier does not look like no lag (the
// replica's own Seconds_Behind_Master reads 0 when idle and jumps when
// a big transaction arrives).
const (
	heartbeatSchema = "CREATE DATABASE IF NOT EXISTS hamgr"
	heartbeatTable  = "CREATE TABLE IF NOT EXISTS hamgr.heartbeat (id INT PRIMARY KEY, ts DATETIME(6) NOT NULL, " +
		"server_id INT UNSIGNED NOT NULL) ENGINE=InnoDB"
	// heartbeatWrite writes nothing on a read-only server: the agent's
	// user may bypass read_only (MariaDB's READ_ONLY ADMIN), and a
	// probe that read the server writable just before a demotion must
	// not commit after it (a switchover's final position would miss it).
	// Setting read_only waits for the statements in progress to end, so
	// one that reads read_only off commits before the demotion returns.
	heartbeatWrite = "INSERT INTO hamgr.heartbeat (id, ts, server_id) SELECT 1, NOW(6), @@server_id FROM DUAL " +
		"WHERE @@GLOBAL.read_only = 0 ON DUPLICATE KEY UPDATE ts = VALUES(ts), server_id = VALUES(server_id)"
	heartbeatAge = "SELECT TIMESTAMPDIFF(MICROSECOND, ts, NOW(6)) FROM hamgr.heartbeat WHERE id = 1"
)

// freshCheckTimeout bounds the primary's fresh connection and heartbeat
// write.
const freshCheckTimeout = 2 * time.Second

// Probe measures the server. A stopped server, or one that refuses
// connections, is reported in the Status (Running, Accepting, Err), not
// as an error; a stopped MariaDB server's Position is then read from its
// binary log.
func (m *MySQL) Probe(ctx context.Context) (db.Status, error) {
	st := db.Status{HasData: m.hasData(), ReplayLagSeconds: -1, LastMessageAge: -1}
	st.Running = m.running() != nil
	if st.Running {
		err := m.measure(ctx, &st)
		if err == nil {
			st.Accepting = true
			if st.Role == cluster.RolePrimary {
				st.Stalled, st.AckOverdue = m.checkFresh(ctx)
			}
			return st, nil
		}
		st = db.Status{HasData: st.HasData, Running: true, ReplayLagSeconds: -1, LastMessageAge: -1,
			Err: m.errorf("probe", "%w", err)}
	}
	if st.HasData && !st.Running {
		st.WasPrimary = !exists(m.path(replicaMarker))
		pos, err := m.offlinePosition(ctx)
		if err != nil {
			m.log.Warn("cannot read the position of the stopped server from its binary log", "err", err)
		}
		st.Position, st.Checkpoint = pos, pos
	}
	return st, nil
}

// state is one reading of the server's replication state.
type state struct {
	dialect  Dialect
	readOnly bool
	executed cluster.Position
	replica  ReplicaStatus
	received cluster.Position // executed plus what the IO thread received
	// ack is the replica side of semi-sync: on when its variable or the
	// running stream's status is (Dialect.StateQuery).
	ack cluster.AckState
}

func (m *MySQL) readState(ctx context.Context, q querier, d Dialect) (state, error) {
	s := state{dialect: d}
	var set1, set2 string
	var now time.Time
	var ack sql.NullString
	if err := q.QueryRowContext(ctx, d.StateQuery()).Scan(&set1, &set2, &s.readOnly, &now, &ack); err != nil {
		return s, fmt.Errorf("read GTID state: %w", err)
	}
	s.ack = cluster.AckOff
	if isOn(ack) {
		s.ack = cluster.AckOn
	}
	executed, err := d.unionPosition(set1, set2)
	if err != nil {
		return s, err
	}
	s.executed = executed
	row, err := queryRow(ctx, q, d.ShowReplicaStatus())
	if err != nil {
		return s, fmt.Errorf("read replica status: %w", err)
	}
	s.replica = ParseReplicaStatus(row)
	s.received = s.executed
	if s.replica.Received != "" {
		r, err := d.Position(s.replica.Received)
		if err != nil {
			return s, fmt.Errorf("received GTIDs: %w", err)
		}
		if s.received, err = s.executed.Union(r); err != nil {
			return s, err
		}
	}
	return s, nil
}

func (m *MySQL) measure(ctx context.Context, st *db.Status) error {
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	s, err := m.readState(ctx, pool, d)
	if err != nil {
		return err
	}
	st.Position = s.executed
	st.Ack = s.ack
	st.Coordinates = m.binlogCoordinates()
	if !s.readOnly {
		st.Role = cluster.RolePrimary
		return nil
	}
	st.Role = cluster.RoleReplica
	st.Position, st.Received, st.Replayed = s.received, s.received, s.executed
	rs := s.replica
	st.Streaming = rs.Configured && rs.Streaming()
	if rs.Configured {
		st.UpstreamHost, st.UpstreamPort = rs.SourceHost, rs.SourcePort
	}
	st.Diverged = rs.Diverged()
	if st.Diverged != "" {
		// The applier stopped on a conflict with this server's own
		// transactions: what it received cannot be applied as it is, so
		// it is no part of what this member would hold if promoted.
		st.Position, st.Received = s.executed, s.executed
	}
	switch o := s.executed.Compare(s.received); {
	case o == cluster.Equal || o == cluster.Ahead:
		st.ReplayLagSeconds = 0
	default:
		st.ReplayLagSeconds = m.heartbeatLag(ctx, pool, rs)
	}
	return nil
}

// binlogCoordinates reads the binary log file the server writes and its
// size, "file:offset", for operators; "" when there is none (no decision
// depends on it). It reads them from the data directory (the last file
// of the index), as SHOW MASTER STATUS shows them, without asking: that
// statement waits for the binary log, which a commit waiting for a
// semi-sync acknowledgement holds while another commit queues behind it,
// and the probe would then wait too.
func (m *MySQL) binlogCoordinates() string {
	last, err := m.lastBinlog()
	if err != nil || last == "" {
		return ""
	}
	fi, err := os.Stat(last)
	if err != nil {
		return ""
	}
	return filepath.Base(last) + ":" + strconv.FormatInt(fi.Size(), 10)
}

// heartbeatLag is the age of the heartbeat row the replica applied, in
// seconds; the replica's own Seconds_Behind_Master when the table is not
// there; -1 when neither is known.
func (m *MySQL) heartbeatLag(ctx context.Context, q querier, rs ReplicaStatus) float64 {
	var us sql.NullInt64
	if err := q.QueryRowContext(ctx, heartbeatAge).Scan(&us); err == nil && us.Valid {
		return max(float64(us.Int64)/1e6, 0)
	}
	if rs.SecondsBehind >= 0 {
		return float64(rs.SecondsBehind)
	}
	return -1
}

// checkFresh opens a new connection to the local primary and commits the
// heartbeat on it. It returns, as stalled, why that could not be done
// within freshCheckTimeout (a server that lets no new session in, a disk
// that takes no commit), or "" when it could, or when the server answered
// with an error that shows it alive (too many connections, read-only,
// shutting down). With semi-synchronous replication on, a commit that
// waits for a replica's acknowledgement is not a stall: a timeout then is
// reported as overdue instead (db.Status.AckOverdue). A heartbeat write
// given up on is left to finish in the background, and while it has not,
// no other is queued behind it.
func (m *MySQL) checkFresh(ctx context.Context) (stalled, overdue string) {
	if since := m.heartbeatPending.Load(); since != 0 {
		waited := time.Since(time.Unix(0, since)).Round(10 * time.Millisecond)
		if m.semiSyncSource() {
			return "", fmt.Sprintf("a committed write has waited %s for a replica's acknowledgement", waited)
		}
		return fmt.Sprintf("a committed write did not complete in %s", waited), ""
	}
	ctx, cancel := context.WithTimeout(ctx, freshCheckTimeout)
	defer cancel()
	start := time.Now()
	pool, err := m.freshDB(ctx)
	if err != nil {
		return "", ""
	}
	c, err := pool.Conn(ctx)
	if err != nil {
		return stallReason("a new connection", err, start), ""
	}
	err = m.heartbeat(ctx, c, start)
	if err != nil && errors.Is(err, context.DeadlineExceeded) && m.semiSyncSource() {
		m.endHeartbeats()
		return "", fmt.Sprintf("a committed write waited %s for a replica's acknowledgement", time.Since(start).Round(10*time.Millisecond))
	}
	if err != nil {
		return stallReason("a committed write", err, start), ""
	}
	return "", ""
}

// heartbeat commits the heartbeat on c and closes c. At ctx's end it
// returns ctx's error without waiting for the write: the driver's
// cancellation was seen not to return while the commit queued behind one
// that waits for a semi-synchronous acknowledgement. The write then
// finishes (and c closes) in the background, marked by heartbeatPending.
func (m *MySQL) heartbeat(ctx context.Context, c *sql.Conn, start time.Time) error {
	res := make(chan error, 1)
	go func() {
		_, err := c.ExecContext(ctx, heartbeatWrite)
		var me *driver.MySQLError
		if errors.As(err, &me) && me.Number == 1146 { // no table yet (a server hamgr did not initialize)
			_, _ = c.ExecContext(ctx, heartbeatSchema)
			_, err = c.ExecContext(ctx, heartbeatTable)
			if err == nil {
				_, err = c.ExecContext(ctx, heartbeatWrite)
			}
		}
		res <- err
	}()
	select {
	case err := <-res:
		_ = c.Close()
		return err
	case <-ctx.Done():
		m.heartbeatPending.Store(start.UnixNano())
		go func() {
			<-res
			_ = c.Close()
			m.heartbeatPending.Store(0)
		}()
		return ctx.Err()
	}
}

// endHeartbeats ends the sessions of heartbeat writes that wait for a
// semi-sync acknowledgement, or for the row lock of one that does, after
// their connection timed out: each would wait on in the server, and one
// more would join them every probe. It does not wait for them to go: a
// write queued behind the waiting commit (in its group commit) ends only
// once that commit returns.
func (m *MySQL) endHeartbeats() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	pool, _, err := m.localDB(ctx)
	if err != nil {
		return
	}
	ids, err := sessionIDs(ctx, pool, HeartbeatSessions)
	for _, id := range ids {
		if _, kerr := pool.ExecContext(ctx, KillConnection(id)); kerr != nil && !isErrno(kerr, 1094) { // 1094: gone
			err = kerr
			break
		}
	}
	if err != nil {
		m.log.Debug("cannot end the waiting heartbeat writes", "err", err)
	}
}

// semiSyncSource reports whether semi-synchronous replication is on at
// this server's source side (read on a new short-lived context).
func (m *MySQL) semiSyncSource() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return false
	}
	var on string
	if err := pool.QueryRowContext(ctx, d.SemiSyncSourceEnabled()).Scan(&on); err != nil {
		return false
	}
	return on == "ON" || on == "1"
}

// stallReason says why what failed, unless the error shows a live server.
func stallReason(what string, err error, start time.Time) string {
	var me *driver.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1040, 1203, 1290, 1836, 1053: // too many connections, user limit, read-only, read-only mode, shutdown
			return ""
		}
	}
	return fmt.Sprintf("%s did not complete in %s: %v", what, time.Since(start).Round(10*time.Millisecond), err)
}

// Ask connects to host:port with the replication account and reports
// whether the server there takes writes. Without a deadline in ctx it
// gives up after one second. Only a refused TCP connection is
// AnswerRefused; anything else that is not an answer is AnswerNone.
func (m *MySQL) Ask(ctx context.Context, host string, port int) (db.Answer, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	where := net.JoinHostPort(host, strconv.Itoa(port))
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "tcp", where
	cfg.User, cfg.Passwd = m.opts.Replication, m.opts.ReplicationPassword
	cfg.Timeout = connectTimeout
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return db.AnswerNone, m.errorf("ask", "%s: %w", where, err)
	}
	pool := sql.OpenDB(conn)
	defer pool.Close()
	var ro bool
	if err := pool.QueryRowContext(ctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return db.AnswerRefused, m.errorf("ask", "%s: %w", where, err)
		}
		return db.AnswerNone, m.errorf("ask", "%s: %w", where, err)
	}
	if ro {
		return db.AnswerReadOnly, nil
	}
	return db.AnswerWritable, nil
}

// querier is what readState needs: a pool or a single connection.
type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// queryRow runs a SHOW statement and returns its first row as column →
// value (nil for NULL), or nil when it returned no row.
func queryRow(ctx context.Context, q querier, query string) (map[string]*string, error) {
	rows, err := q.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	cols, err := rows.Columns()
	if err != nil {
		return nil, err
	}
	if !rows.Next() {
		return nil, rows.Err()
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return nil, err
	}
	row := make(map[string]*string, len(cols))
	for i, c := range cols {
		if vals[i].Valid {
			v := vals[i].String
			row[c] = &v
		} else {
			row[c] = nil
		}
	}
	return row, rows.Err()
}
