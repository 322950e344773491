package config

import (
	"os"
	"strings"
	"testing"
)

const minimalMySQL = `
cluster: demo
name: my1
etcd:
  endpoints: [http://127.0.0.1:2379]
mysql:
  data_dir: /var/lib/hamgr/my1
  server_id: 1
  replication:
    password_file: /etc/hamgr/repl.pw
`

func TestMySQLSection(t *testing.T) {
	c := mustParse(t, minimalMySQL)
	m := c.MySQL
	if !c.UsesMySQL() || m.Port != 3306 || m.ListenHost != "127.0.0.1" || m.ConnectHost != "127.0.0.1" ||
		m.Socket != "/var/lib/hamgr/my1.sock" || m.LogFile != "/var/lib/hamgr/my1.log" ||
		m.Superuser.Username != "root" || m.Replication.Username != "repl" || m.ToolDir != "/usr/bin" || m.ServerBin == "" {
		t.Errorf("defaults: %+v", m)
	}
	if mustParse(t, minimal).UsesMySQL() {
		t.Error("a postgresql config uses MySQL")
	}
	for _, c := range []struct{ yaml, want string }{
		{strings.Replace(minimalMySQL, "  server_id: 1\n", "", 1), "mysql.server_id: required"},
		{minimalMySQL + "postgresql:\n  data_dir: /x\n", "set either the postgresql section or the mysql section"},
		{minimalMySQL + "  parameters: {server_id: 3}\n", "mysql.parameters.server_id: hamgr sets server_id itself"},
		{minimalMySQL + "  parameters: {\"a b\": 3}\n", "is not a server option name"},
		{strings.Replace(minimalMySQL, "/var/lib/hamgr/my1", "rel/my1", 1), "mysql.data_dir: \"rel/my1\" must be an absolute path"},
		{minimalMySQL + "  listen_host: 0.0.0.0\n", "mysql.connect_host: required"},
		{minimalMySQL + "  port: 70000\n", "mysql.port: 70000 is out of range"},
		{minimalMySQL + "  bogus: 1\n", `unknown key "bogus" in mysql`},
		{strings.Replace(minimalMySQL, "    password_file: /etc/hamgr/repl.pw\n", "", 1), "mysql.replication.password_file: required"},
	} {
		_, err := Parse([]byte(c.yaml))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("want an error containing %q, got %v", c.want, err)
		}
	}
}

// The commented mysql section of the example parses.
func TestExampleMySQLSection(t *testing.T) {
	raw, err := os.ReadFile("../examples/hamgr.yml")
	if err != nil {
		t.Fatal(err)
	}
	var block []string
	in := false
	for _, l := range strings.Split(string(raw), "\n") {
		if l == "# mysql:" {
			in = true
		}
		if !in {
			continue
		}
		if !strings.HasPrefix(l, "#") {
			break
		}
		block = append(block, strings.TrimPrefix(strings.TrimPrefix(l, "#"), " "))
	}
	if len(block) < 10 {
		t.Fatalf("no mysql section in the example (%d lines)", len(block))
	}
	c := mustParse(t, "cluster: demo\nname: my1\netcd:\n  endpoints: [http://127.0.0.1:2379]\n"+strings.Join(block, "\n")+"\n")
	if c.MySQL.ServerID != 1 || c.MySQL.Parameters["innodb-buffer-pool-size"] != "128M" {
		t.Errorf("example mysql section: %+v", c.MySQL)
	}
}
