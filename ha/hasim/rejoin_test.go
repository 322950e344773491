package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// threeRejoin is three() with n1's use_pg_rewind and
// reclone_on_rewind_failure set as given.
func threeRejoin(rewind, reclone bool) Config {
	cfg := three()
	cfg.Members[0].UseRewind, cfg.Members[0].AllowReclone = rewind, reclone
	return cfg
}

// failOverFromN1 runs a healthy cluster, then kills n1's node: n2 (lag
// 0x200 against n3's 0x800) takes over, and n1's unreplicated WAL has
// diverged from n2's new timeline.
func failOverFromN1(t *testing.T, w *World) {
	t.Helper()
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
}

// expectFollows checks that name's database streams from upstream.
func expectFollows(t *testing.T, w *World, name, upstream string) {
	t.Helper()
	if st := w.Status(name); !st.DB.Streaming || st.DB.UpstreamHost != upstream {
		t.Fatalf("%s does not follow %s: state %s (%s), db %+v\n%s\n%s", name, upstream, st.State, st.Reason, st.DB,
			w.Summary(), strings.Join(w.Log(), "\n"))
	}
}

// A diverged former primary with use_pg_rewind comes back as a replica of
// the new leader, rewound once.
func TestRewindRejoinsFormerPrimary(t *testing.T) {
	w := New(threeRejoin(true, false))
	failOverFromN1(t, w)
	run(t, w, 20*time.Second, Fault{Kind: StartNode, Member: "n1"})
	expectLeader(t, w, "n2")
	expectFollows(t, w, "n1", "n2")
	if len(w.Rewinds) != 1 || !strings.HasPrefix(w.Rewinds[0], "n1<-n2@") || strings.HasSuffix(w.Rewinds[0], noRewindRequired) {
		t.Errorf("rewinds = %v, want n1 rewound from n2 once", w.Rewinds)
	}
	if len(w.Reclones) != 0 || len(w.RewindFailures) != 0 {
		t.Errorf("re-clones %v, failed rewinds %v; want none", w.Reclones, w.RewindFailures)
	}
}

// Without pg_rewind but with reclone_on_rewind_failure, the diverged former
// primary deletes its data and clones the new leader.
func TestRecloneRejoinsFormerPrimary(t *testing.T) {
	w := New(threeRejoin(false, true))
	failOverFromN1(t, w)
	run(t, w, 20*time.Second, Fault{Kind: StartNode, Member: "n1"})
	expectLeader(t, w, "n2")
	expectFollows(t, w, "n1", "n2")
	if len(w.Reclones) != 1 || !strings.HasPrefix(w.Reclones[0], "n1<-n2@") || len(w.Rewinds) != 0 {
		t.Errorf("re-clones %v, rewinds %v; want n1 re-cloned from n2 once", w.Reclones, w.Rewinds)
	}
}

// After a switchover the old primary's WAL ends where the new timeline
// forks: pg_rewind finds nothing to do.
func TestRewindAfterSwitchoverNotRequired(t *testing.T) {
	w := New(threeRejoin(true, false))
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: Switchover, Member: "n2"})
	expectLeader(t, w, "n2")
	expectFollows(t, w, "n1", "n2")
	if len(w.Rewinds) != 1 || !strings.HasPrefix(w.Rewinds[0], "n1<-n2@") || !strings.HasSuffix(w.Rewinds[0], noRewindRequired) {
		t.Errorf("rewinds = %v, want one of n1 from n2 with no rewind required", w.Rewinds)
	}
}

// A replica that is ahead of the new leader's fork (here n2, tagged
// nofailover, so the laggier n3 is elected) runs but cannot stream; after
// 15 s it is stopped, rewound and restarted as a replica.
func TestRewindRejoinsDivergedReplica(t *testing.T) {
	cfg := three()
	cfg.Members[1].Tags = cluster.Tags{NoFailover: true}
	cfg.Members[1].UseRewind = true
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n3")
	run(t, w, 20*time.Second)
	expectFollows(t, w, "n2", "n3")
	if len(w.Rewinds) != 1 || !strings.HasPrefix(w.Rewinds[0], "n2<-n3@") || strings.HasSuffix(w.Rewinds[0], noRewindRequired) {
		t.Errorf("rewinds = %v, want n2 rewound from n3 once", w.Rewinds)
	}
}

// crashLeaderAsN1Returns makes n1's agent decide, in its very first round,
// while the leader n2 restarts its crashed database: the pg_rewind it
// plans finds n2 not accepting connections.
func crashLeaderAsN1Returns(t *testing.T, w *World, more ...Fault) {
	t.Helper()
	fs := append([]Fault{{Kind: CrashDB, Member: "n2"}, {Kind: StartNode, Member: "n1"}}, more...)
	run(t, w, 0, fs...)
	if len(w.RewindFailures) != 1 || !strings.HasPrefix(w.RewindFailures[0], "n1<-n2@") {
		t.Fatalf("failed rewinds = %v, want n1's against the restarting n2\n%s", w.RewindFailures, strings.Join(w.Log(), "\n"))
	}
}

// A pg_rewind that could not reach the restarting leader did not run, so
// it does not use up the epoch's attempt: it is tried again once the
// leader is back, and succeeds, with no need for a re-clone even where
// re-cloning is allowed.
func TestRewindAgainstRestartingLeaderRetried(t *testing.T) {
	w := New(threeRejoin(true, true))
	failOverFromN1(t, w)
	crashLeaderAsN1Returns(t, w)
	run(t, w, 20*time.Second)
	expectLeader(t, w, "n2")
	expectFollows(t, w, "n1", "n2")
	if len(w.Reclones) != 0 {
		t.Errorf("re-clones = %v, want none: the rewind succeeds on a retry", w.Reclones)
	}
}

// Regression (liveness; found by TestRandomFaults, seed 2661 of 3000): a
// pg_rewind that failed only because the leader's database did not accept
// connections (restarting after a crash, or just after taking the key back)
// used up the epoch's one attempt, leaving the former primary in
// cannot_follow though a second pg_rewind a moment later would succeed.
// Now a rewind that could not reach its upstream is not recorded
// (db.ErrUpstreamUnavailable), and a former primary waits until the
// leader's record shows a running primary before rejoining.
func TestBugRewindAgainstRestartingLeaderNotRetried(t *testing.T) {
	w := New(threeRejoin(true, false))
	failOverFromN1(t, w)
	crashLeaderAsN1Returns(t, w)
	run(t, w, 30*time.Second)
	expectLeader(t, w, "n2")
	expectFollows(t, w, "n1", "n2")
}

// Regression (efficiency; found by TestRandomFaults, seed 251): after a
// failed pg_rewind, a successful re-clone left the tracker's RejoinEpoch
// and RejoinError as they were, so each later stop of the fresh copy in
// the same epoch (a failed start, a crash) deleted and copied the whole
// database again. A successful re-clone is now recorded as the epoch's
// rejoin (ha's TestRecloneRecordedAsRejoin). Since the rewind fix above,
// this scenario's rewind succeeds on a retry, so it asserts only that the
// member follows with at most one copy.
func TestBugRecloneRepeatedAfterFailedStart(t *testing.T) {
	w := New(threeRejoin(true, true))
	failOverFromN1(t, w)
	crashLeaderAsN1Returns(t, w, Fault{Kind: FailStarts, Member: "n1", N: 2})
	run(t, w, 20*time.Second)
	expectFollows(t, w, "n1", "n2")
	if len(w.Reclones) > 1 {
		t.Errorf("re-clones = %v, want at most one: only the start failed", w.Reclones)
	}
}

// The rejoin invariant is not vacuous: a member rewound or re-cloned when
// epoch e had been issued may not become writable under a key of epoch e or
// older.
func TestRejoinInvariantCatchesOldEpoch(t *testing.T) {
	w := New(three())
	run(t, w, time.Second)
	n := w.node("n1")
	w.checkHoldsKey(n, "promoted")
	if len(w.violations) != 0 {
		t.Fatalf("violations %v for the leader's own key", w.violations)
	}
	w.rejoined(n, w.node("n2"))
	w.checkHoldsKey(n, "promoted")
	if len(w.violations) != 1 || !strings.Contains(w.violations[0], "re-cloned from n2 when epoch") {
		t.Fatalf("violations = %v, want the rejoin invariant's", w.violations)
	}
}

// BUG (liveness): two promotions from the same timeline pick the same new
// timeline id when the second winner never saw the first one's timeline
// history (PostgreSQL without a WAL archive does the same). Here n3 is
// promoted from timeline 1 to 2 while n1 and n2 are down, writes, and is
// fenced; n2 comes back and is promoted from timeline 1 to 2 as well. When
// n3 returns, pg_rewind compares timeline ids only: "no rewind required",
// so the rewind of epoch e "succeeds" and n3 starts as n2's replica, but its
// WAL is ahead of n2's on a different timeline 2 and it never streams.
// After 15 s decideFollower marks it cannot_follow, although
// reclone_on_rewind_failure is set (rejoin only re-clones after a rewind
// that failed, and the reason then claims neither is allowed). Expected:
// it is re-cloned and follows n2. Found by TestRandomFaults (seed 6 of
// 3000, once pg_rewind's own "no rewind required" rule was modelled).
func TestBugNoRewindRequiredOnCollidingTimelineNeverReclones(t *testing.T) {
	t.Skip("known bug: after a pg_rewind that found no rewind required, a member that still cannot stream is never re-cloned")
	cfg := Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3", UseRewind: true, AllowReclone: true}}}
	w := New(cfg)
	run(t, w, 10*time.Second)
	run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n1"}, Fault{Kind: KillNode, Member: "n2"})
	expectLeader(t, w, "n3")
	run(t, w, 10*time.Second, Fault{Kind: KillNode, Member: "n3"})
	run(t, w, 0, Fault{Kind: StartNode, Member: "n2"})
	for len(w.Promotions) < 2 {
		run(t, w, w.Config().Tick)
		if w.Now().Sub(Origin) > time.Minute {
			t.Fatalf("n2 was not promoted\n%s", strings.Join(w.Log(), "\n"))
		}
	}
	expectLeader(t, w, "n2")
	if a, b := w.node("n2").db, w.node("n3").db; a.timeline != b.timeline || a.lsn >= b.lsn {
		t.Fatalf("n2 %s, n3 %s: want the same timeline id, n3 ahead", a.String(), b.String())
	}
	run(t, w, 30*time.Second, Fault{Kind: StartNode, Member: "n3"})
	if len(w.Rewinds) != 1 || !strings.HasSuffix(w.Rewinds[0], noRewindRequired) {
		t.Fatalf("rewinds = %v, want one that found no rewind required", w.Rewinds)
	}
	expectFollows(t, w, "n3", "n2")
}
