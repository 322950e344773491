package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/db/postgres"
)

// otherEngine names its tools and settings unlike PostgreSQL, keeps no
// slots and allows no rejoin: Decide must take every word from it.
var otherEngine = db.Capabilities{Names: db.Names{Resync: "resync-tool", ResyncSetting: "x.allow_resync", RecloneSetting: "x.allow_reclone"}}

// An engine without slots gets no slot management, and a promotion
// creates none.
func TestEngineWithoutSlots(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Engine, v.Slots = otherEngine, Slots{}
	for _, a := range Decide(v).Actions {
		if is[CreateSlots](a) || is[DropSlots](a) {
			t.Errorf("leader of an engine without slots plans %s", a)
		}
	}
	e := electionView("n2", 0x5000000, 80e9)
	e.ElectionOpenAt = e.LeaderLostAt
	e.Engine = otherEngine
	p := Decide(e)
	if !promotes(p) {
		t.Fatalf("n2 not elected: %s", p)
	}
	for _, a := range p.Actions {
		if is[CreateSlots](a) {
			// Even an empty create-slots fails on such an engine, and
			// the promotion's later steps wait a round for it.
			t.Errorf("promotion of an engine without slots plans %s", a)
		}
	}
	e.Engine = db.Capabilities{Slots: true}
	if p := Decide(e); !strings.Contains(p.String(), "create-slots names=[n3]") {
		t.Errorf("promotion of an engine with slots: %s, want create-slots names=[n3]", p)
	}
}

// divergedFollower: n2 follows n1 (epoch 4) and its engine reports that
// its history diverged.
func divergedFollower(c db.Capabilities) View {
	v := electionView("n2", 0x6000000, 0)
	v.Snap.Leader = &cluster.Leader{Name: "n1", Epoch: 4, Lease: 3}
	v.Snap.Members = append(v.Snap.Members, cluster.Member{Name: "n1", Role: cluster.RolePrimary, State: cluster.StateRunning,
		ConnHost: "n1", ConnPort: 5432, Position: cluster.PGPosition(2, 0x5000000)})
	v.DB.UpstreamHost, v.DB.UpstreamPort, v.DB.Diverged = "n1", 5432, "forked"
	v.Engine = c
	return v
}

// A diverged member's plan and reasons come from the capabilities.
func TestRejoinByCapabilities(t *testing.T) {
	p := Decide(divergedFollower(otherEngine))
	if p.State != cluster.StateCannotFollow || !strings.Contains(p.Reason, "neither resync-tool nor a re-clone is allowed (x.allow_resync, x.allow_reclone)") {
		t.Errorf("no rejoin allowed: %s", p)
	}
	c := otherEngine
	c.Rejoin = db.RejoinResync
	if p := Decide(divergedFollower(c)); !strings.Contains(p.String(), "rewind upstream=n1") {
		t.Errorf("resync allowed: %s, want a rewind", p)
	}
	c.Rejoin = db.RejoinReclone
	p = Decide(divergedFollower(c))
	if !strings.Contains(p.String(), "reclone upstream=n1") || !strings.Contains(p.Reason, "resync-tool failed or is off") {
		t.Errorf("re-clone allowed: %s, want a re-clone", p)
	}
}

// handoffView: n1 stopped at final for a switchover to n2, which is a
// healthy replica at pos.
func handoffView(final, pos cluster.Position) View {
	v := electionView("n2", 0, 0)
	v.DB.Position = pos
	v.OldPrimary = OldPrimaryProbe{}
	v.Snap.Request = &cluster.Request{Kind: cluster.KindSwitchover, From: "n1", To: "n2",
		Handoff: &cluster.Handoff{Target: "n2", Final: final, Epoch: 4}}
	return v
}

// The target promotes only when its position is ahead of the final one,
// as Position.Compare says: not at it, not on an older timeline past it
// in bytes.
func TestHandoffComparesPositions(t *testing.T) {
	final := cluster.PGPosition(2, 0x5000028)
	for _, c := range []struct {
		name string
		pos  cluster.Position
		want bool
	}{
		{"past the final position", cluster.PGPosition(2, 0x50000A0), true},
		{"at the final position", cluster.PGPosition(2, 0x5000028), false},
		{"behind it", cluster.PGPosition(2, 0x5000000), false},
		{"further in bytes on an older timeline", cluster.PGPosition(1, 0x6000000), false},
		{"past it, final of an earlier version (timeline unknown)", cluster.PGPosition(2, 0x50000A0), true},
	} {
		f := final
		if strings.Contains(c.name, "earlier version") {
			f = cluster.PGPosition(0, 0x5000028)
		}
		if p := Decide(handoffView(f, c.pos)); promotes(p) != c.want {
			t.Errorf("%s: promotes=%t, want %t: %s", c.name, promotes(p), c.want, p)
		}
	}
}

// demoteEngine switches over by demoting in place.
var demoteEngine = db.Capabilities{Switchover: db.SwitchoverDemote}

// An engine that demotes in place: the leader demotes (no stop), records
// the handoff and releases the key; a leader that recorded its handoff
// but still holds the key (its database read-only now, or down) only
// releases it: never a start or a promotion under that key again.
func TestSwitchoverDemotesInPlace(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Engine, v.Slots = demoteEngine, Slots{}
	v.Snap.Request = &cluster.Request{Kind: cluster.KindSwitchover, From: "n1", To: "n2"}
	if p := Decide(v); kinds(p) != "demote,handoff,release-leader" {
		t.Fatalf("switchover by demotion: %s, want demote, handoff, release-leader", p)
	}
	// Demoted, but the handoff was not recorded: do it again.
	v.DB.Role = cluster.RoleReplica
	if p := Decide(v); kinds(p) != "demote,handoff,release-leader" {
		t.Errorf("demoted without a handoff: %s, want demote, handoff, release-leader", p)
	}
	// Recorded: release, whatever the database does.
	v.Snap.Request.Handoff = &cluster.Handoff{Target: "n2", Epoch: v.Snap.Leader.Epoch}
	if p := Decide(v); kinds(p) != "demote,release-leader" {
		t.Errorf("handoff recorded, key held: %s, want demote, release-leader", p)
	}
	v.DB = db.Status{HasData: true, WasPrimary: true}
	if p := Decide(v); kinds(p) != "release-leader" {
		t.Errorf("handoff recorded, database down: %s, want release-leader only", p)
	}
	// The same for an engine that stops: no start-primary.
	v.Engine = postgres.Capabilities(0)
	if p := Decide(v); kinds(p) != "stop,release-leader" {
		t.Errorf("handoff recorded, database stopped (stop method): %s, want stop, release-leader", p)
	}
}

// With demotion in place, the target promotes once it has applied the
// old primary's final position (at it is enough: it is the demoted
// server's executed set), not when it has only received it.
func TestHandoffDemotedNeedsApplied(t *testing.T) {
	final := mariaDBPos(t, "0-1-10")
	for _, c := range []struct {
		name     string
		replayed string
		want     bool
	}{
		{"applied exactly", "0-1-10", true},
		{"applied more (a later domain)", "0-1-10,1-1-3", true},
		{"received, not applied", "0-1-9", false},
		{"holds it and a later server's", "0-1-10,0-2-11", true},
		{"an errant transaction instead", "0-1-9,0-2-10", false},
	} {
		v := handoffView(final, mariaDBPos(t, "0-1-10"))
		v.Engine = demoteEngine
		v.DB.Replayed = mariaDBPos(t, c.replayed)
		if p := Decide(v); promotes(p) != c.want {
			t.Errorf("%s: promotes=%t, want %t: %s", c.name, promotes(p), c.want, p)
		}
	}
}

// A leader whose promotion is done but whose database runs read-only (a
// restart in place that did not finish, a demotion whose switchover was
// cancelled) is promoted again, not left read-only; with a switchover
// scheduled for later it is promoted too, not demoted early.
func TestReadOnlyUnderDonePromotionPromotes(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Engine, v.Slots = demoteEngine, Slots{}
	v.DB.Role = cluster.RoleReplica
	done := cluster.Promotion{Kind: cluster.HistoryFailover, Lost: 3}
	for _, s := range []cluster.PromotionStep{cluster.StepKey, cluster.StepFence, cluster.StepSync, cluster.StepPromote, cluster.StepPublish, cluster.StepRecord} {
		done = done.With(s)
	}
	if !done.Complete() {
		t.Fatalf("test setup: promotion %s not complete", done)
	}
	v.Snap.Leader.Promotion = &done
	if p := Decide(v); !promotes(p) {
		t.Errorf("read-only under a done promotion: %s, want a promotion", p)
	}
	v.Snap.Request = &cluster.Request{Kind: cluster.KindSwitchover, From: "n1", To: "n2", At: v.Now.Add(time.Hour)}
	if p := Decide(v); !promotes(p) || strings.Contains(p.String(), "demote") {
		t.Errorf("read-only, switchover scheduled in an hour: %s, want a promotion and no demotion", p)
	}
}

// An engine without synchronous replication runs asynchronously whatever
// synchronous_mode says: the leader plans no set-sync-standbys (which would
// fail there) and says durability_at_risk; an election is not restricted
// to a sync record, and a promotion has no synchronous pre-step.
func TestEngineWithoutSynchronousReplication(t *testing.T) {
	v := syncView(cluster.SyncOn)
	v.Engine, v.Slots, v.Repl = demoteEngine, Slots{}, nil
	p := Decide(v)
	if strings.Contains(p.String(), "set-sync") || p.Problem != cluster.ProblemDurabilityAtRisk ||
		!strings.Contains(p.Reason, "no synchronous replication for this database engine") {
		t.Errorf("leader, synchronous_mode on, engine without it: %s, want no sync actions and durability_at_risk", p)
	}
	e := electionView("n2", 0x5000000, 80e9)
	e.ElectionOpenAt = e.LeaderLostAt
	e.Config.SynchronousMode = cluster.SyncStrict
	e.Engine = demoteEngine
	p = Decide(e)
	if !promotes(p) || strings.Contains(p.String(), "set-sync") {
		t.Errorf("election, synchronous_mode strict, engine without it: %s, want a promotion without a synchronous pre-step", p)
	}
	e.Engine = postgres.Capabilities(0)
	if p := Decide(e); promotes(p) || p.Problem != cluster.ProblemNoFailoverCandidate {
		t.Errorf("the same with PostgreSQL: %s, want no promotion (no sync record in strict mode)", p)
	}
}

// An election among GTID positions that are not ordered promotes the
// member that holds the old primary's last known transactions, says so,
// and carries the errant transactions into the promotion record (and so
// the history entry); the other candidate waits for it.
func TestElectionErrantGTIDs(t *testing.T) {
	view := func(self string) View {
		v := electionView(self, 0, 80e9)
		v.ElectionOpenAt = v.LeaderLostAt
		v.Engine, v.Slots = demoteEngine, Slots{}
		v.LastLeaderPosition = mariaDBPos(t, "0-1-100")
		// n3 counts more transactions (90 + 20) but lacks 0-1-91..100,
		// and holds 5-3-1..20 that the old primary never had.
		v.Snap.Members[0].Position, v.Snap.Members[1].Position = mariaDBPos(t, "0-1-100"), mariaDBPos(t, "0-1-90,5-3-20")
		v.DB.Position = v.Snap.Member(self).Position
		return v
	}
	p := Decide(view("n2"))
	if !promotes(p) {
		t.Fatalf("n2 (holds the old primary's history) not elected: %s", p)
	}
	var rec *cluster.Promotion
	for _, a := range p.Actions {
		if acq, ok := a.(AcquireLeader); ok {
			rec = acq.Promotion
		}
	}
	if rec == nil || len(rec.Errant) != 1 || rec.Errant[0].String() != "n3 holds 5-3-20 that n2 lacks" {
		t.Errorf("promotion record %+v: want the errant n3 holds 5-3-20 that n2 lacks", rec)
	}
	if !strings.Contains(p.Reason, "positions not ordered (errant transactions): n3 holds 5-3-20 that n2 lacks") {
		t.Errorf("reason %q does not say the positions diverged", p.Reason)
	}
	if p := Decide(view("n3")); promotes(p) || !strings.Contains(p.Reason, "n2 is the better candidate") {
		t.Errorf("n3 (errant, lacks the old primary's last transactions): %s, want it to wait for n2", p)
	}
	// The reference is the old primary's member record while it lasts
	// (every agent reads the same), not an older position this agent saw.
	stale := view("n2")
	stale.LastLeaderPosition = mariaDBPos(t, "0-1-90")
	stale.Snap.Members = append(stale.Snap.Members, cluster.Member{Name: "n1", Role: cluster.RoleUnknown, State: cluster.StateCrashed,
		Position: mariaDBPos(t, "0-1-100"), MeasuredAfterLossOf: 4})
	if p := Decide(stale); !promotes(p) || !strings.Contains(p.Reason, "n3 holds 5-3-20 that n2 lacks") {
		t.Errorf("with the old primary's record at 0-1-100 and a stale 0-1-90 seen: %s, want n2 elected, n3's errant named", p)
	}
}

// A member whose engine reports it diverged from the leader names, in its
// reason, the transactions it holds that the leader lacks (errant GTIDs),
// when the engine's positions can name them.
func TestDivergedReasonNamesErrant(t *testing.T) {
	v := divergedFollower(otherEngine)
	v.DB.Position = mariaDBPos(t, "0-3-8")
	v.Snap.Members[len(v.Snap.Members)-1].Position = mariaDBPos(t, "0-3-5,0-1-12")
	p := Decide(v)
	if p.Problem != cluster.ProblemCannotFollow || !strings.Contains(p.Reason, "it holds 0-3-8 that n1 lacks") {
		t.Errorf("diverged member: %s (problem %q), want cannot_follow naming 0-3-8", p, p.Problem)
	}
}

// mariaDBPos parses MariaDB GTID state s, failing the test on an error.
func mariaDBPos(t *testing.T, s string) cluster.Position {
	t.Helper()
	p, err := cluster.MariaDBPosition(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
