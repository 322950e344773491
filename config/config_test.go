package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db/postgres"
)

// minimal is the smallest valid configuration.
const minimal = `
cluster: demo
name: pg1
etcd:
  endpoints: [http://127.0.0.1:2379]
postgresql:
  data_dir: /var/lib/postgresql/15/pg1
  replication:
    password_file: /etc/hamgr/repl.pw
`

func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return c
}

func TestDefaults(t *testing.T) {
	c := mustParse(t, minimal)
	checks := []struct {
		name      string
		got, want any
	}{
		{"etcd.prefix", c.Etcd.Prefix, "/hamgr"},
		{"etcd.dial_timeout", c.Etcd.DialTimeout, Duration(2 * time.Second)},
		{"api.listen", c.API.Listen, "127.0.0.1:8008"},
		{"api.advertise", c.API.Advertise, "http://127.0.0.1:8008"},
		{"postgresql.bin_dir", c.PostgreSQL.BinDir, "/usr/lib/postgresql/15/bin"},
		{"postgresql.listen_host", c.PostgreSQL.ListenHost, "127.0.0.1"},
		{"postgresql.port", c.PostgreSQL.Port, 5432},
		{"postgresql.connect_host", c.PostgreSQL.ConnectHost, "127.0.0.1"},
		{"postgresql.socket_dir", c.PostgreSQL.SocketDir, "/var/lib/postgresql/15"},
		{"postgresql.log_file", c.PostgreSQL.LogFile, "/var/lib/postgresql/15/pg1.log"},
		{"postgresql.superuser.username", c.PostgreSQL.Superuser.Username, "postgres"},
		{"postgresql.replication.username", c.PostgreSQL.Replication.Username, "replicator"},
		{"timing.ttl", c.Timing.TTL, Duration(10 * time.Second)},
		{"timing.loop_wait", c.Timing.LoopWait, Duration(2 * time.Second)},
		{"timing.retry_timeout", c.Timing.RetryTimeout, Duration(5 * time.Second)},
		{"timing.primary_start_timeout", c.Timing.PrimaryStartTimeout, Duration(30 * time.Second)},
		{"timing.maximum_lag_on_failover", c.Timing.MaximumLagOnFailover, ByteSize(1048576)},
		{"tags.priority", *c.Tags.Priority, 1},
		{"tags.nofailover", c.Tags.NoFailover, false},
		{"log.level", c.Log.Level, "info"},
		{"log.format", c.Log.Format, "text"},
		{"watchdog.mode", c.Watchdog.Mode, "off"},
		{"watchdog.device", c.Watchdog.Device, "/dev/watchdog"},
	}
	for _, ch := range checks {
		if ch.got != ch.want {
			t.Errorf("%s = %v, want %v", ch.name, ch.got, ch.want)
		}
	}
	d := c.Dynamic()
	if time.Duration(d.TTL) != 10*time.Second || d.MaximumLagOnFailover != 1048576 || time.Duration(d.PrimaryStartTimeout) != 30*time.Second {
		t.Errorf("Dynamic() = %+v", d)
	}
	if err := d.Validate(); err != nil {
		t.Errorf("Dynamic().Validate: %v", err)
	}
	if got := c.Tags.Cluster(); got.Priority != 1 || got.NoFailover {
		t.Errorf("Tags.Cluster() = %+v", got)
	}
	if got := c.Etcd.ClientEndpoints(); len(got) != 1 || got[0] != "http://127.0.0.1:2379" {
		t.Errorf("ClientEndpoints() = %v", got)
	}
}

func TestExplicitZerosKept(t *testing.T) {
	c := mustParse(t, minimal+`
timing:
  maximum_lag_on_failover: 0
tags:
  priority: 0
`)
	if c.Timing.MaximumLagOnFailover != 0 {
		t.Errorf("maximum_lag_on_failover = %v, want 0", c.Timing.MaximumLagOnFailover)
	}
	if *c.Tags.Priority != 0 || c.Tags.Cluster().Priority != 0 {
		t.Errorf("priority = %d, want 0", *c.Tags.Priority)
	}
}

func TestTags(t *testing.T) {
	c := mustParse(t, minimal+`
tags:
  nofailover: true
  noloadbalance: true
  priority: 3
  custom:
    dc: east
    rack: 12
    ssd: true
    empty: ""
`)
	got := c.Tags.Cluster()
	want := cluster.Tags{NoFailover: true, NoLoadBalance: true, Priority: 3,
		Custom: map[string]string{"dc": "east", "rack": "12", "ssd": "true", "empty": ""}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Tags.Cluster() = %+v, want %+v", got, want)
	}
	got.Custom["dc"] = "west"
	if c.Tags.Custom["dc"] != "east" {
		t.Error("Tags.Cluster() shares its Custom map with the config")
	}
	if d := Default().Tags.Cluster(); d.NoLoadBalance || d.Custom != nil {
		t.Errorf("default tags %+v: want noloadbalance false and no custom tags", d)
	}
}

func TestDerivedDefaults(t *testing.T) {
	c := mustParse(t, minimal+`
api:
  listen: 10.0.0.5:9000
  tls: {cert_file: /c.pem, key_file: /k.pem}
`)
	if c.API.Advertise != "https://10.0.0.5:9000" {
		t.Errorf("advertise = %q", c.API.Advertise)
	}
	c = mustParse(t, `
cluster: demo
name: pg1
etcd:
  embedded: {dir: /tmp/etcd}
postgresql:
  data_dir: /data/pg/
  listen_host: 0.0.0.0
  connect_host: db1.example
  replication: {password_file: /pw}
`)
	if c.PostgreSQL.SocketDir != "/data" || c.PostgreSQL.LogFile != "/data/pg.log" {
		t.Errorf("socket_dir %q log_file %q", c.PostgreSQL.SocketDir, c.PostgreSQL.LogFile)
	}
	if c.Etcd.Embedded.ClientURL != DefaultEmbeddedClientURL || c.Etcd.Embedded.PeerURL != DefaultEmbeddedPeerURL {
		t.Errorf("embedded = %+v", *c.Etcd.Embedded)
	}
	if got := c.Etcd.ClientEndpoints(); len(got) != 1 || got[0] != DefaultEmbeddedClientURL {
		t.Errorf("ClientEndpoints() = %v", got)
	}
}

func TestApplyDefaults(t *testing.T) {
	c := &Config{Cluster: "c", Name: "n", Etcd: Etcd{Endpoints: []string{"http://e:2379"}}}
	c.PostgreSQL.DataDir = "/d/pg"
	c.PostgreSQL.Replication.PasswordFile = "/pw"
	c.ApplyDefaults()
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate after ApplyDefaults: %v", err)
	}
	want := mustParse(t, `
cluster: c
name: n
etcd: {endpoints: ["http://e:2379"]}
postgresql: {data_dir: /d/pg, replication: {password_file: /pw}}
`)
	if c.String() != want.String() {
		t.Errorf("ApplyDefaults gives\n%s\nParse gives\n%s", c, want)
	}
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name string
		yaml string // merged into minimal unless full is set
		full bool
		want []string // substrings of the error
	}{
		{"missing cluster and name", `
etcd: {endpoints: ["http://e:2379"]}
postgresql: {data_dir: /d, replication: {password_file: /pw}}`, true, []string{"cluster: required", "name: required"}},
		{"bad cluster name", "cluster: Demo_1\n", false, []string{`cluster: "Demo_1" is not a valid name`}},
		{"long name", "name: " + strings.Repeat("a", 64) + "\n", false, []string{"name: "}},
		{"port range", "postgresql: {data_dir: /d, port: 70000, replication: {password_file: /pw}}\n", false,
			[]string{"postgresql.port: 70000 is out of range (1-65535)"}},
		{"port zero", "postgresql: {data_dir: /d, port: 0, replication: {password_file: /pw}}\n", false,
			[]string{"postgresql.port: 0 is out of range"}},
		{"relative data dir", "postgresql: {data_dir: data, replication: {password_file: /pw}}\n", false,
			[]string{`postgresql.data_dir: "data" must be an absolute path`}},
		{"missing data dir and replication password", `
cluster: c
name: n
etcd: {endpoints: ["http://e:2379"]}`, true, []string{"postgresql.data_dir: required", "postgresql.replication.password_file: required"}},
		{"wildcard listen needs connect_host", "postgresql: {data_dir: /d, listen_host: 0.0.0.0, replication: {password_file: /pw}}\n", false,
			[]string{"postgresql.connect_host: required because postgresql.listen_host \"0.0.0.0\""}},
		{"star listen needs connect_host", "postgresql: {data_dir: /d, listen_host: '*', replication: {password_file: /pw}}\n", false,
			[]string{"postgresql.connect_host: required"}},
		{"negative priority", "tags: {priority: -1}\n", false, []string{"tags.priority: -1 must be 0 or greater"}},
		{"custom tag at the top of tags", "tags: {dc: east}\n", false,
			[]string{`unknown key "dc" in tags (known: nofailover, noloadbalance, priority, custom); your own tags go under tags.custom`}},
		{"typo of a built-in tag", "tags: {noloadbalanse: true}\n", false, []string{`unknown key "noloadbalanse" in tags`, `did you mean "noloadbalance"?`}},
		{"built-in tag under custom", "tags: {custom: {nofailover: 'true', priority: '2'}}\n", false,
			[]string{`tags.custom.nofailover: "nofailover" is a built-in tag: set it as tags.nofailover`, `tags.custom.priority: "priority" is a built-in tag`}},
		{"custom tag name", "tags: {custom: {'data center': east}}\n", false, []string{`tags.custom.data center: "data center" is not a valid tag name`}},
		{"custom tag value not a scalar", "tags: {custom: {dc: [east, west]}}\n", false, []string{"tags.custom.dc: a list where a single value is expected"}},
		{"custom tags not a mapping", "tags: {custom: east}\n", false, []string{"tags.custom:"}},
		{"noloadbalance not a bool", "tags: {noloadbalance: maybe}\n", false, []string{"tags.noloadbalance:", "want true or false"}},
		{"log level", "log: {level: verbose}\n", false, []string{`log.level: "verbose" is not a level`}},
		{"log format", "log: {format: xml}\n", false, []string{`log.format: "xml" is not a format`}},
		{"watchdog mode", "watchdog: {mode: on}\n", false, []string{`watchdog.mode: "on": want off, automatic or required`}},
		{"watchdog device relative", "watchdog: {mode: automatic, device: watchdog0}\n", false, []string{`watchdog.device: "watchdog0": want an absolute path`}},
		{"watchdog required with leave-running", "watchdog: {mode: required}\non_stop: leave-running\n", false,
			[]string{"watchdog.mode: required cannot go with on_stop: leave-running"}},
		{"prefix trailing slash", "etcd: {endpoints: [\"http://e:2379\"], prefix: /hamgr/}\n", false, []string{"etcd.prefix: \"/hamgr/\" must not end with"}},
		{"prefix relative", "etcd: {endpoints: [\"http://e:2379\"], prefix: hamgr}\n", false, []string{"etcd.prefix: \"hamgr\" must start with"}},
		{"dial_timeout", "etcd: {endpoints: [\"http://e:2379\"], dial_timeout: 0}\n", false, []string{"etcd.dial_timeout: 0s must be greater than 0"}},
		{"bad endpoint", "etcd: {endpoints: [\"e:2379\", \"http://e\"]}\n", false,
			[]string{`etcd.endpoints[0]: "e:2379"`, `etcd.endpoints[1]: "http://e" has no port`}},
		{"etcd username without password", "etcd: {endpoints: [\"http://e:2379\"], username: u}\n", false, []string{"etcd.password_file: required because etcd.username"}},
		{"etcd cert without key", "etcd: {endpoints: [\"http://e:2379\"], tls: {cert_file: /c.pem}}\n", false,
			[]string{"etcd.tls.key_file: required because etcd.tls.cert_file is set"}},
		{"api key without cert", "api: {tls: {key_file: /k.pem}}\n", false, []string{"api.tls.cert_file: required because api.tls.key_file"}},
		{"api ca only", "api: {tls: {ca_file: /ca.pem}}\n", false, []string{"api.tls.cert_file: required when api.tls is set"}},
		{"api listen wildcard", "api: {listen: 0.0.0.0:8008}\n", false, []string{"api.advertise: required because api.listen \"0.0.0.0:8008\"", "set api.advertise"}},
		{"api listen ipv6 wildcard", "api: {listen: '[::]:8008'}\n", false, []string{"set api.advertise"}},
		{"api listen garbage", "api: {listen: localhost}\n", false, []string{`api.listen: "localhost" is not host:port`}},
		{"api advertise bad", "api: {advertise: 'ftp://x'}\n", false, []string{`api.advertise: "ftp://x"`}},
		{"both etcd kinds", "etcd: {endpoints: [\"http://e:2379\"], embedded: {dir: /tmp/e}}\n", false,
			[]string{"etcd.endpoints: set together with etcd.embedded"}},
		{"no etcd", `
cluster: c
name: n
postgresql: {data_dir: /d, replication: {password_file: /pw}}`, true, []string{"etcd.endpoints: required", "etcd.embedded"}},
		{"embedded without dir", `
cluster: c
name: n
etcd: {embedded: {client_url: "http://127.0.0.1:12379"}}
postgresql: {data_dir: /d, replication: {password_file: /pw}}`, true, []string{"etcd.embedded.dir: required"}},
		{"embedded https", `
cluster: c
name: n
etcd: {embedded: {dir: /e, client_url: "https://127.0.0.1:12379"}}
postgresql: {data_dir: /d, replication: {password_file: /pw}}`, true, []string{"etcd.embedded.client_url"}},
		{"reserved parameter", "postgresql: {data_dir: /d, replication: {password_file: /pw}, parameters: {wal_level: logical, Port: '6000', shared_buffers: 1GB}}\n", false,
			[]string{"postgresql.parameters.wal_level: hamgr sets wal_level itself", "postgresql.parameters.Port: hamgr sets Port itself"}},
		{"unknown key", minimal + "timing:\n  ttll: 10s\n", true,
			[]string{`config line 11: unknown key "ttll" in timing (known: ttl, loop_wait, retry_timeout, primary_start_timeout, maximum_lag_on_failover, failover_backoff, failsafe_mode, fencing); did you mean "ttl"?`}},
		{"unknown top-level key", "clusterr: x\n", false, []string{`unknown key "clusterr" in the top level`}},
		{"unknown nested key", "postgresql: {data_dir: /d, replication: {password_fil: /pw}}\n", false,
			[]string{`unknown key "password_fil" in postgresql.replication`}},
		{"bad duration", "timing: {ttl: ten}\n", false, []string{`timing.ttl: "ten" is not a duration`}},
		{"bad byte size", "timing: {maximum_lag_on_failover: 1PB}\n", false, []string{`timing.maximum_lag_on_failover: "1PB" is not a byte size`}},
		{"port not a number", "postgresql: {data_dir: /d, port: abc, replication: {password_file: /pw}}\n", false,
			[]string{"postgresql.port: cannot unmarshal", "want an integer"}},
		{"section not a mapping", "timing: 5\n", false, []string{"timing: a scalar where a mapping of keys is expected"}},
		{"two documents", minimal + "---\ncluster: x\n", true, []string{"second YAML document"}},
		{"syntax error", minimal + "cluster: [\n", true, []string{"config: yaml:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := tt.yaml
			if !tt.full {
				in = merged(t, minimal, tt.yaml)
			}
			_, err := Parse([]byte(in))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// TestEngineReservedParameters: every setting the PostgreSQL engine
// reserves is refused when the file is loaded, naming the key, rather than
// later by postgres.New. synchronous_standby_names and
// max_slot_wal_keep_size once passed here and failed only at start.
func TestEngineReservedParameters(t *testing.T) {
	names := append([]string{"synchronous_standby_names", "max_slot_wal_keep_size", "Synchronous_Standby_Names"},
		postgres.ReservedParameters()...)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			in := merged(t, minimal, fmt.Sprintf("postgresql: {parameters: {%s: x}}\n", name))
			_, err := Parse([]byte(in))
			want := "postgresql.parameters." + name + ": hamgr sets " + name + " itself"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Parse with parameter %s: err = %v, want one containing %q", name, err, want)
			}
		})
	}
}

// merged returns base with the keys of override deep-merged into it.
func merged(t *testing.T, base, override string) string {
	t.Helper()
	var b, o map[string]any
	if err := yaml.Unmarshal([]byte(base), &b); err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal([]byte(override), &o); err != nil {
		t.Fatal(err)
	}
	var merge func(dst, src map[string]any)
	merge = func(dst, src map[string]any) {
		for k, v := range src {
			sm, ok1 := v.(map[string]any)
			dm, ok2 := dst[k].(map[string]any)
			if ok1 && ok2 {
				merge(dm, sm)
			} else {
				dst[k] = v
			}
		}
	}
	merge(b, o)
	out, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestValidateReportsEveryProblem(t *testing.T) {
	_, err := Parse([]byte(minimal + `
timing: {ttl: 6s}
tags: {priority: -2}
log: {level: loud}
`))
	if err == nil {
		t.Fatal("no error")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 3 {
		t.Errorf("want 3 problems, one per line, got:\n%v", err)
	}
}

func TestLaterKeysOverrideSameSectionMerge(t *testing.T) {
	// The duplicated-key check of yaml.v3 still applies.
	_, err := Parse([]byte(minimal + "log: {level: info}\nlog: {level: debug}\n"))
	if err == nil || !strings.Contains(err.Error(), "already defined") {
		t.Errorf("duplicate key: err = %v", err)
	}
}

func TestFastProfile(t *testing.T) {
	c := mustParse(t, minimal+"timing: {ttl: 5s, loop_wait: 1s, retry_timeout: 3s}\n")
	if time.Duration(c.Timing.TTL) != 5*time.Second {
		t.Errorf("ttl = %v", c.Timing.TTL)
	}
}

// The timing section obeys the dynamic configuration's rules
// (cluster.DynamicConfig.Validate), each problem named by its file key.
func TestTimingRules(t *testing.T) {
	valid := []string{
		"{}", // the defaults: 10s, 2s, 5s, 30s, 1MB
		"{ttl: 5s, loop_wait: 1s, retry_timeout: 3s, primary_start_timeout: 10s}", // the fast profile
		"{ttl: 3s, loop_wait: 1s, retry_timeout: 1s}",
		"{ttl: 10m, loop_wait: 1m, retry_timeout: 5m}",
		"{ttl: 600, loop_wait: 60, retry_timeout: 300}",
		"{primary_start_timeout: 0}",
		"{primary_start_timeout: 1h}",
		"{maximum_lag_on_failover: 0}",
		"{maximum_lag_on_failover: 1TB}",
	}
	for _, v := range valid {
		if _, err := Parse([]byte(merged(t, minimal, "timing: "+v+"\n"))); err != nil {
			t.Errorf("timing %s: %v", v, err)
		}
	}
	invalid := []struct{ yaml, want string }{
		{"{ttl: 100000h}", "timing.ttl 100000h: must be at most 10m (a longer ttl delays failover after a node crash by that long"},
		{"{ttl: 10h}", "timing.ttl 10h: must be at most 10m (a longer ttl delays failover after a node crash by that long; typical values are 5s to 30s; did you mean 10s?)"},
		{"{ttl: 601}", "timing.ttl 10m1s: must be at most 10m"},
		{"{ttl: 10500ms}", "timing.ttl 10.5s: must be a whole number of seconds, from 3s to 10m"},
		{"{ttl: 2s, loop_wait: 1s, retry_timeout: 1s}", "timing.ttl 2s: must be at least 3s"},
		{"{ttl: 6s}", "timing.ttl 6s: must be greater than loop_wait + retry_timeout (2s + 5s = 7s): a leader must notice it cannot renew and demote itself before its lease runs out; raise ttl to 8s or more"},
		{"{ttl: 7s}", "timing.ttl 7s: must be greater than loop_wait + retry_timeout"},
		{"{loop_wait: 1ns}", "timing.loop_wait 1ns: must be at least 1s (a shorter loop_wait makes every agent query and write etcd continuously)"},
		{"{loop_wait: 500ms}", "timing.loop_wait 500ms: must be at least 1s"},
		{"{loop_wait: 1500ms}", "timing.loop_wait 1.5s: must be a whole number of seconds, from 1s to 1m"},
		{"{ttl: 10m, loop_wait: 61s}", "timing.loop_wait 1m1s: must be at most 1m"},
		{"{retry_timeout: 0}", "timing.retry_timeout 0s: must be at least 1s"},
		{"{ttl: 10m, retry_timeout: 301}", "timing.retry_timeout 5m1s: must be at most 5m"},
		{"{primary_start_timeout: -1s}", "timing.primary_start_timeout -1s: must be at least 0s"},
		{"{primary_start_timeout: 3601}", "timing.primary_start_timeout 1h0m1s: must be at most 1h"},
		{"{primary_start_timeout: 1.5s}", "timing.primary_start_timeout 1.5s: must be a whole number of seconds"},
		{"{maximum_lag_on_failover: -1}", "timing.maximum_lag_on_failover -1: must be from 0 to 1TB"},
		{"{maximum_lag_on_failover: 2TB}", "timing.maximum_lag_on_failover 2199023255552 (2TB): must be from 0 to 1TB"},
	}
	for _, tt := range invalid {
		_, err := Parse([]byte(merged(t, minimal, "timing: "+tt.yaml+"\n")))
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("timing %s:\n got %v\nwant one problem starting %q", tt.yaml, err, tt.want)
			continue
		}
		var ce *cluster.ConfigError
		if !errors.As(err, &ce) || !strings.HasPrefix(tt.want, "timing."+ce.Key+" ") {
			t.Errorf("timing %s: %v does not carry the cluster rule's key", tt.yaml, err)
		}
	}
}

func TestDurationForms(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		bad  bool
	}{
		{"10s", 10 * time.Second, false},
		{"10", 10 * time.Second, false},
		{`"10"`, 10 * time.Second, false},
		{"500ms", 500 * time.Millisecond, false},
		{"1m30s", 90 * time.Second, false},
		{"0x10", 16 * time.Second, false},
		{"1.5", 0, true},
		{"ten", 0, true},
		{"10 s", 0, true},
		{"[1]", 0, true},
		{"99999999999999999999", 0, true},
	}
	for _, tt := range tests {
		var v struct {
			D Duration `yaml:"d"`
		}
		err := yaml.Unmarshal([]byte("d: "+tt.in), &v)
		if tt.bad {
			if err == nil {
				t.Errorf("%s: got %v, want error", tt.in, v.D)
			}
			continue
		}
		if err != nil || time.Duration(v.D) != tt.want {
			t.Errorf("%s: got %v, %v; want %v", tt.in, v.D, err, tt.want)
		}
	}
	// Both forms through Parse.
	for _, in := range []string{"10s", "10"} {
		c := mustParse(t, minimal+"timing: {primary_start_timeout: "+in+"}\n")
		if time.Duration(c.Timing.PrimaryStartTimeout) != 10*time.Second {
			t.Errorf("primary_start_timeout %s = %v", in, c.Timing.PrimaryStartTimeout)
		}
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		err  string
	}{
		{"0", 0, ""},
		{"64", 64, ""},
		{"64B", 64, ""},
		{"512kB", 512 << 10, ""},
		{"512KB", 512 << 10, ""},
		{"512kb", 512 << 10, ""},
		{"16MB", 16 << 20, ""},
		{"16mb", 16 << 20, ""},
		{"16 MB", 16 << 20, ""},
		{"16MiB", 16 << 20, ""},
		{"1GB", 1 << 30, ""},
		{"2TB", 2 << 40, ""},
		{"", 0, "is not a byte size"},
		{"MB", 0, "is not a byte size"},
		{"-1MB", 0, "is not a byte size"},
		{"1.5GB", 0, "unknown unit"},
		{"1PB", 0, `unknown unit "PB"`},
		{"5iB", 0, "unknown unit"},
		{"99999999999TB", 0, "too large"},
		{"99999999999999999999", 0, "too large"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("ParseByteSize(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %v, %v; want %d", tt.in, int64(got), err, int64(tt.want))
		}
	}
	for _, tt := range []struct {
		in   string
		want ByteSize
	}{{"1048576", 1 << 20}, {"16MB", 16 << 20}, {`"64"`, 64}} {
		var v struct {
			B ByteSize `yaml:"b"`
		}
		if err := yaml.Unmarshal([]byte("b: "+tt.in), &v); err != nil || v.B != tt.want {
			t.Errorf("YAML %s = %v, %v; want %v", tt.in, v.B, err, tt.want)
		}
	}
	for b, s := range map[ByteSize]string{0: "0B", 1 << 20: "1MB", 1536 << 10: "1536kB", 100: "100B", 3 << 40: "3TB"} {
		if b.String() != s {
			t.Errorf("ByteSize(%d).String() = %q, want %q", int64(b), b.String(), s)
		}
		if back, err := ParseByteSize(s); err != nil || back != b {
			t.Errorf("round trip %q = %v, %v", s, back, err)
		}
	}
}

func TestExampleFile(t *testing.T) {
	c, err := Load("../examples/hamgr.yml")
	if err != nil {
		t.Fatalf("Load example: %v", err)
	}
	// The example lists every default, so it must equal the minimal config
	// with the example's own names and paths filled in.
	d := Default()
	if c.Timing != d.Timing || c.Etcd.Prefix != d.Etcd.Prefix || c.API.Listen != d.API.Listen ||
		c.PostgreSQL.Port != d.PostgreSQL.Port || c.PostgreSQL.BinDir != d.PostgreSQL.BinDir || *c.Tags.Priority != *d.Tags.Priority {
		t.Errorf("example's values differ from the defaults:\n%s", c)
	}
	if c.PostgreSQL.SocketDir != filepath.Dir(c.PostgreSQL.DataDir) || c.PostgreSQL.LogFile != c.PostgreSQL.DataDir+".log" {
		t.Errorf("example's socket_dir/log_file differ from their defaults")
	}
	// Every key must appear in the example.
	raw, _ := os.ReadFile("../examples/hamgr.yml")
	var root yaml.Node
	if err := yaml.Unmarshal(raw, &root); err != nil {
		t.Fatal(err)
	}
	var missing []string
	walkKeys(configType, "", func(path string) {
		if !strings.HasPrefix(path, "etcd.embedded") && !strings.HasPrefix(path, "postgresql.parameters.") &&
			!strings.Contains(string(raw), lastKey(path)+":") {
			missing = append(missing, path)
		}
	})
	if len(missing) > 0 {
		t.Errorf("example lacks keys: %v", missing)
	}
	for _, k := range []string{"embedded:", "dir:", "client_url:", "peer_url:", "# timing:", "#   ttl: 5s", "#   loop_wait: 1s", "#   retry_timeout: 3s"} {
		if !strings.Contains(string(raw), k) {
			t.Errorf("example lacks %q", k)
		}
	}
	// The commented fencing example parses too.
	fencing := strings.Replace(string(raw), "  members: {}\n", "", 1)
	var lines []string
	in := false
	for _, l := range strings.Split(fencing, "\n") {
		if l == "  # members:" {
			in = true
		}
		if in && !strings.HasPrefix(l, "  # ") {
			in = false // the end of the commented members
		}
		if in {
			l = "  " + strings.TrimPrefix(l, "  # ")
		}
		lines = append(lines, l)
	}
	fc, err := Parse([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Errorf("the fencing example does not parse: %v", err)
	} else if got := strings.Join(fc.Fencing.Names(), ","); got != "pg1,pg2,pg3,pg4" {
		t.Errorf("the fencing example's members: %s", got)
	}
	// The commented fast profile parses too.
	fast := strings.ReplaceAll(string(raw), "\ntiming:\n", "\nold_timing:\n")
	fast = strings.Replace(fast, "# timing:\n#   ttl: 5s\n#   loop_wait: 1s\n#   retry_timeout: 3s\n", "timing:\n  ttl: 5s\n  loop_wait: 1s\n  retry_timeout: 3s\n", 1)
	if _, err := Parse([]byte(fast)); err == nil || !strings.Contains(err.Error(), `unknown key "old_timing"`) {
		t.Errorf("fast profile rewrite: %v", err)
	}
}

// walkKeys calls f with the path of every YAML key of struct type t.
func walkKeys(t reflect.Type, prefix string, f func(string)) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	for _, k := range knownKeys(t) {
		field, _ := fieldByKey(t, k)
		f(join(prefix, k))
		ft := field.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			walkKeys(ft, join(prefix, k), f)
		}
		if ft.Kind() == reflect.Map && ft.Elem().Kind() == reflect.Struct {
			walkKeys(ft.Elem(), join(prefix, k)+".NAME", f)
		}
	}
}

func lastKey(path string) string {
	if i := strings.LastIndex(path, "."); i >= 0 {
		return path[i+1:]
	}
	return path
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing.yml")); err == nil || !strings.Contains(err.Error(), "missing.yml") {
		t.Errorf("missing file: %v", err)
	}
	path := filepath.Join(dir, "bad.yml")
	os.WriteFile(path, []byte(minimal+"timing: {ttl: 6s}\nlog: {level: x}\n"), 0o600)
	_, err := Load(path)
	if err == nil {
		t.Fatal("no error")
	}
	for _, line := range strings.Split(err.Error(), "\n") {
		if !strings.HasPrefix(line, path+": ") {
			t.Errorf("line not prefixed with path: %q", line)
		}
	}
	if !strings.Contains(err.Error(), "timing.ttl") || !strings.Contains(err.Error(), "log.level") {
		t.Errorf("err = %v", err)
	}
}

func TestPasswordAndCheckPaths(t *testing.T) {
	dir := t.TempDir()
	const secret = "s3cr3t-value"
	pw := filepath.Join(dir, "repl.pw")
	os.WriteFile(pw, []byte(secret+"\n"), 0o600)
	got, err := User{Username: "r", PasswordFile: pw}.Password()
	if err != nil || got != secret {
		t.Errorf("Password() = %q, %v", got, err)
	}
	if got, err := (User{Username: "r"}).Password(); got != "" || err != nil {
		t.Errorf("no file: %q, %v", got, err)
	}
	empty := filepath.Join(dir, "empty.pw")
	os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := (User{PasswordFile: empty}).Password(); err == nil || !strings.Contains(err.Error(), empty) {
		t.Errorf("empty file: %v", err)
	}
	missing := filepath.Join(dir, "nope.pw")
	if _, err := (User{PasswordFile: missing}).Password(); err == nil || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: %v", err)
	}

	bin := filepath.Join(dir, "bin")
	os.Mkdir(bin, 0o755)
	for _, name := range PostgreSQLBinaries[:3] {
		os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755)
	}
	os.WriteFile(filepath.Join(bin, "pg_basebackup"), []byte(secret), 0o644) // not executable
	c := mustParse(t, `
cluster: c
name: n
etcd: {endpoints: ["http://e:2379"], username: u, password_file: `+missing+`}
postgresql:
  data_dir: `+filepath.Join(dir, "no", "pg")+`
  bin_dir: `+bin+`
  superuser: {password_file: `+pw+`}
  replication: {password_file: `+pw+`}
`)
	err = c.CheckPaths()
	if err == nil {
		t.Fatal("CheckPaths succeeded")
	}
	for _, w := range []string{"pg_basebackup is not an executable", "postgresql.data_dir", "etcd.password_file", "nope.pw"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("CheckPaths error lacks %q:\n%v", w, err)
		}
	}
	if strings.Contains(err.Error(), secret) || strings.Contains(c.String(), secret) {
		t.Error("a secret leaked into an error or String()")
	}
	if strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("want exactly 3 problems:\n%v", err)
	}

	os.Chmod(filepath.Join(bin, "pg_basebackup"), 0o755)
	os.Mkdir(filepath.Join(dir, "no"), 0o755)
	c.Etcd.PasswordFile = pw
	if err := c.CheckPaths(); err != nil {
		t.Errorf("CheckPaths: %v", err)
	}
	if p, err := c.Etcd.Password(); p != secret || err != nil {
		t.Errorf("Etcd.Password() = %q, %v", p, err)
	}
}

func TestTLSEnabled(t *testing.T) {
	if (TLS{}).Enabled() {
		t.Error("empty TLS enabled")
	}
	if !(TLS{CAFile: "/ca"}).Enabled() || !(TLS{CertFile: "/c", KeyFile: "/k"}).Enabled() {
		t.Error("TLS not enabled")
	}
}

func TestSlogLevelAndString(t *testing.T) {
	c := mustParse(t, minimal+"log: {level: debug}\n")
	if c.Log.SlogLevel().String() != "DEBUG" {
		t.Errorf("SlogLevel = %v", c.Log.SlogLevel())
	}
	// String round-trips through Parse.
	again := mustParse(t, c.String())
	if again.String() != c.String() {
		t.Errorf("String round trip:\n%s\nvs\n%s", c, again)
	}
}

func TestErrorsAreJoined(t *testing.T) {
	_, err := Parse([]byte(minimal + "tags: {priority: -1}\nlog: {format: xml}\n"))
	var multi interface{ Unwrap() []error }
	if !errors.As(err, &multi) || len(multi.Unwrap()) != 2 {
		t.Errorf("want errors.Join of 2, got %T %v", err, err)
	}
}

func TestWatchdogSection(t *testing.T) {
	c := mustParse(t, minimal+"watchdog:\n  mode: required\n  device: /dev/watchdog1\n")
	if c.Watchdog.Mode != WatchdogRequired || c.Watchdog.Device != "/dev/watchdog1" {
		t.Errorf("watchdog = %+v", c.Watchdog)
	}
	// YAML 1.1 would read an unquoted off as false; the mode stays "off".
	if c := mustParse(t, minimal+"watchdog:\n  mode: off\n"); c.Watchdog.Mode != WatchdogOff || c.Watchdog.Device != DefaultWatchdogDevice {
		t.Errorf("watchdog = %+v", c.Watchdog)
	}
	if _, err := Parse([]byte(minimal + "watchdog: automatic\n")); err == nil || !strings.Contains(err.Error(), "watchdog") {
		t.Errorf("watchdog as a scalar: %v", err)
	}
}
