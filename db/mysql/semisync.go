package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Semi-synchronous replication (db.AcksAny). The primary's source side,
// while on (SetSynchronousStandbys with anyStandby), makes each commit
// wait, after the binary log is synced, for an acknowledgement from any
// connected replica whose replica side is on; each replica's agent turns
// its replica side on or off (SetAcknowledging). Verified on MariaDB
// 10.11:
//
//   - Turning the source side off (SET GLOBAL rpl_semi_sync_master_enabled
//     = OFF) releases the commits waiting at that moment at once: they
//     return to their clients without an acknowledgement.
//   - A replica's variable takes effect only when its IO thread connects:
//     set off on a running stream, the stream keeps acknowledging and
//     Rpl_semi_sync_slave_status stays ON; set on, the stream does not
//     acknowledge and the status stays OFF, until the IO thread is
//     restarted. A stopped IO thread reads OFF.
//   - A commit that waits while no replica acknowledges is not released
//     when an acknowledging replica connects later (the replica asks for
//     what follows what it already received): only a later acknowledged
//     commit releases it (acknowledgements are cumulative).
//   - A read-only server with its source side on makes its own applier's
//     commits wait (log_slave_updates binary-logs them): a replica never
//     waits (waitOnPromote).
//   - SET GLOBAL read_only = ON waits for commits in progress, and so for
//     ever for one that waits for an acknowledgement: Demote ends those
//     sessions (setReadOnly).

var (
	_ db.SyncReplication = (*MySQL)(nil)
	_ db.Acknowledger    = (*MySQL)(nil)
)

// ErrNamedStandbys is returned by SetSynchronousStandbys given names.
var ErrNamedStandbys = errors.New("semi-synchronous replication waits for any acknowledging replica; it cannot name standbys")

// syncStatus is one reading of SyncStatusQuery.
type syncStatus struct {
	executed cluster.Position
	readOnly bool
	source   SemiSyncSource
}

func readSyncStatus(ctx context.Context, q querier, d Dialect) (syncStatus, error) {
	var s syncStatus
	var set1, set2 string
	var enabled, noReplica, timeout, waitPoint sql.NullString
	if err := q.QueryRowContext(ctx, d.SyncStatusQuery()).Scan(&set1, &set2, &s.readOnly,
		&enabled, &noReplica, &timeout, &waitPoint); err != nil {
		return s, fmt.Errorf("read semi-sync state: %w", err)
	}
	var err error
	if s.executed, err = d.unionPosition(set1, set2); err != nil {
		return s, err
	}
	s.source = ParseSemiSyncSource(enabled, noReplica, timeout, waitPoint)
	return s, nil
}

// ReplicationStatus reports, in one query, the running server's position
// (its executed GTID set, as Probe's Position of a primary) and whether
// commits wait for an acknowledgement (SyncAny): the source side on as
// SetSynchronousStandbys sets it (SemiSyncSource.Waits), or, on a
// read-only server, asked to be on once it is promoted. SyncNames and
// Standbys are empty: the source knows its replicas by server id only.
func (m *MySQL) ReplicationStatus(ctx context.Context) (db.ReplicationStatus, error) {
	const op = "replication status"
	if m.running() == nil {
		return db.ReplicationStatus{}, m.errorf(op, "%w", db.ErrNotRunning)
	}
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return db.ReplicationStatus{}, m.errorf(op, "%w", err)
	}
	s, err := readSyncStatus(ctx, pool, d)
	if err != nil {
		return db.ReplicationStatus{}, m.errorf(op, "%w", err)
	}
	return db.ReplicationStatus{Current: s.executed, SyncAny: s.source.Waits() || (s.readOnly && m.waitOnPromote.Load())}, nil
}

// SetSynchronousStandbys turns the source side on (anyStandby: commits
// wait for any acknowledging replica, and wait while none is connected)
// or off (commits waiting return at once). names must be empty
// (ErrNamedStandbys). On a read-only server waiting is not turned on
// (its applier would wait) but asked of Promote, which turns it on before
// the server takes writes. It leaves the replica side alone
// (SetAcknowledging), and does nothing when the server already is as
// asked.
func (m *MySQL) SetSynchronousStandbys(ctx context.Context, names []string, anyStandby bool) error {
	const op = "set synchronous standbys"
	if len(names) > 0 {
		return m.errorf(op, "%v: %w", names, ErrNamedStandbys)
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf(op, "%w", db.ErrNotRunning)
	}
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return m.errorf(op, "%w", err)
	}
	s, err := readSyncStatus(ctx, pool, d)
	if err != nil {
		return m.errorf(op, "%w", err)
	}
	m.waitOnPromote.Store(anyStandby && s.readOnly)
	m.waitAsked.Store(anyStandby)
	on := anyStandby && !s.readOnly
	switch {
	case on && !s.source.Waits():
		err = execAll(ctx, pool, d.SemiSyncSourceOn())
	case !on && s.source.Enabled:
		err = execAll(ctx, pool, []string{d.SemiSyncSourceOff()})
	default:
		return nil
	}
	if err != nil {
		return m.errorf(op, "%w", err)
	}
	m.log.Info("semi-sync source side set", "on", on, "on_promote", anyStandby && s.readOnly)
	return nil
}

// SetAcknowledging turns the replica side on (AckOn) or off (AckOff) and,
// when a stream runs or is connecting (IO thread not stopped), restarts
// the IO thread, since the source learns the replica side only when the
// stream connects: after AckOff returned, Rpl_semi_sync_slave_status is
// OFF and nothing is acknowledged until AckOn. It does nothing when the
// variable and the status already are as asked, and restarts a
// connecting IO thread only when it changed the variable (it would only
// try to connect again).
func (m *MySQL) SetAcknowledging(ctx context.Context, state cluster.AckState) error {
	const op = "set acknowledging"
	if state != cluster.AckOn && state != cluster.AckOff {
		return m.errorf(op, "acknowledging state %q: want %q or %q", state, cluster.AckOn, cluster.AckOff)
	}
	want := state == cluster.AckOn
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if m.running() == nil {
		return m.errorf(op, "%w", db.ErrNotRunning)
	}
	pool, d, err := m.localDB(ctx)
	if err != nil {
		return m.errorf(op, "%w", err)
	}
	var enabled, streaming sql.NullString
	if err := pool.QueryRowContext(ctx, d.AckQuery()).Scan(&enabled, &streaming); err != nil {
		return m.errorf(op, "read the replica side: %w", err)
	}
	if isOn(enabled) == want && isOn(streaming) == want {
		return nil
	}
	if err := m.setAcknowledging(ctx, pool, d, want, isOn(enabled) != want); err != nil {
		return m.errorf(op, "%s: %w", state, err)
	}
	return nil
}

// setAcknowledging sets the replica side's variable when change, and
// restarts the IO thread when the stream must learn it.
func (m *MySQL) setAcknowledging(ctx context.Context, pool *sql.DB, d Dialect, want, change bool) error {
	if change {
		if _, err := pool.ExecContext(ctx, d.SemiSyncReplica(want)); err != nil {
			if isErrno(err, 1193) { // unknown system variable: MySQL's plugin is not loaded
				return fmt.Errorf("the semi-sync replica plugin is not loaded: %w", err)
			}
			return fmt.Errorf("set the replica side: %w", err)
		}
	}
	row, err := queryRow(ctx, pool, d.ShowReplicaStatus())
	if err != nil {
		return fmt.Errorf("read replica status: %w", err)
	}
	rs := ParseReplicaStatus(row)
	restart := rs.Configured && (rs.IORunning == "Yes" || rs.IORunning == "Connecting" && (change || !want))
	if restart {
		if err := execAll(ctx, pool, d.RestartReplicaIO()); err != nil {
			return fmt.Errorf("restart the IO thread: %w", err)
		}
	}
	if change || restart {
		m.log.Info("semi-sync replica side set", "on", want, "io_thread_restarted", restart)
	}
	return nil
}
