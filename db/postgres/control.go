package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// hbaRemote lets members and agents on other hosts in, with SCRAM only.
// pg_basebackup copies pg_hba.conf, so every member gets it.
const hbaRemote = `
# Added by hamgr: members and agents on other hosts authenticate with SCRAM.
host    all             all             all                     scram-sha-256
host    replication     all             all                     scram-sha-256
`

// Initialize creates a database cluster with initdb when DataDir is empty
// or absent (a DataDir that already holds one is kept), starts it as a
// primary, and creates (or updates) the replication role. It leaves the
// server running as a primary.
func (p *Postgres) Initialize(ctx context.Context) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if !p.hasData() {
		if err := p.initdb(ctx); err != nil {
			return p.errorf("initialize", "%w", err)
		}
	}
	if err := p.startPrimary(ctx); err != nil {
		return fmt.Errorf("postgres member %q: initialize: %w", p.opts.Name, err)
	}
	if err := p.ensureReplicationRole(ctx); err != nil {
		return p.errorf("initialize", "replication role %q: %w", p.opts.Replication, err)
	}
	return nil
}

func (p *Postgres) initdb(ctx context.Context) error {
	if err := p.requireEmptyDataDir(); err != nil {
		return err
	}
	if err := p.mkdirOwned(p.opts.DataDir, 0o700); err != nil {
		return err
	}
	args := []string{"-D", p.opts.DataDir, "-U", p.opts.Superuser,
		"--auth-local=trust", "--auth-host=scram-sha-256", "--data-checksums",
		"-E", "UTF8", "--locale=C.UTF-8"}
	if p.opts.SuperuserPassword != "" {
		pwfile, err := p.tempSecret(p.opts.SuperuserPassword + "\n")
		if err != nil {
			return err
		}
		defer os.Remove(pwfile)
		args = append(args, "--pwfile="+pwfile)
	}
	start := time.Now()
	out, err := p.command(ctx, "initdb", args...).CombinedOutput()
	if logf, lerr := p.openLog(); lerr == nil {
		_, _ = logf.Write(out)
		logf.Close()
	}
	if err != nil {
		return fmt.Errorf("initdb: %w:\n%s", err, lastLines(string(out), 10))
	}
	f, err := os.OpenFile(p.path("pg_hba.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(hbaRemote)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("pg_hba.conf: %w", err)
	}
	p.log.Info("initialized database cluster", "data_dir", p.opts.DataDir, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// tempSecret writes secret to a 0600 temporary file readable by the data
// dir owner and returns its path; the caller removes it.
func (p *Postgres) tempSecret(secret string) (string, error) {
	f, err := os.CreateTemp("", "hamgr-secret-*")
	if err != nil {
		return "", fmt.Errorf("temporary password file: %w", err)
	}
	_, err = f.WriteString(secret)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = p.chown(f.Name())
	}
	if err != nil {
		os.Remove(f.Name())
		return "", fmt.Errorf("temporary password file: %w", err)
	}
	return f.Name(), nil
}

func (p *Postgres) requireEmptyDataDir() error {
	entries, err := os.ReadDir(p.opts.DataDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("data dir: %w", err)
	}
	if len(entries) > 0 {
		return fmt.Errorf("data dir %s is not empty and holds no database cluster (no PG_VERSION)", p.opts.DataDir)
	}
	return nil
}

// ensureReplicationRole creates the replication role or resets its
// attributes and password. The password goes over as a SCRAM verifier, with
// statement logging off for the transaction.
func (p *Postgres) ensureReplicationRole(ctx context.Context) error {
	return p.withConn(ctx, func(c *pgx.Conn) error {
		tx, err := c.Begin(ctx)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback(ctx) }()
		if _, err := tx.Exec(ctx, "SELECT set_config('log_statement', 'none', true), set_config('log_min_error_statement', 'panic', true)"); err != nil {
			return err
		}
		var found bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)", p.opts.Replication).Scan(&found); err != nil {
			return err
		}
		verb := "CREATE"
		if found {
			verb = "ALTER"
		}
		secret, ok := scramVerifier(p.opts.ReplicationPassword)
		if !ok {
			secret = p.opts.ReplicationPassword
		}
		stmt := fmt.Sprintf("%s ROLE %s WITH REPLICATION LOGIN PASSWORD %s",
			verb, pgx.Identifier{p.opts.Replication}.Sanitize(), sqlLiteral(secret))
		if _, err := tx.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			return fmt.Errorf("%s ROLE: %w", verb, err)
		}
		if err := tx.Commit(ctx); err != nil {
			return err
		}
		p.log.Info("replication role ready", "role", p.opts.Replication, "created", !found)
		return nil
	})
}

// Clone fills an empty (or absent) DataDir with a copy of up, made by
// pg_basebackup as the replication role, and leaves it stopped as up's
// replica (standby.signal and primary_conninfo written), ready for
// StartReplica. On failure the partial copy is removed.
func (p *Postgres) Clone(ctx context.Context, up db.Upstream) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if up.Host == "" || up.Port <= 0 {
		return p.errorf("clone", "upstream %q has no host or port", up.Name)
	}
	if p.running() != nil {
		return p.errorf("clone", "server is running in %s", p.opts.DataDir)
	}
	if err := p.requireEmptyDataDir(); err != nil {
		return p.errorf("clone", "%w", err)
	}
	if err := p.mkdirOwned(p.opts.DataDir, 0o700); err != nil {
		return p.errorf("clone", "%w", err)
	}
	if err := p.writePassfile(); err != nil {
		return p.errorf("clone", "%w", err)
	}
	start := time.Now()
	cmd := p.command(ctx, "pg_basebackup", "-h", up.Host, "-p", strconv.Itoa(up.Port),
		"-U", p.opts.Replication, "-D", p.opts.DataDir, "-X", "stream", "-c", "fast", "-w")
	cmd.Env = append(cmd.Env, "PGPASSFILE="+p.passfile(), "PGAPPNAME="+p.opts.Name)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		if rerr := p.emptyDataDir(); rerr != nil {
			p.log.Error("cannot remove partial clone", "err", rerr)
		}
		return p.errorf("clone", "pg_basebackup from %s (%s:%d): %w:\n%s",
			up.Name, up.Host, up.Port, err, lastLines(stderr.String(), 10))
	}
	// A copy of the upstream is its replica: mark it so (standby.signal,
	// primary_conninfo), so that it can never start as a primary, and so
	// that whoever looks next sees a stopped replica, not a stopped
	// former primary.
	if err := p.writeReplicaConf(&up); err != nil {
		return p.errorf("clone", "after pg_basebackup: %w", err)
	}
	p.log.Info("cloned from upstream", "upstream", up.Name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// RemoveData deletes the contents of the stopped server's data directory,
// so that Clone can copy the primary again. It refuses a running server.
func (p *Postgres) RemoveData(ctx context.Context) error {
	if st, err := p.Probe(ctx); err == nil && st.Running {
		return p.errorf("remove data", "the server is running; stop it first")
	}
	if err := p.emptyDataDir(); err != nil {
		return p.errorf("remove data", "%v", err)
	}
	p.log.Warn("removed the data directory contents to re-clone", "data_dir", p.opts.DataDir)
	return nil
}

// emptyDataDir removes everything inside DataDir, keeping the directory.
func (p *Postgres) emptyDataDir() error {
	entries, err := os.ReadDir(p.opts.DataDir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(p.opts.DataDir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}

// StartPrimary starts the server and waits until it accepts connections
// out of recovery (crash recovery included) or ctx ends. It refuses a data
// directory holding standby.signal: a replica must be promoted instead. A
// running primary is left as it is.
func (p *Postgres) StartPrimary(ctx context.Context) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if err := p.startPrimary(ctx); err != nil {
		return fmt.Errorf("postgres member %q: %w", p.opts.Name, p.stillStarting(ctx, err))
	}
	return nil
}

// stillStarting turns err into one that wraps db.ErrStillStarting when it
// came from ctx ending while the server process still runs.
func (p *Postgres) stillStarting(ctx context.Context, err error) error {
	if ctx.Err() != nil && p.running() != nil {
		return fmt.Errorf("%w: %w", db.ErrStillStarting, err)
	}
	return err
}

func (p *Postgres) startPrimary(ctx context.Context) error {
	if !p.hasData() {
		return fmt.Errorf("start primary: no database cluster in %s", p.opts.DataDir)
	}
	s := p.running()
	if s == nil {
		if exists(p.path("standby.signal")) {
			return fmt.Errorf("start primary: %s holds standby.signal: start it as a replica and promote it", p.opts.DataDir)
		}
		var err error
		if s, err = p.startServer(ctx); err != nil {
			return fmt.Errorf("start primary: %w", err)
		}
	}
	if err := p.waitReady(ctx, s, cluster.RolePrimary); err != nil {
		return fmt.Errorf("start primary: %w", err)
	}
	return nil
}

// StartReplica writes standby.signal and postgresql.auto.conf (streaming
// from up through the replication slot SlotName(Name), or from nowhere
// when up is nil; following the latest timeline; see writeReplicaConf),
// starts the server and waits until it accepts read-only connections. On a
// server already running as a replica it only repoints it to up (Follow),
// if up is given.
func (p *Postgres) StartReplica(ctx context.Context, up *db.Upstream) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if !p.hasData() {
		return p.errorf("start replica", "no database cluster in %s", p.opts.DataDir)
	}
	if s := p.running(); s != nil {
		if err := p.waitReady(ctx, s, cluster.RoleReplica); err != nil {
			return p.errorf("start replica", "%w", p.stillStarting(ctx, err))
		}
		if up == nil {
			return nil
		}
		return p.follow(ctx, *up)
	}
	if err := p.writeReplicaConf(up); err != nil {
		return p.errorf("start replica", "%w", err)
	}
	s, err := p.startServer(ctx)
	if err == nil {
		err = p.waitReady(ctx, s, cluster.RoleReplica)
	}
	if err != nil {
		return p.errorf("start replica", "%w", p.stillStarting(ctx, err))
	}
	return nil
}

// writeReplicaConf writes standby.signal, the passfile and a
// postgresql.auto.conf that holds only hamgr's replica settings:
// primary_conninfo and primary_slot_name (SlotName of this member) when up
// is given, and recovery_target_timeline. Anything else in the file is
// dropped on purpose, synchronous_standby_names included: it was copied
// from the upstream by pg_basebackup or pg_rewind, or left from this
// member's own time as a primary, and a replica has no use for it. The
// agent sets it (SetSynchronousStandbys) on the member it promotes.
func (p *Postgres) writeReplicaConf(up *db.Upstream) error {
	conf := fmt.Sprintf("# Written by hamgr for member %s, which owns this file.\n", p.opts.Name)
	if up != nil {
		if up.Host == "" || up.Port <= 0 {
			return fmt.Errorf("upstream %q has no host or port", up.Name)
		}
		if err := p.writePassfile(); err != nil {
			return err
		}
		conf += "primary_conninfo = " + configValue(p.primaryConninfo(*up)) + "\n"
		conf += "primary_slot_name = " + configValue(p.SlotName(p.opts.Name)) + "\n"
	}
	conf += "recovery_target_timeline = 'latest'\n"
	if err := p.writeFileOwned(p.path("postgresql.auto.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	return p.writeFileOwned(p.path("standby.signal"), nil, 0o600)
}

// primaryConninfo is how this member's WAL receiver reaches up. The
// password comes from the passfile, never from the string itself.
func (p *Postgres) primaryConninfo(up db.Upstream) string {
	return conninfo("host", up.Host, "port", strconv.Itoa(up.Port), "user", p.opts.Replication,
		"application_name", p.opts.Name, "passfile", p.passfile())
}

func (p *Postgres) writePassfile() error {
	return p.writeFileOwned(p.passfile(), []byte(pgpassLine(p.opts.Replication, p.opts.ReplicationPassword)), 0o600)
}

// waitReady polls s every 50 ms until it accepts connections in the wanted
// role, exits, turns out to be in the other role, or ctx ends. A server
// still starting up or recovering from a crash refuses connections: that
// is waited out.
func (p *Postgres) waitReady(ctx context.Context, s *server, want cluster.Role) error {
	var lastErr error
	for {
		if !s.alive() {
			return p.exitError(s)
		}
		var rec bool
		err := p.withConn(ctx, func(c *pgx.Conn) error {
			return c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec)
		})
		switch {
		case err != nil:
			lastErr = err
		case want == cluster.RolePrimary && !rec, want == cluster.RoleReplica && rec:
			return nil
		case want == cluster.RoleReplica:
			return errors.New("server is running as a primary, not as a replica")
		case exists(p.path("standby.signal")):
			return errors.New("server is running as a replica (standby.signal): promote it instead")
		default:
			lastErr = errors.New("server is still in recovery")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("server (pid %d) not ready as %s: %w (last: %v)", s.pid, want, ctx.Err(), lastErr)
		case <-s.done:
			return p.exitError(s)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// promoteWake is how often Promote wakes the startup process again while
// the server is still in recovery (see Promote).
const promoteWake = 100 * time.Millisecond

// Promote turns a running replica into a primary and checks it left
// recovery. On a primary it does nothing.
//
// It asks with pg_promote(wait => false) and then, until the server has
// left recovery, polls every 20 ms and wakes the startup process every
// promoteWake with a configuration reload (a SIGHUP sets the latch the
// startup process sleeps on, and reloading an unchanged configuration does
// nothing else). PostgreSQL 15 needs that: a promote request that arrives
// while the startup process has asked for a new WAL receiver that has not
// started yet (its upstream just went away) cancels the request and then
// sleeps out what is left of wal_retrieve_retry_interval before it looks
// at the request again, since nothing sets its latch.
func (p *Postgres) Promote(ctx context.Context) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.running() == nil {
		return p.errorf("promote", "%w", db.ErrNotRunning)
	}
	limit := 60 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		limit = min(max(time.Until(dl), time.Second), time.Hour)
	}
	start := time.Now()
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		var rec, sent bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil || !rec {
			return err
		}
		if err := c.QueryRow(ctx, "SELECT pg_promote(wait => false)").Scan(&sent); err != nil {
			return err
		}
		if !sent {
			return errors.New("pg_promote could not signal the postmaster")
		}
		if err := awaitPromotion(ctx, c, limit); err != nil {
			return err
		}
		p.log.Info("promoted", "took", time.Since(start).Round(time.Millisecond))
		return nil
	})
	if err != nil {
		return p.errorf("promote", "%w", err)
	}
	return nil
}

// awaitPromotion polls c's server until it has left recovery, waking its
// startup process every promoteWake (see Promote), and fails once it has
// waited limit.
func awaitPromotion(ctx context.Context, c *pgx.Conn, limit time.Duration) error {
	lastWake := time.Now()
	deadline := lastWake.Add(limit)
	for {
		var rec bool
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&rec); err != nil {
			return err
		}
		if !rec {
			return nil
		}
		now := time.Now()
		if now.After(deadline) {
			return fmt.Errorf("still in recovery %v after pg_promote", limit.Round(time.Millisecond))
		}
		if now.Sub(lastWake) >= promoteWake {
			if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
				return fmt.Errorf("wake the startup process: %w", err)
			}
			lastWake = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("still in recovery after pg_promote: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// wakeReceiverRetry: on a replica that already points at its upstream but
// runs no WAL receiver (its last one failed: the upstream was not ready,
// or had no slot for it yet), a configuration reload sets the startup
// process's latch, so that it starts a new receiver at once rather than
// sleeping out what is left of wal_retrieve_retry_interval. A follow
// repeated while the replica does not stream (ha plans it every round,
// backing off from 100 ms) thereby attaches it as soon as a new primary
// has created its slot, not up to a second later. Reloading an unchanged
// configuration does nothing else.
func wakeReceiverRetry(ctx context.Context, c *pgx.Conn) error {
	var receivers int
	if err := c.QueryRow(ctx, "SELECT count(*) FROM pg_stat_wal_receiver").Scan(&receivers); err != nil {
		return err
	}
	if receivers > 0 {
		return nil
	}
	_, err := c.Exec(ctx, "SELECT pg_reload_conf()")
	return err
}

// Follow repoints a running replica at up with ALTER SYSTEM SET
// primary_conninfo and primary_slot_name (SlotName of this member) and a
// configuration reload (no restart). When the replica already points
// there it changes nothing, but wakes the startup process if no WAL
// receiver runs (wakeReceiverRetry); it fails on a primary. Until up has
// the slot (CreateSlots on up), the WAL receiver fails and retries every
// wal_retrieve_retry_interval (1s unless overridden in Parameters), or at
// the next Follow.
func (p *Postgres) Follow(ctx context.Context, up db.Upstream) error {
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.running() == nil {
		return p.errorf("follow", "%w", db.ErrNotRunning)
	}
	return p.follow(ctx, up)
}

func (p *Postgres) follow(ctx context.Context, up db.Upstream) error {
	if up.Host == "" || up.Port <= 0 {
		return p.errorf("follow", "upstream %q has no host or port", up.Name)
	}
	if err := p.writePassfile(); err != nil {
		return p.errorf("follow", "%w", err)
	}
	want := p.primaryConninfo(up)
	slot := p.SlotName(p.opts.Name)
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		var rec bool
		var cur, curSlot string
		if err := c.QueryRow(ctx, "SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), current_setting('primary_slot_name')").Scan(&rec, &cur, &curSlot); err != nil {
			return err
		}
		if !rec {
			return errors.New("server is a primary: it cannot follow")
		}
		if cur == want && curSlot == slot {
			return wakeReceiverRetry(ctx, c)
		}
		if _, err := c.Exec(ctx, "ALTER SYSTEM SET primary_conninfo = "+sqlLiteral(want), pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "ALTER SYSTEM SET primary_slot_name = "+sqlLiteral(slot), pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return err
		}
		p.log.Info("following new upstream", "upstream", up.Name, "host", up.Host, "port", up.Port, "slot", slot)
		return nil
	})
	if err != nil {
		return p.errorf("follow", "upstream %s (%s:%d): %w", up.Name, up.Host, up.Port, err)
	}
	return nil
}
