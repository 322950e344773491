package lagmon

import (
	"slices"
	"testing"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

func TestLag(t *testing.T) {
	for _, c := range []struct {
		leader, pos cluster.LSN
		want        int64
	}{{100, 40, 60}, {100, 100, 0}, {100, 140, 0}, {0, 0, 0}, {100, 0, 100}} {
		if got := Lag(cluster.PGPosition(1, c.leader), cluster.PGPosition(1, c.pos)); got != c.want {
			t.Errorf("Lag(%d, %d) = %d, want %d", c.leader, c.pos, got, c.want)
		}
	}
}

// A required standby is confirmed only after it flushed a position
// measured once it was required; dropping out starts it over.
func TestSyncTracker(t *testing.T) {
	var tr SyncTracker
	rs := func(wal cluster.LSN, names []string, sbs ...db.Standby) db.ReplicationStatus {
		return db.ReplicationStatus{Current: cluster.PGPosition(0, wal), SyncNames: names, Standbys: sbs}
	}
	sync := func(name string, flush cluster.LSN) db.Standby {
		return db.Standby{Name: name, SyncState: "sync", Flushed: cluster.PGPosition(0, flush)}
	}
	steps := []struct {
		in   db.ReplicationStatus
		want []string
	}{
		// Not required yet: nothing.
		{rs(100, nil, db.Standby{Name: "n2", SyncState: "async", Flushed: cluster.PGPosition(0, 100)}), nil},
		// Required now: the position to confirm is 200.
		{rs(200, []string{"n2"}, sync("n2", 150)), nil},
		// Flushed 190 < 200: not yet.
		{rs(300, []string{"n2"}, sync("n2", 190)), nil},
		// Flushed past 200: confirmed.
		{rs(400, []string{"n2"}, sync("n2", 250)), []string{"n2"}},
		// n3 joins the setting: n2 stays confirmed, n3 starts at 500.
		{rs(500, []string{"n2", "n3"}, sync("n2", 480), sync("n3", 499)), []string{"n2"}},
		{rs(600, []string{"n2", "n3"}, sync("n3", 550), sync("n2", 590)), []string{"n2", "n3"}},
		// n2 disconnects: gone, and starts over when it returns.
		{rs(700, []string{"n2", "n3"}, sync("n3", 690)), []string{"n3"}},
		{rs(800, []string{"n2", "n3"}, sync("n2", 790), sync("n3", 790)), []string{"n3"}},
	}
	for i, s := range steps {
		if got := tr.Observe(s.in); !slices.Equal(got, s.want) {
			t.Fatalf("step %d: confirmed %v, want %v", i, got, s.want)
		}
	}
}
