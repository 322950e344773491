package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hamgr/hamgr/cluster"
)

// Default values of the keys that have one. Derived defaults (api.advertise,
// postgresql.connect_host, socket_dir and log_file) are described on the
// fields they apply to.
const (
	DefaultEtcdPrefix                    = "/hamgr"
	DefaultEtcdDialTimeout               = 2 * time.Second
	DefaultEmbeddedClientURL             = "http://127.0.0.1:2379"
	DefaultEmbeddedPeerURL               = "http://127.0.0.1:2380"
	DefaultAPIListen                     = "127.0.0.1:8008"
	DefaultBinDir                        = "/usr/lib/postgresql/15/bin"
	DefaultListenHost                    = "127.0.0.1"
	DefaultPort                          = 5432
	DefaultSuperuser                     = "postgres"
	DefaultReplicationUser               = "replicator"
	DefaultTTL                           = 10 * time.Second
	DefaultLoopWait                      = 2 * time.Second
	DefaultRetryTimeout                  = 5 * time.Second
	DefaultPrimaryStartTimeout           = 30 * time.Second
	DefaultMaximumLagOnFailover ByteSize = 1 << 20
	DefaultPriority                      = 1
	DefaultLogLevel                      = "info"
	DefaultLogFormat                     = "text"
	DefaultWatchdogMode                  = WatchdogOff
	DefaultWatchdogDevice                = "/dev/watchdog"
)

// Config is the static configuration of one agent, as read from its YAML file.
type Config struct {
	// Cluster names the cluster; every member of one cluster uses the same
	// name. Required; lower-case letters, digits, '.', '_' and '-', starting
	// with a letter or digit, at most 63 characters.
	Cluster string `yaml:"cluster"`
	// Name is this member's name, unique within the cluster. Required; same
	// character set as Cluster.
	Name string `yaml:"name"`
	// Etcd says how to reach the distributed store.
	Etcd Etcd `yaml:"etcd"`
	// API configures the agent's HTTP API.
	API API `yaml:"api"`
	// PostgreSQL describes the local database server.
	PostgreSQL PostgreSQL `yaml:"postgresql"`
	// MySQL describes the local MariaDB or MySQL server instead, when
	// set (then the postgresql section must be left out).
	MySQL *MySQL `yaml:"mysql"`
	// Timing holds the failover timings (the cluster's dynamic configuration
	// when this agent bootstraps it).
	Timing Timing `yaml:"timing"`
	// Tags steer elections.
	Tags Tags `yaml:"tags"`
	// Log configures the agent's own logging.
	Log Log `yaml:"log"`
	// Discovery configures the publishers that tell clients where the
	// primary is (DNS, Consul; the hooks run with them). Optional.
	Discovery Discovery `yaml:"discovery"`
	// Hooks are the operator's executables run before and after a
	// promotion, on role changes, at start and at stop. Optional.
	Hooks Hooks `yaml:"hooks"`
	// Fencing says how to power off other members' machines before this
	// agent promotes over them (STONITH). Optional.
	Fencing Fencing `yaml:"fencing"`
	// OnStop is what a clean stop of the agent (SIGTERM, systemctl stop)
	// does with PostgreSQL: "handover" (default: a primary switches over
	// to the best replica, then everything stops), "stop" (PostgreSQL
	// stops; a primary releases the leader key, so a replica takes over
	// with everything it wrote) or "leave-running" (PostgreSQL keeps
	// running; the primary has no leader key until the agent is back).
	// While the cluster is paused PostgreSQL is always left running.
	OnStop string `yaml:"on_stop"`
	// Watchdog arms a watchdog device while this member is the primary.
	Watchdog Watchdog `yaml:"watchdog"`
}

// Watchdog configures the watchdog device (package watchdog): armed while
// this member is the primary, kicked by the agent's loop, so that the
// machine resets before the leader lease can expire in etcd if the agent
// dies or hangs.
type Watchdog struct {
	// Mode is "off" (default: the device is never opened), "automatic"
	// (armed where possible; where not, the agent logs an error and leads
	// unprotected) or "required" (the member never leads without it: with
	// no usable device at start it advertises nofailover; if arming fails
	// once it leads, the agent hands over and exits).
	Mode string `yaml:"mode"`
	// Device is the watchdog device. Default /dev/watchdog; absolute.
	Device string `yaml:"device"`
}

// Watchdog modes (Watchdog.Mode).
const (
	WatchdogOff       = "off"
	WatchdogAutomatic = "automatic"
	WatchdogRequired  = "required"
)

// On-stop modes (Config.OnStop).
const (
	OnStopHandover     = "handover"
	OnStopStop         = "stop"
	OnStopLeaveRunning = "leave-running"
)

// Etcd says how the agent reaches etcd. Exactly one of Endpoints and Embedded
// must be set.
type Etcd struct {
	// Endpoints are the client URLs of the etcd cluster, "http(s)://host:port".
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix under which all hamgr clusters keep their
	// keys. Default "/hamgr"; must start with "/" and must not end with "/".
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds connecting to etcd. Default 2s.
	DialTimeout Duration `yaml:"dial_timeout"`
	// Username enables etcd authentication; PasswordFile must then be set.
	Username string `yaml:"username"`
	// PasswordFile holds the etcd password (read by CheckPaths and by the
	// store client, never kept in the Config).
	PasswordFile string `yaml:"password_file"`
	// TLS configures the client side of TLS to etcd.
	TLS TLS `yaml:"tls"`
	// Embedded runs a single-member etcd inside the agent (demos and tests).
	Embedded *EmbeddedEtcd `yaml:"embedded"`
}

// ClientEndpoints returns the URLs to dial: Endpoints, or the embedded
// server's client URL when Embedded is set.
func (e Etcd) ClientEndpoints() []string {
	if e.Embedded != nil {
		return []string{e.Embedded.ClientURL}
	}
	return e.Endpoints
}

// Password reads the etcd password from PasswordFile with ReadPassword
// (a file other users may read or write is refused); "" if none is set.
func (e Etcd) Password() (string, error) {
	return ReadPassword("etcd.password_file", e.PasswordFile)
}

// EmbeddedEtcd configures a single-member etcd server run inside the agent.
// It is meant for demos and tests: it is not highly available.
type EmbeddedEtcd struct {
	// Dir is the server's data directory. Required, absolute.
	Dir string `yaml:"dir"`
	// ClientURL is where the server listens for clients. Default
	// "http://127.0.0.1:2379"; plain http only.
	ClientURL string `yaml:"client_url"`
	// PeerURL is where the server listens for peers. Default
	// "http://127.0.0.1:2380"; plain http only.
	PeerURL string `yaml:"peer_url"`
}

// TLS names the files of a TLS configuration. CertFile and KeyFile are set
// together or not at all; CAFile alone means "verify the server with this CA".
type TLS struct {
	// CAFile is a PEM bundle of certificate authorities to trust.
	CAFile string `yaml:"ca_file"`
	// CertFile is this side's PEM certificate.
	CertFile string `yaml:"cert_file"`
	// KeyFile is the PEM private key of CertFile.
	KeyFile string `yaml:"key_file"`
}

// Enabled reports whether any TLS file is configured, that is whether TLS is
// to be used at all.
func (t TLS) Enabled() bool { return t.CAFile != "" || t.CertFile != "" || t.KeyFile != "" }

// API configures the agent's HTTP API.
type API struct {
	// Listen is the "host:port" to listen on. Default "127.0.0.1:8008". Port 0
	// picks a free port (tests); the server must then advertise the port it got.
	Listen string `yaml:"listen"`
	// Advertise is the base URL other members and tools use to reach this API.
	// Default "http://"+Listen ("https://" when TLS is enabled). Required when
	// Listen's host is a wildcard (0.0.0.0, :: or empty).
	Advertise string `yaml:"advertise"`
	// TokenFile holds the bearer token required by mutating endpoints
	// (optional).
	TokenFile string `yaml:"token_file"`
	// TLS makes the API serve HTTPS; CertFile and KeyFile are then required.
	TLS TLS `yaml:"tls"`
}

// PostgreSQL describes the local PostgreSQL server.
type PostgreSQL struct {
	// DataDir is the data directory. Required, absolute.
	DataDir string `yaml:"data_dir"`
	// BinDir holds pg_ctl, postgres, initdb and pg_basebackup (checked by
	// CheckPaths). Default "/usr/lib/postgresql/15/bin".
	BinDir string `yaml:"bin_dir"`
	// ListenHost becomes listen_addresses. Default "127.0.0.1".
	ListenHost string `yaml:"listen_host"`
	// Port is the server's port. Default 5432.
	Port int `yaml:"port"`
	// ConnectHost is how other members and clients reach this server. Default
	// ListenHost; required when ListenHost is a wildcard (0.0.0.0, *, ::) or a
	// list.
	ConnectHost string `yaml:"connect_host"`
	// SocketDir becomes unix_socket_directories. Default: DataDir's parent.
	SocketDir string `yaml:"socket_dir"`
	// LogFile receives the server's output. Default DataDir + ".log".
	LogFile string `yaml:"log_file"`
	// Superuser is the role hamgr connects as. Username default "postgres";
	// PasswordFile optional.
	Superuser User `yaml:"superuser"`
	// Replication is the role replicas stream as. Username default
	// "replicator"; PasswordFile required.
	Replication User `yaml:"replication"`
	// Parameters are extra server settings, passed as -c name=value. Settings
	// hamgr manages itself (postgres.ReservedParameters, package
	// github.com/hamgr/hamgr/db/postgres) are refused at load time.
	Parameters map[string]string `yaml:"parameters"`
	// UsePgRewind lets a former primary whose timeline diverged rejoin by
	// pg_rewind against the new primary. Default true.
	UsePgRewind *bool `yaml:"use_pg_rewind"`
	// RecloneOnRewindFailure lets a member that cannot rewind delete its
	// data directory and clone the primary again (pg_basebackup). Default
	// false: it stays stopped and says what the operator must do.
	RecloneOnRewindFailure bool `yaml:"reclone_on_rewind_failure"`
}

// Rewind reports whether pg_rewind is enabled (use_pg_rewind, default true).
func (p PostgreSQL) Rewind() bool { return p.UsePgRewind == nil || *p.UsePgRewind }

// User is a database role and the file holding its password.
type User struct {
	// Username is the role name.
	Username string `yaml:"username"`
	// PasswordFile holds the password; its trailing newline is ignored.
	PasswordFile string `yaml:"password_file"`
}

// Password reads PasswordFile with ReadPassword, naming it "password_file"
// in errors: its contents without the trailing newline, or "" if no file is
// set. PostgreSQL.SuperuserPassword and ReplicationPassword name the full
// key. Errors name the file, never its contents.
func (u User) Password() (string, error) {
	return ReadPassword("password_file", u.PasswordFile)
}

// Timing holds the failover timings. Validate checks them with the
// dynamic configuration's rules (cluster.DynamicConfig.Validate); see the
// package documentation and the fast profile.
type Timing struct {
	// TTL is the leader lease. Default 10s; whole seconds, 3s to 10m, and
	// greater than LoopWait + RetryTimeout.
	TTL Duration `yaml:"ttl"`
	// LoopWait is the pause between two runs of the agent's loop. Default
	// 2s; whole seconds, 1s to 1m.
	LoopWait Duration `yaml:"loop_wait"`
	// RetryTimeout bounds retrying store and database operations. Default
	// 5s; whole seconds, 1s to 5m.
	RetryTimeout Duration `yaml:"retry_timeout"`
	// PrimaryStartTimeout is how long a failed primary may take to restart
	// before failover. Default 30s; whole seconds, 0 to 1h.
	PrimaryStartTimeout Duration `yaml:"primary_start_timeout"`
	// MaximumLagOnFailover is how far behind (in bytes) a replica may be and
	// still be promoted. Default 1MB; 0 to 1TB.
	MaximumLagOnFailover ByteSize `yaml:"maximum_lag_on_failover"`
	// FailoverBackoff is the anti-flapping window (0: off); see
	// cluster.DynamicConfig.FailoverBackoff.
	FailoverBackoff Duration `yaml:"failover_backoff"`
	// FailsafeMode keeps a primary writable while its agent cannot reach
	// etcd, as long as every member confirms it over the API (default
	// false); see cluster.DynamicConfig.FailsafeMode.
	FailsafeMode bool `yaml:"failsafe_mode"`
	// Fencing is the fencing policy: off (default), require or
	// best-effort; see cluster.FencingPolicy. How to fence each member is
	// the top-level fencing section.
	Fencing string `yaml:"fencing"`
}

// Tags are this member's election and load-balancing tags.
type Tags struct {
	// NoFailover keeps this member from ever being promoted.
	NoFailover bool `yaml:"nofailover"`
	// NoLoadBalance keeps this member out of read pools: the API's replica
	// checks never answer 200 for it. Default false.
	NoLoadBalance bool `yaml:"noloadbalance"`
	// Priority breaks ties between equally advanced candidates, higher wins.
	// Default 1; must be >= 0. A pointer so that an explicit 0 is kept.
	Priority *int `yaml:"priority"`
	// Custom are the operator's own tags, names to values (a data center,
	// a rack), matched by the API's ?tag_NAME=VALUE filters. Names are
	// letters, digits, '_', '-' and '.', and may not be one of the keys
	// above; values are strings (a YAML number or boolean is kept as
	// written).
	Custom map[string]string `yaml:"custom"`
}

// Cluster returns the tags as published in the member record.
func (t Tags) Cluster() cluster.Tags {
	p := DefaultPriority
	if t.Priority != nil {
		p = *t.Priority
	}
	ct := cluster.Tags{NoFailover: t.NoFailover, NoLoadBalance: t.NoLoadBalance, Priority: p}
	if len(t.Custom) > 0 {
		ct.Custom = make(map[string]string, len(t.Custom))
		for k, v := range t.Custom {
			ct.Custom[k] = v
		}
	}
	return ct
}

// Log configures the agent's logging.
type Log struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// SlogLevel returns Level as a slog.Level (info if Level is not valid).
func (l Log) SlogLevel() slog.Level {
	switch l.Level {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	default:
		return slog.LevelInfo
	}
}

// Default returns a Config holding every default; Cluster, Name,
// Etcd.Endpoints, PostgreSQL.DataDir and PostgreSQL.Replication.PasswordFile
// must still be set. The derived defaults (which depend on other keys) are
// filled in by ApplyDefaults.
func Default() *Config {
	prio := DefaultPriority
	return &Config{
		Etcd: Etcd{
			Prefix:      DefaultEtcdPrefix,
			DialTimeout: Duration(DefaultEtcdDialTimeout),
		},
		API: API{Listen: DefaultAPIListen},
		PostgreSQL: PostgreSQL{
			BinDir:      DefaultBinDir,
			ListenHost:  DefaultListenHost,
			Port:        DefaultPort,
			Superuser:   User{Username: DefaultSuperuser},
			Replication: User{Username: DefaultReplicationUser},
		},
		Timing: Timing{
			TTL:                  Duration(DefaultTTL),
			LoopWait:             Duration(DefaultLoopWait),
			RetryTimeout:         Duration(DefaultRetryTimeout),
			PrimaryStartTimeout:  Duration(DefaultPrimaryStartTimeout),
			MaximumLagOnFailover: DefaultMaximumLagOnFailover,
			Fencing:              string(cluster.FencingOff),
		},
		Tags:     Tags{Priority: &prio},
		Log:      Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		OnStop:   OnStopHandover,
		Watchdog: Watchdog{Mode: DefaultWatchdogMode, Device: DefaultWatchdogDevice},
	}
}

// ApplyDefaults sets every empty or zero field that has a default, including
// the derived ones (api.advertise, postgresql.connect_host, socket_dir,
// log_file, the embedded etcd URLs). It is for configurations built in code;
// Parse already applies defaults, and keeps explicit zeros (such as
// maximum_lag_on_failover: 0) that ApplyDefaults would replace.
func (c *Config) ApplyDefaults() {
	d := Default()
	setStr := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	setDur := func(p *Duration, v Duration) {
		if *p == 0 {
			*p = v
		}
	}
	setStr(&c.Etcd.Prefix, d.Etcd.Prefix)
	setDur(&c.Etcd.DialTimeout, d.Etcd.DialTimeout)
	setStr(&c.API.Listen, d.API.Listen)
	p := &c.PostgreSQL
	setStr(&p.BinDir, d.PostgreSQL.BinDir)
	setStr(&p.ListenHost, d.PostgreSQL.ListenHost)
	if p.Port == 0 {
		p.Port = d.PostgreSQL.Port
	}
	setStr(&p.Superuser.Username, d.PostgreSQL.Superuser.Username)
	setStr(&p.Replication.Username, d.PostgreSQL.Replication.Username)
	t := &c.Timing
	setDur(&t.TTL, d.Timing.TTL)
	setDur(&t.LoopWait, d.Timing.LoopWait)
	setDur(&t.RetryTimeout, d.Timing.RetryTimeout)
	setDur(&t.PrimaryStartTimeout, d.Timing.PrimaryStartTimeout)
	if t.MaximumLagOnFailover == 0 {
		t.MaximumLagOnFailover = d.Timing.MaximumLagOnFailover
	}
	if t.Fencing == "" {
		t.Fencing = d.Timing.Fencing
	}
	if c.Tags.Priority == nil {
		c.Tags.Priority = d.Tags.Priority
	}
	setStr(&c.Log.Level, d.Log.Level)
	setStr(&c.Log.Format, d.Log.Format)
	setStr(&c.OnStop, d.OnStop)
	setStr(&c.Watchdog.Mode, d.Watchdog.Mode)
	setStr(&c.Watchdog.Device, d.Watchdog.Device)
	c.applyDerived()
}

// applyDerived fills the defaults that depend on other keys, and those of
// optional sections (discovery.dns, discovery.consul).
func (c *Config) applyDerived() {
	c.applyDNSDefaults()
	c.applyMySQLDefaults()
	c.applyConsulDefaults()
	if e := c.Etcd.Embedded; e != nil {
		if e.ClientURL == "" {
			e.ClientURL = DefaultEmbeddedClientURL
		}
		if e.PeerURL == "" {
			e.PeerURL = DefaultEmbeddedPeerURL
		}
	}
	if c.API.Advertise == "" && c.API.Listen != "" {
		if host, _, err := net.SplitHostPort(c.API.Listen); err == nil && !isWildcard(host) {
			scheme := "http://"
			if c.API.TLS.Enabled() {
				scheme = "https://"
			}
			c.API.Advertise = scheme + c.API.Listen
		}
	}
	p := &c.PostgreSQL
	if p.ConnectHost == "" && !isWildcard(p.ListenHost) && !strings.Contains(p.ListenHost, ",") {
		p.ConnectHost = p.ListenHost
	}
	if p.DataDir != "" {
		dir := strings.TrimRight(p.DataDir, "/")
		if p.SocketDir == "" && dir != "" {
			p.SocketDir = filepath.Dir(dir)
		}
		if p.LogFile == "" && dir != "" {
			p.LogFile = dir + ".log"
		}
	}
}

// isWildcard reports whether a listen host means "every address".
func isWildcard(host string) bool {
	switch strings.TrimSpace(host) {
	case "", "0.0.0.0", "*", "::", "[::]":
		return true
	}
	return false
}

// Load reads the file at path and parses it with Parse. Errors are prefixed
// with the path.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, &fileError{path: path, err: err}
	}
	return c, nil
}

// fileError prefixes every line of a (possibly joined) error with a file name.
type fileError struct {
	path string
	err  error
}

func (e *fileError) Error() string {
	lines := strings.Split(e.err.Error(), "\n")
	for i, l := range lines {
		lines[i] = e.path + ": " + l
	}
	return strings.Join(lines, "\n")
}

func (e *fileError) Unwrap() error { return e.err }

// Parse decodes a YAML configuration strictly (unknown keys are errors),
// applies the defaults and validates the result.
func Parse(data []byte) (*Config, error) {
	var root yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&root); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, fmt.Errorf("config line %d: a second YAML document; the file must hold exactly one", extra.Line)
	} else if !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("config: %w", err)
	}

	c := Default()
	if root.Kind != 0 {
		if errs := checkNode(&root, configType, ""); len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
		// Decode for real; checkNode has already reported anything the strict
		// decoder would refuse, so this normally succeeds.
		strict := yaml.NewDecoder(bytes.NewReader(data))
		strict.KnownFields(true)
		if err := strict.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, decodeError(err)
		}
	}
	c.applyDerived()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeError rewrites yaml.v3's "yaml: unmarshal errors:\n  line 3: ..." as
// one "config line 3: ..." error per problem.
func decodeError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		errs := make([]error, len(te.Errors))
		for i, e := range te.Errors {
			errs[i] = errors.New("config " + e)
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("config: %w", err)
}

// Dynamic returns the timing section as the cluster's dynamic configuration.
func (c *Config) Dynamic() cluster.DynamicConfig {
	t := c.Timing
	return cluster.DynamicConfig{
		TTL:                  cluster.Duration(t.TTL),
		LoopWait:             cluster.Duration(t.LoopWait),
		RetryTimeout:         cluster.Duration(t.RetryTimeout),
		PrimaryStartTimeout:  cluster.Duration(t.PrimaryStartTimeout),
		MaximumLagOnFailover: int64(t.MaximumLagOnFailover),
		FailoverBackoff:      cluster.Duration(t.FailoverBackoff),
		FailsafeMode:         t.FailsafeMode,
		Fencing:              cluster.FencingPolicy(t.Fencing),
	}
}

// String returns the configuration as YAML, with defaults applied. It holds
// file names only, never the contents of password or token files.
func (c *Config) String() string {
	b, err := yaml.Marshal(c)
	if err != nil {
		return fmt.Sprintf("config: %v", err)
	}
	return string(b)
}
