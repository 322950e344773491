package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// SQLSTATE codes the slot functions raise.
const (
	sqlstateDuplicateObject = "42710" // slot already exists
	sqlstateUndefinedObject = "42704" // slot does not exist
	sqlstateObjectInUse     = "55006" // slot is active
)

// replicationStatusSQL reads a primary's WAL position, its synchronous
// standby setting and its WAL senders in one query. The derived table is
// evaluated once (OFFSET 0), so every row carries the same position; base
// backups' WAL senders (state "backup") are not standbys and are left out.
const replicationStatusSQL = `
SELECT w.rec, w.lsn, w.names,
  s.application_name, s.state, s.sync_state, s.flush_lsn::text, s.replay_lsn::text
FROM (
  SELECT r.rec,
    CASE WHEN r.rec THEN NULL ELSE pg_current_wal_lsn()::text END AS lsn,
    current_setting('synchronous_standby_names') AS names
  FROM (SELECT pg_is_in_recovery() AS rec OFFSET 0) r
  OFFSET 0
) w
LEFT JOIN pg_stat_replication s ON s.state IS DISTINCT FROM 'backup'
ORDER BY s.application_name, s.pid`

// ReplicationStatus reports the primary's current WAL position, its
// standbys as pg_stat_replication shows them (ordered by name) and its
// synchronous_standby_names, all read in one query. SyncNames lists the
// names in the setting, "*" excepted, which sets SyncAny instead; the
// method and count (FIRST n, ANY n) are not reported. It fails on a
// replica.
func (p *Postgres) ReplicationStatus(ctx context.Context) (db.ReplicationStatus, error) {
	const op = "replication status"
	if p.running() == nil {
		return db.ReplicationStatus{}, p.errorf(op, "%w", db.ErrNotRunning)
	}
	var rs db.ReplicationStatus
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		rs = db.ReplicationStatus{}
		rows, err := c.Query(ctx, replicationStatusSQL)
		if err != nil {
			return err
		}
		defer rows.Close()
		var rec bool
		var lsn, names string
		for rows.Next() {
			var wal *string
			var name, state, sync, flush, replay *string
			if err := rows.Scan(&rec, &wal, &names, &name, &state, &sync, &flush, &replay); err != nil {
				return err
			}
			lsn = deref(wal)
			if name == nil && state == nil {
				continue // the LEFT JOIN's row when no standby is connected
			}
			sb := db.Standby{Name: deref(name), State: deref(state), SyncState: deref(sync)}
			flushed, err := cluster.ParseLSN(deref(flush))
			if err != nil {
				return err
			}
			replayed, err := cluster.ParseLSN(deref(replay))
			if err != nil {
				return err
			}
			// pg_stat_replication reports no timeline: these compare by LSN.
			sb.Flushed, sb.Replayed = positionAt(0, flushed), positionAt(0, replayed)
			rs.Standbys = append(rs.Standbys, sb)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if rec {
			return errors.New("server is a replica: it has no standbys of its own to report")
		}
		current, err := cluster.ParseLSN(lsn)
		if err != nil {
			return err
		}
		rs.Current = positionAt(0, current)
		cfg, err := parseSyncStandbyNames(names)
		if err != nil {
			return err
		}
		for _, n := range cfg.names {
			if n == "*" {
				rs.SyncAny = true
			} else {
				rs.SyncNames = append(rs.SyncNames, n)
			}
		}
		return nil
	})
	if err != nil {
		return db.ReplicationStatus{}, p.errorf(op, "%w", err)
	}
	return rs, nil
}

// SetSynchronousStandbys sets synchronous_standby_names with ALTER SYSTEM
// and reloads the configuration: 'FIRST n ("a","b")' with n = len(names)
// (every named standby must confirm each commit; anyStandby is then
// ignored), '*' with no names and anyStandby (any one standby), and RESET
// (asynchronous) with neither. Names match application_name, which
// PostgreSQL compares case-insensitively; duplicates are dropped. It does
// nothing when the server already runs with that value, and waits (up to
// two seconds) until the reloaded value is in effect.
//
// It works on a replica too (ALTER SYSTEM is allowed in recovery), where
// the setting has no effect until promotion: a candidate can set it just
// before it promotes. The setting lives in postgresql.auto.conf, so a
// primary keeps it across restarts (StartPrimary), while StartReplica,
// which rewrites that file, drops it.
func (p *Postgres) SetSynchronousStandbys(ctx context.Context, names []string, anyStandby bool) error {
	const op = "set synchronous standbys"
	p.opMu.Lock()
	defer p.opMu.Unlock()
	want, err := syncStandbyValue(names, anyStandby)
	if err != nil {
		return p.errorf(op, "%w", err)
	}
	if p.running() == nil {
		return p.errorf(op, "%w", db.ErrNotRunning)
	}
	err = p.withConn(ctx, func(c *pgx.Conn) error {
		var cur string
		if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&cur); err != nil {
			return err
		}
		if cur == want {
			return nil
		}
		stmt := "ALTER SYSTEM RESET synchronous_standby_names"
		if want != "" {
			stmt = "ALTER SYSTEM SET synchronous_standby_names = " + sqlLiteral(want)
		}
		if _, err := c.Exec(ctx, stmt, pgx.QueryExecModeSimpleProtocol); err != nil {
			return err
		}
		if _, err := c.Exec(ctx, "SELECT pg_reload_conf()"); err != nil {
			return err
		}
		// The reload is asynchronous: the backend applies it before its
		// next command once the postmaster has passed the signal on.
		deadline := time.Now().Add(2 * time.Second)
		for {
			if err := c.QueryRow(ctx, "SELECT current_setting('synchronous_standby_names')").Scan(&cur); err != nil {
				return err
			}
			if cur == want {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("synchronous_standby_names is still %q after the reload, want %q (set on the command line?)", cur, want)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		p.log.Info("synchronous standbys set", "synchronous_standby_names", want)
		return nil
	})
	if err != nil {
		return p.errorf(op, "%w", err)
	}
	return nil
}

// syncStandbyValue is the synchronous_standby_names value for names and
// anyStandby (see SetSynchronousStandbys).
func syncStandbyValue(names []string, anyStandby bool) (string, error) {
	var quoted []string
	seen := map[string]bool{}
	for _, n := range names {
		if n == "" || strings.ContainsAny(n, "\x00\r\n") {
			return "", fmt.Errorf("standby name %q is invalid", n)
		}
		if k := strings.ToLower(n); !seen[k] {
			seen[k] = true
			quoted = append(quoted, `"`+strings.ReplaceAll(n, `"`, `""`)+`"`)
		}
	}
	switch {
	case len(quoted) > 0:
		return fmt.Sprintf("FIRST %d (%s)", len(quoted), strings.Join(quoted, ",")), nil
	case anyStandby:
		return "*", nil
	}
	return "", nil
}

// syncConfig is a parsed synchronous_standby_names.
type syncConfig struct {
	method string // "FIRST" or "ANY"; "" when the setting is empty
	num    int
	names  []string // as PostgreSQL reads them: unquoted, "*" kept
}

// parseSyncStandbyNames parses synchronous_standby_names with the grammar
// of PostgreSQL's syncrep_gram.y: a plain list (FIRST 1), "n (list)"
// (FIRST n), "FIRST n (list)" or "ANY n (list)"; names are identifiers,
// numbers, "*" or double-quoted strings with "" for a quote.
func parseSyncStandbyNames(s string) (syncConfig, error) {
	type token struct {
		text   string
		quoted bool
	}
	var toks []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f':
			i++
		case c == '(' || c == ')' || c == ',':
			toks = append(toks, token{text: string(c)})
			i++
		case c == '"':
			var b strings.Builder
			i++
			for {
				if i >= len(s) {
					return syncConfig{}, fmt.Errorf("synchronous_standby_names %q: unterminated quoted name", s)
				}
				if s[i] == '"' {
					if i+1 < len(s) && s[i+1] == '"' {
						b.WriteByte('"')
						i += 2
						continue
					}
					i++
					break
				}
				b.WriteByte(s[i])
				i++
			}
			toks = append(toks, token{text: b.String(), quoted: true})
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\r\n\f(),\"", rune(s[j])) {
				j++
			}
			toks = append(toks, token{text: s[i:j]})
			i = j
		}
	}
	if len(toks) == 0 {
		return syncConfig{}, nil
	}
	bad := func() (syncConfig, error) {
		return syncConfig{}, fmt.Errorf("synchronous_standby_names %q: cannot parse", s)
	}
	isNum := func(t token) bool {
		if t.quoted || t.text == "" {
			return false
		}
		for _, r := range t.text {
			if !unicode.IsDigit(r) {
				return false
			}
		}
		return true
	}
	isPunct := func(t token) bool { return !t.quoted && (t.text == "(" || t.text == ")" || t.text == ",") }
	cfg := syncConfig{method: "FIRST", num: 1}
	rest := toks
	kw := strings.ToUpper(toks[0].text)
	switch {
	case !toks[0].quoted && (kw == "FIRST" || kw == "ANY") && len(toks) > 2 && isNum(toks[1]) && toks[2].text == "(" && !toks[2].quoted:
		cfg.method = kw
		rest = toks[1:]
		fallthrough
	case isNum(rest[0]) && len(rest) > 1 && rest[1].text == "(" && !rest[1].quoted:
		n, err := strconv.Atoi(rest[0].text)
		if err != nil {
			return bad()
		}
		cfg.num = n
		if last := rest[len(rest)-1]; last.text != ")" || last.quoted {
			return bad()
		}
		rest = rest[2 : len(rest)-1]
	}
	for i, t := range rest {
		if i%2 == 1 {
			if t.text != "," || t.quoted {
				return bad()
			}
			continue
		}
		if isPunct(t) {
			return bad()
		}
		cfg.names = append(cfg.names, t.text)
	}
	if len(cfg.names) == 0 || len(rest)%2 == 0 {
		return bad()
	}
	return cfg, nil
}

// SlotName is the physical replication slot name of member: lower case,
// every character outside [a-z0-9_] replaced by '_', at most 63 bytes.
// Distinct member names may share a slot name ("n-1" and "n.1"); members
// should not be named so.
func (p *Postgres) SlotName(member string) string { return slotName(member) }

func slotName(member string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(member) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
		if b.Len() == 63 {
			break
		}
	}
	return b.String()
}

// Slots lists the server's physical replication slots in name order.
func (p *Postgres) Slots(ctx context.Context) ([]db.Slot, error) {
	if p.running() == nil {
		return nil, p.errorf("list slots", "%w", db.ErrNotRunning)
	}
	var slots []db.Slot
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		slots = nil
		rows, err := c.Query(ctx, `SELECT slot_name::text, active, restart_lsn::text, wal_status
			FROM pg_replication_slots WHERE slot_type = 'physical' ORDER BY slot_name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var s db.Slot
			var restart, walStatus *string
			if err := rows.Scan(&s.Name, &s.Active, &restart, &walStatus); err != nil {
				return err
			}
			if s.RestartLSN, err = cluster.ParseLSN(deref(restart)); err != nil {
				return err
			}
			s.WALStatus = deref(walStatus)
			slots = append(slots, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, p.errorf("list slots", "%w", err)
	}
	return slots, nil
}

// CreateSlots creates the physical replication slot SlotName(m) of every
// member m that has none, reserving WAL at once (immediately_reserve), so
// the server keeps the WAL that member will need from now on (bounded by
// Options.MaxSlotWALKeepSize). The member's own name is skipped: a server
// never streams from itself. A slot created concurrently is not an error.
// It works on any running server; the agent calls it on the primary.
func (p *Postgres) CreateSlots(ctx context.Context, members []string) error {
	const op = "create slots"
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.running() == nil {
		return p.errorf(op, "%w", db.ErrNotRunning)
	}
	var errs []error
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		have, err := slotSet(ctx, c)
		if err != nil {
			return err
		}
		self := slotName(p.opts.Name)
		for _, m := range members {
			name := slotName(m)
			if name == "" || name == self || have[name] {
				continue
			}
			_, err := c.Exec(ctx, "SELECT pg_create_physical_replication_slot($1, immediately_reserve => true)", name)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == sqlstateDuplicateObject:
				have[name] = true
			case errors.As(err, &pgErr):
				errs = append(errs, fmt.Errorf("slot %q for member %q: %w", name, m, err))
			case err != nil:
				return err // connection trouble: stop here
			default:
				have[name] = true
				p.log.Info("created replication slot", "slot", name, "for", m)
			}
		}
		return nil
	})
	if err = errors.Join(append([]error{err}, errs...)...); err != nil {
		return p.errorf(op, "%w", err)
	}
	return nil
}

// DropSlots drops the physical replication slots of members that are not
// active; an active slot (its member streams through it) is skipped and
// logged, a missing one ignored. An inactive slot keeps WAL until dropped,
// up to Options.MaxSlotWALKeepSize.
func (p *Postgres) DropSlots(ctx context.Context, members []string) error {
	const op = "drop slots"
	p.opMu.Lock()
	defer p.opMu.Unlock()
	if p.running() == nil {
		return p.errorf(op, "%w", db.ErrNotRunning)
	}
	var errs []error
	err := p.withConn(ctx, func(c *pgx.Conn) error {
		for _, m := range members {
			name := slotName(m)
			if name == "" {
				continue
			}
			var found, active bool
			err := c.QueryRow(ctx, `SELECT true, active FROM pg_replication_slots
				WHERE slot_name = $1 AND slot_type = 'physical'`, name).Scan(&found, &active)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
				continue
			case err != nil:
				return err
			case active:
				p.log.Info("kept active replication slot", "slot", name, "for", m)
				continue
			}
			_, err = c.Exec(ctx, "SELECT pg_drop_replication_slot($1)", name)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == sqlstateUndefinedObject:
			case errors.As(err, &pgErr) && pgErr.Code == sqlstateObjectInUse:
				p.log.Info("kept replication slot that became active", "slot", name, "for", m)
			case errors.As(err, &pgErr):
				errs = append(errs, fmt.Errorf("slot %q for member %q: %w", name, m, err))
			case err != nil:
				return err
			default:
				p.log.Info("dropped replication slot", "slot", name, "for", m)
			}
		}
		return nil
	})
	if err = errors.Join(append([]error{err}, errs...)...); err != nil {
		return p.errorf(op, "%w", err)
	}
	return nil
}

// slotSet returns the names of the physical slots.
func slotSet(ctx context.Context, c *pgx.Conn) (map[string]bool, error) {
	rows, err := c.Query(ctx, "SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'")
	if err != nil {
		return nil, err
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, err
	}
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set, nil
}

// rewindCheckpointTimeout bounds the CHECKPOINT on the upstream when ctx has no
// earlier deadline.
const rewindCheckpointTimeout = 60 * time.Second

// Rewind makes the stopped local data directory a copy of up's history
// with pg_rewind, so that it can stream from up. When the local history is
// already a prefix of up's (followsWithoutRewind: a clean switchover's old
// primary), it runs neither pg_rewind nor the CHECKPOINT below and only
// writes the replica configuration; the result says no rewind was
// required, and the log says "rejoining without pg_rewind". Otherwise it
// first runs CHECKPOINT
// on up (connecting as the superuser), without which a just-promoted
// upstream still shows its old timeline and pg_rewind wrongly says no
// rewind is required. pg_rewind connects as the superuser too, with the
// password in a temporary passfile (PGPASSFILE), never in its arguments.
//
// A data directory that was not shut down cleanly (immediate stop,
// SIGKILL, host crash) must be brought to a clean state first. A former
// primary's is, by pg_rewind itself: it runs single-user crash recovery,
// whose end-of-recovery checkpoint always diverges from up's newer
// timeline, so pg_rewind then rewinds it. A crashed replica's
// (standby.signal) is started without an upstream until it accepts
// read-only connections, then stopped: crash recovery in standby mode
// writes no WAL. Single-user recovery would refuse standby.signal, and
// without it would append an end-of-recovery checkpoint that, on up's own
// timeline, pg_rewind cannot see ("same timeline, no rewind required")
// and up's WAL would conflict with. pg_rewind needs data checksums
// (Initialize uses them) or wal_log_hints (on the command line) in the
// target's control file.
//
// "No rewind required" is success. On success the data directory is left
// stopped with standby.signal and a postgresql.auto.conf pointing at up
// (as StartReplica writes them), replacing the files pg_rewind copied from
// up, so it can never start as a primary by mistake; then StartReplica(up)
// starts it. On failure the error ends with pg_rewind's last output lines:
// after a failure midway the data directory may be unusable and must be
// cloned again. It fails when the server runs. Cancelling ctx kills
// pg_rewind.
func (p *Postgres) Rewind(ctx context.Context, up db.Upstream) (db.RewindResult, error) {
	const op = "rewind"
	p.opMu.Lock()
	defer p.opMu.Unlock()
	var res db.RewindResult
	if up.Host == "" || up.Port <= 0 {
		return res, p.errorf(op, "upstream %q has no host or port", up.Name)
	}
	if !p.hasData() {
		return res, p.errorf(op, "no database cluster in %s", p.opts.DataDir)
	}
	if s := p.running(); s != nil {
		return res, p.errorf(op, "server is running (pid %d): stop it first", s.pid)
	}
	if err := p.reapOrphans(ctx); err != nil {
		return res, p.errorf(op, "%w", err)
	}
	start := time.Now()
	cd, err := p.controlData(ctx)
	if err != nil {
		return res, err // names the member and the operation
	}
	var walEnd cluster.LSN
	if end, ok := p.walEnd(ctx, cd); ok {
		res.WALEnd, walEnd = positionAt(cd.CheckpointTLI, end), end
	}
	why, err := p.followsWithoutRewind(ctx, up, cd, walEnd)
	if err != nil {
		p.log.Info("could not compare histories with the upstream; running pg_rewind", "upstream", up.Name, "err", err)
	}
	if why != "" {
		if err := p.writeReplicaConf(&up); err != nil {
			return res, p.errorf(op, "%w", err)
		}
		p.log.Info("rejoining without pg_rewind: no rewind required", "upstream", up.Name, "why", why,
			"took", time.Since(start).Round(time.Millisecond))
		return res, nil
	}
	if err := p.checkpointUpstream(ctx, up); err != nil {
		return res, p.errorf(op, "CHECKPOINT on upstream %s (%s:%d): %w: %w", up.Name, up.Host, up.Port, db.ErrUpstreamUnavailable, err)
	}
	if clean := cd.State == "shut down" || cd.State == "shut down in recovery"; !clean && exists(p.path("standby.signal")) {
		if err := p.recoverAsStandby(ctx); err != nil {
			return res, p.errorf(op, "crash recovery in standby mode (data directory state %q): %w", cd.State, err)
		}
	}
	out, err := p.runRewind(ctx, up)
	if err != nil {
		return res, p.errorf(op, "pg_rewind from %s (%s:%d) (data directory state %q): %w:\n%s",
			up.Name, up.Host, up.Port, cd.State, err, lastLines(out, 10))
	}
	if err := p.writeReplicaConf(&up); err != nil {
		return res, p.errorf(op, "after pg_rewind: %w", err)
	}
	res.Required = !strings.Contains(out, "no rewind required")
	res.DivergedAt = positionAt(0, parseDivergence(out))
	p.log.Info("rewound from upstream", "upstream", up.Name, "state_before", cd.State,
		"rewind_required", res.Required, "diverged_at", res.DivergedAt, "wal_end_before", res.WALEnd,
		"took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// parseDivergence finds "servers diverged at WAL location 0/3000148 on
// timeline 1" in pg_rewind's output (0 when absent).
func parseDivergence(out string) cluster.LSN {
	const marker = "servers diverged at WAL location "
	i := strings.Index(out, marker)
	if i < 0 {
		return 0
	}
	f := strings.Fields(out[i+len(marker):])
	if len(f) == 0 {
		return 0
	}
	lsn, err := cluster.ParseLSN(f[0])
	if err != nil {
		return 0
	}
	return lsn
}

// recoverAsStandby starts the stopped server as a replica without an
// upstream, waits until it is consistent and accepts read-only
// connections, and stops it fast, leaving it "shut down in recovery". The
// caller holds opMu.
func (p *Postgres) recoverAsStandby(ctx context.Context) error {
	if err := p.writeReplicaConf(nil); err != nil {
		return err
	}
	p.log.Info("running crash recovery in standby mode before pg_rewind")
	s, err := p.startServer(ctx)
	if err != nil {
		return err
	}
	err = p.waitReady(ctx, s, cluster.RoleReplica)
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if serr := p.stop(stopCtx, db.StopFast); err == nil {
		err = serr
	}
	return err
}

// checkpointUpstream runs CHECKPOINT on up as the superuser.
func (p *Postgres) checkpointUpstream(ctx context.Context, up db.Upstream) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, rewindCheckpointTimeout)
		defer cancel()
	}
	cfg, err := p.connConfig(up.Host, up.Port)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	c, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return err
	}
	defer closeConn(c)
	_, err = c.Exec(ctx, "CHECKPOINT")
	return err
}

// runRewind runs pg_rewind against up and returns its combined output,
// which is also appended to the log file.
func (p *Postgres) runRewind(ctx context.Context, up db.Upstream) (string, error) {
	source := conninfo("host", up.Host, "port", strconv.Itoa(up.Port), "user", p.opts.Superuser,
		"dbname", "postgres", "application_name", "hamgr-rewind",
		"connect_timeout", strconv.Itoa(int(connectTimeout/time.Second)))
	cmd := p.command(ctx, "pg_rewind", "--target-pgdata="+p.opts.DataDir, "--source-server="+source)
	cmd.Env = append(cmd.Env, "LC_MESSAGES=C")
	if p.opts.SuperuserPassword != "" {
		pass, err := p.tempSecret(pgpassLine(p.opts.Superuser, p.opts.SuperuserPassword))
		if err != nil {
			return "", err
		}
		defer os.Remove(pass)
		cmd.Env = append(cmd.Env, "PGPASSFILE="+pass)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	p.log.Info("running pg_rewind", "upstream", up.Name, "host", up.Host, "port", up.Port)
	err := cmd.Run()
	if logf, lerr := p.openLog(); lerr == nil {
		_, _ = logf.Write(out.Bytes())
		logf.Close()
	}
	return out.String(), err
}
