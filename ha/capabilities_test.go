package ha

import (
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
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
		if c, ok := a.(CreateSlots); ok && len(c.Names) > 0 {
			t.Errorf("promotion of an engine without slots creates %s", a)
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
