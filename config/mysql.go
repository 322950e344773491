package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hamgr/hamgr/db/mysql"
)

// Defaults of the mysql section.
const (
	DefaultMySQLPort        = 3306
	DefaultMySQLSuperuser   = "root"
	DefaultMySQLReplication = "repl"
	DefaultMySQLToolDir     = "/usr/bin"
)

// MySQL describes the local MariaDB (10.6+) or MySQL (8.0+) server, when
// the member runs one instead of PostgreSQL; the flavour is read from the
// server. With this section set, the postgresql section must be left out.
type MySQL struct {
	// DataDir is the data directory. Required, absolute.
	DataDir string `yaml:"data_dir"`
	// ServerBin is the server binary. Default: /usr/sbin/mariadbd, else
	// /usr/sbin/mysqld.
	ServerBin string `yaml:"server_bin"`
	// ToolDir holds mariadb-install-db, mariadb-dump, mariadb and
	// mariadb-binlog. Default /usr/bin.
	ToolDir string `yaml:"tool_dir"`
	// ListenHost is bind-address. Default "127.0.0.1".
	ListenHost string `yaml:"listen_host"`
	// Port is the server's port. Default 3306.
	Port int `yaml:"port"`
	// ConnectHost is how other members and clients reach this server.
	// Default ListenHost; required when ListenHost is a wildcard.
	ConnectHost string `yaml:"connect_host"`
	// Socket is the unix socket the agent connects through. Default:
	// DataDir + ".sock".
	Socket string `yaml:"socket"`
	// LogFile receives the server's error log. Default DataDir + ".log".
	LogFile string `yaml:"log_file"`
	// ServerID is the server_id, unique in the cluster. Required, 1 to
	// 4294967295.
	ServerID uint32 `yaml:"server_id"`
	// Superuser is the account hamgr connects as over the socket. Username
	// default "root"; PasswordFile optional.
	Superuser User `yaml:"superuser"`
	// Replication is the account replicas connect with. Username default
	// "repl"; PasswordFile required.
	Replication User `yaml:"replication"`
	// Parameters are extra server options, passed as --name=value; those
	// hamgr sets itself (mysql.ReservedParameters) are refused.
	Parameters map[string]string `yaml:"parameters"`
	// RecloneOnDivergence lets a member whose GTID history diverged from
	// the primary's (a former primary with transactions nobody else got)
	// delete its data directory and clone the primary again. Default
	// false: it stays stopped and says what the operator must do.
	RecloneOnDivergence bool `yaml:"reclone_on_divergence"`
}

// UsesMySQL reports whether the member runs MySQL or MariaDB (the mysql
// section is set) rather than PostgreSQL.
func (c *Config) UsesMySQL() bool { return c.MySQL != nil }

// applyMySQLDefaults fills the mysql section's defaults and derived keys.
func (c *Config) applyMySQLDefaults() {
	m := c.MySQL
	if m == nil {
		return
	}
	set := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	set(&m.ToolDir, DefaultMySQLToolDir)
	set(&m.ListenHost, DefaultListenHost)
	if m.Port == 0 {
		m.Port = DefaultMySQLPort
	}
	set(&m.Superuser.Username, DefaultMySQLSuperuser)
	set(&m.Replication.Username, DefaultMySQLReplication)
	if m.ServerBin == "" {
		m.ServerBin = "/usr/sbin/mariadbd"
		if _, err := os.Stat(m.ServerBin); err != nil {
			if _, err := os.Stat("/usr/sbin/mysqld"); err == nil {
				m.ServerBin = "/usr/sbin/mysqld"
			}
		}
	}
	if m.ConnectHost == "" && !isWildcard(m.ListenHost) && !strings.Contains(m.ListenHost, ",") {
		m.ConnectHost = m.ListenHost
	}
	if dir := strings.TrimRight(m.DataDir, "/"); dir != "" {
		set(&m.Socket, dir+".sock")
		set(&m.LogFile, dir+".log")
	}
}

func (c *Config) validateMySQL(p *problems) {
	m := c.MySQL
	if c.PostgreSQL.DataDir != "" {
		p.add("mysql", "set either the postgresql section or the mysql section, not both")
	}
	switch {
	case m.DataDir == "":
		p.add("mysql.data_dir", "required: the absolute path of the server's data directory")
	case !filepath.IsAbs(m.DataDir):
		p.add("mysql.data_dir", "%q must be an absolute path", m.DataDir)
	case filepath.Clean(m.DataDir) == "/":
		p.add("mysql.data_dir", "%q: the root directory cannot be a data directory", m.DataDir)
	}
	for _, f := range []struct{ key, v string }{
		{"mysql.server_bin", m.ServerBin}, {"mysql.tool_dir", m.ToolDir}, {"mysql.socket", m.Socket},
		{"mysql.log_file", m.LogFile}, {"mysql.superuser.password_file", m.Superuser.PasswordFile},
		{"mysql.replication.password_file", m.Replication.PasswordFile},
	} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.add(f.key, "%q must be an absolute path", f.v)
		}
	}
	if len(m.Socket) > 100 {
		p.add("mysql.socket", "%q is longer than a unix socket path may be (100 bytes here)", m.Socket)
	}
	if m.Port < 1 || m.Port > 65535 {
		p.add("mysql.port", "%d is out of range (1-65535)", m.Port)
	}
	if m.ServerID == 0 {
		p.add("mysql.server_id", "required: a number from 1 to 4294967295, different on every member")
	}
	switch {
	case m.ConnectHost == "":
		p.add("mysql.connect_host", "required: the address other members use to reach this server")
	case isWildcard(m.ConnectHost) || strings.ContainsAny(m.ConnectHost, ", \t"):
		p.add("mysql.connect_host", "%q: want one host name or address that other members can connect to", m.ConnectHost)
	}
	if m.Replication.PasswordFile == "" {
		p.add("mysql.replication.password_file", "required: the file holding the replication account's password")
	}
	for _, u := range []struct{ key, v string }{{"mysql.superuser.username", m.Superuser.Username}, {"mysql.replication.username", m.Replication.Username}} {
		if u.v == "" || strings.ContainsAny(u.v, "\\'\"\r\n\x00") {
			p.add(u.key, "%q: want a non-empty account name without quotes, backslashes or line breaks", u.v)
		}
	}
	names := make([]string, 0, len(m.Parameters))
	for k := range m.Parameters {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		key := "mysql.parameters." + k
		switch {
		case mysql.IsReservedParameter(k):
			p.add(key, "hamgr sets %s itself; remove it from mysql.parameters (reserved: %s)", k, strings.Join(mysql.ReservedParameters(), ", "))
		case !mysqlParamRE.MatchString(k):
			p.add(key, "%q is not a server option name: want letters, digits, '_' and '-'", k)
		}
	}
}

// checkMySQLPaths is CheckPaths for the mysql section.
func (c *Config) checkMySQLPaths(p *problems) {
	m := c.MySQL
	for _, f := range []struct{ key, path, what string }{
		{"mysql.server_bin", m.ServerBin, "is mariadb-server installed?"},
		{"mysql.tool_dir", filepath.Join(m.ToolDir, "mariadb-install-db"), "is mariadb-server installed, and is tool_dir its client directory?"},
	} {
		fi, err := os.Stat(f.path)
		switch {
		case err != nil:
			p.add(f.key, "%s: %v (%s)", f.path, pathErr(err), f.what)
		case fi.IsDir() || fi.Mode().Perm()&0o111 == 0:
			p.add(f.key, "%s is not an executable file", f.path)
		}
	}
	if m.DataDir != "" {
		checkDir(p, "mysql.data_dir", filepath.Dir(filepath.Clean(m.DataDir)), "the parent of "+m.DataDir)
	}
}

// MySQLSuperuserPassword reads mysql.superuser.password_file ("" if none).
func (m MySQL) MySQLSuperuserPassword() (string, error) {
	return ReadPassword("mysql.superuser.password_file", m.Superuser.PasswordFile)
}

// MySQLReplicationPassword reads mysql.replication.password_file.
func (m MySQL) MySQLReplicationPassword() (string, error) {
	return ReadPassword("mysql.replication.password_file", m.Replication.PasswordFile)
}
