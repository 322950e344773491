package mysql

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/db"
)

// Options configure one member's MySQL or MariaDB server.
type Options struct {
	// Name is the member name. Letters, digits, '_', '-' and '.' only, at
	// most 63 bytes.
	Name string
	// DataDir is the server's data directory.
	DataDir string
	// ServerBin is the server binary (mariadbd or mysqld). Default: the
	// first of /usr/sbin/mariadbd and /usr/sbin/mysqld that exists.
	ServerBin string
	// ToolDir holds the client tools (mariadb-install-db, mariadb-dump,
	// mariadb or mysql, mysqldump). Default /usr/bin.
	ToolDir string
	// ListenHost is bind-address; Port the TCP port.
	ListenHost string
	Port       int
	// Socket is the server's unix socket, through which the agent
	// connects. Default: <DataDir>/../<Name>.sock.
	Socket string
	// ServerID is the server_id, unique in the cluster (1 to 2^32-1).
	ServerID uint32
	// LogFile receives the server's stderr (its error log), appended.
	// Default: <DataDir>/../<Name>.log.
	LogFile string
	// Superuser and SuperuserPassword are the agent's own account, used
	// over the unix socket (default root, no password, as
	// mariadb-install-db --auth-root-authentication-method=normal leaves
	// it).
	Superuser         string
	SuperuserPassword string
	// Replication is the account replicas connect with (and Ask and Clone
	// use), created by Initialize for host '%'.
	Replication         string
	ReplicationPassword string
	// Parameters are extra server options passed as --name=value; they
	// may not name ReservedParameters.
	Parameters map[string]string
	// Logger receives the package's logs; default slog.Default().
	Logger *slog.Logger
}

// ReservedParameters returns the server options this engine sets itself:
// the member's identity and the replication settings it relies on (the
// semi-sync sides start off: the agent turns them on).
func ReservedParameters() []string {
	return []string{"datadir", "socket", "port", "bind-address", "pid-file", "server-id", "server_id",
		"log-bin", "log_bin", "log-slave-updates", "log_slave_updates", "log-replica-updates", "gtid-strict-mode",
		"gtid_strict_mode", "gtid-mode", "gtid_mode", "enforce-gtid-consistency", "read-only", "read_only",
		"super-read-only", "super_read_only", "skip-slave-start", "skip-replica-start", "binlog-format", "binlog_format", "user",
		"rpl-semi-sync-master-enabled", "rpl-semi-sync-slave-enabled", "rpl-semi-sync-source-enabled", "rpl-semi-sync-replica-enabled"}
}

// IsReservedParameter reports whether name is one of ReservedParameters
// ('-' and '_' are the same to the server, and a loose- prefix only
// makes an unknown option a warning).
func IsReservedParameter(name string) bool {
	n := strings.ReplaceAll(strings.ToLower(name), "_", "-")
	n = strings.TrimPrefix(n, "loose-")
	for _, r := range ReservedParameters() {
		if n == strings.ReplaceAll(r, "_", "-") {
			return true
		}
	}
	return false
}

// MySQL manages one local MySQL or MariaDB server, its child process. It
// implements db.Database. Control methods are serialized; Probe may run
// concurrently with them. A MySQL must not be used after Close.
type MySQL struct {
	opts Options
	log  *slog.Logger
	// cred is who the server and its tools run as; nil when not root.
	cred   *syscall.Credential
	exited chan time.Time
	closed chan struct{}
	once   sync.Once

	opMu sync.Mutex // serializes control operations

	// waitOnPromote is set when SetSynchronousStandbys asked a read-only
	// server to make commits wait: a replica's own applier would wait
	// (its commits are binary-logged), so Promote turns waiting on just
	// before the server takes writes. Demote and Follow clear it.
	waitOnPromote atomic.Bool
	// waitAsked is the last waiting SetSynchronousStandbys asked of this
	// server as a primary (the setting is not persistent): a restart in
	// place (StartPrimary) turns waiting on again before the server takes
	// writes. Demote and Follow clear it.
	waitAsked atomic.Bool
	// heartbeatPending is when the probe's last heartbeat write, given
	// up on, began (Unix nanoseconds; 0: none pending): checkFresh.
	heartbeatPending atomic.Int64

	mu  sync.Mutex // guards srv
	srv *server

	dbMu    sync.Mutex // guards local and dialect
	local   *sql.DB
	fresh   *sql.DB // no idle connections: each use connects anew
	dialect *Dialect
	// noPassword: connect without the superuser's password (Initialize,
	// before it sets it).
	noPassword bool
}

var _ db.Database = (*MySQL)(nil)

// New validates opts and returns a MySQL for them. It does not touch the
// server or create any file.
func New(opts Options) (*MySQL, error) {
	if err := validate(&opts); err != nil {
		return nil, fmt.Errorf("mysql member %q: options: %w", opts.Name, err)
	}
	cred, err := resolveOwner(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("mysql member %q: %w", opts.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	quietDriver.Do(func() { _ = driver.SetLogger(driverLogger{log.With("component", "mysql-driver")}) })
	return &MySQL{
		opts:   opts,
		log:    log.With("member", opts.Name, "component", "mysql"),
		cred:   cred,
		exited: make(chan time.Time, 1),
		closed: make(chan struct{}),
	}, nil
}

// quietDriver: the driver's own logger (one per process) goes to the
// first member's slog at debug level. It reports closing a connection to a
// server that died ("broken pipe"), which the agent already knows.
var quietDriver sync.Once

type driverLogger struct{ log *slog.Logger }

func (l driverLogger) Print(v ...any) { l.log.Debug(fmt.Sprint(v...)) }

func validate(o *Options) error {
	if err := validateIdentity(o); err != nil {
		return err
	}
	for _, s := range []string{o.Superuser, o.SuperuserPassword, o.Replication, o.ReplicationPassword} {
		if strings.ContainsAny(s, "\\\r\n\x00") {
			return errors.New("account names and passwords may not contain backslashes, line breaks or NUL")
		}
	}
	if o.Replication == "" || o.ReplicationPassword == "" {
		return errors.New("replication account and password are required")
	}
	if o.Superuser == "" {
		o.Superuser = "root"
	}
	if o.ToolDir == "" {
		o.ToolDir = "/usr/bin"
	}
	if o.ServerBin == "" {
		for _, b := range []string{"/usr/sbin/mariadbd", "/usr/sbin/mysqld"} {
			if exists(b) {
				o.ServerBin = b
				break
			}
		}
	}
	if fi, err := os.Stat(o.ServerBin); err != nil || fi.IsDir() {
		return fmt.Errorf("server binary %q: not found (is mariadb-server installed?)", o.ServerBin)
	}
	o.DataDir = filepath.Clean(o.DataDir)
	if o.Socket == "" {
		o.Socket = filepath.Join(filepath.Dir(o.DataDir), o.Name+".sock")
	}
	if o.LogFile == "" {
		o.LogFile = filepath.Join(filepath.Dir(o.DataDir), o.Name+".log")
	}
	for k, v := range o.Parameters {
		if IsReservedParameter(k) {
			return fmt.Errorf("parameter %q is set by hamgr and may not be overridden", k)
		}
		if k == "" || strings.ContainsAny(k, "= \t\r\n\x00") || strings.ContainsAny(v, "\r\n\x00") {
			return fmt.Errorf("parameter %q is invalid", k)
		}
	}
	return nil
}

func validateIdentity(o *Options) error {
	switch {
	case !validName(o.Name):
		return fmt.Errorf("name %q: want 1-63 letters, digits, '_', '-' or '.'", o.Name)
	case o.DataDir == "" || !filepath.IsAbs(o.DataDir):
		return fmt.Errorf("data dir %q: must be an absolute path", o.DataDir)
	case o.Port <= 0 || o.Port > 65535:
		return fmt.Errorf("port %d: out of range", o.Port)
	case o.ListenHost == "":
		return errors.New("listen host is empty")
	case o.ServerID == 0:
		return errors.New("server id is required (1 to 4294967295, unique in the cluster)")
	case o.Socket != "" && !filepath.IsAbs(o.Socket):
		return fmt.Errorf("socket %q: must be an absolute path", o.Socket)
	case len(o.Socket) > 100:
		return fmt.Errorf("socket path %q: longer than a unix socket path may be", o.Socket)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// resolveOwner returns the credential the server runs with: nil when the
// agent is not root; otherwise the owner of the data directory or of its
// parent when not root, else the "mysql" OS user.
func resolveOwner(dataDir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, d := range []string{dataDir, filepath.Dir(dataDir)} {
		if fi, err := os.Stat(d); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
				return &syscall.Credential{Uid: st.Uid, Gid: st.Gid}, nil
			}
		}
	}
	u, err := user.Lookup("mysql")
	if err != nil {
		return nil, fmt.Errorf("running as root and the data dir has no non-root owner: look up OS user mysql: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("OS user mysql: bad uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Exited returns a channel that receives the time each time the server
// process is seen to exit. It has a buffer of one and is sent to without
// blocking.
func (m *MySQL) Exited() <-chan time.Time { return m.exited }

// Close closes the connection pool and stops the watcher of an adopted
// server. It never stops the server.
func (m *MySQL) Close() {
	m.once.Do(func() { close(m.closed) })
	m.dropConn()
}

func (m *MySQL) notifyExit(t time.Time) {
	select {
	case m.exited <- t:
	default:
	}
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func (m *MySQL) path(name string) string { return filepath.Join(m.opts.DataDir, name) }

// hasData reports whether DataDir holds an initialized server (its
// system schema).
func (m *MySQL) hasData() bool { return exists(m.path("mysql")) }

// replicaMarker is the file whose presence says the data directory was
// last configured as a replica (StartReplica, Demote); Promote removes it.
// It is hamgr's own: neither flavour records the role on disk in a form
// readable while the server is stopped.
const replicaMarker = "hamgr.replica"

func (m *MySQL) errorf(op string, format string, args ...any) error {
	return fmt.Errorf("mysql member %q: %s: %w", m.opts.Name, op, fmt.Errorf(format, args...))
}

// connectTimeout bounds a connection attempt without a deadline.
const connectTimeout = time.Second

// localDB returns the pool of connections to the local server over its
// unix socket, and the server's dialect, detected on first use.
func (m *MySQL) localDB(ctx context.Context) (*sql.DB, Dialect, error) {
	m.dbMu.Lock()
	defer m.dbMu.Unlock()
	if m.local == nil {
		cfg := driver.NewConfig()
		cfg.Net, cfg.Addr = "unix", m.opts.Socket
		cfg.User, cfg.Passwd = m.opts.Superuser, m.opts.SuperuserPassword
		if m.noPassword {
			cfg.Passwd = ""
		}
		cfg.Timeout, cfg.ReadTimeout, cfg.WriteTimeout = connectTimeout, 30*time.Second, 30*time.Second
		cfg.ParseTime = true
		cfg.InterpolateParams = true
		conn, err := driver.NewConnector(cfg)
		if err != nil {
			return nil, Dialect{}, err
		}
		m.local = sql.OpenDB(conn)
		m.local.SetMaxOpenConns(3)
		m.local.SetMaxIdleConns(2)
		m.local.SetConnMaxIdleTime(time.Minute)
		m.fresh = sql.OpenDB(conn)
		m.fresh.SetMaxIdleConns(0)
	}
	if m.dialect == nil {
		d, err := detect(ctx, m.local)
		if err != nil {
			return m.local, Dialect{}, err
		}
		m.dialect = &d
	}
	return m.local, *m.dialect, nil
}

func detect(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (Dialect, error) {
	var v, c string
	if err := q.QueryRowContext(ctx, "SELECT @@version, @@version_comment").Scan(&v, &c); err != nil {
		return Dialect{}, fmt.Errorf("read server version: %w", err)
	}
	return DetectDialect(v, c)
}

// withoutPassword makes the next connections use no password (a new
// server's superuser has none), or the configured one again.
func (m *MySQL) withoutPassword(on bool) {
	m.dropConn()
	m.dbMu.Lock()
	m.noPassword = on
	m.dbMu.Unlock()
}

// freshDB is the pool that keeps no idle connection, so that each use
// opens a new session (the primary's stall check).
func (m *MySQL) freshDB(ctx context.Context) (*sql.DB, error) {
	if _, _, err := m.localDB(ctx); err != nil {
		return nil, err
	}
	m.dbMu.Lock()
	defer m.dbMu.Unlock()
	if m.fresh == nil {
		return nil, errClosedPool
	}
	return m.fresh, nil
}

// errClosedPool: the pools were dropped concurrently (the server stopped).
var errClosedPool = errors.New("connection pool closed")

// dropConn closes the pool (after the server stopped: a new server may be
// another version).
func (m *MySQL) dropConn() {
	m.dbMu.Lock()
	defer m.dbMu.Unlock()
	if m.local != nil {
		_ = m.local.Close()
		_ = m.fresh.Close()
		m.local, m.fresh, m.dialect = nil, nil, nil
	}
}
