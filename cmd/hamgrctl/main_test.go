package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/operator"
)

func TestParseAt(t *testing.T) {
	loc := time.FixedZone("X", 3600)
	now := time.Date(2025, 3, 1, 14, 30, 0, 0, loc)
	tests := []struct {
		in      string
		want    time.Time
		wantErr string
	}{
		{in: "15:04", want: time.Date(2025, 3, 1, 15, 4, 0, 0, loc)},
		{in: "15:04:05", want: time.Date(2025, 3, 1, 15, 4, 5, 0, loc)},
		{in: " 23:59 ", want: time.Date(2025, 3, 1, 23, 59, 0, 0, loc)},
		{in: "2025-03-02T02:30:00+01:00", want: time.Date(2025, 3, 2, 2, 30, 0, 0, loc)},
		{in: "2025-03-01T14:00:00Z", want: time.Date(2025, 3, 1, 14, 0, 0, 0, time.UTC)},
		{in: "14:29", wantErr: "already past today"},
		{in: "14:30", wantErr: "already past today"},
		{in: "2025-03-01T13:00:00+01:00", wantErr: "in the past"},
		{in: "25:00", wantErr: "want an RFC 3339 time"},
		{in: "tomorrow", wantErr: "want an RFC 3339 time"},
		{in: "", wantErr: "want an RFC 3339 time"},
	}
	for _, tt := range tests {
		got, err := parseAt(tt.in, now)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("parseAt(%q) = %v, %v; want error containing %q", tt.in, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || !got.Equal(tt.want) {
			t.Errorf("parseAt(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}

func TestParseAssignments(t *testing.T) {
	got, err := parseAssignments([]string{"ttl=20s", " Loop_Wait = 2s ", "x=a=b"})
	if err != nil {
		t.Fatal(err)
	}
	want := []assignment{{"ttl", "20s"}, {"loop_wait", "2s"}, {"x", "a=b"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]string{nil, {"ttl"}, {"=1"}, {"ttl="}, {"ttl=1s", "TTL=2s"}} {
		if _, err := parseAssignments(bad); err == nil {
			t.Errorf("parseAssignments(%q): no error", bad)
		}
	}
}

// Config set semantics without a store: all keys are applied to a copy
// and the whole is validated, so a combination that is only valid
// together passes and a bad one names the key.
func TestApplyEdited(t *testing.T) {
	cur := cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), MaximumLagOnFailover: 1 << 20}
	// Untouched (including synchronous_node_count, stored as 0 and shown
	// as 1) is no change.
	if next, err := applyEdited(cur, []byte(renderConfigYAML(cur, "# header\n"))); err != nil || next != cur {
		t.Fatalf("unchanged edit: %+v, %v", next, err)
	}
	next, err := applyEdited(cur, []byte("ttl: 4s\nloop_wait: 1s\nretry_timeout: 2\nmaximum_lag_on_failover: 16MB\npaused: true\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := cur
	want.TTL, want.LoopWait, want.RetryTimeout = cluster.Duration(4*time.Second), cluster.Duration(time.Second), cluster.Duration(2*time.Second)
	want.MaximumLagOnFailover, want.Paused = 16<<20, true
	if next != want {
		t.Errorf("got %+v, want %+v", next, want)
	}
	next, err = applyEdited(cur, []byte("synchronous_mode: on\nsynchronous_node_count: 2\n"))
	if err != nil || next.SynchronousMode != cluster.SyncOn || next.SynchronousNodeCount != 2 {
		t.Errorf("sync keys: %+v, %v", next, err)
	}
	for _, k := range operator.ConfigKeys {
		if !strings.Contains(renderConfigYAML(cur, ""), "\n"+k+": ") && !strings.HasPrefix(renderConfigYAML(cur, ""), k+": ") {
			t.Errorf("config rendering lacks %s", k)
		}
	}
	for doc, key := range map[string]string{
		"ttl: 1s\n":                       "ttl 1s: must be at least 3s",
		"ttl: 100000h\n":                  "ttl 100000h: must be at most 10m",
		"ttl: 10.5s\n":                    "ttl 10.5s: must be a whole number of seconds",
		"ttl: 7s\n":                       "ttl 7s: must be greater than loop_wait + retry_timeout",
		"loop_wait: 1ns\n":                "loop_wait 1ns: must be at least 1s",
		"loop_wait: 2m\n":                 "loop_wait 2m: must be at most 1m",
		"retry_timeout: 0\n":              "retry_timeout 0s: must be at least 1s",
		"primary_start_timeout: 2h\n":     "primary_start_timeout 2h: must be at most 1h",
		"maximum_lag_on_failover: 2TB\n":  "maximum_lag_on_failover 2199023255552 (2TB): must be from 0 to 1TB",
		"synchronous_node_count: 17\n":    "synchronous_node_count 17: must be from 1 to 16",
		"loop_wait: soon\n":               "loop_wait",
		"maximum_lag_on_failover: lots\n": "maximum_lag_on_failover",
		"paused: maybe\n":                 "paused",
		"tll: 10s\n":                      "tll",
		"synchronous_mode: maybe\n":       "synchronous_mode",
		"synchronous_node_count: 0\n":     "synchronous_node_count",
		"ttl: [\n":                        "YAML",
	} {
		_, err := applyEdited(cur, []byte(doc))
		if err == nil || !strings.Contains(err.Error(), key) || !errors.Is(err, operator.ErrRefused) ||
			!strings.HasSuffix(err.Error(), "; nothing was written") {
			t.Errorf("edit %q: err %v, want a refusal naming %s", doc, err, key)
		}
	}
	// The edges themselves are accepted.
	for _, doc := range []string{"ttl: 10m\n", "ttl: 3s\nloop_wait: 1s\nretry_timeout: 1s\n", "primary_start_timeout: 0\n",
		"primary_start_timeout: 1h\n", "maximum_lag_on_failover: 1TB\n", "synchronous_node_count: 16\n", "ttl: 70s\nloop_wait: 1m\n"} {
		if _, err := applyEdited(cur, []byte(doc)); err != nil {
			t.Errorf("edit %q: %v", doc, err)
		}
	}
}

// resolveWith parses argv as global flags and resolves the target.
func resolveWith(t *testing.T, argv []string, envs map[string]string) (target, error) {
	t.Helper()
	var f connFlags
	root := &cobra.Command{Use: "x", RunE: func(*cobra.Command, []string) error { return nil }}
	f.register(root)
	if err := root.PersistentFlags().Parse(argv); err != nil {
		t.Fatal(err)
	}
	return f.resolve(func(k string) string { return envs[k] })
}

func writeAgentConfig(t *testing.T, extra string) string {
	t.Helper()
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "hamgr.yml")
	doc := "cluster: prod\nname: n1\netcd:\n  endpoints: [http://e1:2379, http://e2:2379]\n  prefix: /ha\n" + extra +
		"postgresql:\n  data_dir: /var/lib/pg\n  replication:\n    password_file: " + pw + "\n"
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestResolvePrecedence(t *testing.T) {
	cfg := writeAgentConfig(t, "  username: hamgr\n  password_file: /etc/hamgr/etcd.pw\n  tls:\n    ca_file: /ca.pem\n")

	// The file alone.
	got, err := resolveWith(t, []string{"-c", cfg}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := target{Cluster: "prod", Endpoints: []string{"http://e1:2379", "http://e2:2379"}, Prefix: "/ha",
		Username: "hamgr", PasswordFile: "/etc/hamgr/etcd.pw"}
	want.TLS.CAFile = "/ca.pem"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("file only:\n got %+v\nwant %+v", got, want)
	}

	// The environment names the file when --config is absent.
	if got2, err := resolveWith(t, nil, map[string]string{configEnv: cfg}); err != nil || !reflect.DeepEqual(got2, want) {
		t.Errorf("from $%s: %+v, %v", configEnv, got2, err)
	}

	// Flags override the file, key by key.
	got, err = resolveWith(t, []string{"--config", cfg, "--cluster", "other", "--etcd", "https://x:1, https://y:2",
		"--prefix", "/p", "--etcd-cacert", "/ca2.pem", "--etcd-user", "bob", "--etcd-password-file", "/pw"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	want = target{Cluster: "other", Endpoints: []string{"https://x:1", "https://y:2"}, Prefix: "/p",
		Username: "bob", PasswordFile: "/pw"}
	want.TLS.CAFile = "/ca2.pem"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("flags over file:\n got %+v\nwant %+v", got, want)
	}

	// --config beats the environment.
	if _, err := resolveWith(t, []string{"-c", cfg}, map[string]string{configEnv: "/nonexistent.yml"}); err != nil {
		t.Errorf("--config given, $%s ignored: %v", configEnv, err)
	}

	// Flags alone; the prefix defaults.
	got, err = resolveWith(t, []string{"--cluster", "c", "--etcd", "http://a:2379"}, nil)
	if err != nil || got.Prefix != "/hamgr" || got.Cluster != "c" || len(got.Endpoints) != 1 {
		t.Errorf("flags only: %+v, %v", got, err)
	}
}

func TestResolveErrors(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{nil, "--config FILE"},
		{[]string{"--cluster", "c"}, "etcd endpoints"},
		{[]string{"--etcd", "http://a:1"}, "cluster name"},
		{[]string{"--cluster", "c", "--etcd", "http://a:1", "--etcd-cert", "c.pem"}, "--etcd-key"},
		{[]string{"--cluster", "c", "--etcd", "http://a:1", "--etcd-user", "u"}, "password"},
		{[]string{"--cluster", "c", "--etcd", "http://a:1", "--timeout", "0s"}, "--timeout"},
	} {
		_, err := resolveWith(t, tc.argv, nil)
		var ue usageError
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &ue) {
			t.Errorf("%q: err %v, want a usage error mentioning %q", tc.argv, err, tc.want)
		}
	}
	if _, err := resolveWith(t, []string{"-c", "/nonexistent/hamgr.yml"}, nil); err == nil {
		t.Error("missing config file: no error")
	}
}

func runCLI(t *testing.T, stdin string, tty bool, argv ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := env{stdin: strings.NewReader(stdin), stdout: &out, stderr: &errb, stdinTTY: tty,
		getenv: func(string) string { return "" }, now: time.Now}
	code := run(context.Background(), argv, e)
	return code, out.String(), errb.String()
}

func TestExitCodesAndUsage(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		code int
		want string
	}{
		{[]string{"bogus"}, 2, "unknown command"},
		{[]string{"list", "--nope"}, 2, "unknown flag"},
		{[]string{"list", "extra"}, 2, "unknown command"},
		{[]string{"failover"}, 2, "required flag"},
		{[]string{"list"}, 2, "--config FILE"},
		{[]string{"switchover", "--at", "nonsense", "--cluster", "c", "--etcd", "http://127.0.0.1:1"}, 2, "--at"},
		{[]string{"switchover", "--cancel", "--to", "n2"}, 2, "--cancel"},
		{[]string{"config", "set", "ttl", "--cluster", "c", "--etcd", "http://127.0.0.1:1"}, 2, "KEY=VALUE"},
		{[]string{"config", "set"}, 2, "requires at least"},
	} {
		code, _, stderr := runCLI(t, "", false, tc.argv...)
		if code != tc.code || !strings.HasPrefix(stderr, "hamgrctl: ") || !strings.Contains(stderr, tc.want) ||
			strings.Count(stderr, "\n") != 1 {
			t.Errorf("%q: exit %d, stderr %q; want exit %d and one line mentioning %q", tc.argv, code, stderr, tc.code, tc.want)
		}
	}
	if code, out, _ := runCLI(t, "", false, "--help"); code != 0 || !strings.Contains(out, "switchover") {
		t.Errorf("--help: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "", false, "completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d", code)
	}
}

func TestConfirm(t *testing.T) {
	a := &app{env: env{stdin: strings.NewReader("y\n"), stdout: &bytes.Buffer{}, stdinTTY: true}}
	if err := a.confirm("ok?", false); err != nil {
		t.Errorf("yes: %v", err)
	}
	for _, in := range []string{"\n", "n\n", "", "yess\n"} {
		a.stdin = strings.NewReader(in)
		if err := a.confirm("ok?", false); !errors.Is(err, errAborted) {
			t.Errorf("answer %q: %v, want aborted", in, err)
		}
	}
	a.stdinTTY = false
	if err := a.confirm("ok?", false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("no tty: %v", err)
	}
	if err := a.confirm("ok?", true); err != nil {
		t.Errorf("--force: %v", err)
	}
}

func TestRenderList(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := cluster.Snapshot{
		Leader: &cluster.Leader{Name: "n1", Epoch: 42},
		Config: &cluster.DynamicConfig{Paused: true, SynchronousMode: cluster.SyncOn},
		Sync:   &cluster.SyncState{Leader: "n1", Epoch: 42, Members: []string{"n2"}},
		Members: []cluster.Member{
			{Name: "n1", Role: cluster.RolePrimary, State: cluster.StateRunning, ConnHost: "10.0.0.1", ConnPort: 5432,
				Position: cluster.PGPosition(2, 0x3000060), Tags: cluster.Tags{Priority: 1},
				Problem: cluster.ProblemDurabilityAtRisk, Reason: "DURABILITY AT RISK: synchronous_mode on but no healthy standby"},
			{Name: "n2", Role: cluster.RoleReplica, State: cluster.StateRunning, ConnHost: "10.0.0.2", ConnPort: 5432,
				LagBytes: 1536, Streaming: true, Upstream: "n1", Tags: cluster.Tags{NoFailover: true}},
		},
		Request: &cluster.Request{Kind: cluster.KindSwitchover, From: "n1", To: "n2", At: now.Add(time.Hour), RequestedBy: "me"},
	}
	var b bytes.Buffer
	if err := writeList(&b, "prod", s, now); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Cluster: prod", "Sync: on (standbys: n2)", "Leader: n1 (epoch 42)", "Paused: yes", "switchover n1 -> n2, scheduled",
		"(in 1h0m0s)", "leader", "10.0.0.2:5432", "1.5 KiB", "n1 (streaming)", "nofailover,priority=0", "0/3000060"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("list output lacks %q:\n%s", want, b.String())
		}
	}
	// The problem column: the code for n1, "-" for n2.
	lines := strings.Split(b.String(), "\n")
	header := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "MEMBER") })
	if header < 0 || len(lines) < header+3 {
		t.Fatalf("no member table:\n%s", b.String())
	}
	col := strings.Index(lines[header], "PROBLEM")
	if col < 0 || !strings.HasPrefix(lines[header+1][col:], "durability_at_risk ") || !strings.HasPrefix(lines[header+2][col:], "- ") {
		t.Errorf("PROBLEM column: want durability_at_risk for n1 and - for n2:\n%s", b.String())
	}
	d := listDocument("prod", s)
	if d.Leader != "n1" || d.Epoch != 42 || !d.Paused || d.Request == nil || d.Request.At == nil || len(d.Members) != 2 ||
		d.Members[0].Role != "leader" || d.Members[1].Role != "replica" || d.SynchronousMode != "on" || len(d.SyncStandbys) != 1 {
		t.Errorf("json document: %+v", d)
	}
	js, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(js), `"problem":`); n != 1 || !strings.Contains(string(js), `"problem":"durability_at_risk"`) {
		t.Errorf("json document: want one problem field, durability_at_risk on n1: %s", js)
	}
}

func TestHumanBytes(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1 KiB", 1536: "1.5 KiB", 16 << 20: "16 MiB", 3 << 40: "3 TiB"} {
		if got := humanBytes(n); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// An etcd password file other users can read is refused before anything
// is sent, naming the flag, the file, its mode and the fix.
func TestWorldReadablePasswordFile(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "etcd.pw")
	if err := os.WriteFile(pw, []byte("s3cr3t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pw, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "", false, "list", "--cluster", "c", "--etcd", "http://127.0.0.1:1", "--etcd-user", "u", "--etcd-password-file", pw)
	want := "--etcd-password-file: " + pw + " has mode 0644 (-rw-r--r--): other users can read or change the secret in it; refusing to use it: chmod 600 " + pw
	if code != 1 || !strings.Contains(stderr, want) || strings.Contains(stderr, "s3cr3t") {
		t.Errorf("exit %d, %q; want exit 1 and %q", code, stderr, want)
	}
}

// TestHistoryShowsErrant: a failover whose election found positions that
// were not ordered says, in its reason column, what each member held that
// the other lacked.
func TestHistoryShowsErrant(t *testing.T) {
	held, err := cluster.MariaDBPosition("5-3-20")
	if err != nil {
		t.Fatal(err)
	}
	out := &bytes.Buffer{}
	a := &app{env: env{stdout: out}}
	hist := []cluster.HistoryEntry{{Epoch: 7, Kind: cluster.HistoryFailover, OldPrimary: "n1", NewPrimary: "n2", Reason: "leader key of epoch 4 was lost",
		Errant: []cluster.Errant{{Member: "n3", Against: "n2", Holds: held}}}}
	if err := writeHistory(a, hist); err != nil {
		t.Fatal(err)
	}
	if want := "leader key of epoch 4 was lost; ERRANT: n3 holds 5-3-20 that n2 lacks"; !strings.Contains(out.String(), want) {
		t.Errorf("history:\n%s\nwant it to contain %q", out, want)
	}
}

// On MariaDB the list shows each member's GTID position and binary log
// coordinates in one POSITION column, not PostgreSQL's timeline and LSN.
func TestRenderListGTID(t *testing.T) {
	pos := func(s string) cluster.Position {
		p, err := cluster.MariaDBPosition(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	s := cluster.Snapshot{Leader: &cluster.Leader{Name: "n1", Epoch: 7}, Members: []cluster.Member{
		{Name: "n1", Role: cluster.RolePrimary, State: cluster.StateRunning, Position: pos("0-1-12"), Coordinates: "mysql-bin.000002:3456"},
		{Name: "n2", Role: cluster.RoleReplica, State: cluster.StateRunning, Position: pos("0-1-11"), LagBytes: 1},
	}}
	var b bytes.Buffer
	if err := writeList(&b, "prod", s, time.Now()); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"POSITION", "0-1-12 (mysql-bin.000002:3456)", "0-1-11"} {
		if !strings.Contains(out, want) {
			t.Errorf("list lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "LSN") || strings.Contains(out, "0/0") {
		t.Errorf("list shows PostgreSQL columns for GTID positions:\n%s", out)
	}
}
