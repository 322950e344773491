package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// TestFailsafeRecordKept: with failsafe_mode on, a healthy leader writes a
// failsafe record naming every member record it sees, and nothing more
// once the store holds exactly that; turned off, it deletes its own
// record and leaves another epoch's alone.
func TestFailsafeRecordKept(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Config.FailsafeMode = true
	p := Decide(v)
	if len(p.Actions) != 1 || p.Actions[0].String() != "set-failsafe-record names=[n1,n2,n3]" {
		t.Fatalf("failsafe on, no record: %s, want the record of n1,n2,n3 written", p)
	}
	v.Snap.Failsafe = &cluster.FailsafeState{Leader: "n1", Epoch: 7, Members: cluster.FailsafeMembers(v.Snap.Members), TTL: v.Config.TTL}
	if p := Decide(v); len(p.Actions) != 0 {
		t.Errorf("failsafe on, record current: %s, want no action", p)
	}
	v.Snap.Members = v.Snap.Members[:2]
	if p := Decide(v); len(p.Actions) != 1 || p.Actions[0].String() != "set-failsafe-record names=[n1,n2]" {
		t.Errorf("n3 gone: %s, want the record rewritten without it", p)
	}
	v.Config.FailsafeMode = false
	if p := Decide(v); len(p.Actions) != 1 || p.Actions[0].String() != "set-failsafe-record delete" {
		t.Errorf("failsafe off, own record: %s, want it deleted", p)
	}
	v.Snap.Failsafe.Epoch = 5
	if p := Decide(v); len(p.Actions) != 0 {
		t.Errorf("failsafe off, another epoch's record: %s, want no action", p)
	}
}

// TestFailsafeLeaderWithoutStore: a leader that cannot reach the store
// and runs on failsafe confirmations reports ProblemFailsafeActive and
// keeps its primary; past the deadline counted from the last confirmed
// round it stops as without failsafe.
func TestFailsafeLeaderWithoutStore(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Config.FailsafeMode = true
	v.StoreOK, v.FailsafeActive = false, true
	if p := Decide(v); p.Problem != cluster.ProblemFailsafeActive || len(p.Actions) != 0 {
		t.Errorf("on failsafe: %s, want no action and problem %s", p, cluster.ProblemFailsafeActive)
	}
	v.Now = v.LastRenewSent.Add(time.Duration(v.Config.LoopWait + v.Config.RetryTimeout))
	if p := Decide(v); p.Problem != cluster.ProblemLeaseNotRenewed || len(p.Actions) != 1 || !is[Stop](p.Actions[0]) {
		t.Errorf("past the deadline: %s, want the primary stopped", p)
	}
}

// TestFailsafeElection: a member that confirmed the lost leader takes part
// in no election until its promise ends; a member the lost epoch's record
// does not name is no candidate; a member that started less than a ttl ago
// and is named waits; without a record or a promise the election is as
// before.
func TestFailsafeElection(t *testing.T) {
	v := electionView("n2", 0x5000000, 62*time.Second)
	v.ElectionOpenAt = v.Now.Add(-time.Second)
	if p := Decide(v); !promotes(p) && kinds(p) == "" {
		t.Fatalf("baseline: %s, want n2 elected", p)
	}
	base := kinds(Decide(v))

	w := v
	w.FailsafePromise = FailsafePromise{Leader: "n1", Epoch: 4, Until: v.Now.Add(time.Second)}
	p := Decide(w)
	if len(p.Actions) != 0 || p.Problem != cluster.ProblemFailsafeActive || !strings.Contains(p.Reason, "confirmed to n1 (epoch 4)") {
		t.Errorf("promised: %s, want a wait with problem %s", p, cluster.ProblemFailsafeActive)
	}
	w.Now = w.FailsafePromise.Until
	if p := Decide(w); kinds(p) != base {
		t.Errorf("promise over: %s, want %s as without failsafe", p, base)
	}

	w = v
	w.Snap.Failsafe = &cluster.FailsafeState{Leader: "n1", Epoch: 4, Members: []cluster.FailsafeMember{{Name: "n1"}, {Name: "n3"}}}
	if p := Decide(w); len(p.Actions) != 0 || !strings.Contains(p.Reason, "does not name this member") {
		t.Errorf("not in the record: %s, want no candidacy", p)
	}
	w.Snap.Failsafe.Members = append(w.Snap.Failsafe.Members, cluster.FailsafeMember{Name: "n2"})
	if p := Decide(w); kinds(p) != base {
		t.Errorf("in the record: %s, want %s", p, base)
	}
	w.Started = w.Now.Add(-time.Second)
	if p := Decide(w); len(p.Actions) != 0 || !strings.Contains(p.Reason, "started less than a ttl ago") {
		t.Errorf("named, started 1s ago: %s, want a wait", p)
	}
	// The leader's ttl, when longer than this member's, bounds the hold.
	w.Started = w.Now.Add(-40 * time.Second)
	if p := Decide(w); kinds(p) != base {
		t.Errorf("named, started 40s ago (ttl 30s): %s, want %s", p, base)
	}
	w.Snap.Failsafe.TTL = cluster.Duration(time.Minute)
	if p := Decide(w); len(p.Actions) != 0 {
		t.Errorf("named, started 40s ago, the leader's ttl 1m: %s, want a wait", p)
	}
	w.Snap.Failsafe.Epoch = 3
	if p := Decide(w); kinds(p) != base {
		t.Errorf("another epoch's record: %s, want %s", p, base)
	}
}
