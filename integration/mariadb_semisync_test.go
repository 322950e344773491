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
// acknowledgement and its record promises it: the record of the leader's
// epoch is not asynchronous and a member it asks to acknowledge reports it
// does, streaming from the leader. It returns that record.
func waitSemiSync(t *testing.T, c *localcluster.Cluster, within time.Duration) cluster.SyncState {
	t.Helper()
	var last string
	var rec cluster.SyncState
	err := localcluster.WaitFor(ctxFor(t, within), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			last = fmt.Sprintf("no leader (%v)", err)
			return false
		}
		if s.Sync == nil || s.Sync.Epoch != s.Leader.Epoch || s.Sync.Async {
			last = fmt.Sprintf("record %+v at epoch %d", s.Sync, s.Leader.Epoch)
			return false
		}
		for _, name := range s.Sync.Acking {
			if m := s.Member(name); m != nil && m.Ack != nil && m.Ack.State == cluster.AckOn && m.Streaming && m.Upstream == s.Leader.Name {
				rec = *s.Sync
				return true
			}
		}
		last = fmt.Sprintf("record %+v: no member acknowledging", *s.Sync)
		return false
	})
	if err != nil {
		t.Fatalf("semi-synchronous replication not in effect: %v (last: %s)", err, last)
	}
	return rec
}

// With synchronous_mode on, a MariaDB cluster runs semi-synchronous
// replication (AFTER_SYNC; the replica the record asks acknowledges), and
// 20 node crashes of the primary (agent and mysqld killed at once) under
// a write load lose no acknowledged write: each time the election hears
// every member that may have acknowledged and promotes the most advanced,
// and the crashed node comes back as a fresh replica (re-cloned) for the
// next round. The @@read_only monitor never sees two writable members.
func TestMariaDBSemiSyncFailoversLoseNothing(t *testing.T) {
	c := startMariaDBCluster(t)
	first, _ := leader(t, c)
	if _, err := newOperator(c).SetConfig(ctxFor(t, 10*time.Second), "synchronous_mode", "on"); err != nil {
		t.Fatal(err)
	}
	ttl := time.Duration(localcluster.FastTiming.TTL)
	waitSemiSync(t, c, ttl+30*time.Second)
	user, pw := mariadbAppUser(t, c, first)
	monitorMariaDB(t, c)
	w, o := mariadbWriter(t, c, c.Hosts(), user, pw, "semisync_load")
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	var promoted []time.Duration
	for i := range semiSyncFailovers(t) {
		rec := waitSemiSync(t, c, ttl+60*time.Second)
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
			t.Fatalf("round %d: writes do not flow: %v", i+1, err)
		}
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
