package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Clone fills an empty data directory with a logical copy of up and
// leaves it stopped, marked as a replica, ready for StartReplica(up).
//
// Why a logical dump (mariadb-dump --single-transaction) rather than a
// physical copy (mariadb-backup): the new member runs it against up's SQL
// port with the replication account, as pg_basebackup does, needing
// nothing on up's host (mariadb-backup reads up's data files, so it would
// have to run there and stream to here through a channel hamgr does not
// have), and the copy is consistent with one GTID position, which the
// dump records. The price is speed on big databases (a restore replays
// every row) — a physical method can come later behind the same call.
//
// Steps, in a staging directory that becomes the data directory only
// when complete (so a failed or interrupted clone leaves no data, and is
// tried again): initialize an empty server (accounts and heartbeat table
// as Initialize makes them), start it without networking, load the dump
// with the binary log off (the copy must not become this server's own
// transactions), set gtid_slave_pos to the dump's position and the
// binary log GTID state to up's state at that position (so this member's
// position names every server the history holds, see
// cluster.MariaDBPosition), stop, publish. MariaDB only for now.
func (m *MySQL) Clone(ctx context.Context, up db.Upstream) error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	start := time.Now()
	if err := m.clone(ctx, up); err != nil {
		return m.errorf("clone", "from %s (%s:%d): %w", up.Name, up.Host, up.Port, err)
	}
	m.log.Info("cloned", "upstream", up.Name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (m *MySQL) clone(ctx context.Context, up db.Upstream) error {
	if up.Host == "" || up.Port <= 0 {
		return errors.New("upstream has no host or port")
	}
	f, err := m.binaryFlavour(ctx)
	if err != nil {
		return err
	}
	if f != FlavourMariaDB {
		return errors.New("cloning a MySQL server is not implemented yet")
	}
	staging, err := m.initStaging(ctx)
	if err != nil {
		return err
	}
	dump := filepath.Join(filepath.Dir(m.opts.DataDir), "."+m.opts.Name+".clone.sql")
	defer os.Remove(dump)
	pos, err := m.dumpUpstream(ctx, up, dump)
	if err != nil {
		return err
	}
	state, err := m.upstreamState(ctx, up, pos)
	if err != nil {
		return err
	}
	s, err := m.startServerOn(ctx, staging, "--skip-networking")
	if err != nil {
		return err
	}
	err = m.waitAnswering(ctx, s)
	if err == nil {
		err = m.loadDump(ctx, dump)
	}
	if err == nil {
		err = m.setClonePosition(ctx, pos, state)
	}
	if serr := m.stop(ctx, db.StopFast); err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(staging, replicaMarker), []byte(markerText), 0o640); err != nil {
		return fmt.Errorf("mark the copy as a replica's: %w", err)
	}
	return m.publishStaging(staging)
}

// clientDefaults writes a 0600 option file for a client tool (so that no
// password is in an argument vector) and returns its path.
func (m *MySQL) clientDefaults(lines ...string) (string, error) {
	f, err := os.CreateTemp(filepath.Dir(m.opts.DataDir), "."+m.opts.Name+".client-*.cnf")
	if err != nil {
		return "", fmt.Errorf("client option file: %w", err)
	}
	_, err = f.WriteString("[client]\n" + strings.Join(lines, "\n") + "\n")
	if err == nil {
		err = m.chown(f.Name())
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("client option file: %w", err)
	}
	return f.Name(), nil
}

// optionValue quotes a value for an option file.
func optionValue(v string) string { return `"` + strings.ReplaceAll(v, `"`, `\"`) + `"` }

var dumpPosRE = regexp.MustCompile(`(?m)^-- SET GLOBAL gtid_slave_pos='([^']*)'`)

// dumpUpstream dumps every database of up into path and returns the GTID
// position the dump is consistent with.
func (m *MySQL) dumpUpstream(ctx context.Context, up db.Upstream, path string) (cluster.Position, error) {
	cnf, err := m.clientDefaults("host="+optionValue(up.Host), "port="+strconv.Itoa(up.Port),
		"user="+optionValue(m.opts.Replication), "password="+optionValue(m.opts.ReplicationPassword))
	if err != nil {
		return cluster.Position{}, err
	}
	defer os.Remove(cnf)
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return cluster.Position{}, fmt.Errorf("dump file: %w", err)
	}
	defer out.Close()
	cmd := m.command(ctx, "mariadb-dump", "--defaults-file="+cnf, "--protocol=tcp", "--all-databases",
		"--single-transaction", "--master-data=2", "--routines", "--events", "--triggers", "--flush-privileges",
		"--hex-blob")
	cmd.SysProcAttr = nil // runs as the agent; reads its 0600 option file
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		return cluster.Position{}, fmt.Errorf("mariadb-dump: %w: %s", err, redact(errors.New(lastLines(stderr.String(), 5)), m.opts.ReplicationPassword))
	}
	// The position is a comment at the head, or (with --master-data=2)
	// near the end of the dump.
	text, err := headAndTail(path, 64<<10)
	if err != nil {
		return cluster.Position{}, err
	}
	match := dumpPosRE.FindStringSubmatch(text)
	if match == nil {
		return cluster.Position{}, errors.New("the dump records no GTID position (is the upstream's binary log on?)")
	}
	return cluster.MariaDBPosition(string(match[1]))
}

// headAndTail returns the first and the last n bytes of the file.
func headAndTail(path string, n int64) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	head := make([]byte, min(n, fi.Size()))
	if _, err := io.ReadFull(f, head); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	if fi.Size() <= n {
		return string(head), nil
	}
	tail := make([]byte, min(n, fi.Size()-n))
	if _, err := f.ReadAt(tail, fi.Size()-int64(len(tail))); err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(head) + "\n" + string(tail), nil
}

// upstreamState reads up's binary log GTID state and keeps what it held
// at pos: per domain, the entries at or below pos's seq (with
// gtid_strict_mode a later seq was written after the dump), plus pos.
func (m *MySQL) upstreamState(ctx context.Context, up db.Upstream, pos cluster.Position) (cluster.Position, error) {
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "tcp", net.JoinHostPort(up.Host, strconv.Itoa(up.Port))
	cfg.User, cfg.Passwd, cfg.Timeout = m.opts.Replication, m.opts.ReplicationPassword, connectTimeout
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return cluster.Position{}, err
	}
	pool := sql.OpenDB(conn)
	defer pool.Close()
	var state string
	if err := pool.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_binlog_state").Scan(&state); err != nil {
		return cluster.Position{}, fmt.Errorf("read the upstream's GTID state: %w", err)
	}
	return ClampState(state, pos)
}

// ClampState keeps, of a MariaDB GTID state, the entries at or below
// pos's seq in their domain, and adds pos's own.
func ClampState(state string, pos cluster.Position) (cluster.Position, error) {
	top := map[string]uint64{}
	set, _ := pos.GTIDSet()
	var keep []string
	for _, g := range strings.Split(set, ",") {
		if parts := strings.Split(g, "-"); len(parts) == 3 {
			n, _ := strconv.ParseUint(parts[2], 10, 64)
			top[parts[0]] = max(top[parts[0]], n)
			keep = append(keep, g)
		}
	}
	for _, g := range strings.Split(state, ",") {
		g = strings.TrimSpace(g)
		parts := strings.Split(g, "-")
		if len(parts) != 3 {
			continue
		}
		n, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil {
			return cluster.Position{}, fmt.Errorf("GTID %q: %w", g, err)
		}
		if t, ok := top[parts[0]]; ok && n <= t {
			keep = append(keep, g)
		}
	}
	return cluster.MariaDBPosition(strings.Join(keep, ","))
}

// loadDump feeds the dump to the local server with the binary log off.
func (m *MySQL) loadDump(ctx context.Context, path string) error {
	lines := []string{"socket=" + optionValue(m.opts.Socket), "user=" + optionValue(m.opts.Superuser)}
	if m.opts.SuperuserPassword != "" {
		lines = append(lines, "password="+optionValue(m.opts.SuperuserPassword))
	}
	cnf, err := m.clientDefaults(lines...)
	if err != nil {
		return err
	}
	defer os.Remove(cnf)
	in, err := os.Open(path)
	if err != nil {
		return err
	}
	defer in.Close()
	cmd := m.command(ctx, "mariadb", "--defaults-file="+cnf, "--init-command=SET SESSION sql_log_bin = 0", "--batch")
	cmd.SysProcAttr = nil
	var stderr strings.Builder
	cmd.Stdin, cmd.Stderr = in, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("load the dump: %w: %s", err, lastLines(stderr.String(), 5))
	}
	return nil
}

// setClonePosition sets gtid_slave_pos to the dump's position and the
// binary log GTID state to state.
func (m *MySQL) setClonePosition(ctx context.Context, pos, state cluster.Position) error {
	pool, _, err := m.localDB(ctx)
	if err != nil {
		return err
	}
	set, _ := pos.GTIDSet()
	st, _ := state.GTIDSet()
	return execAll(ctx, pool, []string{"RESET MASTER", "SET GLOBAL gtid_binlog_state = " + quote(st), SetSlavePos(set)})
}
