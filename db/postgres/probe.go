package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// connectTimeout bounds every connection attempt whose context has no
// earlier deadline.
const connectTimeout = time.Second

// probeSQL measures the server in one round trip. Functions that fail in
// the wrong role sit behind CASE on a recovery flag evaluated once.
const probeSQL = `
SELECT r.rec,
  CASE WHEN r.rec THEN NULL ELSE pg_current_wal_flush_lsn()::text END,
  CASE WHEN r.rec THEN NULL ELSE substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8) END,
  CASE WHEN r.rec THEN pg_last_wal_receive_lsn()::text END,
  CASE WHEN r.rec THEN pg_last_wal_replay_lsn()::text END,
  CASE WHEN r.rec THEN pg_get_wal_replay_pause_state() <> 'not paused' ELSE false END,
  w.status, w.sender_host, w.sender_port, w.received_tli,
  (SELECT timeline_id FROM pg_control_checkpoint()),
  (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
  CASE WHEN NOT r.rec THEN NULL
       WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
       ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 END,
  extract(epoch FROM clock_timestamp() - w.last_msg_receipt_time)::float8,
  (SELECT setting::int FROM pg_settings WHERE name = 'wal_receiver_timeout'),
  w.pid,
  (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')
FROM (SELECT pg_is_in_recovery() AS rec OFFSET 0) r
LEFT JOIN LATERAL (
  SELECT status, sender_host, sender_port, received_tli, last_msg_receipt_time, pid FROM pg_stat_wal_receiver LIMIT 1
) w ON true`

// Probe measures the server. A stopped server, or one that refuses
// connections (starting up, crash recovery), is reported in the Status
// (Running, Accepting, Err), not as an error; its Position then comes from
// pg_controldata, and a stopped one is WasPrimary when its data directory
// holds no standby.signal. The error is for a data directory that cannot
// be read.
func (p *Postgres) Probe(ctx context.Context) (db.Status, error) {
	st := db.Status{HasData: p.hasData()}
	st.Running = p.running() != nil
	if st.Running {
		err := p.withConn(ctx, func(c *pgx.Conn) error { return p.measure(ctx, c, &st) })
		if err == nil {
			st.Accepting = true
			if st.Role == cluster.RolePrimary {
				st.Stalled = p.freshStatus(ctx)
			}
			st.Position = p.withFork(st.Position)
			return st, nil
		}
		st = db.Status{HasData: st.HasData, Running: true, Err: p.errorf("probe", "%w", err)}
	}
	if st.HasData {
		st.WasPrimary = !st.Running && !exists(p.path("standby.signal"))
		cd, err := p.controlData(ctx)
		if err != nil {
			return st, err
		}
		st.Position, st.Checkpoint = cd.Position(), positionAt(cd.CheckpointTLI, cd.Checkpoint)
		if st.WasPrimary {
			tl, lsn, _ := st.Position.PostgreSQL()
			if end, ok := p.walEnd(ctx, cd); ok && end > lsn {
				st.Position = cluster.PGPosition(tl, end)
			}
		}
		st.Position = p.withFork(st.Position)
	}
	return st, nil
}

// walEnd reads where the WAL of a stopped former primary ends: pg_waldump
// from the latest checkpoint's redo location to the first invalid record
// (after an immediate stop or a crash the WAL goes past the checkpoint by
// whatever was written since). Cached like the control data; false when
// it cannot tell.
func (p *Postgres) walEnd(ctx context.Context, cd controlData) (cluster.LSN, bool) {
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	if p.walEndStamp == p.ctlStamp && p.walEndStamp != "" {
		return p.walEndLSN, p.walEndLSN != 0
	}
	p.walEndStamp, p.walEndLSN = p.ctlStamp, 0
	if cd.Redo == 0 || cd.CheckpointTLI == 0 {
		return 0, false
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := p.command(cctx, "pg_waldump", "-p", p.path("pg_wal"), "-t", strconv.Itoa(int(cd.CheckpointTLI)), "-s", cd.Redo.String(), "-q")
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	out, _ := cmd.CombinedOutput() // it always exits with an error at the end of the WAL
	end, ok := parseWALEnd(string(out))
	if ok {
		p.walEndLSN = end
	}
	return end, ok
}

// parseWALEnd finds the end of valid WAL in pg_waldump's message, "error
// in WAL record at 0/1526058: invalid record length at 0/15261F0: wanted
// 24, got 0": the last location named.
func parseWALEnd(out string) (cluster.LSN, bool) {
	i := strings.LastIndex(out, " at ")
	if i < 0 || !strings.Contains(out, "error in WAL record") {
		return 0, false
	}
	rest := out[i+len(" at "):]
	if j := strings.IndexAny(rest, ": \n"); j >= 0 {
		rest = rest[:j]
	}
	lsn, err := cluster.ParseLSN(rest)
	return lsn, err == nil && lsn != 0
}

func (p *Postgres) measure(ctx context.Context, c *pgx.Conn, st *db.Status) error {
	var (
		rec, paused                       bool
		flush, walfile, recv, replay      *string
		wStatus, wHost                    *string
		wPort, wTLI, ckptTLI, minRecovTLI *int32
		lagSeconds, msgAge                *float64
		rcvTimeoutMS, rcvPID              *int32
		segSize                           *int64
	)
	err := c.QueryRow(ctx, probeSQL).Scan(&rec, &flush, &walfile, &recv, &replay, &paused,
		&wStatus, &wHost, &wPort, &wTLI, &ckptTLI, &minRecovTLI, &lagSeconds, &msgAge, &rcvTimeoutMS, &rcvPID, &segSize)
	if err != nil {
		return err
	}
	if !rec {
		st.Role = cluster.RolePrimary
		lsn, err := cluster.ParseLSN(deref(flush))
		if err != nil {
			return err
		}
		tli, err := strconv.ParseUint(deref(walfile), 16, 32)
		if err != nil {
			return fmt.Errorf("timeline from WAL file name %q: %w", deref(walfile), err)
		}
		st.Position = cluster.PGPosition(uint32(tli), lsn)
		return nil
	}
	st.Role = cluster.RoleReplica
	st.ReplayPaused = paused
	st.ReplayLagSeconds = -1
	if lagSeconds != nil {
		st.ReplayLagSeconds = max(*lagSeconds, 0)
	}
	received, err := cluster.ParseLSN(deref(recv))
	if err != nil {
		return err
	}
	replayed, err := cluster.ParseLSN(deref(replay))
	if err != nil {
		return err
	}
	// The WAL receiver's timeline is current. Without one (its sender
	// stopped, say), the control file's checkpoint and minimum-recovery
	// timelines lag behind a timeline switch until the next restartpoint:
	// the timeline of the WAL segment file that holds the position is
	// taken when it is newer.
	tl := uint32(max(derefInt(ckptTLI), derefInt(minRecovTLI)))
	if wTLI != nil && *wTLI > 0 {
		tl = uint32(*wTLI)
	} else if seg := p.segmentTimeline(max(received, replayed), derefInt64(segSize)); seg > tl {
		tl = seg
	}
	st.Received, st.Replayed = positionAt(tl, received), positionAt(tl, replayed)
	st.Position = cluster.PGPosition(tl, max(received, replayed))
	// The sender's address is known once the receiver has connected; a
	// receiver that lost its connection (or is reconnecting) has none.
	st.UpstreamHost, st.UpstreamPort = deref(wHost), int(derefInt(wPort))
	st.Streaming = deref(wStatus) == "streaming"
	if st.Diverged = p.diverged(st.Position); st.Diverged != "" {
		st.Streaming = false // a receiver that reconnects reports streaming for a moment each time
	}
	st.ReceiverTimeout = time.Duration(derefInt(rcvTimeoutMS)) * time.Millisecond
	st.LastMessageAge = -1
	if msgAge != nil && !processStopped(int(derefInt(rcvPID))) {
		// A receiver that is itself stopped (SIGSTOP, a debugger)
		// receives nothing however alive its sender: its age says
		// nothing about the sender.
		st.LastMessageAge = time.Duration(max(*msgAge, 0) * float64(time.Second))
	}
	return nil
}

// processStopped reports whether pid is a stopped process (state T or t).
func processStopped(pid int) bool {
	state, ok := procState(pid)
	return ok && (state == 'T' || state == 't')
}

// procState is the state letter of process pid in /proc/PID/stat (0 if
// the line cannot be parsed); ok is false when there is no such process
// to read.
func procState(pid int) (state byte, ok bool) {
	if pid <= 0 {
		return 0, false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, false
	}
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		return stat[i+2], true
	}
	return 0, true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func derefInt(i *int32) int32 {
	if i == nil {
		return 0
	}
	return *i
}

func derefInt64(i *int64) int64 {
	if i == nil {
		return 0
	}
	return *i
}

// Ask connects to host:port with the superuser's credentials and reports
// whether the server there is out of recovery. Without a deadline in ctx,
// it gives up after one second. Only a refused TCP connection (or a
// missing unix socket) is AnswerRefused; a timeout, an authentication
// error, "too many connections" and "the database system is starting up
// / in recovery mode / shutting down" (SQLSTATE 57P03: a crashed primary
// restarting by itself comes back writable) are AnswerNone.
func (p *Postgres) Ask(ctx context.Context, host string, port int) (db.Answer, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, connectTimeout)
		defer cancel()
	}
	where := net.JoinHostPort(host, strconv.Itoa(port))
	cfg, err := p.connConfig(host, port)
	if err != nil {
		return db.AnswerNone, p.errorf("ask", "%s: %w", where, err)
	}
	cfg.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return classifyConnectError(err), p.errorf("ask", "%s: %w", where, err)
	}
	defer closeConn(c)
	var writable bool
	if err := c.QueryRow(ctx, "SELECT NOT pg_is_in_recovery()").Scan(&writable); err != nil {
		return db.AnswerNone, p.errorf("ask", "%s: %w", where, err)
	}
	if writable {
		return db.AnswerWritable, nil
	}
	return db.AnswerReadOnly, nil
}

// classifyConnectError is AnswerRefused only for a connection the peer's
// kernel refused (nothing listens) or a unix socket that does not exist;
// everything else proves nothing.
func classifyConnectError(err error) db.Answer {
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return db.AnswerRefused
	}
	return db.AnswerNone
}

// connConfig is a connection to host:port as the superuser. A host that
// starts with '/' is a unix socket directory.
func (p *Postgres) connConfig(host string, port int) (*pgx.ConnConfig, error) {
	sslmode := "prefer"
	if strings.HasPrefix(host, "/") {
		sslmode = "disable"
	}
	cs := conninfo(
		"host", host, "port", strconv.Itoa(port), "user", p.opts.Superuser, "dbname", "postgres",
		"application_name", "hamgr", "sslmode", sslmode,
		"connect_timeout", strconv.Itoa(int(connectTimeout/time.Second)))
	cfg, err := pgx.ParseConfig(cs)
	if err != nil {
		return nil, err
	}
	if p.opts.SuperuserPassword != "" {
		cfg.Password = p.opts.SuperuserPassword
	}
	return cfg, nil
}

// localHost is where the agent reaches its own server: the unix socket
// directory if any, else the first listen address (wildcards as loopback).
func (p *Postgres) localHost() string {
	if p.opts.SocketDir != "" {
		return p.opts.SocketDir
	}
	h, _, _ := strings.Cut(p.opts.ListenHost, ",")
	switch h = strings.TrimSpace(h); h {
	case "*", "0.0.0.0":
		return "127.0.0.1"
	case "::":
		return "::1"
	}
	return h
}

// withConn runs fn on the pooled connection to the local server, connecting
// when needed. A connection that failed other than by a server-side SQL
// error is dropped; if it was a reused one (the server may have restarted
// since), fn is retried once on a fresh connection.
func (p *Postgres) withConn(ctx context.Context, fn func(*pgx.Conn) error) error {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	for attempt := 0; ; attempt++ {
		reused := p.conn != nil
		if p.conn == nil {
			c, err := p.connectLocal(ctx)
			if err != nil {
				return err
			}
			p.conn = c
		}
		err := fn(p.conn)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && !p.conn.IsClosed() {
			return err
		}
		closeConn(p.conn)
		p.conn = nil
		if !reused || attempt > 0 || ctx.Err() != nil {
			return err
		}
	}
}

func (p *Postgres) connectLocal(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := p.connConfig(p.localHost(), p.opts.Port)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// dropConn closes the pooled connection, if any.
func (p *Postgres) dropConn() {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.conn != nil {
		closeConn(p.conn)
		p.conn = nil
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = c.Close(ctx)
}

// controlData is what pg_controldata says about a data directory.
type controlData struct {
	State         string
	Checkpoint    cluster.LSN
	Redo          cluster.LSN
	CheckpointTLI uint32
	MinRecovery   cluster.LSN
	MinRecovTLI   uint32
}

// Position is the furthest point the control file proves: the latest
// checkpoint, or a replica's minimum recovery point if that is further.
func (c controlData) Position() cluster.Position {
	if c.MinRecovery > c.Checkpoint && c.MinRecovTLI > 0 {
		return cluster.PGPosition(max(c.MinRecovTLI, c.CheckpointTLI), c.MinRecovery)
	}
	return cluster.PGPosition(c.CheckpointTLI, c.Checkpoint)
}

// positionAt is lsn on timeline tl, or the zero Position when lsn is 0
// (not reported).
func positionAt(tl uint32, lsn cluster.LSN) cluster.Position {
	if lsn == 0 {
		return cluster.Position{}
	}
	return cluster.PGPosition(tl, lsn)
}

// controlData runs pg_controldata, cached until global/pg_control changes.
func (p *Postgres) controlData(ctx context.Context) (controlData, error) {
	fi, err := os.Stat(p.path("global/pg_control"))
	if err != nil {
		return controlData{}, p.errorf("read control data", "%w", err)
	}
	stamp := fmt.Sprint(fi.ModTime().UnixNano(), fi.Size())
	p.ctlMu.Lock()
	defer p.ctlMu.Unlock()
	if stamp == p.ctlStamp {
		return p.ctlPos, nil
	}
	cmd := p.command(ctx, "pg_controldata", "-D", p.opts.DataDir)
	cmd.Env = append(cmd.Env, "LC_ALL=C")
	out, err := cmd.Output()
	if err != nil {
		return controlData{}, p.errorf("read control data", "pg_controldata: %w: %s", err, stderrOf(err))
	}
	cd, err := parseControlData(string(out))
	if err != nil {
		return controlData{}, p.errorf("read control data", "%w", err)
	}
	p.ctlStamp, p.ctlPos = stamp, cd
	return cd, nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}

func parseControlData(out string) (controlData, error) {
	kv := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	var cd controlData
	var err error
	cd.State = kv["Database cluster state"]
	if cd.Checkpoint, err = cluster.ParseLSN(kv["Latest checkpoint location"]); err != nil {
		return cd, err
	}
	if cd.MinRecovery, err = cluster.ParseLSN(kv["Minimum recovery ending location"]); err != nil {
		return cd, err
	}
	if cd.Redo, err = cluster.ParseLSN(kv["Latest checkpoint's REDO location"]); err != nil {
		return cd, err
	}
	tli, err := strconv.ParseUint(kv["Latest checkpoint's TimeLineID"], 10, 32)
	if err != nil {
		return cd, fmt.Errorf("pg_controldata: checkpoint timeline: %w", err)
	}
	cd.CheckpointTLI = uint32(tli)
	if v := kv["Min recovery ending loc's timeline"]; v != "" {
		tli, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return cd, fmt.Errorf("pg_controldata: min recovery timeline: %w", err)
		}
		cd.MinRecovTLI = uint32(tli)
	}
	return cd, nil
}

// diverged reads the timeline history files in pg_wal (the WAL receiver
// fetches its upstream's when it connects) and reports how a server at pos
// diverged from the newest of them: that newest timeline's history does
// not contain pos's timeline, or left it before pos. "" when it has not, or
// when there is no newer history to compare with.
func (p *Postgres) diverged(pos cluster.Position) string {
	tl, lsn, _ := pos.PostgreSQL()
	newest, path := uint32(0), ""
	entries, err := os.ReadDir(p.path("pg_wal"))
	if err != nil {
		return ""
	}
	for _, e := range entries {
		var tli uint32
		if n, _ := fmt.Sscanf(e.Name(), "%08X.history", &tli); n == 1 && len(e.Name()) == len("00000002.history") && tli > newest {
			newest, path = tli, e.Name()
		}
	}
	if newest <= tl {
		return ""
	}
	b, err := os.ReadFile(p.path(filepath.Join("pg_wal", path)))
	if err != nil {
		return ""
	}
	switches, err := parseTimelineHistory(string(b))
	if err != nil {
		p.log.Warn("unreadable timeline history file", "file", path, "err", err)
		return ""
	}
	end, ok := switches[tl]
	switch {
	case !ok:
		return fmt.Sprintf("timeline %d's history does not contain this server's timeline %d", newest, tl)
	case lsn > end:
		return fmt.Sprintf("timeline %d forked off timeline %d at %s, before this server's position %s", newest, tl, end, lsn)
	}
	return ""
}

// segmentTimeline is the newest timeline of a WAL segment file in pg_wal
// that holds the byte before lsn, for segments of segSize bytes; 0 when
// there is none (or lsn or segSize is 0).
func (p *Postgres) segmentTimeline(lsn cluster.LSN, segSize int64) uint32 {
	if lsn == 0 || segSize <= 0 {
		return 0
	}
	seg, perID := (uint64(lsn)-1)/uint64(segSize), uint64(1<<32)/uint64(segSize)
	suffix := fmt.Sprintf("%08X%08X", seg/perID, seg%perID)
	entries, err := os.ReadDir(p.path("pg_wal"))
	if err != nil {
		return 0
	}
	var newest uint32
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), ".partial")
		if len(name) != 24 || name[8:] != suffix {
			continue
		}
		if tli, err := strconv.ParseUint(name[:8], 16, 32); err == nil && uint32(tli) > newest {
			newest = uint32(tli)
		}
	}
	return newest
}

// withFork adds to pos, when its timeline's history file is in pg_wal,
// where that timeline branched off its parent, so that cluster.Position
// can tell a position on the parent past that point as diverged. pos is
// returned as it is when the file is missing or unreadable.
func (p *Postgres) withFork(pos cluster.Position) cluster.Position {
	tl, _, ok := pos.PostgreSQL()
	if !ok || tl < 2 {
		return pos
	}
	b, err := os.ReadFile(p.path(filepath.Join("pg_wal", fmt.Sprintf("%08X.history", tl))))
	if err != nil {
		return pos
	}
	switches, err := parseTimelineHistory(string(b))
	if err != nil {
		return pos
	}
	var parent uint32
	for anc := range switches {
		if anc < tl && anc > parent {
			parent = anc
		}
	}
	if parent == 0 {
		return pos
	}
	return pos.WithFork(parent, switches[parent])
}

// parseTimelineHistory parses a timeline history file: one line per
// ancestor timeline, "<tli>\t<switchpoint LSN>\t<reason>", returning each
// ancestor's switchpoint (where the next timeline forked off it).
func parseTimelineHistory(s string) (map[uint32]cluster.LSN, error) {
	out := map[uint32]cluster.LSN{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || strings.HasPrefix(f[0], "#") {
			continue
		}
		tli, err := strconv.ParseUint(f[0], 10, 32)
		if err != nil {
			return nil, fmt.Errorf("timeline %q: %w", f[0], err)
		}
		lsn, err := cluster.ParseLSN(f[1])
		if err != nil {
			return nil, err
		}
		out[uint32(tli)] = lsn
	}
	return out, nil
}

// freshCheckTimeout bounds checkFresh. A stall counts only once it has
// lasted primary_start_timeout (detector.Local), so one slow answer on a
// loaded machine costs nothing.
const freshCheckTimeout = 3 * time.Second

// freshEvery is how often a primary that passed checkFresh is checked
// again: a stall counts only once it has lasted primary_start_timeout
// (30s by default), so seeing it up to 5s later costs nothing, while each
// check is a new session, a commit and a WAL record (which every replica
// then applies and reports). A primary found stalled is checked at every
// probe.
const freshEvery = 5 * time.Second

// freshStatus is checkFresh, run at most every freshEvery while it finds
// nothing wrong ("" in between).
func (p *Postgres) freshStatus(ctx context.Context) string {
	p.freshMu.Lock()
	at, why := p.freshAt, p.freshWhy
	p.freshMu.Unlock()
	if why == "" && !at.IsZero() && time.Since(at) < freshEvery {
		return ""
	}
	why = p.checkFresh(ctx)
	p.freshMu.Lock()
	p.freshAt, p.freshWhy = time.Now(), why
	p.freshMu.Unlock()
	return why
}

// checkFresh opens a new connection to the local primary and commits a
// tiny write on it (a transactional logical message, which touches no
// table; synchronous_commit local, so it waits for the local disk and never
// for a synchronous standby). It returns why that could not be done within
// freshCheckTimeout — a postmaster that lets no new session in, a disk or
// WAL volume that takes no commit — or "" when it could, or when the
// server answered with an error that shows it alive (too many
// connections, shutting down). The agent's own pooled connection keeps
// answering through such stalls, which is why this check exists.
func (p *Postgres) checkFresh(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, freshCheckTimeout)
	defer cancel()
	start := time.Now()
	cfg, err := p.connConfig(p.localHost(), p.opts.Port)
	if err != nil {
		return ""
	}
	cfg.ConnectTimeout = freshCheckTimeout
	// A bare protocol connection: a pgx.Conn would also build its type map
	// and statement cache, most of this check's cost in the agent, for one
	// simple-protocol statement.
	c, err := pgconn.ConnectConfig(ctx, &cfg.Config)
	if err != nil {
		return stallReason("a new connection", err, start)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_ = c.Close(cctx)
	}()
	_, err = c.Exec(ctx, "BEGIN; SET LOCAL synchronous_commit = local; SELECT pg_logical_emit_message(true, 'hamgr', 'probe'); COMMIT").ReadAll()
	if err != nil {
		return stallReason("a committed write", err, start)
	}
	return ""
}

// stallReason says why what failed, unless the error shows a live server.
func stallReason(what string, err error, start time.Time) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && (pgErr.Code == "53300" || pgErr.Code == "57P03" || pgErr.Code == "57P01") {
		return "" // too many connections, starting up or shutting down: it answers
	}
	return fmt.Sprintf("%s did not complete in %s: %v", what, time.Since(start).Round(10*time.Millisecond), err)
}
