// Package dcstest is the conformance suite of dcs.Store: the contract every
// store implementation keeps, checked through the interface only. dcs/etcd
// runs it against a real embedded etcd and dcs/memstore against the
// in-memory twin, so the simulator (ha/hasim), which runs on the twin,
// cannot drift from the store production uses.
package dcstest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
)

// NewStores returns n stores connected to one fresh, empty cluster, each
// with no lease yet (one per member).
type NewStores func(t *testing.T, n int) []dcs.Store

// Run checks the dcs.Store contract on stores from newStores, as subtests.
func Run(t *testing.T, newStores NewStores) {
	t.Run("Leadership", func(t *testing.T) { testLeadership(t, newStores(t, 2)) })
	t.Run("Members", func(t *testing.T) { testMembers(t, newStores(t, 2)) })
	t.Run("Config", func(t *testing.T) { testConfig(t, newStores(t, 2)) })
	t.Run("ResetBootstrap", func(t *testing.T) { testResetBootstrap(t, newStores(t, 2)) })
	t.Run("ResetBootstrapAfterHistory", func(t *testing.T) { testResetBootstrapAfterHistory(t, newStores(t, 1)[0]) })
	t.Run("History", func(t *testing.T) { testHistory(t, newStores(t, 1)[0]) })
	t.Run("Requests", func(t *testing.T) { testRequests(t, newStores(t, 2)) })
	t.Run("Sync", func(t *testing.T) { testSync(t, newStores(t, 2)) })
	t.Run("Failsafe", func(t *testing.T) { testFailsafe(t, newStores(t, 2)) })
	t.Run("Promotion", func(t *testing.T) { testPromotion(t, newStores(t, 2)) })
	t.Run("TakeOver", func(t *testing.T) { testTakeOver(t, newStores(t, 3)) })
	t.Run("LeaseTimeToLive", func(t *testing.T) { testLeaseTimeToLive(t, newStores(t, 2)) })
	t.Run("FenceOwed", func(t *testing.T) { testFenceOwed(t, newStores(t, 2)) })
	t.Run("StreamLosses", func(t *testing.T) { testStreamLosses(t, newStores(t, 2)) })
}

// testTakeOver: TakeOverLeader takes a held key under a new epoch only
// while the key is still the observed one (epoch and lease) and the old
// leader's member record was not rewritten since it was read; RevokeLease
// then ends the old lease, its keys and its renewals.
func testTakeOver(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	old, cand, restarted := s[0], s[1], s[2]
	must(t, old.Grant(ctx, 30*time.Second))
	must(t, cand.Grant(ctx, 30*time.Second))
	must(t, old.PublishMember(ctx, cluster.Member{Name: "n0", Role: cluster.RolePrimary}))
	l0, ok, err := old.AcquireLeader(ctx, cluster.LastLeader{Name: "n0"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("old leader acquire: %v %v", ok, err)
	}
	snap := load(t, cand)
	rec := snap.Member("n0")
	if rec == nil || rec.Revision == 0 {
		t.Fatalf("member record %+v: want a revision from Load", rec)
	}
	who := cluster.LastLeader{Name: "n1"}
	// The old agent rewrites its record (alive, or restarted): refused.
	must(t, old.PublishMember(ctx, cluster.Member{Name: "n0", Role: cluster.RolePrimary}))
	if _, _, err := cand.TakeOverLeader(ctx, who, *snap.Leader, rec.Revision, nil); !errors.Is(err, dcs.ErrTakeOverRefused) {
		t.Fatalf("take-over after the old member record changed: %v, want ErrTakeOverRefused", err)
	}
	snap = load(t, cand)
	if snap.Leader == nil || snap.Leader.Epoch != l0.Epoch {
		t.Fatalf("a refused take-over changed the key: %+v", snap.Leader)
	}
	// A wrong lease (the key observed on another lease): refused.
	wrong := *snap.Leader
	wrong.Lease++
	if _, _, err := cand.TakeOverLeader(ctx, who, wrong, snap.Member("n0").Revision, nil); !errors.Is(err, dcs.ErrTakeOverRefused) {
		t.Fatalf("take-over of another lease: %v, want ErrTakeOverRefused", err)
	}
	// The old agent restarts (new lease) and takes its key back under a
	// new epoch: a take-over decided on the old key is refused.
	must(t, restarted.Grant(ctx, 30*time.Second))
	stale := snap
	must(t, old.ReleaseLeader(ctx, l0))
	must(t, restarted.PublishMember(ctx, cluster.Member{Name: "n0", Role: cluster.RolePrimary}))
	l0b, ok, err := restarted.AcquireLeader(ctx, cluster.LastLeader{Name: "n0"}, l0.Epoch, nil)
	if err != nil || !ok {
		t.Fatalf("restarted old leader retakes the key: %v %v", ok, err)
	}
	if _, _, err := cand.TakeOverLeader(ctx, who, *stale.Leader, stale.Member("n0").Revision, nil); !errors.Is(err, dcs.ErrTakeOverRefused) {
		t.Fatalf("take-over of an epoch that was retaken: %v, want ErrTakeOverRefused", err)
	}
	// Unchanged: the key is taken under a new epoch with the record, and
	// last_leader names the candidate.
	snap = load(t, cand)
	p := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: l0b.Epoch, OldPrimary: "n0", Done: []cluster.PromotionStep{cluster.StepKey}}
	l1, ok, err := cand.TakeOverLeader(ctx, who, *snap.Leader, snap.Member("n0").Revision, &p)
	if err != nil || !ok || l1.Name != "n1" || l1.Epoch <= l0b.Epoch || l1.Promotion == nil {
		t.Fatalf("take-over: %+v %v %v, want n1 at a new epoch with its record", l1, ok, err)
	}
	snap = load(t, old)
	if snap.Leader == nil || snap.Leader.Name != "n1" || snap.LastLeader == nil || snap.LastLeader.Name != "n1" || snap.LastLeader.Epoch != l1.Epoch {
		t.Fatalf("after take-over: leader %+v last %+v", snap.Leader, snap.LastLeader)
	}
	// Revoking the old lease ends its renewals and its member record.
	must(t, cand.RevokeLease(ctx, l0b.Lease))
	if err := restarted.KeepAlive(ctx); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("renewal of the revoked lease: %v, want ErrLeaseLost", err)
	}
	if m := load(t, cand).Member("n0"); m != nil {
		t.Fatalf("old member record %+v still there after its lease was revoked", m)
	}
	must(t, cand.RevokeLease(ctx, l0b.Lease)) // already gone: no error
}

// The promotion record lives in the leader key's value: written with the
// key, updated only by the epoch that holds it, kept on the key's lease,
// and gone with the key.
// testLeaseTimeToLive: another member's lease reads with its granted TTL
// and whole seconds left, just renewed (no lower bound on the time
// unrenewed); once revoked it reads as lost.
func testLeaseTimeToLive(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	must(t, s[0].Grant(ctx, 30*time.Second))
	id := s[0].LeaseID()
	must(t, s[0].KeepAlive(ctx))
	got, err := s[1].LeaseTimeToLive(ctx, id)
	if err != nil {
		t.Fatalf("time to live of a live lease: %v", err)
	}
	if got.Granted != 30*time.Second || got.Remaining < 28*time.Second || got.Remaining > 30*time.Second || got.Remaining%time.Second != 0 {
		t.Fatalf("time to live just after a renewal: %+v, want granted 30s and 28-30 whole seconds left", got)
	}
	if u := got.UnrenewedFor(); u > time.Second {
		t.Fatalf("unrenewed for at least %s just after a renewal (%+v)", u, got)
	}
	must(t, s[1].RevokeLease(ctx, id))
	if _, err := s[1].LeaseTimeToLive(ctx, id); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("time to live of a revoked lease: %v, want ErrLeaseLost", err)
	}
}

// testFenceOwed: taking the key for a promotion whose fence is not done
// writes the fence owed (with the epoch its target led), recording the
// fence step deletes it, a nil promotion leaves it, and a carried fence
// keeps its target's epoch.
func testFenceOwed(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	a, b := s[0], s[1]
	must(t, a.Grant(ctx, 30*time.Second))
	must(t, b.Grant(ctx, 30*time.Second))
	l0, ok, err := a.AcquireLeader(ctx, cluster.LastLeader{Name: "n0"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("first leader: %v %v", ok, err)
	}
	if o := load(t, b).FenceOwed; o != nil {
		t.Fatalf("fence owed %+v after a key taken without a promotion", o)
	}
	must(t, a.ReleaseLeader(ctx, l0))
	ev := &cluster.Evidence{Kind: cluster.EvidenceFence, Detail: "agent gone, database answers"}
	p := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: l0.Epoch, OldPrimary: "n0", Evidence: ev, Done: []cluster.PromotionStep{cluster.StepKey}}
	l1, ok, err := b.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, l0.Epoch, &p)
	if err != nil || !ok {
		t.Fatalf("second leader: %v %v", ok, err)
	}
	o := load(t, a).FenceOwed
	if o == nil || o.Target != "n0" || o.Lost != l0.Epoch || o.By != "n1" || o.Evidence == nil || o.Evidence.Kind != cluster.EvidenceFence {
		t.Fatalf("fence owed %+v, want n0 (epoch %d) owed by n1 with evidence fence", o, l0.Epoch)
	}
	// n1 dies before its fence; n0's agent is gone too: n2 (store a)
	// carries the fence owed over n1's epoch.
	must(t, b.ReleaseLeader(ctx, l1))
	carried := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: l1.Epoch, OldPrimary: "n0", OldEpoch: l0.Epoch, Evidence: ev,
		Done: []cluster.PromotionStep{cluster.StepKey}}
	l2, ok, err := a.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, &carried)
	if err != nil || !ok {
		t.Fatalf("third leader: %v %v", ok, err)
	}
	if o := load(t, b).FenceOwed; o == nil || o.Target != "n0" || o.Lost != l0.Epoch || o.By != "n2" {
		t.Fatalf("carried fence owed %+v, want n0 (epoch %d) owed by n2", o, l0.Epoch)
	}
	// Recording the promotion without the fence keeps it; with it, it goes.
	must(t, a.UpdatePromotion(ctx, l2, carried))
	if load(t, b).FenceOwed == nil {
		t.Fatal("the fence owed went with a promotion record whose fence step is not done")
	}
	must(t, a.UpdatePromotion(ctx, l2, carried.With(cluster.StepFence)))
	if o := load(t, b).FenceOwed; o != nil {
		t.Fatalf("fence owed %+v after the fence step was recorded", o)
	}
}

func testPromotion(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	ev := &cluster.Evidence{Kind: cluster.EvidenceRefused, Detail: "refused"}
	p := cluster.Promotion{Kind: "failover", Lost: 7, OldPrimary: "n0", Evidence: ev, ClearRequest: true,
		Done: []cluster.PromotionStep{cluster.StepKey}}
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, &p)
	if err != nil || !ok {
		t.Fatalf("acquire with a promotion record: %v %v", ok, err)
	}
	if l1.Promotion == nil || l1.Promotion.OldPrimary != "n0" || !l1.Promotion.Has(cluster.StepKey) {
		t.Fatalf("AcquireLeader returned promotion %+v, want the record written", l1.Promotion)
	}
	snap := load(t, s2)
	if snap.Leader == nil || snap.Leader.Promotion == nil || snap.Leader.Promotion.Lost != 7 ||
		snap.Leader.Promotion.Evidence == nil || snap.Leader.Promotion.Evidence.Kind != cluster.EvidenceRefused ||
		!snap.Leader.Promotion.ClearRequest || snap.Leader.Promotion.Kind != "failover" {
		t.Fatalf("loaded leader %+v, want the promotion record", snap.Leader)
	}
	next := snap.Leader.Promotion.With(cluster.StepFence)
	must(t, s1.UpdatePromotion(ctx, l1, next))
	snap = load(t, s2)
	if snap.Leader == nil || snap.Leader.Epoch != l1.Epoch || snap.Leader.Lease != l1.Lease ||
		snap.Leader.Promotion == nil || !snap.Leader.Promotion.Has(cluster.StepFence) {
		t.Fatalf("after UpdatePromotion: leader %+v, want the same key (epoch %d, lease %d) with fence done", snap.Leader, l1.Epoch, l1.Lease)
	}
	// Another epoch's update is refused and writes nothing.
	stale := l1
	stale.Epoch--
	if err := s2.UpdatePromotion(ctx, stale, next.With(cluster.StepRecord)); err == nil {
		t.Fatal("UpdatePromotion of another epoch succeeded")
	}
	if snap := load(t, s2); snap.Leader.Promotion.Complete() {
		t.Fatal("a refused UpdatePromotion wrote the record")
	}
	// Released, the record goes with the key; the next leader without one has none.
	must(t, s1.ReleaseLeader(ctx, l1))
	if err := s1.UpdatePromotion(ctx, l1, next); err == nil {
		t.Fatal("UpdatePromotion after the key was released succeeded")
	}
	l2, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, nil)
	if err != nil || !ok {
		t.Fatalf("second acquire: %v %v", ok, err)
	}
	if snap := load(t, s1); snap.Leader == nil || snap.Leader.Epoch != l2.Epoch || snap.Leader.Promotion != nil {
		t.Fatalf("leader %+v, want epoch %d without a promotion record", snap.Leader, l2.Epoch)
	}
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func load(t *testing.T, s dcs.Store) cluster.Snapshot {
	t.Helper()
	snap, err := s.Load(ctxFor(t))
	must(t, err)
	return snap
}

// ValidConfig is a dynamic config every store accepts.
func ValidConfig() cluster.DynamicConfig {
	return cluster.DynamicConfig{
		TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second),
		MaximumLagOnFailover: 1 << 20,
	}
}

func testLeadership(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	if _, _, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("AcquireLeader without a lease: got %v, want ErrLeaseLost", err)
	}
	if err := s1.KeepAlive(ctx); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("KeepAlive without a lease: got %v, want ErrLeaseLost", err)
	}
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	must(t, s1.KeepAlive(ctx))
	if s1.LeaseID() == 0 || s1.LeaseID() == s2.LeaseID() {
		t.Fatalf("lease ids %x %x: want two distinct ones", s1.LeaseID(), s2.LeaseID())
	}
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1", ConnHost: "h1", ConnPort: 5432}, 0, nil)
	must(t, err)
	if !ok || l1.Name != "n1" || l1.Lease != s1.LeaseID() || l1.Epoch <= 0 {
		t.Fatalf("first acquire: %+v ok=%v", l1, ok)
	}
	h, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, 0, nil)
	must(t, err)
	if ok || h != l1 {
		t.Fatalf("second acquire: got %+v ok=%v, want the holder %+v", h, ok, l1)
	}
	snap := load(t, s2)
	if snap.Leader == nil || *snap.Leader != l1 || snap.Revision < int64(l1.Epoch) {
		t.Fatalf("leader %+v at revision %d, want %+v", snap.Leader, snap.Revision, l1)
	}
	ll := snap.LastLeader
	if ll == nil || ll.Name != "n1" || ll.Epoch != l1.Epoch || ll.Since.IsZero() || ll.ConnHost != "h1" || ll.ConnPort != 5432 {
		t.Fatalf("last_leader %+v, want n1 at h1:5432, epoch %d", ll, l1.Epoch)
	}
	must(t, s1.ReleaseLeader(ctx, cluster.Leader{Name: "n1", Epoch: l1.Epoch - 1}))
	if snap := load(t, s1); snap.Leader == nil || *snap.Leader != l1 {
		t.Fatalf("a stale epoch released the key: leader %+v", snap.Leader)
	}
	must(t, s1.ReleaseLeader(ctx, l1))
	if snap := load(t, s1); snap.Leader != nil || snap.LastLeader == nil || snap.LastLeader.Epoch != l1.Epoch {
		t.Fatalf("after release: leader %+v, last_leader %+v (want none, epoch %d kept)", snap.Leader, snap.LastLeader, l1.Epoch)
	}
	must(t, s1.ReleaseLeader(ctx, l1)) // not held: no error
	// A decision made before n1's leadership (after=0) no longer takes
	// the key; one made after it does.
	if _, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, 0, nil); ok || !errors.Is(err, dcs.ErrEpochChanged) {
		t.Fatalf("acquire decided on a stale snapshot: ok=%v err=%v, want ErrEpochChanged", ok, err)
	}
	l2, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, nil)
	must(t, err)
	if !ok || l2.Epoch <= l1.Epoch {
		t.Fatalf("acquire after release: %+v ok=%v, want an epoch above %d", l2, ok, l1.Epoch)
	}
	// A new lease replaces (revokes) the previous one: the key bound to it
	// goes with it.
	must(t, s2.Grant(ctx, 10*time.Second))
	if snap := load(t, s1); snap.Leader != nil {
		t.Fatalf("leader %+v still held after its lease was replaced", snap.Leader)
	}
}

func testMembers(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	if err := s1.PublishMember(ctx, cluster.Member{Name: "n1"}); err == nil {
		t.Fatal("PublishMember without a lease succeeded")
	}
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	m2 := cluster.Member{Name: "n2", Role: cluster.RolePrimary, State: cluster.StateRunning,
		Position: cluster.PGPosition(2, 0x3000060), LagBytes: -1,
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	must(t, s2.PublishMember(ctx, m2))
	must(t, s1.PublishMember(ctx, cluster.Member{Name: "n1", Role: cluster.RoleReplica, Upstream: "n2"}))
	snap := load(t, s1)
	if len(snap.Members) != 2 || snap.Members[0].Name != "n1" || snap.Members[1].Name != "n2" {
		t.Fatalf("members %+v, want n1, n2 in order", snap.Members)
	}
	if got := snap.Member("n2"); got == nil || got.Position != m2.Position || got.Role != m2.Role || !got.UpdatedAt.Equal(m2.UpdatedAt) {
		t.Fatalf("member n2 %+v, want %+v", got, m2)
	}
	must(t, s1.Grant(ctx, 10*time.Second)) // n1's record goes with its old lease
	if snap := load(t, s2); snap.Member("n1") != nil || snap.Member("n2") == nil {
		t.Fatalf("members %+v after n1's lease was replaced, want only n2", snap.Members)
	}
}

func testConfig(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	if _, err := s1.UpdateConfig(ctx, func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) { return c, nil }); !errors.Is(err, dcs.ErrNoConfig) {
		t.Fatalf("UpdateConfig before bootstrap: got %v, want ErrNoConfig", err)
	}
	bad := ValidConfig()
	bad.TTL = bad.LoopWait
	if _, err := s1.Initialize(ctx, "n1", bad); err == nil {
		t.Fatal("Initialize accepted an invalid config")
	}
	cfg1 := ValidConfig()
	got, err := s1.Initialize(ctx, "n1", cfg1)
	must(t, err)
	cfg2 := ValidConfig()
	cfg2.MaximumLagOnFailover = 999
	got2, err := s2.Initialize(ctx, "n2", cfg2)
	must(t, err)
	if got != "n1" || got2 != "n1" {
		t.Fatalf("Initialize returned %q then %q, want the claimant n1 both times", got, got2)
	}
	if snap := load(t, s2); snap.Initialized != "n1" || snap.Config == nil || *snap.Config != cfg1 {
		t.Fatalf("after initialize: %q %+v, want n1 %+v", snap.Initialized, snap.Config, cfg1)
	}
	if err := s2.SetConfig(ctx, bad); err == nil {
		t.Fatal("SetConfig accepted an invalid config")
	}
	must(t, s2.SetConfig(ctx, cfg2))
	next, err := s1.UpdateConfig(ctx, func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		c.Paused = true
		return c, nil
	})
	must(t, err)
	if want := cfg2; !next.Paused || next.MaximumLagOnFailover != want.MaximumLagOnFailover {
		t.Fatalf("UpdateConfig wrote %+v, want %+v paused", next, want)
	}
	refused := errors.New("refused")
	if _, err := s1.UpdateConfig(ctx, func(c cluster.DynamicConfig) (cluster.DynamicConfig, error) { return c, refused }); !errors.Is(err, refused) {
		t.Fatalf("UpdateConfig returned %v, want fn's error", err)
	}
	if snap := load(t, s2); snap.Config == nil || *snap.Config != next {
		t.Fatalf("config %+v, want %+v", snap.Config, next)
	}
}

// resetRefused checks that ResetBootstrap(claimant) fails with want,
// reports got as the claim it found, and leaves the claim as it was.
func resetRefused(t *testing.T, s dcs.Store, claimant string, want error, got string) {
	t.Helper()
	before := load(t, s)
	cur, err := s.ResetBootstrap(ctxFor(t), claimant)
	if !errors.Is(err, want) || cur != got {
		t.Fatalf("ResetBootstrap(%q): got %q, %v; want %q and %v", claimant, cur, err, got, want)
	}
	if after := load(t, s); after.Initialized != before.Initialized {
		t.Fatalf("refused ResetBootstrap(%q) changed the claim from %q to %q", claimant, before.Initialized, after.Initialized)
	}
}

// The bootstrap claim can be released only while nobody has ever led:
// once a leader existed (even after it released the key) it is final.
func testResetBootstrap(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	resetRefused(t, s1, "n1", dcs.ErrNotClaimed, "")
	if _, err := s1.ResetBootstrap(ctx, ""); err == nil {
		t.Fatal("ResetBootstrap of an empty claimant succeeded")
	}
	cfg1 := ValidConfig()
	if got, err := s1.Initialize(ctx, "n1", cfg1); err != nil || got != "n1" {
		t.Fatalf("Initialize: %q, %v", got, err)
	}
	resetRefused(t, s2, "n2", dcs.ErrClaimChanged, "n1")
	got, err := s2.ResetBootstrap(ctx, "n1")
	if err != nil || got != "n1" {
		t.Fatalf("ResetBootstrap(n1) of a cluster nobody led: %q, %v; want n1 released", got, err)
	}
	if snap := load(t, s1); snap.Initialized != "" || snap.Config == nil || *snap.Config != cfg1 {
		t.Fatalf("after reset: claim %q, config %+v; want no claim and the config kept", snap.Initialized, snap.Config)
	}
	resetRefused(t, s2, "n1", dcs.ErrNotClaimed, "")
	// The next claimant bootstraps with its own config.
	cfg2 := ValidConfig()
	cfg2.MaximumLagOnFailover = 999
	if got, err := s2.Initialize(ctx, "n2", cfg2); err != nil || got != "n2" {
		t.Fatalf("Initialize after reset: %q, %v; want n2 to claim", got, err)
	}
	if snap := load(t, s1); snap.Initialized != "n2" || snap.Config == nil || *snap.Config != cfg2 {
		t.Fatalf("after the new claim: %q %+v, want n2 %+v", snap.Initialized, snap.Config, cfg2)
	}
	must(t, s2.Grant(ctx, 10*time.Second))
	l, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	resetRefused(t, s1, "n2", dcs.ErrLeaderExisted, "n2")
	// A leader that existed counts as much as one that holds the key, and
	// takes precedence over a claimant mismatch.
	must(t, s2.ReleaseLeader(ctx, l))
	if snap := load(t, s1); snap.Leader != nil || snap.LastLeader == nil {
		t.Fatalf("after release: leader %+v, last_leader %+v", snap.Leader, snap.LastLeader)
	}
	resetRefused(t, s1, "n2", dcs.ErrLeaderExisted, "n2")
	resetRefused(t, s1, "n1", dcs.ErrLeaderExisted, "n2")
}

// A history entry, too, proves that someone led.
func testResetBootstrapAfterHistory(t *testing.T, s dcs.Store) {
	ctx := ctxFor(t)
	if _, err := s.Initialize(ctx, "n1", ValidConfig()); err != nil {
		t.Fatal(err)
	}
	must(t, s.AppendHistory(ctx, cluster.HistoryEntry{Epoch: 5, Kind: "failover", NewPrimary: "n1"}))
	resetRefused(t, s, "n1", dcs.ErrLeaderExisted, "n1")
}

func testHistory(t *testing.T, s dcs.Store) {
	ctx := ctxFor(t)
	for _, e := range []cluster.HistoryEntry{
		{Epoch: 100, Kind: "switchover", NewPrimary: "n1"},
		{Epoch: 5, Kind: "bootstrap", NewPrimary: "n0"},
		{Epoch: 30, Kind: "failover", NewPrimary: "n2", Steps: []cluster.Step{{Name: "promote", Duration: cluster.Duration(time.Second)}}},
		{Epoch: 5, Kind: "bootstrap", NewPrimary: "n1"},
	} {
		must(t, s.AppendHistory(ctx, e))
	}
	if err := s.AppendHistory(ctx, cluster.HistoryEntry{Epoch: 0}); err == nil {
		t.Fatal("AppendHistory accepted epoch 0")
	}
	hist, err := s.History(ctx)
	must(t, err)
	var epochs []cluster.Epoch
	for _, e := range hist {
		epochs = append(epochs, e.Epoch)
	}
	if fmt.Sprint(epochs) != "[5 30 100]" || hist[0].NewPrimary != "n1" || len(hist[1].Steps) != 1 {
		t.Fatalf("history %+v, want epochs 5 30 100, epoch 5 overwritten", hist)
	}
}

func testRequests(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	if err := s1.UpdateRequest(ctx, cluster.Request{Kind: cluster.KindSwitchover}); err == nil {
		t.Fatal("UpdateRequest with no request pending succeeded")
	}
	r := cluster.Request{Kind: cluster.KindSwitchover, From: "n1", To: "n2", RequestedBy: "test"}
	must(t, s1.CreateRequest(ctx, r))
	if err := s2.CreateRequest(ctx, r); !errors.Is(err, dcs.ErrRequestPending) {
		t.Fatalf("second CreateRequest: got %v, want ErrRequestPending", err)
	}
	r.Handoff = &cluster.Handoff{Target: "n2", Final: cluster.PGPosition(2, 0x5000028), Epoch: 7}
	must(t, s2.UpdateRequest(ctx, r))
	snap := load(t, s1)
	if snap.Request == nil || snap.Request.Handoff == nil || *snap.Request.Handoff != *r.Handoff || snap.Request.To != "n2" {
		t.Fatalf("request %+v, want %+v", snap.Request, r)
	}
	must(t, s1.ClearRequest(ctx))
	must(t, s1.ClearRequest(ctx)) // none pending: no error
	if snap := load(t, s2); snap.Request != nil {
		t.Fatalf("request %+v after ClearRequest", snap.Request)
	}
}

func testSync(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	must(t, s1.SetSync(ctx, l1, cluster.SyncState{Leader: "other", Members: []string{"n2", "n3"}, Acking: []string{"n2"}, Async: true, Gen: 4}))
	if snap := load(t, s2); snap.Sync == nil || snap.Sync.Epoch != l1.Epoch || !snap.Sync.Has("n2") || snap.Sync.Leader != "n1" ||
		!snap.Sync.Acks("n2") || snap.Sync.Acks("n3") || !snap.Sync.Async || snap.Sync.Gen != 4 {
		t.Fatalf("sync record %+v, want n1@%d with n2 and n3, n2 acking, async, gen 4", snap.Sync, l1.Epoch)
	}
	must(t, s1.ReleaseLeader(ctx, l1))
	if err := s1.SetSync(ctx, l1, cluster.SyncState{}); err == nil {
		t.Fatal("SetSync succeeded for a leader that no longer holds the key")
	}
	if snap := load(t, s2); snap.Sync == nil || !snap.Sync.Has("n2") {
		t.Fatalf("sync record %+v changed by a refused SetSync", snap.Sync)
	}
}

func testFailsafe(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	s1, s2 := s[0], s[1]
	must(t, s1.Grant(ctx, 10*time.Second))
	must(t, s2.Grant(ctx, 10*time.Second))
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	ms := []cluster.FailsafeMember{{Name: "n1", APIURL: "http://n1:8008"}, {Name: "n2", APIURL: "http://n2:8008"}}
	must(t, s1.SetFailsafe(ctx, l1, &cluster.FailsafeState{Members: ms, TTL: cluster.Duration(10 * time.Second)}))
	want := &cluster.FailsafeState{Leader: "n1", Epoch: l1.Epoch, Members: ms, TTL: cluster.Duration(10 * time.Second)}
	if snap := load(t, s2); !snap.Failsafe.Equal(want) {
		t.Fatalf("failsafe record %+v, want %+v", snap.Failsafe, want)
	}
	must(t, s1.ReleaseLeader(ctx, l1))
	if err := s1.SetFailsafe(ctx, l1, nil); err == nil {
		t.Fatal("SetFailsafe succeeded for a leader that no longer holds the key")
	}
	if snap := load(t, s2); !snap.Failsafe.Equal(want) {
		t.Fatalf("failsafe record %+v changed by a refused SetFailsafe", snap.Failsafe)
	}
	l2, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, nil)
	if err != nil || !ok {
		t.Fatalf("acquire by n2: %v %v", ok, err)
	}
	must(t, s2.SetFailsafe(ctx, l2, nil))
	if snap := load(t, s1); snap.Failsafe != nil {
		t.Fatalf("failsafe record %+v after its deletion", snap.Failsafe)
	}
}

// testStreamLosses: while a Changes watch runs, StreamLosses receives after
// another client puts a replica's record reporting its stream lost, not
// after a streaming replica's or a primary's record, and closes with its
// context.
func testStreamLosses(t *testing.T, s []dcs.Store) {
	ctx := ctxFor(t)
	must(t, s[0].Grant(ctx, 10*time.Second))
	must(t, s[1].Grant(ctx, 10*time.Second))
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	_ = s[0].Changes(wctx)
	ch := s[0].StreamLosses(wctx)
	lost := cluster.Member{Name: "n2", Role: cluster.RoleReplica, WAL: &cluster.WALStream{Host: "n1", Port: 5432}}
	streaming := cluster.Member{Name: "n2", Role: cluster.RoleReplica, Streaming: true, WAL: &cluster.WALStream{Host: "n1", Port: 5432, Connected: true}}
	primary := cluster.Member{Name: "n2", Role: cluster.RolePrimary}
	// The watch may be created asynchronously: publish until it fires.
	deadline := time.Now().Add(5 * time.Second)
	for fired := false; !fired; {
		must(t, s[1].PublishMember(ctx, lost))
		select {
		case <-ch:
			fired = true
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("no stream-loss signal within 5s of a replica's record reporting its stream lost")
			}
		}
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case <-ch:
	default:
	}
	for _, m := range []cluster.Member{streaming, primary} {
		must(t, s[1].PublishMember(ctx, m))
		select {
		case <-ch:
			t.Fatalf("stream-loss signal after a record reporting none: %+v", m)
		case <-time.After(300 * time.Millisecond):
		}
	}
	must(t, s[1].PublishMember(ctx, lost))
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatal("no stream-loss signal within 5s of the second report")
	}
	cancel()
	select {
	case _, ok := <-ch:
		for ok {
			_, ok = <-ch
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the StreamLosses channel did not close within 5s of its context's end")
	}
}
