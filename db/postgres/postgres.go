package postgres

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Options configure one member's PostgreSQL server.
type Options struct {
	// Name is the member name: the server's cluster_name and the
	// application_name it streams under. Letters, digits, '_', '-' and '.'
	// only, at most 63 bytes.
	Name string
	// DataDir is the server's data directory; it is created when missing.
	DataDir string
	// BinDir holds the PostgreSQL binaries (postgres, initdb, pg_basebackup,
	// pg_controldata), e.g. /usr/lib/postgresql/15/bin.
	BinDir string
	// ListenHost is listen_addresses: the TCP address(es) the server binds.
	ListenHost string
	// Port is the server's TCP port (and the number of its unix socket).
	Port int
	// SocketDir is unix_socket_directories; it is created when missing and
	// the agent connects through it. Empty: no unix socket, the agent
	// connects over TCP to ListenHost.
	SocketDir string
	// LogFile receives the server's stdout and stderr (appended). Default:
	// <DataDir>/../<Name>.log.
	LogFile string
	// Superuser and SuperuserPassword are the agent's own credentials.
	Superuser         string
	SuperuserPassword string
	// Replication is the REPLICATION LOGIN role created by Initialize and
	// used by replicas (primary_conninfo) and by Clone (pg_basebackup).
	Replication         string
	ReplicationPassword string
	// MaxSlotWALKeepSize bounds the WAL a replication slot may hold back
	// on this server (max_slot_wal_keep_size, e.g. "1GB"; "-1": no bound).
	// A replica that falls further behind loses its slot (wal_status
	// "lost") and must be re-cloned, instead of filling the primary's
	// disk. Default "1GB".
	MaxSlotWALKeepSize string
	// Parameters are extra server settings passed as -c name=value. They
	// may not name any of ReservedParameters: the member's identity (port,
	// listen_addresses, unix_socket_directories, cluster_name) nor the
	// settings hamgr manages (primary_conninfo, primary_slot_name,
	// synchronous_standby_names, max_slot_wal_keep_size, ...): a
	// command-line value would silently win over hamgr's ALTER SYSTEM.
	Parameters map[string]string
	// Logger receives the package's logs; default slog.Default().
	Logger *slog.Logger
}

// ReservedParameters returns the server settings this engine sets itself
// (from Options, or by ALTER SYSTEM as the HA loop decides), in a new
// slice: they may not appear in Options.Parameters, where a command-line
// value would override hamgr's own. It is the one list: the config file's
// validation refuses the same names (config.PostgreSQL.Parameters), so a
// mistake is reported at load time, not by New.
func ReservedParameters() []string {
	return []string{
		"port", "listen_addresses", "unix_socket_directories", "cluster_name", "data_directory",
		"hot_standby", "wal_level",
		"primary_conninfo", "primary_slot_name", "synchronous_standby_names", "max_slot_wal_keep_size",
		"wal_receiver_timeout",
	}
}

// IsReservedParameter reports whether name (compared without regard to
// case, as the server does) is one of ReservedParameters.
func IsReservedParameter(name string) bool {
	for _, r := range ReservedParameters() {
		if strings.EqualFold(name, r) {
			return true
		}
	}
	return false
}

// ReceiverTimeout is every member's wal_receiver_timeout. The liveness
// rule counts a replica's stream as silent only after its receiver has
// pinged the sender (at half of this) and got nothing back for a second
// more, so it must stay well above a loaded machine's scheduling delay and
// well below the ttl: 4s (a ping after 2s, the silence seen after 3s)
// keeps a vanished host's failover within the fast profile's ttl, and
// lets a fence's take-over (ha.takeOver) come about 3 s after a host
// vanished. It was 6s before 2026-12-06; a live WAL sender answers a ping at
// once, even on a saturated machine, so two seconds is still ample.
const ReceiverTimeout = 4 * time.Second

// defaultMaxSlotWALKeepSize is Options.MaxSlotWALKeepSize when empty.
const defaultMaxSlotWALKeepSize = "1GB"

// Postgres manages one local PostgreSQL 15 server. It implements
// db.Database. Control methods (Initialize, Clone, Start*, Stop, Promote,
// Follow) are serialized; Probe may run concurrently with them. A Postgres
// must not be used after Close.
type Postgres struct {
	opts Options
	log  *slog.Logger
	// cred is who PostgreSQL binaries run as; nil when not root.
	cred   *syscall.Credential
	exited chan time.Time
	closed chan struct{}
	once   sync.Once

	opMu sync.Mutex // serializes control operations

	mu  sync.Mutex // guards srv
	srv *server

	connMu sync.Mutex // guards conn and is held while it is in use
	conn   *pgx.Conn

	ctlMu       sync.Mutex // guards the pg_controldata and WAL end caches
	ctlStamp    string
	ctlPos      controlData
	walEndStamp string // the control data stamp walEndLSN was read at
	walEndLSN   cluster.LSN

	freshMu  sync.Mutex // guards freshAt and freshWhy
	freshAt  time.Time  // when checkFresh last ran
	freshWhy string     // what it found then ("": a fresh commit went through)
}

var (
	_ db.Database    = (*Postgres)(nil)
	_ db.Replication = (*Postgres)(nil)
)

// New validates opts and returns a Postgres for them. It does not touch the
// server or create any file.
func New(opts Options) (*Postgres, error) {
	if err := validate(&opts); err != nil {
		return nil, fmt.Errorf("postgres member %q: options: %w", opts.Name, err)
	}
	cred, err := resolveOwner(opts.DataDir)
	if err != nil {
		return nil, fmt.Errorf("postgres member %q: %w", opts.Name, err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Postgres{
		opts:   opts,
		log:    log.With("member", opts.Name, "component", "postgres"),
		cred:   cred,
		exited: make(chan time.Time, 1),
		closed: make(chan struct{}),
	}, nil
}

func validate(o *Options) error {
	switch {
	case !validName(o.Name):
		return fmt.Errorf("name %q: want 1-63 letters, digits, '_', '-' or '.'", o.Name)
	case o.DataDir == "" || !filepath.IsAbs(o.DataDir):
		return fmt.Errorf("data dir %q: must be an absolute path", o.DataDir)
	case o.BinDir == "":
		return errors.New("bin dir is empty")
	case o.Port <= 0 || o.Port > 65535:
		return fmt.Errorf("port %d: out of range", o.Port)
	case o.ListenHost == "" && o.SocketDir == "":
		return errors.New("listen host and socket dir are both empty: the agent could not connect")
	case o.SocketDir != "" && !filepath.IsAbs(o.SocketDir):
		return fmt.Errorf("socket dir %q: must be an absolute path", o.SocketDir)
	case o.Superuser == "" || o.Replication == "":
		return errors.New("superuser and replication role names are required")
	case o.ReplicationPassword == "":
		return errors.New("replication password is required (replicas authenticate with scram-sha-256)")
	case strings.ContainsAny(o.ReplicationPassword, "\r\n\x00") || strings.ContainsAny(o.SuperuserPassword, "\r\n\x00"):
		return errors.New("passwords may not contain line breaks or NUL")
	case strings.ContainsAny(o.Superuser+o.Replication, "\r\n\x00"):
		return errors.New("role names may not contain line breaks or NUL")
	}
	if o.MaxSlotWALKeepSize == "" {
		o.MaxSlotWALKeepSize = defaultMaxSlotWALKeepSize
	}
	if strings.ContainsAny(o.MaxSlotWALKeepSize, "\r\n\x00") {
		return fmt.Errorf("max slot WAL keep size %q is invalid", o.MaxSlotWALKeepSize)
	}
	o.DataDir = filepath.Clean(o.DataDir)
	if o.LogFile == "" {
		o.LogFile = filepath.Join(filepath.Dir(o.DataDir), o.Name+".log")
	}
	for k := range o.Parameters {
		if IsReservedParameter(k) {
			return fmt.Errorf("parameter %q is set from Options and may not be overridden", k)
		}
		if k == "" || strings.ContainsAny(k, "= \t\r\n") {
			return fmt.Errorf("parameter name %q is invalid", k)
		}
	}
	if fi, err := os.Stat(filepath.Join(o.BinDir, "postgres")); err != nil || fi.IsDir() {
		return fmt.Errorf("bin dir %q: no postgres binary", o.BinDir)
	}
	return nil
}

func validName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return false
		}
	}
	return true
}

// resolveOwner returns the credential PostgreSQL binaries run with: nil when
// the agent is not root; otherwise the owner of the data directory or of its
// parent if either exists and is not root, else the "postgres" OS user.
func resolveOwner(dataDir string) (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, d := range []string{dataDir, filepath.Dir(dataDir)} {
		fi, err := os.Stat(d)
		if err != nil {
			continue
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 {
			return &syscall.Credential{Uid: st.Uid, Gid: st.Gid}, nil
		}
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("running as root and the data dir has no non-root owner: look up OS user postgres: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("OS user postgres: bad uid/gid %q/%q", u.Uid, u.Gid)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// Exited returns a channel that receives the time each time the server
// process is seen to exit (stopped, crashed or killed). It has a buffer of
// one and is sent to without blocking, so a slow reader sees at least one
// value after the latest exit.
func (p *Postgres) Exited() <-chan time.Time { return p.exited }

// Close closes the pooled connection and stops the watcher of an adopted
// server. It never stops the server. The goroutine that waits on a child
// server keeps running until the child exits, to reap it.
func (p *Postgres) Close() {
	p.once.Do(func() { close(p.closed) })
	p.dropConn()
}

func (p *Postgres) notifyExit(t time.Time) {
	select {
	case p.exited <- t:
	default:
	}
}

// paths

func (p *Postgres) path(name string) string { return filepath.Join(p.opts.DataDir, name) }

// passfile is the libpq password file holding the replication password.
func (p *Postgres) passfile() string {
	return filepath.Join(filepath.Dir(p.opts.DataDir), "."+p.opts.Name+".pgpass")
}

func (p *Postgres) bin(name string) string { return filepath.Join(p.opts.BinDir, name) }

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// hasData reports whether DataDir holds a database cluster.
func (p *Postgres) hasData() bool { return exists(p.path("PG_VERSION")) }

// errorf wraps err with the member name and the operation.
func (p *Postgres) errorf(op string, format string, args ...any) error {
	return fmt.Errorf("postgres member %q: %s: %w", p.opts.Name, op, fmt.Errorf(format, args...))
}
