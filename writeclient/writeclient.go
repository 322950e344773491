package writeclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Defaults applied by New (and VerifyNoLoss) to zero-valued Options fields.
const (
	DefaultDatabase         = "postgres"
	DefaultTable            = "hamgr_writes"
	DefaultInterval         = 10 * time.Millisecond
	DefaultConnectTimeout   = time.Second
	DefaultStatementTimeout = 2 * time.Second
	DefaultMaxWrites        = 1_000_000
	DefaultSSLMode          = "prefer"
	// DefaultMySQLDatabase is the default Database of the MySQL engine.
	DefaultMySQLDatabase = "hamgr_writes"
)

// faultWindow is how far after a fault time Result.OutageAround looks for the
// start of a gap.
const faultWindow = 2 * time.Second

// verifyChunk is the number of ids VerifyNoLoss looks up per query.
const verifyChunk = 10_000

// ErrStopped is returned by WaitAcked when the write loop has ended (Stop,
// context cancellation or MaxWrites) before the requested number of
// acknowledged writes was reached, or was never started.
var ErrStopped = errors.New("writeclient: write loop is not running")

// Options configures a Client. Zero values select the documented defaults.
type Options struct {
	// Hosts lists "host:port" of every node of the cluster, in the order
	// they are tried. A missing port means 5432.
	Hosts []string
	// User and Password authenticate every connection.
	User, Password string
	// Database is the database to write to; default "postgres".
	Database string
	// Table is the table written to; default "hamgr_writes". It may be
	// schema-qualified ("schema.table"); each part is quoted as an
	// identifier.
	Table string
	// Interval is the pause after every attempt, which bounds the write
	// rate; default 10ms.
	Interval time.Duration
	// ConnectTimeout bounds the connection attempt to each host; default 1s.
	ConnectTimeout time.Duration
	// StatementTimeout is the deadline of each INSERT (client side; it is
	// also sent to the server as statement_timeout); default 2s.
	StatementTimeout time.Duration
	// MaxWrites is a hard bound on the number of attempts the loop makes
	// (connection failures count as attempts); default 1,000,000. The loop
	// also stops when its context is done or Stop is called.
	MaxWrites int
	// SSLMode is the libpq sslmode; default "prefer" (as libpq).
	SSLMode string
	// Logger receives connection and outage transitions; default
	// slog.Default().
	Logger *slog.Logger
	// Engine is the servers' engine: PostgreSQL (the default) or MySQL
	// (MySQL and MariaDB, see mysql.go).
	Engine Engine
}

// Engine is the database engine a Client writes to.
type Engine int

// Engines.
const (
	_ Engine = iota
	// PostgreSQL: one multi-host connection with
	// target_session_attrs=read-write (the zero Engine means it too).
	PostgreSQL
	// MySQL (and MariaDB): every host tried in order, the first whose
	// @@GLOBAL.read_only is off kept (go-sql-driver/mysql). Database is
	// then the schema the table is in (default DefaultMySQLDatabase),
	// created by Setup when missing; SSLMode is ignored.
	MySQL
)

func (o Options) withDefaults() Options {
	if o.Database == "" {
		o.Database = DefaultDatabase
		if o.Engine == MySQL {
			o.Database = DefaultMySQLDatabase
		}
	}
	if o.Table == "" {
		o.Table = DefaultTable
	}
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = DefaultConnectTimeout
	}
	if o.StatementTimeout <= 0 {
		o.StatementTimeout = DefaultStatementTimeout
	}
	if o.MaxWrites <= 0 {
		o.MaxWrites = DefaultMaxWrites
	}
	if o.SSLMode == "" {
		o.SSLMode = DefaultSSLMode
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// gapThreshold is the minimum inter-ack interval reported as a Gap.
func (o Options) gapThreshold() time.Duration {
	return 5*o.Interval + 100*time.Millisecond
}

// tableIdent returns the quoted (possibly schema-qualified) table name.
func (o Options) tableIdent() string {
	return pgx.Identifier(strings.Split(o.Table, ".")).Sanitize()
}

// quoteValue quotes a libpq keyword/value connection string value.
func quoteValue(s string) string {
	s = strings.ReplaceAll(s, `\`, `\\`)
	s = strings.ReplaceAll(s, `'`, `\'`)
	return "'" + s + "'"
}

// connString builds the multi-host keyword/value connection string.
func (o Options) connString() (string, error) {
	if len(o.Hosts) == 0 {
		return "", errors.New("writeclient: no hosts")
	}
	hosts := make([]string, 0, len(o.Hosts))
	ports := make([]string, 0, len(o.Hosts))
	for _, hp := range o.Hosts {
		h, p, err := net.SplitHostPort(hp)
		if err != nil {
			// No port (or a bare IPv6 address): use the default port.
			h, p = strings.Trim(hp, "[]"), "5432"
		}
		if _, err := strconv.ParseUint(p, 10, 16); err != nil || h == "" {
			return "", fmt.Errorf("writeclient: bad host %q", hp)
		}
		hosts = append(hosts, h)
		ports = append(ports, p)
	}
	secs := int(math.Ceil(o.ConnectTimeout.Seconds()))
	if secs < 1 {
		secs = 1
	}
	return fmt.Sprintf("host=%s port=%s user=%s password=%s dbname=%s sslmode=%s target_session_attrs=read-write connect_timeout=%d application_name=hamgr-writeclient",
		quoteValue(strings.Join(hosts, ",")), quoteValue(strings.Join(ports, ",")),
		quoteValue(o.User), quoteValue(o.Password), quoteValue(o.Database),
		quoteValue(o.SSLMode), secs), nil
}

// session is one connection to the writable server, of either engine.
type session interface {
	// createTable creates the table (and for MySQL its schema) if missing.
	createTable(ctx context.Context) error
	// maxID is the largest id in the table (0 when empty).
	maxID(ctx context.Context) (int64, error)
	// insert writes row id; nil only when the server acknowledged the
	// commit of the autocommit statement.
	insert(ctx context.Context, id int64) error
	// present returns which of ids are in the table.
	present(ctx context.Context, ids []int64) (map[int64]struct{}, error)
	// port is the TCP port of the server (0 if unknown).
	port() int
	close()
}

// connect opens a session to the writable server (see Engine).
func (o Options) connect(ctx context.Context) (session, error) {
	if o.Engine == MySQL {
		return o.connectMySQL(ctx)
	}
	conn, err := o.connectPG(ctx)
	if err != nil {
		return nil, err
	}
	return pgSession{conn: conn, o: o}, nil
}

// pgSession is a PostgreSQL session.
type pgSession struct {
	conn *pgx.Conn
	o    Options
}

func (s pgSession) createTable(ctx context.Context) error {
	_, err := s.conn.Exec(ctx, "CREATE TABLE IF NOT EXISTS "+s.o.tableIdent()+
		" (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), node text)")
	return err
}

func (s pgSession) maxID(ctx context.Context) (int64, error) { return s.o.maxID(ctx, s.conn) }

func (s pgSession) insert(ctx context.Context, id int64) error {
	tag, err := s.conn.Exec(ctx, "INSERT INTO "+s.o.tableIdent()+" (id, node) VALUES ($1, inet_server_port()::text)", id)
	if err != nil {
		return err
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("insert affected %d rows", tag.RowsAffected())
	}
	return nil
}

func (s pgSession) present(ctx context.Context, ids []int64) (map[int64]struct{}, error) {
	rows, err := s.conn.Query(ctx, "SELECT id FROM "+s.o.tableIdent()+" WHERE id = ANY($1)", ids)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := make(map[int64]struct{}, len(ids))
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		found[id] = struct{}{}
	}
	return found, rows.Err()
}

func (s pgSession) port() int { return remotePort(s.conn) }
func (s pgSession) close()    { closeConn(s.conn) }

// connectPG opens one read-write connection, trying every host in order. The
// whole attempt is bounded by ConnectTimeout per host.
func (o Options) connectPG(ctx context.Context) (*pgx.Conn, error) {
	cs, err := o.connString()
	if err != nil {
		return nil, err
	}
	cfg, err := pgx.ParseConfig(cs)
	if err != nil {
		return nil, fmt.Errorf("writeclient: parse connection string: %w", err)
	}
	// connect_timeout only has whole-second resolution; apply the exact value.
	cfg.ConnectTimeout = o.ConnectTimeout
	d := &net.Dialer{Timeout: o.ConnectTimeout, KeepAlive: 15 * time.Second}
	cfg.DialFunc = d.DialContext
	cfg.RuntimeParams["statement_timeout"] = strconv.FormatInt(o.StatementTimeout.Milliseconds(), 10)
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(o.Hosts)+1)*o.ConnectTimeout)
	defer cancel()
	return pgx.ConnectConfig(ctx, cfg)
}

// remotePort is the TCP port of the server conn is connected to (0 if
// unknown, e.g. a Unix socket).
func remotePort(conn *pgx.Conn) int {
	if a, ok := conn.PgConn().Conn().RemoteAddr().(*net.TCPAddr); ok {
		return a.Port
	}
	return 0
}

// closeConn closes conn without waiting long on a dead server.
func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = conn.Close(ctx)
}

// maxID returns the largest id already in the table (0 if empty).
func (o Options) maxID(ctx context.Context, conn *pgx.Conn) (int64, error) {
	var m int64
	err := conn.QueryRow(ctx, "SELECT coalesce(max(id), 0) FROM "+o.tableIdent()).Scan(&m)
	return m, err
}

// Gap is an interval without acknowledged writes: from the last
// acknowledgement before a failure to the first acknowledgement after it.
type Gap struct {
	// Start is the time the last acknowledgement before the gap was received.
	Start time.Time
	// End is the time the first acknowledgement after the gap was received,
	// or, for an Open gap, the time the loop stopped.
	End time.Time
	// Duration is End - Start (monotonic).
	Duration time.Duration
	// FromPort is the port of the server that acknowledged the write at
	// Start; ToPort the one at End (0 for an Open gap).
	FromPort, ToPort int
	// Open is true when writes had not resumed when the loop stopped; the
	// Duration is then a lower bound on the outage.
	Open bool
}

// Result is the outcome of a write loop, returned by Client.Stop.
type Result struct {
	// Attempts is the number of write attempts, Acked the acknowledged ones
	// and Failed the rest (Attempts == Acked + Failed). A failed connection
	// attempt counts as a failed write attempt.
	Attempts, Acked, Failed int
	// AckedIDs are the ids of the acknowledged writes, in ack order.
	AckedIDs []int64
	// FailedIDs are the ids of INSERTs that were sent but not acknowledged:
	// their outcome is unknown (they may or may not exist on the server).
	FailedIDs []int64
	// LongestGap is the longest interval between two consecutive
	// acknowledged writes, including an Open trailing gap.
	LongestGap time.Duration
	// Gaps lists, in time order, every interval between consecutive
	// acknowledgements longer than 5×Interval+100ms, plus an Open trailing
	// gap if writes were failing when the loop stopped.
	Gaps []Gap
	// Started and Stopped bound the write loop.
	Started, Stopped time.Time
	// Acks lists every acknowledged write, in ack order: id, when the
	// acknowledgement arrived, and the port of the server that gave it.
	Acks []Ack
}

// Ack is one acknowledged write.
type Ack struct {
	ID   int64
	At   time.Time
	Port int
}

// OutageAround returns the duration of the gap around the fault time t: the
// reported gap (see Result.Gaps) that contains t or, failing that, the first
// one starting after t but no more than 2s after it. That is the time from
// the last acknowledgement before the fault took effect to the first one
// after it. It returns 0 if there is no such gap. t should come from
// time.Now() in the same process so that the monotonic clock is used.
func (r Result) OutageAround(t time.Time) time.Duration {
	for _, g := range r.Gaps {
		if !t.Before(g.Start) && !t.After(g.End) {
			return g.Duration
		}
	}
	for _, g := range r.Gaps {
		if g.Start.After(t) && g.Start.Sub(t) <= faultWindow {
			return g.Duration
		}
	}
	return 0
}

// Stats returns the median, minimum and maximum of ds (the median of an
// even count is the mean of the two middle values). All are 0 for an empty
// slice. ds is not modified.
func Stats(ds []time.Duration) (median, min, max time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	n := len(s)
	if n%2 == 1 {
		median = s[n/2]
	} else {
		median = s[n/2-1] + (s[n/2]-s[n/2-1])/2
	}
	return median, s[0], s[n-1]
}

// ack is one acknowledged write.
type ack struct {
	id   int64
	at   time.Time
	port int
}

// computeGaps derives the longest gap and the reported gaps from the acks
// (in ack order). If open, writes were failing at stoppedAt and a trailing
// gap from the last ack to stoppedAt is added.
func computeGaps(acks []ack, threshold time.Duration, open bool, stoppedAt time.Time) (time.Duration, []Gap) {
	var longest time.Duration
	var gaps []Gap
	for i := 1; i < len(acks); i++ {
		d := acks[i].at.Sub(acks[i-1].at)
		if d > longest {
			longest = d
		}
		if d > threshold {
			gaps = append(gaps, Gap{Start: acks[i-1].at, End: acks[i].at, Duration: d,
				FromPort: acks[i-1].port, ToPort: acks[i].port})
		}
	}
	if open && len(acks) > 0 {
		last := acks[len(acks)-1]
		if d := stoppedAt.Sub(last.at); d > 0 {
			if d > longest {
				longest = d
			}
			gaps = append(gaps, Gap{Start: last.at, End: stoppedAt, Duration: d, FromPort: last.port, Open: true})
		}
	}
	return longest, gaps
}

// Client writes rows in a background loop and records which were
// acknowledged. Its methods are safe for concurrent use.
type Client struct {
	opts Options
	log  *slog.Logger

	mu        sync.Mutex
	started   bool
	running   bool
	cancel    context.CancelFunc
	done      chan struct{}
	changed   chan struct{} // closed and replaced on every ack and when the loop ends
	baseSet   bool
	nextID    int64
	attempts  int
	failed    int
	acks      []ack
	failedIDs []int64
	failing   bool // a (non-shutdown) attempt failed after the last ack
	lastPort  int
	startedAt time.Time
	stoppedAt time.Time
	result    *Result
}

// New returns a Client for opts with defaults applied. It does not connect.
func New(opts Options) *Client {
	opts = opts.withDefaults()
	return &Client{
		opts:    opts,
		log:     opts.Logger.With("component", "writeclient", "table", opts.Table),
		changed: make(chan struct{}),
	}
}

// Setup connects to the primary (target_session_attrs=read-write over all
// hosts) and creates the table if it does not exist:
//
//	CREATE TABLE IF NOT EXISTS <table>(id bigint primary key, at timestamptz default now(), node text)
//
// It also reads the largest existing id so that ids of this client continue
// after rows left by an earlier run. Only one Client should write to a table
// at a time.
func (c *Client) Setup(ctx context.Context) error {
	conn, err := c.opts.connect(ctx)
	if err != nil {
		return fmt.Errorf("writeclient: setup connect: %w", err)
	}
	defer conn.close()
	if err := conn.createTable(ctx); err != nil {
		return fmt.Errorf("writeclient: create table: %w", err)
	}
	m, err := conn.maxID(ctx)
	if err != nil {
		return fmt.Errorf("writeclient: read max id: %w", err)
	}
	c.mu.Lock()
	if !c.baseSet {
		c.nextID, c.baseSet = m, true
	}
	c.mu.Unlock()
	c.log.Info("table ready", "port", conn.port(), "max_id", m)
	return nil
}

// Start starts the background write loop. The loop keeps one connection
// (multi-host, target_session_attrs=read-write), inserts one row per attempt
// with the next client-side id, pauses Interval, and on any error drops the
// connection and reconnects on the next attempt. It runs until ctx is done,
// Stop is called or MaxWrites attempts were made. Start may be called only
// once; later calls are ignored. If Setup was not called, the first
// connection reads the largest existing id first.
func (c *Client) Start(ctx context.Context) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started {
		c.log.Warn("Start called twice; ignored")
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	c.started, c.running = true, true
	c.cancel = cancel
	c.done = make(chan struct{})
	c.startedAt = time.Now()
	go c.run(ctx)
}

// Stop stops the write loop, waits for it to end and returns the result. It
// may be called more than once (and concurrently); every call returns the
// same result. Without Start it returns an empty Result.
func (c *Client) Stop() Result {
	c.mu.Lock()
	if !c.started {
		c.mu.Unlock()
		return Result{}
	}
	cancel, done := c.cancel, c.done
	c.mu.Unlock()
	cancel()
	<-done

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.result == nil {
		r := Result{
			Attempts:  c.attempts,
			Acked:     len(c.acks),
			Failed:    c.failed,
			AckedIDs:  make([]int64, len(c.acks)),
			FailedIDs: append([]int64(nil), c.failedIDs...),
			Started:   c.startedAt,
			Stopped:   c.stoppedAt,
		}
		r.Acks = make([]Ack, len(c.acks))
		for i, a := range c.acks {
			r.AckedIDs[i] = a.id
			r.Acks[i] = Ack{ID: a.id, At: a.at, Port: a.port}
		}
		r.LongestGap, r.Gaps = computeGaps(c.acks, c.opts.gapThreshold(), c.failing, c.stoppedAt)
		c.result = &r
	}
	return *c.result
}

// Acked returns the number of acknowledged writes so far.
func (c *Client) Acked() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.acks)
}

// Failed returns the number of failed (unacknowledged) attempts so far.
func (c *Client) Failed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.failed
}

// LastAckedPort returns the port of the server that acknowledged the most
// recent write (0 before the first ack).
func (c *Client) LastAckedPort() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastPort
}

// WaitAcked waits until the TOTAL number of acknowledged writes is at least
// n (an absolute count, not n more: to wait for writes to flow again after a
// fault use WaitAcked(ctx, c.Acked()+k)). It returns ctx.Err() if ctx ends
// first, and ErrStopped if the loop is not running (never started, stopped,
// or hit MaxWrites) with fewer than n acks.
func (c *Client) WaitAcked(ctx context.Context, n int) error {
	for {
		c.mu.Lock()
		got, running, ch := len(c.acks), c.running, c.changed
		c.mu.Unlock()
		if got >= n {
			return nil
		}
		if !running {
			return fmt.Errorf("%w: %d of %d acks", ErrStopped, got, n)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("writeclient: waiting for %d acks (have %d): %w", n, got, ctx.Err())
		case <-ch:
		}
	}
}

// notifyLocked wakes WaitAcked callers; c.mu must be held.
func (c *Client) notifyLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// run is the write loop.
func (c *Client) run(ctx context.Context) {
	var conn session
	var connPort int
	defer func() {
		if conn != nil {
			conn.close()
		}
		c.mu.Lock()
		c.running = false
		c.stoppedAt = time.Now()
		c.notifyLocked()
		c.mu.Unlock()
		close(c.done)
	}()
	timer := time.NewTimer(c.opts.Interval)
	timer.Stop()
	defer timer.Stop()

	for n := 0; n < c.opts.MaxWrites; n++ {
		if ctx.Err() != nil {
			return
		}
		var id int64
		var err error
		if conn == nil {
			conn, err = c.opts.connect(ctx)
			if err == nil {
				connPort = conn.port()
				c.log.Info("connected", "port", connPort)
				err = c.ensureBase(ctx, conn)
			}
		}
		if err == nil {
			c.mu.Lock()
			c.nextID++
			id = c.nextID
			c.mu.Unlock()
			err = c.insert(ctx, conn, id)
		}
		now := time.Now()
		shutdown := ctx.Err() != nil
		c.record(id, err, shutdown, now, connPort)
		if err != nil && conn != nil {
			conn.close()
			conn, connPort = nil, 0
		}
		if shutdown {
			return
		}
		timer.Reset(c.opts.Interval)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
	}
	c.log.Info("MaxWrites reached", "max_writes", c.opts.MaxWrites)
}

// insert runs one INSERT under its own deadline. It returns nil only when
// the server confirmed the autocommit statement (PostgreSQL:
// CommandComplete and ReadyForQuery received; MySQL: its OK packet), i.e.
// committed.
func (c *Client) insert(ctx context.Context, conn session, id int64) error {
	ctx, cancel := context.WithTimeout(ctx, c.opts.StatementTimeout)
	defer cancel()
	return conn.insert(ctx, id)
}

// ensureBase reads the largest existing id once if Setup did not.
func (c *Client) ensureBase(ctx context.Context, conn session) error {
	c.mu.Lock()
	set := c.baseSet
	c.mu.Unlock()
	if set {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, c.opts.StatementTimeout)
	defer cancel()
	m, err := conn.maxID(qctx)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if !c.baseSet {
		c.nextID, c.baseSet = m, true
	}
	c.mu.Unlock()
	return nil
}

// record accounts one attempt. id is 0 if no INSERT was sent.
func (c *Client) record(id int64, err error, shutdown bool, at time.Time, port int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.attempts++
	if err == nil {
		if c.failing && len(c.acks) > 0 {
			prev := c.acks[len(c.acks)-1]
			c.log.Info("writes resumed", "gap", at.Sub(prev.at), "from_port", prev.port, "to_port", port, "id", id)
		}
		c.acks = append(c.acks, ack{id: id, at: at, port: port})
		c.lastPort = port
		c.failing = false
		c.notifyLocked()
		return
	}
	c.failed++
	if id != 0 {
		c.failedIDs = append(c.failedIDs, id)
	}
	if shutdown {
		// Cancelled by Stop or the caller's context: not an outage.
		return
	}
	if !c.failing {
		c.log.Warn("writes failing", "id", id, "port", port, "err", err)
	} else {
		c.log.Debug("write failed", "id", id, "err", err)
	}
	c.failing = true
}

// VerifyNoLoss connects to the current primary (PostgreSQL:
// target_session_attrs=read-write over all hosts of opts; MySQL: the first
// writable host) and returns the acked ids that are absent from the table,
// in the order given. It looks ids up in chunks. It makes a single
// connection attempt; callers that verify right after a failover should
// retry on error.
func VerifyNoLoss(ctx context.Context, opts Options, acked []int64) (missing []int64, err error) {
	opts = opts.withDefaults()
	conn, err := opts.connect(ctx)
	if err != nil {
		return nil, fmt.Errorf("writeclient: verify connect: %w", err)
	}
	defer conn.close()
	chunkSize := verifyChunk
	if opts.Engine == MySQL {
		chunkSize = mysqlVerifyChunk
	}
	for start := 0; start < len(acked); start += chunkSize {
		chunk := acked[start:min(start+chunkSize, len(acked))]
		found, err := conn.present(ctx, chunk)
		if err != nil {
			return nil, fmt.Errorf("writeclient: verify query: %w", err)
		}
		for _, id := range chunk {
			if _, ok := found[id]; !ok {
				missing = append(missing, id)
			}
		}
	}
	if len(missing) > 0 {
		opts.Logger.Warn("acknowledged writes missing", "component", "writeclient",
			"table", opts.Table, "missing", len(missing), "acked", len(acked), "port", conn.port())
	}
	return missing, nil
}
