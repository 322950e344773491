package integration

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// semiSyncFailovers is how many node crashes TestMariaDBSemiSyncFailovers
// runs (HAMGR_SEMISYNC_FAILOVERS overrides it).
func semiSyncFailovers(t *testing.T) int {
	if s := os.Getenv("HAMGR_SEMISYNC_FAILOVERS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("HAMGR_SEMISYNC_FAILOVERS=%q: want a positive number", s)
		}
		return n
	}
	return 20
}

// waitSemiSync waits until the leader's server waits for an
// acknowledgement, its record promises it and no member is about to be
// added: the record of the leader's epoch is not asynchronous, every
// member it asks to acknowledge reports it does, streaming from the
// leader, and in strict every replica streaming from the leader is asked.
// (A member no longer asked may stay listed; the record only shrinks
// then, which keeps a member promoted from it listed in the one
// returned.) It returns that record.
func waitSemiSync(t *testing.T, c *localcluster.Cluster, within time.Duration, mode cluster.SyncMode) cluster.SyncState {
	t.Helper()
	var last string
	var rec cluster.SyncState
	err := localcluster.WaitFor(ctxFor(t, within), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			last = fmt.Sprintf("no leader (%v)", err)
			return false
		}
		if why := semiSyncPending(s, mode); why != "" {
			last = why
			return false
		}
		rec = *s.Sync
		return true
	})
	if err != nil {
		t.Fatalf("semi-synchronous replication not in effect: %v (last: %s)", err, last)
	}
	return rec
}

// semiSyncPending says what keeps s's record from being settled and
// synchronous ("" when nothing does).
func semiSyncPending(s cluster.Snapshot, mode cluster.SyncMode) string {
	r := s.Sync
	if r == nil || r.Epoch != s.Leader.Epoch || r.Async || len(r.Acking) == 0 {
		return fmt.Sprintf("record %+v at epoch %d", r, s.Leader.Epoch)
	}
	for _, m := range s.Members {
		acks := m.Ack != nil && m.Ack.State == cluster.AckOn && m.Streaming && m.Upstream == s.Leader.Name
		switch {
		case r.Acks(m.Name) && !acks:
			return fmt.Sprintf("record %+v: %s does not acknowledge yet", *r, m.Name)
		case mode == cluster.SyncStrict && !r.Acks(m.Name) && m.Streaming && m.Upstream == s.Leader.Name:
			return fmt.Sprintf("record %+v: %s streams but is not asked yet", *r, m.Name)
		}
	}
	return ""
}

// With synchronous_mode on, a MariaDB cluster runs semi-synchronous
// replication (AFTER_SYNC; the replica the record asks acknowledges), and
// 20 node crashes of the primary (agent and mysqld killed at once) under
// a write load lose no acknowledged write: each time the election hears
// every member that may have acknowledged and promotes the most advanced,
// and the crashed node comes back as a fresh replica (re-cloned) for the
// next round. The @@read_only monitor never sees two writable members.
func TestMariaDBSemiSyncFailoversLoseNothing(t *testing.T) {
	mariadbSemiSyncFailovers(t, cluster.SyncOn, semiSyncFailovers(t))
}

// The same in synchronous_mode strict, five times: every live replica
// acknowledges (each follows a new primary only once asked, with its
// replica side on), so writes resume after each failover and no commit
// is acknowledged without a copy.
func TestMariaDBSemiSyncStrictFailovers(t *testing.T) {
	mariadbSemiSyncFailovers(t, cluster.SyncStrict, 5)
}

func mariadbSemiSyncFailovers(t *testing.T, mode cluster.SyncMode, rounds int) {
	c := startMariaDBCluster(t)
	first, _ := leader(t, c)
	if _, err := newOperator(c).SetConfig(ctxFor(t, 10*time.Second), "synchronous_mode", string(mode)); err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(localcluster.FastTiming.TTL)
	waitSemiSync(t, c, ttl+30*time.Second, mode)
	user, pw := mariadbAppUser(t, c, first)
	monitorMariaDB(t, c)
	w, o := mariadbWriter(t, c, c.Hosts(), user, pw, "semisync_load")
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	var promoted []time.Duration
	for i := range rounds {
		waitSemiSync(t, c, ttl+60*time.Second, mode)
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
			t.Fatalf("round %d: writes do not flow: %v", i+1, err)
		}
		// The record the election will read: settled again just before
		// the kill (nothing changed it since, unless a member failed).
		rec := waitSemiSync(t, c, ttl+60*time.Second, mode)
		old, lead := leader(t, c)
		t0 := time.Now()
		old.KillNode()
		tl, err := c.ObservePromotion(ctxFor(t, ttl+60*time.Second), old.Name, t0)
		if err != nil {
			t.Fatalf("round %d: %v", i+1, err)
		}
		if tl.Epoch <= lead.Epoch || !rec.Has(tl.New) {
			t.Errorf("round %d: %s promoted at epoch %d; want a member of the record %v above epoch %d", i+1, tl.New, tl.Epoch, rec.Members, lead.Epoch)
		}
		promoted = append(promoted, tl.Promoted)
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
			t.Fatalf("round %d: writes did not resume on %s: %v", i+1, tl.New, err)
		}
		if err := old.WipeData(); err != nil {
			t.Fatal(err)
		}
		if err := old.StartAgent(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctxFor(t, 2*time.Minute)); err != nil {
			t.Fatalf("round %d: %s does not come back as a replica: %v", i+1, old.Name, err)
		}
		t.Logf("round %d: %s crashed, %s promoted after %v (epoch %d), %d writes acknowledged so far",
			i+1, old.Name, tl.New, tl.Promoted.Round(time.Millisecond), tl.Epoch, w.Acked())
	}
	res := w.Stop()
	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost over %d semi-synchronous failovers: %v", len(missing), res.Acked, len(promoted), missing)
	}
	t.Logf("%d failovers, %d acknowledged writes, none lost; promoted after %v", len(promoted), res.Acked, promoted)
}
