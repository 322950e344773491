package ha

import (
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// TestTrackerObserveStreamLoss: the time of the first read that shows every
// replica's report of the loss written after the leader's record is kept
// while the leader's record stays at that revision, and dropped when it
// moves (the leader's answer), when a report is older than the leader's
// record, or when a replica still streams.
func TestTrackerObserveStreamLoss(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	lost := func(name string, rev int64) cluster.Member {
		return cluster.Member{Name: name, Role: cluster.RoleReplica, WAL: &cluster.WALStream{Host: "n1", Port: 5432}, Revision: rev}
	}
	snap := func(leaderRev int64, ms ...cluster.Member) cluster.Snapshot {
		return cluster.Snapshot{Leader: &cluster.Leader{Name: "n1", Epoch: 4, Lease: 9},
			Members: append([]cluster.Member{{Name: "n1", Role: cluster.RolePrimary, Revision: leaderRev}}, ms...)}
	}
	tr := Tracker{Self: "n2"}
	since := func(s cluster.Snapshot) time.Time { return tr.View(View{Self: "n2", Snap: s}).StreamLossSince }
	steps := []struct {
		what string
		at   time.Duration
		s    cluster.Snapshot
		want time.Duration // -1: zero
	}{
		{"both reports after the leader's record", 0, snap(40, lost("n2", 41), lost("n3", 42)), 0},
		{"republished reports, the leader's record unchanged", 300 * time.Millisecond, snap(40, lost("n2", 45), lost("n3", 46)), 0},
		{"the leader answered", 400 * time.Millisecond, snap(47, lost("n2", 45), lost("n3", 46)), -1},
		{"new reports after the answer", 500 * time.Millisecond, snap(47, lost("n2", 48), lost("n3", 49)), 500 * time.Millisecond},
		{"one report older than the leader's record", 600 * time.Millisecond, snap(50, lost("n2", 51), lost("n3", 49)), -1},
		{"a replica streams", 700 * time.Millisecond, snap(50, lost("n2", 52), cluster.Member{Name: "n3", Role: cluster.RoleReplica, Streaming: true, Revision: 53}), -1},
		{"a silence counts as a report", 800 * time.Millisecond, snap(50, lost("n2", 54), cluster.Member{Name: "n3", Role: cluster.RoleReplica, Streaming: true,
			WAL: &cluster.WALStream{Host: "n1", Port: 5432, Connected: true, SilenceSeen: true}, Revision: 55}), 800 * time.Millisecond},
	}
	for _, st := range steps {
		tr.ObserveStreamLoss(t0.Add(st.at), st.s)
		got := since(st.s)
		want := time.Time{}
		if st.want >= 0 {
			want = t0.Add(st.want)
		}
		if !got.Equal(want) {
			t.Errorf("%s: StreamLossSince %v, want %v", st.what, got, want)
		}
	}
	// A view of another leader record than the one observed shows none.
	if got := since(snap(60, lost("n2", 61), lost("n3", 62))); !got.IsZero() {
		t.Errorf("a snapshot not observed: StreamLossSince %v, want zero", got)
	}
}
