package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
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
