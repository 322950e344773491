package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hamgr/hamgr/db/postgres"
)

var nameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,62}$`)

// problems collects validation errors.
type problems []error

func (p *problems) add(key, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
}

// Validate checks the configuration (after defaults) and returns one error
// listing every problem, joined with errors.Join; each names the YAML key,
// the bad value and what is allowed. It does not touch the file system; see
// CheckPaths.
func (c *Config) Validate() error {
	var p problems
	checkName(&p, "cluster", c.Cluster)
	checkName(&p, "name", c.Name)
	c.validateEtcd(&p)
	c.validateAPI(&p)
	c.validatePostgreSQL(&p)
	c.validateTiming(&p)
	c.validateTags(&p)
	c.validateDiscovery(&p)
	c.validateConsul(&p)
	c.validateHooks(&p)
	c.validateFencing(&p)
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		p.add("log.level", "%q is not a level: want debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		p.add("log.format", "%q is not a format: want text or json", c.Log.Format)
	}
	switch c.OnStop {
	case OnStopHandover, OnStopStop, OnStopLeaveRunning:
	default:
		p.add("on_stop", "%q: want %s, %s or %s", c.OnStop, OnStopHandover, OnStopStop, OnStopLeaveRunning)
	}
	c.validateWatchdog(&p)
	return errors.Join(p...)
}

// validateWatchdog checks the watchdog section. Mode required cannot go
// with on_stop leave-running: when arming fails on a primary, the agent
// stops to stop leading, and leave-running would leave the database
// running as a primary, unguarded and without the key.
func (c *Config) validateWatchdog(p *problems) {
	w := c.Watchdog
	switch w.Mode {
	case WatchdogOff, WatchdogAutomatic, WatchdogRequired:
	default:
		p.add("watchdog.mode", "%q: want %s, %s or %s", w.Mode, WatchdogOff, WatchdogAutomatic, WatchdogRequired)
	}
	if !filepath.IsAbs(w.Device) {
		p.add("watchdog.device", "%q: want an absolute path (default %s)", w.Device, DefaultWatchdogDevice)
	}
	if w.Mode == WatchdogRequired && c.OnStop == OnStopLeaveRunning {
		p.add("watchdog.mode", "required cannot go with on_stop: %s (a primary whose watchdog cannot be armed stops to hand over); pause the cluster to restart the agent alone", OnStopLeaveRunning)
	}
}

// tagNameRE is what a custom tag's name may be made of: characters that
// need no escaping in a query parameter (?tag_NAME=VALUE).
var tagNameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,63}$`)

func (c *Config) validateTags(p *problems) {
	if c.Tags.Priority != nil && *c.Tags.Priority < 0 {
		p.add("tags.priority", "%d must be 0 or greater (higher wins ties between candidates)", *c.Tags.Priority)
	}
	names := make([]string, 0, len(c.Tags.Custom))
	for k := range c.Tags.Custom {
		names = append(names, k)
	}
	slices.Sort(names)
	builtin := knownKeys(reflect.TypeOf(Tags{}))
	for _, k := range names {
		switch {
		case slices.Contains(builtin, k):
			p.add("tags.custom."+k, "%q is a built-in tag: set it as tags.%s, not under tags.custom", k, k)
		case !tagNameRE.MatchString(k):
			p.add("tags.custom."+k, "%q is not a valid tag name: want 1-63 letters, digits, '_', '-' or '.'", k)
		}
	}
}

func checkName(p *problems, key, v string) {
	switch {
	case v == "":
		p.add(key, "required: set it to a name of lower-case letters, digits, '.', '_' and '-'")
	case !nameRE.MatchString(v):
		p.add(key, "%q is not a valid name: want 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", v)
	}
}

func (c *Config) validateEtcd(p *problems) {
	e := c.Etcd
	switch {
	case len(e.Endpoints) > 0 && e.Embedded != nil:
		p.add("etcd.endpoints", "set together with etcd.embedded: set exactly one of them (embedded runs etcd inside the agent, endpoints name an external etcd)")
	case len(e.Endpoints) == 0 && e.Embedded == nil:
		p.add("etcd.endpoints", "required: list the etcd client URLs (http(s)://host:port), or set etcd.embedded to run etcd inside the agent")
	}
	for i, ep := range e.Endpoints {
		if msg := checkURL(ep, false); msg != "" {
			p.add(fmt.Sprintf("etcd.endpoints[%d]", i), "%q %s: want http(s)://host:port", ep, msg)
		}
	}
	switch {
	case e.Prefix == "" || e.Prefix == "/":
		p.add("etcd.prefix", "%q: want a path such as \"/hamgr\" (starting with \"/\", not ending with \"/\")", e.Prefix)
	case !strings.HasPrefix(e.Prefix, "/"):
		p.add("etcd.prefix", "%q must start with \"/\"", e.Prefix)
	case strings.HasSuffix(e.Prefix, "/"):
		p.add("etcd.prefix", "%q must not end with \"/\"", e.Prefix)
	}
	if e.DialTimeout <= 0 {
		p.add("etcd.dial_timeout", "%v must be greater than 0", e.DialTimeout)
	}
	if e.Username == "" && e.PasswordFile != "" {
		p.add("etcd.username", "required because etcd.password_file is set")
	}
	if e.Username != "" && e.PasswordFile == "" {
		p.add("etcd.password_file", "required because etcd.username is set")
	}
	checkTLS(p, "etcd.tls", e.TLS)
	if em := e.Embedded; em != nil {
		if em.Dir == "" {
			p.add("etcd.embedded.dir", "required: the embedded etcd's data directory")
		} else if !filepath.IsAbs(em.Dir) {
			p.add("etcd.embedded.dir", "%q must be an absolute path", em.Dir)
		}
		for _, u := range []struct{ key, v string }{
			{"etcd.embedded.client_url", em.ClientURL},
			{"etcd.embedded.peer_url", em.PeerURL},
		} {
			if msg := checkURL(u.v, false); msg != "" {
				p.add(u.key, "%q %s: want http://host:port", u.v, msg)
			} else if !strings.HasPrefix(u.v, "http://") {
				p.add(u.key, "%q: the embedded etcd serves plain http only; want http://host:port", u.v)
			}
		}
		if em.ClientURL != "" && em.ClientURL == em.PeerURL {
			p.add("etcd.embedded.peer_url", "%q is the same as etcd.embedded.client_url: they need different ports", em.PeerURL)
		}
	}
}

// checkURL checks an http(s) URL with an explicit host and port; withPath
// allows a path. It returns "" or what is wrong.
func checkURL(s string, withPath bool) string {
	if s == "" {
		return "is empty"
	}
	u, err := url.Parse(s)
	if err != nil {
		return "is not a URL"
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return "has no http:// or https:// scheme"
	case u.Hostname() == "":
		return "has no host"
	case u.User != nil:
		return "must not contain credentials"
	case u.RawQuery != "" || u.Fragment != "":
		return "must not have a query or fragment"
	case !withPath && u.Path != "" && u.Path != "/":
		return "must not have a path"
	}
	if !withPath {
		port := u.Port()
		if port == "" {
			return "has no port"
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "has a port out of range (1-65535)"
		}
	}
	return ""
}

func checkTLS(p *problems, key string, t TLS) {
	if (t.CertFile == "") != (t.KeyFile == "") {
		if t.CertFile == "" {
			p.add(key+".cert_file", "required because %s.key_file is set (set both or neither)", key)
		} else {
			p.add(key+".key_file", "required because %s.cert_file is set (set both or neither)", key)
		}
	}
	for _, f := range []struct{ key, v string }{{"ca_file", t.CAFile}, {"cert_file", t.CertFile}, {"key_file", t.KeyFile}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.add(key+"."+f.key, "%q must be an absolute path", f.v)
		}
	}
}

func (c *Config) validateAPI(p *problems) {
	a := c.API
	host, port, err := net.SplitHostPort(a.Listen)
	if err != nil {
		p.add("api.listen", "%q is not host:port (for example \"127.0.0.1:8008\" or \"[::1]:8008\")", a.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.add("api.listen", "%q: port %q is out of range (0-65535; 0 picks a free port)", a.Listen, port)
	}
	if a.Advertise == "" {
		if err == nil && isWildcard(host) {
			p.add("api.advertise", "required because api.listen %q listens on every address: set api.advertise to the URL other members use to reach this agent, such as \"http://10.0.0.5:8008\"", a.Listen)
		} else {
			p.add("api.advertise", "required: the base URL other members use to reach this agent's API")
		}
	} else if msg := checkURL(a.Advertise, true); msg != "" {
		p.add("api.advertise", "%q %s: want a base URL such as \"http://10.0.0.5:8008\"", a.Advertise, msg)
	} else if a.TLS.Enabled() && strings.HasPrefix(a.Advertise, "http://") {
		p.add("api.advertise", "%q uses http:// but api.tls is set: want https://", a.Advertise)
	}
	if a.TokenFile != "" && !filepath.IsAbs(a.TokenFile) {
		p.add("api.token_file", "%q must be an absolute path", a.TokenFile)
	}
	checkTLS(p, "api.tls", a.TLS)
	if a.TLS.Enabled() && a.TLS.CertFile == "" && a.TLS.KeyFile == "" {
		p.add("api.tls.cert_file", "required when api.tls is set: the API needs a certificate and key to serve https")
	}
}

func (c *Config) validatePostgreSQL(p *problems) {
	pg := c.PostgreSQL
	switch {
	case pg.DataDir == "":
		p.add("postgresql.data_dir", "required: the absolute path of the PostgreSQL data directory")
	case !filepath.IsAbs(pg.DataDir):
		p.add("postgresql.data_dir", "%q must be an absolute path", pg.DataDir)
	case filepath.Clean(pg.DataDir) == "/":
		p.add("postgresql.data_dir", "%q: the root directory cannot be a data directory", pg.DataDir)
	}
	absolute := []struct{ key, v string }{
		{"postgresql.bin_dir", pg.BinDir},
		{"postgresql.socket_dir", pg.SocketDir},
		{"postgresql.log_file", pg.LogFile},
		{"postgresql.superuser.password_file", pg.Superuser.PasswordFile},
		{"postgresql.replication.password_file", pg.Replication.PasswordFile},
	}
	for _, f := range absolute {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.add(f.key, "%q must be an absolute path", f.v)
		}
	}
	if pg.BinDir == "" {
		p.add("postgresql.bin_dir", "required: the directory holding pg_ctl, postgres, initdb and pg_basebackup")
	}
	if pg.SocketDir == "" && pg.DataDir != "" {
		p.add("postgresql.socket_dir", "required: the directory for the server's Unix socket")
	}
	if pg.LogFile == "" && pg.DataDir != "" {
		p.add("postgresql.log_file", "required: the file receiving the server's output")
	}
	if strings.TrimSpace(pg.ListenHost) == "" {
		p.add("postgresql.listen_host", "required: the address(es) PostgreSQL listens on (listen_addresses), such as \"127.0.0.1\"")
	}
	if pg.Port < 1 || pg.Port > 65535 {
		p.add("postgresql.port", "%d is out of range (1-65535)", pg.Port)
	}
	switch {
	case pg.ConnectHost == "" && (isWildcard(pg.ListenHost) || strings.Contains(pg.ListenHost, ",")):
		p.add("postgresql.connect_host", "required because postgresql.listen_host %q is not a single address: set it to the address other members use to reach this server", pg.ListenHost)
	case pg.ConnectHost == "":
		p.add("postgresql.connect_host", "required: the address other members use to reach this server")
	case isWildcard(pg.ConnectHost) || strings.ContainsAny(pg.ConnectHost, ", \t"):
		p.add("postgresql.connect_host", "%q: want one host name or address that other members can connect to", pg.ConnectHost)
	}
	if pg.Superuser.Username == "" {
		p.add("postgresql.superuser.username", "required: the role hamgr connects as")
	}
	if pg.Replication.Username == "" {
		p.add("postgresql.replication.username", "required: the role replicas stream as")
	}
	if pg.Replication.PasswordFile == "" {
		p.add("postgresql.replication.password_file", "required: the file holding the replication role's password")
	}
	names := make([]string, 0, len(pg.Parameters))
	for k := range pg.Parameters {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		key := "postgresql.parameters." + k
		switch {
		case postgres.IsReservedParameter(k):
			p.add(key, "hamgr sets %s itself; remove it from postgresql.parameters (reserved: %s)", k, strings.Join(postgres.ReservedParameters(), ", "))
		case !paramRE.MatchString(k):
			p.add(key, "%q is not a server setting name: want letters, digits, '_' and '.'", k)
		}
	}
}

var paramRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_.]*$`)

// validateTiming applies the rules of the dynamic configuration
// (cluster.DynamicConfig.Validate, the same rules hamgrctl, the API and
// every agent apply to the config in etcd) to the timing section, each
// problem named by its key in the file, timing.KEY.
func (c *Config) validateTiming(p *problems) {
	for _, e := range c.Dynamic().Problems() {
		*p = append(*p, fmt.Errorf("timing.%w", e))
	}
}
