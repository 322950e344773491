package hasim

import (
	"github.com/hamgr/hamgr/cluster"
	"strings"
	"testing"
	"time"
)

// BUG: an agent that starts after the old primary's agent died (its member
// record expired with its lease) has no address for the old primary, so its
// probe reports ha.LivenessUnknown, and ha.decideElection treats Unknown like
// Dead: it promotes while the old primary's database still accepts writes.
func TestBugFreshAgentPromotesOverLiveOldPrimary(t *testing.T) {
	t.Skip("BUG: ha.decideElection promotes on OldPrimaryAlive == LivenessUnknown although last_leader names another member; a freshly started agent never knows the old primary's address (its member record expired), so rule 3 is skipped and two writable primaries result")
	w := New(three())
	run(t, w, 10*time.Second)
	// The primary's agent dies, its database keeps running; the replicas'
	// agents restart (an upgrade, a reboot of the agent host) after the
	// old leader's lease and member record expired.
	run(t, w, 5*time.Second, Fault{Kind: KillAgent, Member: "n1"}, Fault{Kind: KillAgent, Member: "n2"}, Fault{Kind: KillAgent, Member: "n3"})
	err := w.Run(10 * time.Second)
	if err == nil {
		err = w.Step(Fault{Kind: StartAgent, Member: "n2"}, Fault{Kind: StartAgent, Member: "n3"})
	}
	if err == nil {
		err = w.Run(10 * time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	if ps := w.Primaries(); len(ps) != 1 || ps[0] != "n1" {
		t.Fatalf("primaries = %v, want n1 only\n%s", ps, strings.Join(w.Log(), "\n"))
	}
}

// BUG (liveness): a leader whose database failed to start MaxFailedStarts
// times releases the key so a replica can take over. If no replica can
// (here the only other member is tagged nofailover), the cluster stays
// leaderless for good: ha.decideNoLeader never lets the released last leader
// retry (ReleasedEpoch == last epoch, and FailedStarts/DBDownSince keep it
// Unrecoverable), even after the cause is gone and no newer epoch exists.
// Found by TestRandomFaults seed 39.
func TestBugReleasedLeaderNeverRetries(t *testing.T) {
	t.Skip("BUG: a last leader that released its epoch after failed starts never retries, even when no other member can be elected; the cluster stays leaderless until an operator acts")
	w := New(Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2", Tags: cluster.Tags{NoFailover: true}}}})
	run(t, w, 10*time.Second)
	run(t, w, 10*time.Second, Fault{Kind: FailStarts, Member: "n1", N: 2}, Fault{Kind: CrashDB, Member: "n1"})
	if w.Leader() != nil {
		t.Fatalf("n1 still holds the key %v after failed starts", w.Leader())
	}
	// The cause is gone (the injected failures are used up).
	run(t, w, 2*time.Minute, Fault{Kind: HealAll})
	expectLeader(t, w, "n1")
}
