//go:build !agentonly

package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/localcluster"
)

// keptCluster is a cluster after the demo killed n1 and n2 took over.
func keptCluster() keepInfo {
	return keepInfo{
		Dir: "/tmp/hamgr-demo-1", Cluster: "local", Etcd: []string{"http://127.0.0.1:2379"},
		TokenFile: "/tmp/hamgr-demo-1/api.token", PasswordFile: "/tmp/hamgr-demo-1/superuser.password",
		Hamgrctl: "/opt/hamgr/hamgrctl", Psql: "/usr/lib/postgresql/15/bin/psql",
		Members: []keepMember{
			{Name: "n1", Config: "/tmp/hamgr-demo-1/n1/hamgr.yml", PGPort: 5001, APIPort: 6001, Down: true},
			{Name: "n2", Config: "/tmp/hamgr-demo-1/n2/hamgr.yml", PGPort: 5002, APIPort: 6002, Primary: true},
			{Name: "n3", Config: "/tmp/hamgr-demo-1/n3/hamgr.yml", PGPort: 5003, APIPort: 6003},
		},
	}
}

func names(ms []keepMember) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name)
	}
	return out
}

func TestPsqlOrder(t *testing.T) {
	m := func(name string, primary, down bool) keepMember {
		return keepMember{Name: name, Primary: primary, Down: down}
	}
	tests := []struct {
		name string
		in   []keepMember
		want []string
	}{
		{"primary first, dead member last", []keepMember{m("n1", false, true), m("n2", true, false), m("n3", false, false)},
			[]string{"n2", "n3", "n1"}},
		{"primary in the middle", []keepMember{m("n1", false, false), m("n2", true, false), m("n3", false, false)},
			[]string{"n2", "n1", "n3"}},
		{"no primary known", []keepMember{m("n3", false, false), m("n1", false, true), m("n2", false, false)},
			[]string{"n2", "n3", "n1"}},
		{"a primary record of a dead member does not come first",
			[]keepMember{m("n1", true, true), m("n2", false, false), m("n3", false, false)},
			[]string{"n2", "n3", "n1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := append([]keepMember(nil), tt.in...)
			if got := names(psqlOrder(tt.in)); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("psqlOrder = %v, want %v", got, tt.want)
			}
			if !reflect.DeepEqual(in, tt.in) {
				t.Errorf("psqlOrder modified its input")
			}
		})
	}
}

func TestPsqlConnStringParses(t *testing.T) {
	cs := psqlConnString(keptCluster().Members)
	cfg, err := pgconn.ParseConfig(cs)
	if err != nil {
		t.Fatalf("libpq-style parse of %q: %v", cs, err)
	}
	var ports []uint16
	for _, h := range append([]*pgconn.FallbackConfig{{Host: cfg.Host, Port: cfg.Port}}, cfg.Fallbacks...) {
		if h.Host != "127.0.0.1" {
			t.Errorf("host %q, want 127.0.0.1", h.Host)
		}
		// sslmode=prefer (the default) tries each host twice, with and
		// without TLS, in a row.
		if len(ports) == 0 || ports[len(ports)-1] != h.Port {
			ports = append(ports, h.Port)
		}
	}
	if want := []uint16{5002, 5003, 5001}; !reflect.DeepEqual(ports, want) {
		t.Errorf("ports in order %v, want %v (primary first, dead member last)", ports, want)
	}
	if cfg.User != "postgres" || cfg.Database != "postgres" {
		t.Errorf("user %q database %q, want postgres and postgres", cfg.User, cfg.Database)
	}
	if !strings.Contains(cs, "target_session_attrs=read-write") {
		t.Errorf("%q does not ask for the read-write member", cs)
	}
}

func TestWriteKeepInstructions(t *testing.T) {
	var b bytes.Buffer
	if err := writeKeepInstructions(&b, keptCluster()); err != nil {
		t.Fatal(err)
	}
	want := `
The cluster keeps running until you press Ctrl-C (its files stay in /tmp/hamgr-demo-1).

Members:
  n2  primary  config /tmp/hamgr-demo-1/n2/hamgr.yml  PostgreSQL 127.0.0.1:5002  API http://127.0.0.1:6002
  n3  replica  config /tmp/hamgr-demo-1/n3/hamgr.yml  PostgreSQL 127.0.0.1:5003  API http://127.0.0.1:6003
  n1  down     config /tmp/hamgr-demo-1/n1/hamgr.yml  PostgreSQL 127.0.0.1:5001  API http://127.0.0.1:6001
etcd endpoint: http://127.0.0.1:2379 (cluster "local")
API token: in /tmp/hamgr-demo-1/api.token (the agents' POST endpoints want it as a bearer token)
postgres superuser password: in /tmp/hamgr-demo-1/superuser.password
n1 is down (its node was killed); psql below lists it last, after the running members.

Try, in another terminal:
  /opt/hamgr/hamgrctl -c /tmp/hamgr-demo-1/n2/hamgr.yml list
  /opt/hamgr/hamgrctl -c /tmp/hamgr-demo-1/n2/hamgr.yml history
  /opt/hamgr/hamgrctl -c /tmp/hamgr-demo-1/n2/hamgr.yml switchover --to n3
  /opt/hamgr/hamgrctl --cluster local --etcd http://127.0.0.1:2379 list
  curl -s -X POST -H "Authorization: Bearer $(cat /tmp/hamgr-demo-1/api.token)" http://127.0.0.1:6002/pause
  curl -s -X POST -H "Authorization: Bearer $(cat /tmp/hamgr-demo-1/api.token)" http://127.0.0.1:6002/resume
  PGPASSWORD="$(cat /tmp/hamgr-demo-1/superuser.password)" /usr/lib/postgresql/15/bin/psql 'host=127.0.0.1,127.0.0.1,127.0.0.1 port=5002,5003,5001 user=postgres dbname=postgres target_session_attrs=read-write'

`
	if got := b.String(); got != want {
		t.Errorf("instructions:\n%s\nwant:\n%s", got, want)
	}
}

func TestWriteKeepInstructionsBuildsHamgrctl(t *testing.T) {
	k := keptCluster()
	k.Dir = "/tmp/my demo"
	k.Hamgrctl, k.BuildHamgrctl = "/tmp/my demo/hamgrctl", "go build -o '/tmp/my demo/hamgrctl' ./cmd/hamgrctl"
	k.Members[1].Config = "/tmp/my demo/n2/hamgr.yml"
	var b bytes.Buffer
	if err := writeKeepInstructions(&b, k); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"hamgrctl is not built yet; in hamgr's source tree run:\n  go build -o '/tmp/my demo/hamgrctl' ./cmd/hamgrctl\n",
		"\n  '/tmp/my demo/hamgrctl' -c '/tmp/my demo/n2/hamgr.yml' list\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("instructions lack %q:\n%s", want, b.String())
		}
	}
}

// TestKeepCommandsRunInAShell checks that the printed lines are valid
// shell: sh -n parses each one without running it.
func TestKeepCommandsRunInAShell(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	k := keptCluster()
	k.TokenFile = "/tmp/it's here/api.token"
	for _, l := range keepCommands(k, psqlOrder(k.Members)) {
		if out, err := exec.Command(sh, "-n", "-c", l).CombinedOutput(); err != nil {
			t.Errorf("sh -n -c %q: %v\n%s", l, err, out)
		}
	}
}

func TestShellQuote(t *testing.T) {
	for in, want := range map[string]string{
		"/tmp/hamgr-demo-1/n1/hamgr.yml": "/tmp/hamgr-demo-1/n1/hamgr.yml",
		"http://127.0.0.1:2379,http://x": "http://127.0.0.1:2379,http://x",
		"/tmp/my demo":                   "'/tmp/my demo'",
		"it's":                           `'it'\''s'`,
		"$HOME":                          "'$HOME'",
		"":                               "''",
	} {
		if got := shellQuote(in); got != want {
			t.Errorf("shellQuote(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestFindTool(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "hamgrctl-test-tool")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got := findTool("hamgrctl-test-tool", dir); got != p {
		t.Errorf("findTool in its dir = %q, want %q", got, p)
	}
	if got := findTool("hamgrctl-no-such-tool", dir); got != "hamgrctl-no-such-tool" {
		t.Errorf("findTool of a missing tool = %q, want the bare name", got)
	}
}

// --keep on MariaDB: members labelled MariaDB, the root password named as
// the agents' account, and a mariadb client line over the primary's socket
// instead of psql.
func TestKeepInstructionsMariaDB(t *testing.T) {
	k := keptCluster()
	k.Engine, k.Client = localcluster.EngineMariaDB, "/usr/bin/mariadb"
	var b bytes.Buffer
	if err := writeKeepInstructions(&b, k); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"n2  primary  config /tmp/hamgr-demo-1/n2/hamgr.yml  MariaDB 127.0.0.1:5002",
		"root password: in /tmp/hamgr-demo-1/superuser.password",
		`MYSQL_PWD="$(cat /tmp/hamgr-demo-1/superuser.password)" /usr/bin/mariadb -S /tmp/hamgr-demo-1/n2/my.sock -u root`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("instructions lack %q:\n%s", want, out)
		}
	}
	for _, not := range []string{"psql", "PostgreSQL", "PGPASSWORD"} {
		if strings.Contains(out, not) {
			t.Errorf("instructions for MariaDB mention %q:\n%s", not, out)
		}
	}
}
