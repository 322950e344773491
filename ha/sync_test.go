package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/db/postgres"
)

// syncView is a healthy leader n1 at epoch 7 with replicas n2 and n3.
func syncView(mode cluster.SyncMode) View {
	now := time.Date(2024, 1, 1, 0, 1, 0, 0, time.UTC)
	rep := func(name string, streaming bool) cluster.Member {
		m := cluster.Member{Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning, Streaming: streaming,
			ConnHost: name, ConnPort: 5432, LagBytes: 0}
		if streaming {
			m.Upstream = "n1"
		}
		return m
	}
	return View{
		Now: now, Self: "n1", LeaseID: 9, LastRenewSent: now, StoreOK: true,
		Config: cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
			RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second),
			SynchronousMode: mode},
		DB: db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RolePrimary,
			Position: cluster.PGPosition(1, 0x5000000)},
		Snap: cluster.Snapshot{
			Initialized: "n1", Leader: &cluster.Leader{Name: "n1", Epoch: 7, Lease: 9},
			LastLeader: &cluster.LastLeader{Name: "n1", Epoch: 7},
			Members: []cluster.Member{
				{Name: "n1", Role: cluster.RolePrimary, State: cluster.StateRunning, ConnHost: "n1", ConnPort: 5432},
				rep("n2", true), rep("n3", true),
			},
		},
		Slots:  Slots{Members: []string{"n1", "n2", "n3"}},
		Engine: postgres.Capabilities(0),
		Repl:   &db.ReplicationStatus{Current: cluster.PGPosition(0, 0x5000000)},
	}
}

// TestDecideSync walks the leader's ordering of synchronous standby changes.
func TestDecideSync(t *testing.T) {
	cases := []struct {
		name string
		mut  func(*View)
		want string // prefix of Plan.String()
	}{
		{"off and clean: nothing", func(v *View) { v.Config.SynchronousMode = cluster.SyncOff }, "[] state=running"},
		{"off with a leftover setting: make it asynchronous", func(v *View) {
			v.Config.SynchronousMode = cluster.SyncOff
			v.Repl.SyncNames = []string{"n2"}
		}, "[set-sync-standbys names=[]]"},
		{"on: require the first streaming standby on the server first", nil, "[set-sync-standbys names=[n2]]"},
		{"on: required but not confirmed yet: wait", func(v *View) { v.Repl.SyncNames = []string{"n2"} }, "[] state=running"},
		{"on: confirmed: record it", func(v *View) {
			v.Repl.SyncNames = []string{"n2"}
			v.SyncConfirmed = []string{"n2"}
		}, "[set-sync-record names=[n2]]"},
		{"on: stable", func(v *View) {
			v.Repl.SyncNames = []string{"n2"}
			v.Snap.Sync = &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{"n2"}}
		}, "[] state=running"},
		{"on: the recorded standby stopped streaming: remove it from the record first", func(v *View) {
			v.Repl.SyncNames = []string{"n2"}
			v.Snap.Sync = &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{"n2"}}
			v.Snap.Members[1].Streaming = false
			v.Snap.Members[2].Streaming = false
			v.Snap.Members[1].State, v.Snap.Members[2].State = cluster.StateCrashed, cluster.StateCrashed
		}, "[set-sync-record names=[]]"},
		{"on: no healthy standby: asynchronous, and loud", func(v *View) {
			v.Repl.SyncNames = []string{"n2"}
			v.Snap.Members = v.Snap.Members[:1]
		}, "[set-sync-standbys names=[]] state=running problem=durability_at_risk reason=DURABILITY AT RISK"},
		{"on: no healthy standby, server asynchronous: stays loud", func(v *View) {
			v.Snap.Members = v.Snap.Members[:1]
		}, "[] state=running problem=durability_at_risk reason=DURABILITY AT RISK"},
		{"strict: no healthy standby: commits wait for any", func(v *View) {
			v.Config.SynchronousMode = cluster.SyncStrict
			v.Repl.SyncNames = []string{"n2"}
			v.Snap.Members = v.Snap.Members[:1]
		}, "[set-sync-standbys names=[] any] state=running problem=writes_blocked"},
		{"strict: no healthy standby, commits waiting: stays loud", func(v *View) {
			v.Config.SynchronousMode = cluster.SyncStrict
			v.Repl.SyncAny = true
			v.Snap.Members = v.Snap.Members[:1]
		}, "[] state=running problem=writes_blocked"},
		{"a record of an earlier epoch is replaced by an empty one of this epoch", func(v *View) {
			v.Snap.Sync = &cluster.SyncState{Leader: "n0", Epoch: 3, Members: []string{"n1"}}
		}, "[set-sync-record names=[]]"},
		{"just promoted (any standby required), members still repointing: keep waiting", func(v *View) {
			v.Repl.SyncAny = true
			v.Snap.Members[1].Streaming, v.Snap.Members[2].Streaming = false, false
		}, "[] state=running reason=synchronous mode on: commits wait for any standby until [n2 n3] follow"},
		{"the standby already required is kept over a less lagging one", func(v *View) {
			v.Repl.SyncNames = []string{"n3"}
			v.Snap.Members[1].LagBytes, v.Snap.Members[2].LagBytes = 0, 100
		}, "[] state=running"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := syncView(cluster.SyncOn)
			if c.mut != nil {
				c.mut(&v)
			}
			if got := Decide(v).String(); !strings.HasPrefix(got, c.want) {
				t.Errorf("plan %s\nwant prefix %s", got, c.want)
			}
		})
	}
}

// TestSyncElection: only recorded synchronous standbys of the lost epoch
// may be elected; a new primary requires a standby before it promotes.
func TestSyncElection(t *testing.T) {
	base := func(self string) View {
		v := syncView(cluster.SyncOn)
		v.Self, v.LeaseID = self, 11
		v.DB.Role = cluster.RoleReplica
		v.Snap.Leader = nil
		v.Snap.LastLeader = &cluster.LastLeader{Name: "n1", Epoch: 7, ConnHost: "n1", ConnPort: 5432}
		v.Snap.Sync = &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{"n2"}}
		v.Snap.Members = v.Snap.Members[1:]
		for i := range v.Snap.Members {
			v.Snap.Members[i].MeasuredAfterLossOf = 7
			v.Snap.Members[i].Streaming = false
		}
		// n3 is more advanced and preferred, but not synchronous.
		v.Snap.Members[1].Position, v.Snap.Members[1].Tags.Priority = cluster.PGPosition(1, 0x6000000), 100
		v.LeaderLostAt, v.ElectionOpenAt = v.Now.Add(-5*time.Second), v.Now.Add(-5*time.Second)
		v.OldPrimary = refused
		v.Repl = nil
		return v
	}
	if got := Decide(base("n3")).String(); !strings.Contains(got, "not a synchronous standby of epoch 7") {
		t.Errorf("n3 (async, higher priority, more advanced): %s", got)
	}
	if p := Decide(base("n2")); !strings.HasPrefix(kinds(p), "acquire-leader,set-sync-standbys,promote") || !syncAny(p.Actions[1]) {
		t.Errorf("n2 (recorded synchronous standby): %s", p)
	}
	strict := base("n2")
	strict.Config.SynchronousMode = cluster.SyncStrict
	strict.Snap.Sync = nil
	if p := Decide(strict); p.Problem != cluster.ProblemNoFailoverCandidate || !strings.Contains(p.Reason, "synchronous_mode strict") {
		t.Errorf("strict without a record: %s", p)
	}
	on := base("n3")
	on.Snap.Sync = &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{}}
	if p := Decide(on); !strings.HasPrefix(kinds(p), "acquire-leader,set-sync-standbys,promote") || !syncAny(p.Actions[1]) {
		t.Errorf("on with an empty record (durability at risk) elects the best: %s", p)
	}
}

// TestDecideSlots: the leader creates missing slots first, drops the slots
// of long-absent members, and reports invalidated ones.
func TestDecideSlots(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.Slots.Members = []string{"n2"}
	if got := Decide(v).String(); !strings.HasPrefix(got, "[create-slots names=[n3]]") {
		t.Errorf("missing slot: %s", got)
	}
	v.Slots.Members = []string{"n2", "n3", "n4"}
	v.Slots.Stale = []string{"n4"}
	if got := Decide(v).String(); !strings.HasPrefix(got, "[drop-slots names=[n4]] state=running reason=dropping replication slots of [n4]: absent for more than 30m0s") {
		t.Errorf("stale slot: %s", got)
	}
	v.Slots.Stale, v.Slots.Lost = nil, []string{"n3"}
	if p := Decide(v); p.Problem != cluster.ProblemReplicationSlotLost || !strings.Contains(p.Reason, "replication slots of [n3] were invalidated") {
		t.Errorf("lost slot: %s", p)
	}
}
