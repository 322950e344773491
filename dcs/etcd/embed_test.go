package etcd_test

import (
	"context"
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
