package memstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/dcs/dcstest"
	"github.com/hamgr/hamgr/dcs/memstore"
)

func TestConformance(t *testing.T) {
	dcstest.Run(t, func(t *testing.T, n int) []dcs.Store {
		c := memstore.New(time.Now)
		out := make([]dcs.Store, n)
		for i := range out {
			out[i] = c.Client("member")
		}
		return out
	})
}

// Leases expire only in Expire, on the store's clock, with their keys.
func TestExpireOnTheGivenClock(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := memstore.New(func() time.Time { return now })
	a, b := c.Client("a"), c.Client("b")
	ctx := context.Background()
	for _, k := range []*memstore.Client{a, b} {
		if err := k.Grant(ctx, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if _, ok, err := a.AcquireLeader(ctx, cluster.LastLeader{Name: "a"}, 0, nil); !ok || err != nil {
		t.Fatalf("acquire: %v %v", ok, err)
	}
	if err := b.PublishMember(ctx, cluster.Member{Name: "b"}); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Second)
	if err := b.KeepAlive(ctx); err != nil {
		t.Fatal(err)
	}
	wake := c.WakeRevision()
	now = now.Add(1500 * time.Millisecond) // a's lease ran out at +3s, b's runs to +5s
	exp := c.Expire()
	if len(exp) != 1 || exp[0].Owner != a {
		t.Fatalf("expired %+v, want a's lease only", exp)
	}
	s := c.Snapshot()
	if s.Leader != nil || s.Member("b") == nil || c.WakeRevision() == wake {
		t.Fatalf("after expiry: leader %+v, members %+v, wake revision %d (was %d)", s.Leader, s.Members, c.WakeRevision(), wake)
	}
	if err := a.KeepAlive(ctx); !errors.Is(err, dcs.ErrLeaseLost) {
		t.Fatalf("KeepAlive of an expired lease: %v, want ErrLeaseLost", err)
	}
	c.RevokeAll()
	if s := c.Snapshot(); len(s.Members) != 0 || c.LeaseAlive(b.LeaseID()) {
		t.Fatalf("after RevokeAll: members %+v", s.Members)
	}
}

// A client cut off fails every call; routine member updates do not wake.
func TestUnreachableAndWake(t *testing.T) {
	c := memstore.New(time.Now)
	k := c.Client("k")
	ctx := context.Background()
	if err := k.Grant(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if err := k.PublishMember(ctx, cluster.Member{Name: "k"}); err != nil {
		t.Fatal(err)
	}
	wake := c.WakeRevision()
	if err := k.PublishMember(ctx, cluster.Member{Name: "k", State: cluster.StateRunning}); err != nil {
		t.Fatal(err)
	}
	if c.WakeRevision() != wake || c.Revision() <= wake {
		t.Fatalf("a routine member update woke watchers (wake %d → %d, revision %d)", wake, c.WakeRevision(), c.Revision())
	}
	k.SetReachable(false)
	if _, err := k.Load(ctx); !errors.Is(err, memstore.ErrUnreachable) {
		t.Fatalf("Load while cut off: %v", err)
	}
	if err := k.KeepAlive(ctx); !errors.Is(err, memstore.ErrUnreachable) {
		t.Fatalf("KeepAlive while cut off: %v", err)
	}
	k.SetReachable(true)
	if _, err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
}
