package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
	"github.com/hamgr/hamgr/internal/ipmisim"
)

// startEtcd starts an embedded etcd on a free loopback port and returns a
// store on cluster c with the default dynamic config written.
func startEtcd(t *testing.T) (*etcdembed.Server, *etcd.Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv, err := etcdembed.Start(ctx, etcdembed.Options{FastElection: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	st, err := etcd.New(etcd.Options{Endpoints: srv.Endpoints(), Cluster: "c", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second), MaximumLagOnFailover: 1 << 20}
	if _, err := st.Initialize(ctx, "n1", cfg); err != nil {
		t.Fatal(err)
	}
	return srv, st
}

// config set against a real etcd: invalid values are refused, naming the
// key, and the stored config stays as it was; valid edges are written.
func TestConfigSetAgainstEtcd(t *testing.T) {
	srv, st := startEtcd(t)
	conn := []string{"--cluster", "c", "--etcd", srv.Endpoints()[0]}
	stored := func() cluster.DynamicConfig {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		snap, err := st.Load(ctx)
		if err != nil || snap.Config == nil {
			t.Fatalf("load: %+v, %v", snap.Config, err)
		}
		return *snap.Config
	}
	before := stored()
	for _, tc := range []struct{ set, want string }{
		{"loop_wait=1ns", "refused: loop_wait=1ns: loop_wait 1ns: must be at least 1s"},
		{"ttl=1.5s", "refused: ttl=1.5s: ttl 1.5s: must be at least 3s"},
		{"ttl=1000000h", "refused: ttl=1000000h: ttl 1000000h: must be at most 10m"},
		{"ttl=10h", "did you mean 10s?"},
		{"maximum_lag_on_failover=2TB", "maximum_lag_on_failover 2199023255552 (2TB): must be from 0 to 1TB"},
	} {
		code, _, stderr := runCLI(t, "", false, append([]string{"config", "set", tc.set}, conn...)...)
		if code != 1 || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "nothing was written") {
			t.Errorf("config set %s: exit %d, %q; want exit 1 and %q", tc.set, code, stderr, tc.want)
		}
		t.Logf("config set %s: %s", tc.set, stderr)
	}
	if got := stored(); got != before {
		t.Fatalf("refused sets changed the config: %+v, was %+v", got, before)
	}
	code, out, stderr := runCLI(t, "", false, append([]string{"config", "set", "ttl=3s", "loop_wait=1s", "retry_timeout=1", "primary_start_timeout=0"}, conn...)...)
	if code != 0 {
		t.Fatalf("config set of the smallest values: exit %d, %s", code, stderr)
	}
	got := stored()
	if got.TTL != cluster.Duration(3*time.Second) || got.LoopWait != cluster.Duration(time.Second) ||
		got.RetryTimeout != cluster.Duration(time.Second) || got.PrimaryStartTimeout != 0 || !strings.Contains(out, "ttl: 3s") {
		t.Errorf("after set: %+v\n%s", got, out)
	}
}

// hamgrctl against a closed loopback port says which endpoint it tried
// and why it failed, not only "context deadline exceeded".
func TestUnreachableEtcdNamed(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	ep := "http://" + addr
	code, _, stderr := runCLI(t, "", false, "list", "--cluster", "c", "--etcd", ep, "--timeout", "1s")
	for _, want := range []string{
		"etcd at " + ep + " did not answer within 1s (--timeout)",
		ep + ": dial tcp " + addr + ": connect: connection refused (nothing listens there: is etcd running, and is this its client port?)",
	} {
		if code != 1 || !strings.Contains(stderr, want) {
			t.Errorf("list against a closed port: exit %d, %q; want %q", code, stderr, want)
		}
	}
	t.Logf("%s", stderr)
}

// hamgrctl fence against a real etcd and a real BMC simulator: without
// confirmation nothing happens; with --yes the last leader's machine is
// powered off through the ipmi driver of the config file's fencing
// section, and the fence is recorded tied to its epoch (proof for the
// election, and it never leads again under that epoch), in the history,
// and shown by list.
func TestFenceAgainstEtcdAndBMC(t *testing.T) {
	sim := ipmisim.Start(t)
	srv, st := startEtcd(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := st.Grant(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l, ok, err := st.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	dir := t.TempDir()
	pw := filepath.Join(dir, "bmc.pw")
	if err := os.WriteFile(pw, []byte(ipmisim.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "hamgr.yml")
	doc := fmt.Sprintf(`cluster: c
name: n2
etcd: {endpoints: [%q]}
postgresql: {data_dir: /d/pg, replication: {password_file: /pw}}
fencing:
  members:
    n1: {driver: ipmi, address: 127.0.0.1, port: %d, username: %s, password_file: %s, timeout: 20s}
`, srv.Endpoints()[0], sim.Port, ipmisim.User, pw)
	if err := os.WriteFile(cfgFile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	// The config file names the cluster and etcd too; the flags agree.
	conn := []string{"--cluster", "c", "--etcd", srv.Endpoints()[0], "--config", cfgFile}
	code, _, stderr := runCLI(t, "", false, append([]string{"fence", "n1"}, conn...)...)
	if code == 0 || sim.Power(t) != "on" {
		t.Fatalf("fence without a terminal or --yes: exit %d, power %s (%s)", code, sim.Power(t), stderr)
	}
	code, out, stderr := runCLI(t, "", false, append([]string{"fence", "n3", "--yes"}, conn...)...)
	if code == 0 || !strings.Contains(stderr, "fencing.members.n3") {
		t.Fatalf("fence of a member without a driver: exit %d, %s %s", code, out, stderr)
	}
	code, out, stderr = runCLI(t, "", false, append([]string{"fence", "n1", "--yes"}, conn...)...)
	if code != 0 || sim.Power(t) != "off" || !strings.Contains(out, "Fenced n1") || !strings.Contains(out, "epoch") {
		t.Fatalf("fence --yes: exit %d, power %s\n%s%s", code, sim.Power(t), out, stderr)
	}
	snap, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := snap.FencedLastLeader()
	if f == nil || f.Epoch != l.Epoch || !strings.Contains(f.Driver, "ipmi") || strings.Contains(fmt.Sprint(*f), ipmisim.Password) {
		t.Fatalf("fence record %+v (leader epoch %d): want n1 confirmed for its epoch, no password", snap.Fenced, l.Epoch)
	}
	hist, err := st.History(ctx)
	if err != nil || len(hist) == 0 || hist[len(hist)-1].Kind != cluster.HistoryFence || hist[len(hist)-1].Fence == nil {
		t.Fatalf("history %+v, %v: want a fence entry", hist, err)
	}
	_, out, _ = runCLI(t, "", false, append([]string{"list"}, conn...)...)
	if !strings.Contains(out, "Fenced: n1 (confirmed, ipmi") {
		t.Fatalf("list does not show the fence:\n%s", out)
	}
}

// list shows a fence owed: a member took the key to promote over n1 with
// its fence step not done yet.
func TestListShowsFenceOwed(t *testing.T) {
	ctx := context.Background()
	srv, st := startEtcd(t)
	if err := st.Grant(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	l0, ok, err := st.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("n1 takes the key: %v %v", ok, err)
	}
	if err := st.ReleaseLeader(ctx, l0); err != nil {
		t.Fatal(err)
	}
	p := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: l0.Epoch, OldPrimary: "n1",
		Evidence: &cluster.Evidence{Kind: cluster.EvidenceFence}, Done: []cluster.PromotionStep{cluster.StepKey}}
	if _, ok, err := st.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l0.Epoch, &p); err != nil || !ok {
		t.Fatalf("n2 takes the key over n1: %v %v", ok, err)
	}
	_, out, _ := runCLI(t, "", false, "list", "--cluster", "c", "--etcd", srv.Endpoints()[0])
	want := fmt.Sprintf("Fence owed: n1 (the primary of epoch %d; n2 took the key", l0.Epoch)
	if !strings.Contains(out, want) {
		t.Fatalf("list does not show the fence owed (%q):\n%s", want, out)
	}
}
