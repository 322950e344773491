package election

import (
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
)

// rep is a running replica measured after the loss of epoch 4.
func rep(name string, tl uint32, lsn cluster.LSN, prio int) cluster.Member {
	return cluster.Member{
		Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning,
		Position: cluster.PGPosition(tl, lsn), Tags: cluster.Tags{Priority: prio},
		MeasuredAfterLossOf: 4,
	}
}

func with(m cluster.Member, f func(*cluster.Member)) cluster.Member { f(&m); return m }

func names(ms []cluster.Member) string {
	var s []string
	for _, m := range ms {
		s = append(s, m.Name)
	}
	return strings.Join(s, ",")
}

func excluded(es []Exclusion) string {
	var s []string
	for _, e := range es {
		s = append(s, e.Name+": "+e.Reason)
	}
	return strings.Join(s, "; ")
}

func TestRank(t *testing.T) {
	base := Options{LostEpoch: 4, OldPrimary: "n1"}
	tests := []struct {
		name       string
		members    []cluster.Member
		opts       Options
		candidates string
		excluded   string // substrings, "; "-joined in name order; "" = none
	}{
		{name: "higher timeline beats higher LSN",
			members:    []cluster.Member{rep("a", 1, 900, 0), rep("b", 2, 100, 0)},
			opts:       base,
			candidates: "b,a"},
		{name: "higher LSN on the same timeline",
			members:    []cluster.Member{rep("a", 1, 100, 5), rep("b", 1, 200, 0)},
			opts:       base,
			candidates: "b,a"},
		{name: "priority breaks an LSN tie",
			members:    []cluster.Member{rep("a", 1, 100, 0), rep("b", 1, 100, 3), rep("c", 1, 100, 1)},
			opts:       base,
			candidates: "b,c,a"},
		{name: "name breaks a full tie",
			members:    []cluster.Member{rep("c", 1, 100, 0), rep("a", 1, 100, 0), rep("b", 1, 100, 0)},
			opts:       base,
			candidates: "a,b,c"},
		{name: "old primary is never a candidate",
			members:    []cluster.Member{with(rep("n1", 1, 999, 9), func(m *cluster.Member) { m.Role = cluster.RolePrimary }), rep("a", 1, 1, 0)},
			opts:       base,
			candidates: "a",
			excluded:   "n1: it is the primary that was lost"},
		{name: "old primary excluded even as a replica",
			members:    []cluster.Member{rep("n1", 1, 999, 9), rep("a", 1, 1, 0)},
			opts:       base,
			candidates: "a",
			excluded:   "n1: it is the primary that was lost"},
		{name: "nofailover",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.Tags.NoFailover = true }), rep("b", 1, 1, 0)},
			opts:       base,
			candidates: "b",
			excluded:   "a: tagged nofailover"},
		{name: "not a replica",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.Role = cluster.RoleUnknown }), rep("b", 1, 1, 0)},
			opts:       base,
			candidates: "b",
			excluded:   "a: not a running replica (role unknown, state running)"},
		{name: "not running",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.State = cluster.StateCrashed }), rep("b", 1, 1, 0)},
			opts:       base,
			candidates: "b",
			excluded:   "a: not a running replica (role replica, state crashed)"},
		{name: "a fresh agent's undecided replica still counts",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.State = cluster.StateUnknown }), rep("b", 1, 1, 0)},
			opts:       base,
			candidates: "a,b"},
		{name: "stale measurement",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.MeasuredAfterLossOf = 3 }), rep("b", 1, 1, 0)},
			opts:       base,
			candidates: "b",
			excluded:   "a: no position measured since epoch 4 was lost"},
		{name: "measurement outside any election",
			members:    []cluster.Member{with(rep("a", 1, 999, 0), func(m *cluster.Member) { m.MeasuredAfterLossOf = 0 })},
			opts:       base,
			candidates: "",
			excluded:   "a: no position measured since epoch 4 was lost"},
		{name: "max lag against the reference LSN",
			members:    []cluster.Member{rep("a", 1, 1000, 0), rep("b", 1, 950, 0)},
			opts:       Options{LostEpoch: 4, OldPrimary: "n1", MaximumLag: 100, Reference: cluster.PGPosition(0, 1080)},
			candidates: "a",
			excluded:   "b: 130 bytes behind 0/438, more than maximum_lag_on_failover (100)"},
		{name: "max lag excludes everyone against the reference",
			members:    []cluster.Member{rep("a", 1, 1000, 0), rep("b", 1, 950, 0)},
			opts:       Options{LostEpoch: 4, OldPrimary: "n1", MaximumLag: 10, Reference: cluster.PGPosition(0, 2000)},
			candidates: "",
			excluded:   "a: 1000 bytes behind 0/7D0, more than maximum_lag_on_failover (10); b: 1050 bytes behind"},
		{name: "max lag against the best candidate when it is ahead of the reference",
			members:    []cluster.Member{rep("a", 1, 5000, 0), rep("b", 1, 4800, 0), rep("c", 1, 4950, 0)},
			opts:       Options{LostEpoch: 4, OldPrimary: "n1", MaximumLag: 100, Reference: cluster.PGPosition(0, 1000)},
			candidates: "a,c",
			excluded:   "b: 200 bytes behind 0/1388"},
		{name: "lag exactly at the limit is allowed",
			members:    []cluster.Member{rep("a", 1, 1000, 0), rep("b", 1, 900, 0)},
			opts:       Options{LostEpoch: 4, MaximumLag: 100},
			candidates: "a,b"},
		{name: "no limit when maximum lag is zero",
			members:    []cluster.Member{rep("a", 1, 10, 0)},
			opts:       Options{LostEpoch: 4, Reference: cluster.PGPosition(0, 1<<40)},
			candidates: "a"},
		{name: "exclusions sorted by name",
			members: []cluster.Member{
				with(rep("z", 1, 1, 0), func(m *cluster.Member) { m.Tags.NoFailover = true }),
				rep("n1", 1, 1, 0),
				with(rep("b", 1, 1, 0), func(m *cluster.Member) { m.MeasuredAfterLossOf = 1 }),
			},
			opts:       base,
			candidates: "",
			excluded:   "b: no position measured; n1: it is the primary that was lost; z: tagged nofailover"},
		{name: "no members", opts: base},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Rank(tt.members, tt.opts)
			if got := names(res.Candidates); got != tt.candidates {
				t.Errorf("candidates = %q, want %q (excluded: %s)", got, tt.candidates, excluded(res.Excluded))
			}
			got := excluded(res.Excluded)
			if tt.excluded == "" && got != "" {
				t.Errorf("excluded = %q, want none", got)
			}
			want := strings.Split(tt.excluded, "; ")
			parts := strings.Split(got, "; ")
			if tt.excluded != "" {
				if len(parts) != len(want) {
					t.Fatalf("excluded = %q, want %d entries like %q", got, len(want), tt.excluded)
				}
				for i := range want {
					if !strings.HasPrefix(parts[i], want[i]) {
						t.Errorf("exclusion %d = %q, want prefix %q", i, parts[i], want[i])
					}
				}
			}
			// Every member is either a candidate or excluded, never both.
			if n := len(res.Candidates) + len(res.Excluded); n != len(tt.members) {
				t.Errorf("%d candidates + excluded, want %d members", n, len(tt.members))
			}
		})
	}
}

func TestResultBestAndIndex(t *testing.T) {
	res := Rank([]cluster.Member{rep("a", 1, 1, 0), rep("b", 1, 2, 0)}, Options{LostEpoch: 4})
	if best, ok := res.Best(); !ok || best.Name != "b" {
		t.Errorf("Best = %v, %v; want b", best.Name, ok)
	}
	for name, want := range map[string]int{"b": 0, "a": 1, "zz": -1} {
		if got := res.Index(name); got != want {
			t.Errorf("Index(%s) = %d, want %d", name, got, want)
		}
	}
	if _, ok := (Result{}).Best(); ok {
		t.Error("Best of an empty result reports a candidate")
	}
}

// TestRankDeterministic: every agent must compute the same order whatever
// order it read the records in.
func TestRankDeterministic(t *testing.T) {
	ms := []cluster.Member{rep("a", 1, 100, 0), rep("b", 1, 100, 0), rep("c", 2, 50, 0), rep("d", 1, 100, 1)}
	want := names(Rank(ms, Options{LostEpoch: 4}).Candidates)
	rev := []cluster.Member{ms[3], ms[2], ms[1], ms[0]}
	if got := names(Rank(rev, Options{LostEpoch: 4}).Candidates); got != want {
		t.Errorf("order depends on input order: %s vs %s", got, want)
	}
	if want != "c,d,a,b" {
		t.Errorf("order = %s, want c,d,a,b", want)
	}
}

// mdb is a running MariaDB replica with GTID state state, measured after
// the loss of epoch 4.
func mdb(t *testing.T, name, state string) cluster.Member {
	t.Helper()
	p, err := cluster.MariaDBPosition(state)
	if err != nil {
		t.Fatal(err)
	}
	return cluster.Member{Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning, Position: p, MeasuredAfterLossOf: 4}
}

func errants(es []cluster.Errant) string {
	var s []string
	for _, e := range es {
		s = append(s, e.String())
	}
	return strings.Join(s, "; ")
}

// TestRankErrant: GTID positions that are not ordered. The member that
// holds every transaction of the old primary's last known position wins
// over one that counts more transactions but lacks some of the old
// primary's (it has errant ones of its own), and the result names what
// each held beyond the other.
func TestRankErrant(t *testing.T) {
	ref := mdb(t, "ref", "0-1-100").Position
	tests := []struct {
		name       string
		members    []cluster.Member
		ref        cluster.Position
		candidates string
		errant     string
	}{
		{name: "errant transactions lose to the old primary's history",
			// b counts 110 transactions (90 + 20) against a's 100, but
			// lacks 0-1-91..100 and has 5-3-1..20 the old primary never had.
			members:    []cluster.Member{mdb(t, "b", "0-1-90,5-3-20"), mdb(t, "a", "0-1-100")},
			ref:        ref,
			candidates: "a,b",
			errant:     "b holds 5-3-20 that a lacks"},
		{name: "without a reference the count decides and the errant side is named",
			members:    []cluster.Member{mdb(t, "b", "0-1-90,5-3-20"), mdb(t, "a", "0-1-100")},
			candidates: "b,a",
			errant:     "a holds 0-1-100 that b lacks"},
		{name: "the winner's own errant transactions against the old primary",
			// Nobody holds the reference; a counts most and lacks 0-1-100.
			members:    []cluster.Member{mdb(t, "b", "0-1-98"), mdb(t, "a", "0-1-99,5-2-3")},
			ref:        ref,
			candidates: "a,b",
			errant:     "a holds 5-2-3 that n1 lacks"},
		{name: "a superset of the reference is ordered, not errant",
			members:    []cluster.Member{mdb(t, "b", "0-1-95"), mdb(t, "a", "0-1-100,5-2-3")},
			ref:        ref,
			candidates: "a,b"},
		{name: "ordered positions: the most advanced wins, nothing errant",
			members:    []cluster.Member{mdb(t, "a", "0-1-98"), mdb(t, "b", "0-1-100"), mdb(t, "c", "0-1-99")},
			ref:        ref,
			candidates: "b,c,a"},
		{name: "nobody holds the reference: the count decides",
			members:    []cluster.Member{mdb(t, "a", "0-1-98"), mdb(t, "b", "0-1-99")},
			ref:        ref,
			candidates: "b,a"},
		{name: "both hold the reference but diverge beyond it",
			members:    []cluster.Member{mdb(t, "a", "0-1-100,6-2-1"), mdb(t, "b", "0-1-100,7-3-4")},
			ref:        ref,
			candidates: "b,a",
			errant:     "a holds 6-2-1 that b lacks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := Rank(tt.members, Options{LostEpoch: 4, OldPrimary: "n1", Reference: tt.ref})
			if got := names(res.Candidates); got != tt.candidates {
				t.Errorf("candidates = %q, want %q", got, tt.candidates)
			}
			if got := errants(res.Errant); got != tt.errant {
				t.Errorf("errant = %q, want %q", got, tt.errant)
			}
			if d := res.Diverged(); (d == "") != (tt.errant == "") || tt.errant != "" && !strings.Contains(d, tt.errant) {
				t.Errorf("Diverged() = %q, want it to say %q", d, tt.errant)
			}
		})
	}
}

// TestRankReferenceLeavesTimelinesAlone: on PostgreSQL the old primary's
// last known position does not reorder candidates (the timeline order
// decides, as before), and nothing is named errant.
func TestRankReferenceLeavesTimelinesAlone(t *testing.T) {
	res := Rank([]cluster.Member{rep("a", 1, 900, 0), rep("b", 2, 100, 0)},
		Options{LostEpoch: 4, OldPrimary: "n1", Reference: cluster.PGPosition(1, 500)})
	if got := names(res.Candidates); got != "b,a" {
		t.Errorf("candidates = %q, want b,a", got)
	}
	if len(res.Errant) != 0 {
		t.Errorf("errant = %v, want none", res.Errant)
	}
}
