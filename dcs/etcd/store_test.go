package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/dcs/dcstest"
	"github.com/hamgr/hamgr/dcs/etcd"
	"github.com/hamgr/hamgr/dcs/etcd/etcdembed"
	"github.com/hamgr/hamgr/localcluster/faultproxy"
)

// One embedded etcd for the package; every test uses its own cluster name.
var (
	server   *etcdembed.Server
	clusterN atomic.Int64
)

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	start := time.Now()
	s, err := etcdembed.Start(ctx, etcdembed.Options{FastElection: true})
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "start embedded etcd:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "embedded etcd at %v ready in %v\n", s.Endpoints(), time.Since(start).Round(time.Millisecond))
	server = s
	code := m.Run()
	s.Close()
	os.Exit(code)
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newCluster() string { return fmt.Sprintf("c%d", clusterN.Add(1)) }

func newStore(t *testing.T, clusterName string, endpoints ...string) *etcd.Store {
	t.Helper()
	if len(endpoints) == 0 {
		endpoints = server.Endpoints()
	}
	s, err := etcd.New(etcd.Options{Endpoints: endpoints, Cluster: clusterName, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func rawClient(t *testing.T) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: server.Endpoints(), DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func validConfig() cluster.DynamicConfig {
	return cluster.DynamicConfig{
		TTL:          cluster.Duration(30 * time.Second),
		LoopWait:     cluster.Duration(10 * time.Second),
		RetryTimeout: cluster.Duration(10 * time.Second),
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, s *etcd.Store) cluster.Snapshot {
	t.Helper()
	snap, err := s.Load(testCtx(t))
	must(t, err)
	return snap
}

// TestStoreConformance drives two members' stores on one cluster through
// the whole dcs.Store contract except lease expiry.
func TestStoreConformance(t *testing.T) {
	ctx := testCtx(t)
	name := newCluster()
	s1, s2 := newStore(t, name), newStore(t, name)
	raw := rawClient(t)
	leaderKey := "/hamgr/" + name + "/leader"

	if _, _, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("AcquireLeader without a lease: got %v, want ErrLeaseLost", err)
	}
	if err := s1.PublishMember(ctx, cluster.Member{Name: "n1"}); err == nil {
		t.Fatal("PublishMember without a lease succeeded")
	}
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	if s1.LeaseID() == 0 || s1.LeaseID() == s2.LeaseID() {
		t.Fatalf("lease ids %x %x", s1.LeaseID(), s2.LeaseID())
	}

	// First acquisition wins; the second gets the holder back.
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	must(t, err)
	if !ok || l1.Name != "n1" || l1.Lease != s1.LeaseID() || l1.Epoch <= 0 {
		t.Fatalf("s1 acquire: %+v ok=%v", l1, ok)
	}
	h, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, 0, nil)
	must(t, err)
	if ok || h != l1 {
		t.Fatalf("s2 acquire: got %+v ok=%v, want holder %+v", h, ok, l1)
	}

	// Epoch is the leader key's create revision; last_leader carries it.
	gr, err := raw.Get(ctx, leaderKey)
	must(t, err)
	if len(gr.Kvs) != 1 || cluster.Epoch(gr.Kvs[0].CreateRevision) != l1.Epoch || gr.Kvs[0].Lease != s1.LeaseID() {
		t.Fatalf("leader key %+v, want create revision %d, lease %x", gr.Kvs, l1.Epoch, s1.LeaseID())
	}
	snap := load(t, s2)
	if snap.Leader == nil || *snap.Leader != l1 {
		t.Fatalf("Load leader %+v, want %+v", snap.Leader, l1)
	}
	if snap.LastLeader == nil || snap.LastLeader.Name != "n1" || snap.LastLeader.Epoch != l1.Epoch || snap.LastLeader.Since.IsZero() {
		t.Fatalf("Load last_leader %+v, want n1 epoch %d", snap.LastLeader, l1.Epoch)
	}
	if snap.Revision < int64(l1.Epoch) {
		t.Fatalf("snapshot revision %d < epoch %d", snap.Revision, l1.Epoch)
	}

	// A stale epoch releases nothing; the right one releases.
	must(t, s1.ReleaseLeader(ctx, cluster.Leader{Name: "n1", Epoch: l1.Epoch - 1}))
	if snap := load(t, s1); snap.Leader == nil || *snap.Leader != l1 {
		t.Fatalf("after stale release: leader %+v, want %+v", snap.Leader, l1)
	}
	must(t, s1.ReleaseLeader(ctx, l1))
	snap = load(t, s1)
	if snap.Leader != nil {
		t.Fatalf("after release: leader %+v", snap.Leader)
	}
	if snap.LastLeader == nil || snap.LastLeader.Epoch != l1.Epoch {
		t.Fatalf("after release: last_leader %+v, want epoch %d kept", snap.LastLeader, l1.Epoch)
	}
	must(t, s1.ReleaseLeader(ctx, l1)) // not held: no error

	// Epochs grow across acquisitions; last_leader follows.
	l2, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, nil)
	must(t, err)
	if !ok || l2.Epoch <= l1.Epoch {
		t.Fatalf("second acquisition %+v ok=%v, want epoch > %d", l2, ok, l1.Epoch)
	}
	must(t, s1.ReleaseLeader(ctx, l1)) // stale holder releases nothing
	snap = load(t, s1)
	if snap.Leader == nil || *snap.Leader != l2 || snap.LastLeader == nil || snap.LastLeader.Name != "n2" || snap.LastLeader.Epoch != l2.Epoch {
		t.Fatalf("after second acquisition: leader %+v last %+v, want %+v", snap.Leader, snap.LastLeader, l2)
	}

	// Members: sorted, bound to their own lease, undecodable ones skipped.
	m2 := cluster.Member{Name: "n2", Role: cluster.RolePrimary, State: cluster.StateRunning, Position: cluster.PGPosition(2, 0x3000060), LagBytes: -1, UpdatedAt: time.Now().UTC().Truncate(time.Second)}
	must(t, s2.PublishMember(ctx, m2))
	must(t, s1.PublishMember(ctx, cluster.Member{Name: "n1", Role: cluster.RoleReplica, Upstream: "n2"}))
	_, err = raw.Put(ctx, "/hamgr/"+name+"/members/zz", "{not json")
	must(t, err)
	snap = load(t, s1)
	if len(snap.Members) != 2 || snap.Members[0].Name != "n1" || snap.Members[1].Name != "n2" {
		t.Fatalf("members %+v, want n1, n2", snap.Members)
	}
	if got := snap.Member("n2"); got == nil || got.Position != m2.Position || got.Role != cluster.RolePrimary || !got.UpdatedAt.Equal(m2.UpdatedAt) {
		t.Fatalf("member n2 %+v, want %+v", got, m2)
	}
	gr, err = raw.Get(ctx, "/hamgr/"+name+"/members/n1")
	must(t, err)
	if gr.Kvs[0].Lease != s1.LeaseID() {
		t.Fatalf("member n1 lease %x, want %x", gr.Kvs[0].Lease, s1.LeaseID())
	}

	// Initialize: exclusive, returns the claimant, writes config once.
	if snap.Initialized != "" || snap.Config != nil {
		t.Fatalf("before initialize: %q %+v", snap.Initialized, snap.Config)
	}
	bad := validConfig()
	bad.TTL = bad.LoopWait
	if _, err := s1.Initialize(ctx, "n1", bad); err == nil {
		t.Fatal("Initialize accepted an invalid config")
	}
	cfg1 := validConfig()
	got, err := s1.Initialize(ctx, "n1", cfg1)
	must(t, err)
	if got != "n1" {
		t.Fatalf("first Initialize returned %q", got)
	}
	cfg2 := validConfig()
	cfg2.MaximumLagOnFailover = 999
	got, err = s2.Initialize(ctx, "n2", cfg2)
	must(t, err)
	if got != "n1" {
		t.Fatalf("second Initialize returned %q, want claimant n1", got)
	}
	snap = load(t, s2)
	if snap.Initialized != "n1" || snap.Config == nil || *snap.Config != cfg1 {
		t.Fatalf("after initialize: %q %+v, want n1 %+v", snap.Initialized, snap.Config, cfg1)
	}

	// SetConfig refuses invalid configs and replaces with valid ones.
	err = s2.SetConfig(ctx, bad)
	if err == nil || !strings.Contains(err.Error(), "must be greater than loop_wait") {
		t.Fatalf("SetConfig(invalid): %v", err)
	}
	if snap := load(t, s2); *snap.Config != cfg1 {
		t.Fatalf("invalid SetConfig changed config to %+v", snap.Config)
	}
	cfg2.Paused = true
	must(t, s2.SetConfig(ctx, cfg2))
	if snap := load(t, s1); *snap.Config != cfg2 {
		t.Fatalf("config %+v, want %+v", snap.Config, cfg2)
	}

	// History: ordered by epoch (numerically), same epoch overwrites.
	for _, e := range []cluster.HistoryEntry{
		{Epoch: 100, Kind: "switchover", NewPrimary: "n1"},
		{Epoch: 5, Kind: "bootstrap", NewPrimary: "n0"},
		{Epoch: 30, Kind: "failover", NewPrimary: "n2", Steps: []cluster.Step{{Name: "promote", Duration: cluster.Duration(time.Second)}}},
		{Epoch: 5, Kind: "bootstrap", NewPrimary: "n1"},
		{Epoch: 9, Kind: "failover", NewPrimary: "n2"},
	} {
		must(t, s1.AppendHistory(ctx, e))
	}
	if err := s1.AppendHistory(ctx, cluster.HistoryEntry{Epoch: 0}); err == nil {
		t.Fatal("AppendHistory accepted epoch 0")
	}
	hist, err := s2.History(ctx)
	must(t, err)
	var epochs []cluster.Epoch
	for _, e := range hist {
		epochs = append(epochs, e.Epoch)
	}
	if fmt.Sprint(epochs) != "[5 9 30 100]" || hist[0].NewPrimary != "n1" || len(hist[2].Steps) != 1 {
		t.Fatalf("history %+v", hist)
	}

	// Keys are exactly as documented in package dcs.
	all, err := raw.Get(ctx, "/hamgr/"+name+"/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	must(t, err)
	var keys []string
	for _, kv := range all.Kvs {
		keys = append(keys, strings.TrimPrefix(string(kv.Key), "/hamgr/"+name+"/"))
	}
	want := "[config history/00000000000000000005 history/00000000000000000009 history/00000000000000000030 history/00000000000000000100 initialize last_leader leader members/n1 members/n2 members/zz]"
	if fmt.Sprint(keys) != want {
		t.Fatalf("keys %v\nwant %s", keys, want)
	}
}

// TestChanges checks that a config write wakes a watcher, that routine
// member publications and changes outside the cluster do not, and that the
// channel closes with ctx.
func TestChanges(t *testing.T) {
	name := newCluster()
	s := newStore(t, name)
	ctx := testCtx(t)
	must(t, s.Grant(ctx, 10*time.Second))

	wctx, cancel := context.WithCancel(ctx)
	ch := s.Changes(wctx)
	// The watch is created asynchronously; publish until it fires.
	drain := func() {
		for {
			select {
			case <-ch:
			default:
				return
			}
		}
	}
	deadline := time.After(5 * time.Second)
	fired := false
	for !fired {
		must(t, s.SetConfig(ctx, validConfig()))
		select {
		case _, ok := <-ch:
			if !ok {
				t.Fatal("channel closed early")
			}
			fired = true
		case <-time.After(200 * time.Millisecond):
		case <-deadline:
			t.Fatal("no change notification within 5s of a config write")
		}
	}

	// Now the watch runs: one publish, one wake-up; another cluster's
	// write does not wake it.
	time.Sleep(100 * time.Millisecond)
	drain()
	other := newStore(t, newCluster())
	must(t, other.Grant(ctx, 10*time.Second))
	must(t, other.PublishMember(ctx, cluster.Member{Name: "x"}))
	select {
	case <-ch:
		t.Fatal("woken by another cluster's change")
	case <-time.After(300 * time.Millisecond):
	}
	// A member's routine publication does not wake (it would make every
	// agent publish again), a config write does.
	must(t, s.PublishMember(ctx, cluster.Member{Name: "n2"}))
	select {
	case <-ch:
		t.Fatal("woken by a member publication")
	case <-time.After(300 * time.Millisecond):
	}
	start := time.Now()
	must(t, s.SetConfig(ctx, validConfig()))
	select {
	case <-ch:
		t.Logf("change notification %v after a config write", time.Since(start).Round(time.Microsecond))
	case <-time.After(3 * time.Second):
		t.Fatal("no notification for a config write")
	}

	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(3 * time.Second):
		t.Fatal("channel not closed after ctx ended")
	}
}

// TestLeaseExpiry checks renewal, expiry of lease-bound keys and the
// ErrLeaseLost mapping.
func TestLeaseExpiry(t *testing.T) {
	name := newCluster()
	s := newStore(t, name)
	ctx := testCtx(t)
	must(t, s.Grant(ctx, 2*time.Second))
	l, ok, err := s.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	must(t, err)
	if !ok {
		t.Fatal("acquire failed")
	}
	must(t, s.PublishMember(ctx, cluster.Member{Name: "n1"}))

	// Renewing keeps the keys beyond the TTL.
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(500 * time.Millisecond) {
		must(t, s.KeepAlive(ctx))
	}
	if snap := load(t, s); snap.Leader == nil || len(snap.Members) != 1 {
		t.Fatalf("keys expired despite keepalive: %+v", snap)
	}

	// Stop renewing: leader and member keys go, last_leader stays.
	must(t, s.KeepAlive(ctx))
	stopped := time.Now()
	for {
		snap := load(t, s)
		if snap.Leader == nil && len(snap.Members) == 0 {
			t.Logf("keys expired %v after the last renewal (TTL 2s)", time.Since(stopped).Round(time.Millisecond))
			if snap.LastLeader == nil || snap.LastLeader.Name != "n1" || snap.LastLeader.Epoch != l.Epoch {
				t.Fatalf("last_leader %+v after expiry, want n1 epoch %d", snap.LastLeader, l.Epoch)
			}
			break
		}
		if time.Since(stopped) > 5*time.Second {
			t.Fatalf("keys still there %v after the last renewal: %+v", time.Since(stopped), snap)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if time.Since(stopped) < 1900*time.Millisecond {
		t.Fatalf("keys expired after %v, before the 2s TTL", time.Since(stopped))
	}

	err = s.KeepAlive(ctx)
	if !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("KeepAlive after expiry: %v, want ErrLeaseLost", err)
	}
	t.Logf("KeepAlive after expiry: %v", err)
	if err := s.PublishMember(ctx, cluster.Member{Name: "n1"}); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("PublishMember with an expired lease: %v, want ErrLeaseLost", err)
	}
	if _, _, err := s.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, l.Epoch, nil); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("AcquireLeader with an expired lease: %v, want ErrLeaseLost", err)
	}

	// A new lease recovers, with a larger epoch.
	must(t, s.Grant(ctx, 2*time.Second))
	l2, ok, err := s.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, l.Epoch, nil)
	must(t, err)
	if !ok || l2.Epoch <= l.Epoch {
		t.Fatalf("re-acquire %+v ok=%v, want epoch > %d", l2, ok, l.Epoch)
	}
}

// TestGrantRevokesPrevious checks that a new Grant revokes the old lease,
// so keys bound to it disappear at once.
func TestGrantRevokesPrevious(t *testing.T) {
	name := newCluster()
	s := newStore(t, name)
	ctx := testCtx(t)
	must(t, s.Grant(ctx, 30*time.Second))
	old := s.LeaseID()
	must(t, s.PublishMember(ctx, cluster.Member{Name: "n1"}))
	must(t, s.Grant(ctx, 30*time.Second))
	if s.LeaseID() == old {
		t.Fatal("lease id unchanged")
	}
	if snap := load(t, s); len(snap.Members) != 0 {
		t.Fatalf("member bound to the revoked lease still there: %+v", snap.Members)
	}
	must(t, s.KeepAlive(ctx))
}

// TestPartitionThroughFaultProxy cuts a store off from etcd with a
// faultproxy: requests time out (not refused) and work again after heal.
func TestPartitionThroughFaultProxy(t *testing.T) {
	target := strings.TrimPrefix(server.Endpoints()[0], "http://")
	p, err := faultproxy.New(target)
	must(t, err)
	defer p.Close()
	name := newCluster()
	s := newStore(t, name, p.URL())
	ctx := testCtx(t)
	must(t, s.Grant(ctx, 10*time.Second))
	must(t, s.PublishMember(ctx, cluster.Member{Name: "n1"}))
	load(t, s)
	// A watch through the proxy, to see it survive the partition.
	changes := s.Changes(ctx)
	for end := time.Now().Add(5 * time.Second); ; {
		must(t, s.SetConfig(ctx, validConfig()))
		select {
		case <-changes:
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(end) {
				t.Fatal("watch through the proxy never fired")
			}
			continue
		}
		break
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-changes:
	default:
	}

	expectTimeout := func(what string, f func(context.Context) error) {
		t.Helper()
		c, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		err := f(c)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "refused") {
			t.Fatalf("%s while partitioned: %v, want a deadline error", what, err)
		}
		if took < 900*time.Millisecond || took > 2500*time.Millisecond {
			t.Fatalf("%s failed after %v, want about the 1s deadline", what, took)
		}
		t.Logf("%s while partitioned: timed out after %v: %v", what, took.Round(time.Millisecond), err)
	}

	p.Block()
	expectTimeout("Load", func(c context.Context) error { _, err := s.Load(c); return err })
	expectTimeout("KeepAlive", s.KeepAlive)
	// A store created during the partition: New succeeds, requests time out.
	fresh := newStore(t, name, p.URL())
	expectTimeout("Load on a new client", func(c context.Context) error { _, err := fresh.Load(c); return err })

	// A change made by someone else during the partition...
	direct := newStore(t, name)
	must(t, direct.Grant(ctx, 10*time.Second))
	must(t, direct.PublishMember(ctx, cluster.Member{Name: "n2"}))
	must(t, direct.SetConfig(ctx, validConfig()))
	select {
	case <-changes:
		t.Fatal("change notification through a blocked proxy")
	case <-time.After(200 * time.Millisecond):
	}

	p.Unblock()
	healed := time.Now()
	// ...reaches the watcher after the heal.
	select {
	case <-changes:
		t.Logf("watch notified %v after heal", time.Since(healed).Round(time.Millisecond))
	case <-time.After(15 * time.Second):
		t.Fatal("no change notification within 15s of the heal")
	}
	for _, st := range []*etcd.Store{s, fresh} {
		for {
			c, cancel := context.WithTimeout(ctx, time.Second)
			snap, err := st.Load(c)
			cancel()
			if err == nil {
				if len(snap.Members) != 2 {
					t.Fatalf("after heal: members %+v", snap.Members)
				}
				break
			}
			if time.Since(healed) > 10*time.Second {
				t.Fatalf("still failing 10s after heal: %v", err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	t.Logf("both stores answered %v after heal", time.Since(healed).Round(time.Millisecond))
	must(t, s.KeepAlive(ctx)) // the lease outlived the short partition
}

// TestNewWhileDown checks that New does not need etcd.
func TestNewWhileDown(t *testing.T) {
	s, err := etcd.New(etcd.Options{Endpoints: []string{"http://127.0.0.1:1"}, Cluster: "x", RequestTimeout: 300 * time.Millisecond, Logger: quietLogger()})
	must(t, err)
	defer s.Close()
	start := time.Now()
	if _, err := s.Load(context.Background()); err == nil {
		t.Fatal("Load against nothing succeeded")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("Load took %v with a 300ms request timeout", took)
	}
	if _, err := etcd.New(etcd.Options{Cluster: "x"}); err == nil {
		t.Fatal("New without endpoints succeeded")
	}
}

// TestUpdateConfigCompareAndSwap: concurrent read-modify-write updates
// from two stores lose none of each other's changes, an error from the
// update function writes nothing, and a cluster without a config says so.
func TestUpdateConfigCompareAndSwap(t *testing.T) {
	ctx := testCtx(t)
	name := newCluster()
	a, b := newStore(t, name), newStore(t, name)
	bump := func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		c.MaximumLagOnFailover++
		return c, nil
	}
	if _, err := a.UpdateConfig(ctx, bump); !errors.Is(err, dcs.ErrNoConfig) {
		t.Fatalf("UpdateConfig before bootstrap: %v, want ErrNoConfig", err)
	}
	start := validConfig()
	start.MaximumLagOnFailover = 0
	must(t, a.SetConfig(ctx, start))

	const each = 20
	errs := make(chan error, 2*each)
	for _, s := range []*etcd.Store{a, b} {
		go func() {
			for range each {
				_, err := s.UpdateConfig(ctx, bump)
				errs <- err
			}
		}()
	}
	conflictsExhausted := 0
	for range 2 * each {
		if err := <-errs; err != nil {
			if !strings.Contains(err.Error(), "changed concurrently") {
				t.Fatalf("UpdateConfig: %v", err)
			}
			conflictsExhausted++
		}
	}
	got := load(t, a).Config.MaximumLagOnFailover
	if want := int64(2*each - conflictsExhausted); got != want {
		t.Fatalf("after %d successful increments the counter is %d: updates were lost", want, got)
	}

	refused := errors.New("refused by fn")
	if _, err := a.UpdateConfig(ctx, func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		c.MaximumLagOnFailover = 1 << 40
		return c, refused
	}); !errors.Is(err, refused) {
		t.Fatalf("UpdateConfig with failing fn: %v", err)
	}
	if now := load(t, a).Config.MaximumLagOnFailover; now != got {
		t.Fatalf("a failing update changed the config: %d, want %d", now, got)
	}
	if _, err := a.UpdateConfig(ctx, func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		c.TTL = 0
		return c, nil
	}); err == nil || !strings.Contains(err.Error(), "invalid config") {
		t.Fatalf("UpdateConfig to an invalid config: %v", err)
	}
}

// TestDCSConformance runs the store contract shared with dcs/memstore.
func TestDCSConformance(t *testing.T) {
	dcstest.Run(t, func(t *testing.T, n int) []dcs.Store {
		name := newCluster()
		out := make([]dcs.Store, n)
		for i := range out {
			out[i] = newStore(t, name)
		}
		return out
	})
}
