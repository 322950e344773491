package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// electionView: n1 (epoch 4) is lost; n2 (ahead) and n3 are running
// replicas that both published fresh positions.
func electionView(self string, lsn cluster.LSN, now time.Duration) View {
	cfg := cluster.DynamicConfig{TTL: cluster.Duration(30 * time.Second), LoopWait: cluster.Duration(10 * time.Second),
		RetryTimeout: cluster.Duration(10 * time.Second), PrimaryStartTimeout: cluster.Duration(20 * time.Second)}
	rep := func(name string, lsn cluster.LSN) cluster.Member {
		return cluster.Member{Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning, ConnHost: name, ConnPort: 5432,
			Position: cluster.PGPosition(1, lsn), MeasuredAfterLossOf: 4}
	}
	return View{
		Now: origin.Add(now), Self: self, Config: cfg, StoreOK: true, LeaseID: 8, LastRenewSent: origin.Add(now),
		DB:           db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RoleReplica, Position: cluster.PGPosition(1, lsn)},
		LeaderLostAt: origin.Add(60 * time.Second), OldPrimary: refused,
		Snap: cluster.Snapshot{Initialized: "n1", LastLeader: &cluster.LastLeader{Name: "n1", Epoch: 4},
			Members: []cluster.Member{rep("n2", 0x5000000), rep("n3", 0x4000000)}},
	}
}

// refused is a probe of n1 that proves it dead.
var refused = OldPrimaryProbe{Host: "n1", Port: 5432, Answer: db.AnswerRefused, Err: "connection refused"}

// kinds lists p's action kinds, comma-separated.
func kinds(p Plan) string {
	out := make([]string, 0, len(p.Actions))
	for _, a := range p.Actions {
		out = append(out, actionName(a))
	}
	return strings.Join(out, ",")
}

func promotes(p Plan) bool {
	for _, a := range p.Actions {
		if _, ok := a.(Promote); ok {
			return true
		}
	}
	return false
}

// Rule 3 needs evidence that the old primary is not writable. An agent that
// could not probe it (ha.LivenessUnknown: no address known) used to promote
// anyway; simulated in hasim.TestRegressionFreshAgentDoesNotPromoteOverLiveOldPrimary
// (two writable primaries). Unknown now blocks, for an election and for a
// manual failover alike.
func TestRegressionUnknownOldPrimaryLivenessBlocks(t *testing.T) {
	v := electionView("n2", 0x5000000, 62*time.Second)
	v.OldPrimary = OldPrimaryProbe{}
	p := Decide(v)
	if promotes(p) {
		t.Fatalf("promoted without knowing whether %s still takes writes: %s", v.Snap.LastLeader.Name, p)
	}
	if p.Problem != cluster.ProblemOldPrimaryNotProvenDead {
		t.Errorf("problem %q (reason %q), want %q", p.Problem, p.Reason, cluster.ProblemOldPrimaryNotProvenDead)
	}
	if p.Soon == 0 {
		t.Errorf("soon = 0: a blocked candidate must re-check every election tick")
	}
	// Evidence of death unblocks it.
	v.OldPrimary = refused
	if p := Decide(v); !promotes(p) {
		t.Errorf("with the old primary dead: %s, want a promotion", p)
	}
	// A manual failover overrides the ranking, not the fencing rule.
	v.OldPrimary = OldPrimaryProbe{}
	v.Snap.Request = &cluster.Request{Kind: cluster.KindFailover, To: "n2", RequestedBy: "test"}
	if p := Decide(v); promotes(p) || p.Problem != cluster.ProblemOldPrimaryNotProvenDead {
		t.Fatalf("manual failover without knowing whether n1 still takes writes: %s, want no promotion and problem %s",
			p, cluster.ProblemOldPrimaryNotProvenDead)
	}
	// With no last leader there is no old primary to check.
	v.Snap.Request = nil
	v.Snap.LastLeader = nil
	for i := range v.Snap.Members {
		v.Snap.Members[i].MeasuredAfterLossOf = 0
	}
	if p := Decide(v); !promotes(p) {
		t.Errorf("no last leader at all: %s, want a promotion", p)
	}
}

// candidate_timeout × index used to be measured from LeaderLostAt: after a
// long block (the old primary answered as writable until its agent woke up
// and fenced it) every candidate's turn had passed and the first to run a
// round won, not the best. Simulated in
// hasim.TestRegressionBestCandidateWinsAfterBlock. It is now measured from
// ElectionOpenAt, when this agent first saw the old primary not writable.
func TestRegressionWorseCandidateWaitsAfterBlock(t *testing.T) {
	// The block lifted at 199s; n3 runs its round first.
	v := electionView("n3", 0x4000000, 200*time.Second)
	if p := Decide(v); promotes(p) {
		t.Fatalf("n3 promoted with the election not open yet (ElectionOpenAt zero): %s", p)
	}
	v.ElectionOpenAt = origin.Add(199 * time.Second)
	if p := Decide(v); promotes(p) || !strings.Contains(p.Reason, "n2 is the better candidate") {
		t.Fatalf("n3 right after the block lifted: %s, want to wait for n2", p)
	}
	// candidate_timeout is 2 × loop_wait + 1s = 21s after the opening.
	v.Now = origin.Add(219 * time.Second)
	if p := Decide(v); promotes(p) {
		t.Fatalf("n3 at 20s after the opening: %s, want to wait for n2", p)
	}
	v.Now = origin.Add(220 * time.Second)
	if p := Decide(v); !promotes(p) {
		t.Fatalf("n3 at 21s after the opening: %s, want a promotion (n2 had its turn)", p)
	}
	// The best candidate does not wait for the opening.
	v = electionView("n2", 0x5000000, 200*time.Second)
	if p := Decide(v); !promotes(p) {
		t.Fatalf("n2, the best candidate: %s, want a promotion", p)
	}
}

// The design promises that when every candidate is excluded "the cluster
// says so loudly". noCandidateReason used to return NO FAILOVER CANDIDATE
// only for a member whose own record was missing.
func TestRegressionNoFailoverCandidateLoud(t *testing.T) {
	for _, self := range []string{"n2", "n3"} {
		v := electionView(self, 0x5000000, 62*time.Second)
		v.Config.MaximumLagOnFailover = 1 << 20
		v.LastLeaderPosition = cluster.PGPosition(1, 0x9000000)
		p := Decide(v)
		if promotes(p) {
			t.Fatalf("%s promoted although it lags: %s", self, p)
		}
		if p.Problem != cluster.ProblemNoFailoverCandidate || !strings.Contains(p.Reason, "n2: ") ||
			!strings.Contains(p.Reason, "n3: ") {
			t.Errorf("%s: %s does not say that the cluster has no failover candidate, naming every member", self, p)
		}
	}
	// With a candidate elsewhere, an excluded member names only its own
	// exclusion.
	v := electionView("n3", 0x4000000, 62*time.Second)
	v.Config.MaximumLagOnFailover = 1 << 20
	v.LastLeaderPosition = cluster.PGPosition(1, 0x5000000)
	if p := Decide(v); p.Problem != cluster.ProblemNone || !strings.HasPrefix(p.Reason, "not a failover candidate: ") {
		t.Errorf("n3 excluded, n2 a candidate: %s, want its own exclusion and no problem", p)
	}
}

// releasedView: n1 led epoch 4, its database would not start (two failed
// starts), so it stopped it and released the key (ReleasedEpoch 4). The
// agent's counters are as agent.round leaves them after such a release:
// FailedStarts and DBDownSince are reset only by a successful start (or an
// AcquireLeader), so the local health stays Unrecoverable. The only other
// member, n2, is tagged nofailover: nobody else can take over.
func releasedView(now time.Duration) View {
	cfg := cluster.DynamicConfig{TTL: cluster.Duration(30 * time.Second), LoopWait: cluster.Duration(10 * time.Second),
		RetryTimeout: cluster.Duration(10 * time.Second), PrimaryStartTimeout: cluster.Duration(20 * time.Second)}
	return View{
		Now: origin.Add(now), Self: "n1", Config: cfg, StoreOK: true, LeaseID: 8, LastRenewSent: origin.Add(now),
		DB:          db.Status{HasData: true, Position: cluster.PGPosition(1, 0x5000000)},
		DBDownSince: origin.Add(50 * time.Second), FailedStarts: 2, ReleasedEpoch: 4,
		LeaderLostAt: origin.Add(70 * time.Second),
		Snap: cluster.Snapshot{Initialized: "n1", LastLeader: &cluster.LastLeader{Name: "n1", Epoch: 4, ConnHost: "n1", ConnPort: 5432},
			Members: []cluster.Member{
				{Name: "n1", Role: cluster.RoleUnknown, State: cluster.StateCrashed, Position: cluster.PGPosition(1, 0x5000000)},
				{Name: "n2", Role: cluster.RoleReplica, State: cluster.StateRunning, Position: cluster.PGPosition(1, 0x5000000),
					Tags: cluster.Tags{NoFailover: true}, MeasuredAfterLossOf: 4},
			}},
	}
}

// BUG: the fix for the released leader's liveness gap (restart read-only,
// then lead again after the others' turn) starts the database only when
// the local health is Down. A member that released its epoch did so because
// its health was Unrecoverable (MaxFailedStarts failed starts, or
// primary_start_timeout since DBDownSince), and nothing resets those
// counters while its database stays down, so its health stays Unrecoverable
// and Decide keeps answering "may not rejoin until a new leader exists":
// the cluster stays leaderless for good although the cause is gone.
// Simulated in hasim.TestBugReleasedLeaderNeverRetries and
// hasim.TestRandomFaults seed 39.
func TestBugReleasedLeaderWithUnrecoverableHealthNeverRetries(t *testing.T) {
	v := releasedView(100 * time.Second)
	p := Decide(v)
	if len(p.Actions) != 1 || p.Actions[0] != Action(StartReplica{}) {
		t.Fatalf("released last leader with its database down (unrecoverable by the counters): %s, want [start-replica]", p)
	}
}

// The rest of the released leader's way back, with health as Decide sees
// it once the read-only start succeeded.
func TestRegressionReleasedLeaderLeadsAgain(t *testing.T) {
	v := releasedView(100 * time.Second)
	// The counters as they are after a successful read-only start.
	v.FailedStarts, v.DBDownSince = 0, time.Time{}
	p := Decide(v)
	if len(p.Actions) != 1 || p.Actions[0] != Action(StartReplica{}) {
		t.Fatalf("released last leader, database down: %s, want [start-replica] with no upstream", p)
	}
	v.DB = db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RoleReplica,
		Position: cluster.PGPosition(1, 0x5000000)}
	// freshWait (11s) + candidateTimeout (21s) = 32s after LeaderLostAt (70s).
	v.Now = origin.Add(101 * time.Second)
	if p := Decide(v); promotes(p) || !strings.Contains(p.Reason, "giving the other members their turn first") {
		t.Fatalf("before the others' turn ended: %s, want to wait", p)
	}
	v.Now = origin.Add(102 * time.Second)
	p = Decide(v)
	if got := kinds(p); got != "acquire-leader,promote,publish,record-failover" { // no slots: v.Engine is zero
		t.Fatalf("after the others' turn: %s, want the promotion of its own replica", p)
	}
	// Tagged nofailover: it never leads on its own.
	v.Tags.NoFailover = true
	if p := Decide(v); promotes(p) {
		t.Fatalf("nofailover released leader promoted: %s", p)
	}
}

// BUG: a member whose agent has just started publishes its first record
// with state "unknown" (it has not decided yet; its role and a position
// measured after the loss are there). election.Rank excludes it as "not a
// running replica", and the freshness wait skips it because it waits only
// for members in state running; so a worse candidate promotes at once
// instead of waiting (bounded by freshWait) for the better one to finish its
// first round. Simulated in hasim.TestBugFreshAgentsRaceWorseCandidateWins:
// n2's extra WAL is lost.
func TestBugElectionIgnoresUndecidedMember(t *testing.T) {
	v := electionView("n3", 0x4000000, 61*time.Second)
	v.Snap.Members[0].State = cluster.StateUnknown // n2, 16 MiB ahead, agent just started
	if p := Decide(v); promotes(p) {
		t.Fatalf("n3 promoted 1s after the loss while n2 (ahead) has not decided yet: %s", p)
	}
}

// BUG (liveness): the last leader's agent fenced its database (store
// unreachable past the fence deadline) and the key expired. When the store is
// back, no newer epoch exists and its data is intact, so it may take the key
// back ("last leader restarting with no newer epoch"), but only if the health
// is Down: the agent counts the database down since the fence, so after
// primary_start_timeout the health is Unrecoverable (with no failed start at
// all) and it waits "until a new leader exists" for good when no other
// member can be elected. Simulated in
// hasim.TestBugFencedLeaderNeverTakesTheKeyBack.
func TestBugFencedLastLeaderNeverTakesTheKeyBack(t *testing.T) {
	v := releasedView(100 * time.Second)
	v.ReleasedEpoch, v.FailedStarts = 0, 0 // fenced, not released: no failed start
	p := Decide(v)
	if len(p.Actions) != 1 || !is[AcquireLeader](p.Actions[0]) {
		t.Fatalf("last leader, database stopped by the fence 50s ago, no newer epoch: %s, want [acquire-leader]", p)
	}
}

// Issue 7, point 4: etcd came back having dropped every lease, with every
// member record. n3 published again first and saw only itself: it won an
// election the old primary n1 (stopped, holding the most WAL) would have
// taken back (integration.TestEtcdReturnRevokingEveryLeaseNoNeedlessFailover).
// A candidate that lost its own lease with the leader's now waits, bounded,
// for every member seen before the loss; after a crash of the leader alone
// (its own lease intact) it does not wait for the old primary's record.
func TestRegressionStoreDroppedEveryLeaseWaitsForEveryRecord(t *testing.T) {
	v := electionView("n3", 0x4000000, 61*time.Second)
	v.ElectionOpenAt = v.Now
	v.Snap.Members = v.Snap.Members[1:] // only n3's record is back
	v.Peers = []string{"n1", "n2", "n3"}
	v.LeaseLostAt = v.LeaderLostAt
	p := Decide(v)
	if promotes(p) || !strings.Contains(p.Reason, "waiting for n1 to publish its record again") {
		t.Fatalf("the store dropped every lease and only n3's record is back: %s, want a wait for n1", p)
	}
	// Bounded: after freshWait plus a candidate turn it goes ahead.
	late := v
	late.Now = v.LeaderLostAt.Add(freshWait(v.Config) + candidateTimeout(v.Config))
	late.ElectionOpenAt = v.LeaderLostAt
	if p := Decide(late); !promotes(p) {
		t.Fatalf("n1 never came back: %s, want n3 to promote once the wait is over", p)
	}
	// The leader crashed alone: this candidate's lease is intact.
	crash := v
	crash.LeaseLostAt = time.Time{}
	if p := Decide(crash); !promotes(p) {
		t.Fatalf("only the leader's lease expired: %s, want no wait for its record", p)
	}
	// n1's record back, stopped, with more WAL: it takes its key back
	// first, its turn counted from its return.
	back := v
	back.Snap.Members = append([]cluster.Member{{Name: "n1", Role: cluster.RoleUnknown, State: cluster.StateStarting,
		Position: cluster.PGPosition(1, 0x6000000), MeasuredAfterLossOf: 4}}, electionView("n2", 0, 0).Snap.Members...)
	back.Now = v.LeaderLostAt.Add(freshWait(v.Config) + time.Second)
	back.ElectionOpenAt = v.LeaderLostAt
	back.LastLeaderFreshAt = back.Now
	if p := Decide(back); promotes(p) || !strings.Contains(p.Reason, "takes its key back first") {
		t.Fatalf("n1 is back with the most WAL: %s, want n3 to let it take its key back", p)
	}
}

// BUG (liveness, hasim seed 3550 of TestRandomFaults): with no leader, a
// replica whose injected start failures had used up MaxFailedStarts was
// Unrecoverable and planned nothing ("no leader; database not ready") for
// good, after the faults had healed; the only other member with data was
// tagged nofailover, so the cluster never had a leader again. It now keeps
// retrying the read-only start, paced by the back-off.
func TestBugUnrecoverableReplicaWithoutLeaderNeverRetries(t *testing.T) {
	v := electionView("n3", 0x4000000, 100*time.Second)
	v.DB = db.Status{HasData: true, Position: cluster.PGPosition(1, 0x4000000)}
	v.FailedStarts = 3
	v.DBDownSince = origin.Add(50 * time.Second)
	p := Decide(v)
	if len(p.Actions) != 1 || !is[StartReplica](p.Actions[0]) {
		t.Fatalf("stopped replica, no leader, starts failed: %s, want [start-replica]", p)
	}
}

// Regression (3-member etcd quorum loss, integration
// TestEtcdQuorumLossOnThreeMembersIsSafe; hasim
// TestStoreReturnKeepingLeasesAfterLongOutageNoNeedlessFailover): etcd
// lost its quorum for longer than primary_start_timeout, the leader's fence
// stopped its database, and etcd came back with the leader's lease alive
// (a new etcd leader extends every lease). The down clock had run through
// the outage, when the agent could not start its database, so the leader
// found its health Unrecoverable with 0 failed starts and released the key:
// a needless failover. The clock now pauses while the store is out.
func TestRegressionStoreOutageDoesNotCountAgainstPrimaryStartTimeout(t *testing.T) {
	tr := Tracker{Self: "n1"}
	down := db.Status{HasData: true, WasPrimary: true, Position: cluster.PGPosition(1, 0x5000000)}
	at := func(s int) time.Time { return origin.Add(time.Duration(s) * time.Second) }

	// Down at 10s, store lost at 12s, back at 40s: 2s of the clock ran.
	tr.ObserveDB(at(10), down, cluster.Snapshot{})
	for s := 12; s < 40; s += 2 {
		tr.StoreUnreachable(at(s))
		tr.ObserveDB(at(s), down, cluster.Snapshot{})
	}
	tr.StoreReachable(at(40))
	tr.ObserveDB(at(40), down, cluster.Snapshot{})
	if want := at(38); !tr.DownSince.Equal(want) {
		t.Fatalf("down clock after the outage starts at %s, want %s (2s counted before the outage)", tr.DownSince.Sub(origin), want.Sub(origin))
	}

	// The decision: holding the key on its lease, database down 2s of a
	// 20s primary_start_timeout: restart it in place.
	v := releasedView(40 * time.Second)
	v.ReleasedEpoch, v.LeaderLostAt = 0, time.Time{}
	v.DB = down
	v.Snap.Leader = &cluster.Leader{Name: "n1", Epoch: 4, Lease: v.LeaseID}
	v = tr.View(v)
	if p := Decide(v); len(p.Actions) != 1 || !is[StartPrimary](p.Actions[0]) {
		t.Fatalf("leader after the store outage, database stopped by its fence: %s, want [start-primary]", p)
	}

	// Down first seen during the outage (the fence stopped it): the clock
	// starts when the store is back.
	tr = Tracker{Self: "n1"}
	tr.StoreUnreachable(at(12))
	tr.ObserveDB(at(16), down, cluster.Snapshot{})
	tr.StoreReachable(at(40))
	if !tr.DownSince.Equal(at(40)) || !tr.StoreLostAt.IsZero() {
		t.Fatalf("down since %s, store lost at %v; want 40s and none", tr.DownSince.Sub(origin), tr.StoreLostAt)
	}
}
