package etcd_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
)

// TestEmbeddedRestartKeepsData starts a second embedded server on a fixed
// data directory, writes, restarts it on the same directory and reads the
// data back; it also checks the temporary directory of a Dir-less server
// is removed by Close.
func TestEmbeddedRestartKeepsData(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etcd")
	start := func() *etcdembed.Server {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		t0 := time.Now()
		s, err := etcdembed.Start(ctx, etcdembed.Options{Dir: dir, FastElection: true})
		must(t, err)
		eps := s.Endpoints()
		if len(eps) != 1 || !strings.HasPrefix(eps[0], "http://127.0.0.1:") || strings.HasSuffix(eps[0], ":0") {
			t.Fatalf("endpoints %v", eps)
		}
		t.Logf("embedded etcd %v ready in %v", eps, time.Since(t0).Round(time.Millisecond))
		return s
	}
	open := func(srv *etcdembed.Server) *etcd.Store {
		st, err := etcd.New(etcd.Options{Endpoints: srv.Endpoints(), Cluster: "persist", Logger: quietLogger()})
		must(t, err)
		return st
	}

	srv := start()
	st := open(srv)
	got, err := st.Initialize(testCtx(t), "n1", validConfig())
	must(t, err)
	if got != "n1" {
		t.Fatalf("initialize: %q", got)
	}
	st.Close()
	srv.Close()
	srv.Close() // idempotent

	srv = start()
	defer srv.Close()
	st = open(srv)
	defer st.Close()
	snap, err := st.Load(testCtx(t))
	must(t, err)
	if snap.Initialized != "n1" || snap.Config == nil || *snap.Config != validConfig() {
		t.Fatalf("after restart: initialized %q config %+v", snap.Initialized, snap.Config)
	}

	// Dir-less server: temporary directory removed by Close.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, _ := filepath.Glob(filepath.Join(os.TempDir(), "hamgr-etcd-*"))
	tmp, err := etcdembed.Start(ctx, etcdembed.Options{FastElection: true})
	must(t, err)
	during, _ := filepath.Glob(filepath.Join(os.TempDir(), "hamgr-etcd-*"))
	tmp.Close()
	after, _ := filepath.Glob(filepath.Join(os.TempDir(), "hamgr-etcd-*"))
	if len(during) != len(before)+1 || len(after) != len(before) {
		t.Fatalf("temp dirs before %d, during %d, after %d", len(before), len(during), len(after))
	}
}

// TestEmbeddedClusterQuorumLossAndRestart starts a 3-member embedded
// cluster, stops its leader and one more member (the store's requests fail:
// no quorum), restarts both on their data directories, and reads back what
// was written before (the store's requests succeed again).
func TestEmbeddedClusterQuorumLossAndRestart(t *testing.T) {
	ports := fixedPorts(t, 6)
	var members []etcdembed.MemberURLs
	for i := range 3 {
		members = append(members, etcdembed.MemberURLs{Name: fmt.Sprintf("e%d", i+1),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]), PeerURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])})
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := etcdembed.StartCluster(ctx, etcdembed.ClusterOptions{Dir: t.TempDir(), Members: members})
	must(t, err)
	defer c.Close()
	st, err := etcd.New(etcd.Options{Endpoints: c.Endpoints(), Cluster: "quorum", Logger: quietLogger()})
	must(t, err)
	defer st.Close()
	_, err = st.Initialize(testCtx(t), "n1", validConfig())
	must(t, err)

	var lead int
	err = waitUntil(ctx, func() bool { var ok bool; lead, ok = c.Leader(); return ok })
	must(t, err)
	other := (lead + 1) % 3
	c.Stop(lead)
	c.Stop(other)
	if c.Running(lead) || c.Running(other) {
		t.Fatalf("members %d and %d still run after Stop", lead, other)
	}
	qctx, qcancel := context.WithTimeout(context.Background(), 3*time.Second)
	_, err = st.Load(qctx)
	qcancel()
	if err == nil {
		t.Fatal("a load succeeded with 1 of 3 members running")
	}
	must(t, c.Restart(ctx, lead, other))
	err = waitUntil(ctx, func() bool {
		qctx, qcancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer qcancel()
		snap, err := st.Load(qctx)
		return err == nil && snap.Initialized == "n1"
	})
	if err != nil {
		t.Fatalf("the restarted cluster does not serve what was written before: %v", err)
	}
	if _, ok := c.Leader(); !ok {
		t.Fatal("no etcd leader after the restart")
	}
}

// fixedPorts returns n distinct free TCP ports on 127.0.0.1 below 32768,
// outside the kernel's range of source ports, so a restarted member can
// bind its port again.
func fixedPorts(t *testing.T, n int) []int {
	t.Helper()
	var out []int
	for p := 20000 + rand.IntN(10000); len(out) < n && p < 32768; p++ {
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		out = append(out, p)
	}
	if len(out) < n {
		t.Fatal("no free ports below 32768")
	}
	return out
}

// waitUntil polls cond every 50ms until it holds or ctx ends.
func waitUntil(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}
