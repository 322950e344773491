package writeclient

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	driver "github.com/go-sql-driver/mysql"
)

// The MySQL engine (MySQL and MariaDB). There is no multi-host connection
// string: the client tries every host in order and keeps the first whose
// @@GLOBAL.read_only is off, which is how hamgr marks the primary (a
// replica, and a primary demoted for a switchover, are read-only). The
// table is written as a user without the privilege to bypass read_only
// (MariaDB's READ_ONLY ADMIN, SUPER), so a demoted primary refuses it. An
// INSERT counts as acknowledged when its OK packet arrived: autocommit,
// so the transaction committed.

// mysqlVerifyChunk is the number of ids VerifyNoLoss looks up per query
// on MySQL (one placeholder each).
const mysqlVerifyChunk = 1000

// mysqlSession is one connection to the writable server.
type mysqlSession struct {
	pool *sql.DB
	conn *sql.Conn
	o    Options
	at   int
}

// mysqlIdent is the quoted table: Table as "schema.table", or in Database.
func (o Options) mysqlIdent() string {
	parts := strings.Split(o.Table, ".")
	if len(parts) == 1 {
		parts = []string{o.Database, o.Table}
	}
	for i, p := range parts {
		parts[i] = "`" + strings.ReplaceAll(p, "`", "``") + "`"
	}
	return strings.Join(parts, ".")
}

// mysqlSchema is the quoted schema of the table.
func (o Options) mysqlSchema() string {
	ident := o.mysqlIdent()
	return ident[:strings.LastIndex(ident, ".")]
}

// quietDriver sends the driver's own log lines (one logger per process:
// "unexpected EOF" on every connection a failover cuts, which the client
// already reports as a failed write) to the first MySQL client's logger
// at debug level.
var quietDriver sync.Once

type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) { l.log.Debug(fmt.Sprint(v...)) }

// connectMySQL tries every host in order and returns a session to the
// first writable one; the error names what each host answered.
func (o Options) connectMySQL(ctx context.Context) (session, error) {
	if len(o.Hosts) == 0 {
		return nil, errors.New("writeclient: no hosts")
	}
	quietDriver.Do(func() { _ = driver.SetLogger(driverLogger{o.Logger.With("component", "mysql-driver")}) })
	var why []string
	for _, hp := range o.Hosts {
		s, err := o.connectMySQLHost(ctx, hp)
		if err == nil {
			return s, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		why = append(why, hp+": "+err.Error())
	}
	return nil, fmt.Errorf("writeclient: no writable server: %s", strings.Join(why, "; "))
}

// errReadOnly: the server answered, read-only.
var errReadOnly = errors.New("read-only")

func (o Options) connectMySQLHost(ctx context.Context, hp string) (session, error) {
	h, p, err := net.SplitHostPort(hp)
	if err != nil {
		h, p = strings.Trim(hp, "[]"), "3306"
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || h == "" {
		return nil, fmt.Errorf("bad host %q", hp)
	}
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(h, p)
	cfg.User, cfg.Passwd = o.User, o.Password
	cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = o.ConnectTimeout, o.StatementTimeout, o.StatementTimeout
	connector, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	pool := sql.OpenDB(connector)
	cctx, cancel := context.WithTimeout(ctx, o.ConnectTimeout)
	defer cancel()
	conn, err := pool.Conn(cctx)
	if err == nil {
		var ro bool
		err = conn.QueryRowContext(cctx, "SELECT @@GLOBAL.read_only").Scan(&ro)
		if err == nil && ro {
			err = errReadOnly
		}
		if err != nil {
			conn.Close()
		}
	}
	if err != nil {
		pool.Close()
		return nil, err
	}
	return &mysqlSession{pool: pool, conn: conn, o: o, at: int(port)}, nil
}

func (s *mysqlSession) createTable(ctx context.Context) error {
	if _, err := s.conn.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS "+s.o.mysqlSchema()); err != nil {
		return err
	}
	_, err := s.conn.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS "+s.o.mysqlIdent()+
		" (id BIGINT PRIMARY KEY, at TIMESTAMP(6) DEFAULT CURRENT_TIMESTAMP(6), node VARCHAR(64))")
	return err
}

func (s *mysqlSession) maxID(ctx context.Context) (int64, error) {
	var m int64
	err := s.conn.QueryRowContext(ctx, "SELECT COALESCE(MAX(id), 0) FROM "+s.o.mysqlIdent()).Scan(&m)
	return m, err
}

func (s *mysqlSession) insert(ctx context.Context, id int64) error {
	res, err := s.conn.ExecContext(ctx, "INSERT INTO "+s.o.mysqlIdent()+" (id, node) VALUES (?, @@port)", id)
	if err != nil {
		return err
	}
	if n, err := res.RowsAffected(); err != nil || n != 1 {
		return fmt.Errorf("insert affected %d rows (%v)", n, err)
	}
	return nil
}

func (s *mysqlSession) present(ctx context.Context, ids []int64) (map[int64]struct{}, error) {
	found := make(map[int64]struct{}, len(ids))
	if len(ids) == 0 {
		return found, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := "SELECT id FROM " + s.o.mysqlIdent() + " WHERE id IN (?" + strings.Repeat(",?", len(ids)-1) + ")"
	rows, err := s.conn.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		found[id] = struct{}{}
	}
	return found, rows.Err()
}

func (s *mysqlSession) port() int { return s.at }

// close closes the connection without waiting long on a dead server.
func (s *mysqlSession) close() {
	done := make(chan struct{})
	go func() {
		s.conn.Close()
		s.pool.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(100 * time.Millisecond):
	}
}
