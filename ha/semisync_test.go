package ha

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// semiSyncEngine is an engine that takes any replica's acknowledgement
// (MariaDB's semi-synchronous replication).
var semiSyncEngine = db.Capabilities{Synchronous: true, Acks: db.AcksAny, Switchover: db.SwitchoverDemote}

// semiView is syncView on an AcksAny engine: leader n1 at epoch 7, n2 and
// n3 streaming from it, n2 reporting acknowledging on under rec.
func semiView(mode cluster.SyncMode, rec *cluster.SyncState) View {
	v := syncView(mode)
	v.Engine = semiSyncEngine
	v.Snap.Sync = rec
	for i := range v.Snap.Members[1:] {
		m := &v.Snap.Members[i+1]
		m.Ack = &cluster.AckReport{State: cluster.AckOff}
		if rec != nil {
			m.Ack.Epoch, m.Ack.Gen = rec.Epoch, rec.Gen
		}
	}
	if rec != nil && rec.Acks("n2") {
		v.Snap.Members[1].Ack.State = cluster.AckOn
	}
	return v
}

func semiRec(members, acking []string, async bool) *cluster.SyncState {
	return &cluster.SyncState{Leader: "n1", Epoch: 7, Members: members, Acking: acking, Async: async, Gen: 3}
}

// TestDecideSemiSync walks the leader's steps on an AcksAny engine: a
// member is recorded before it is asked to acknowledge and leaves the
// record only once it reported acknowledging off under the current record;
// the server waits before Async is cleared and stops before it is set.
func TestDecideSemiSync(t *testing.T) {
	n2 := []string{"n2"}
	cases := []struct {
		name string
		mode cluster.SyncMode
		rec  *cluster.SyncState
		mut  func(*View)
		want string // prefix of Plan.String()
	}{
		{"a record of an earlier epoch: carried over, without this member", cluster.SyncOn,
			&cluster.SyncState{Epoch: 5, Members: []string{"n1", "n3"}, Acking: []string{"n1", "n3"}}, nil,
			"[set-sync-record names=[n3] acking=[n3] async]"},
		{"a record of an earlier epoch, the server waiting: carried over, not async", cluster.SyncOn,
			&cluster.SyncState{Epoch: 5, Members: []string{"n1", "n3"}, Acking: []string{"n1", "n3"}},
			func(v *View) { v.Repl.SyncAny = true }, "[set-sync-record names=[n3] acking=[n3]]"},
		{"no record: an empty one of this epoch", cluster.SyncOn, nil, nil, "[set-sync-record names=[] async]"},
		{"off, no record, server waiting: stop waiting", cluster.SyncOff, nil,
			func(v *View) { v.Repl.SyncAny = true }, "[set-sync-standbys names=[]]"},
		{"off, no record: nothing", cluster.SyncOff, nil, nil, "[] state=running"},
		{"on: record n2 before asking it", cluster.SyncOn, semiRec(nil, nil, true), nil,
			"[set-sync-record names=[n2] async]"},
		{"on: recorded, now ask it", cluster.SyncOn, semiRec(n2, nil, true), nil,
			"[set-sync-record names=[n2] acking=[n2] async]"},
		{"on: acknowledging: the server waits", cluster.SyncOn, semiRec(n2, n2, true), nil,
			"[set-sync-standbys names=[] any]"},
		{"on: the server waits: clear async", cluster.SyncOn, semiRec(n2, n2, true),
			func(v *View) { v.Repl.SyncAny = true }, "[set-sync-record names=[n2] acking=[n2]]"},
		{"on: stable", cluster.SyncOn, semiRec(n2, n2, false),
			func(v *View) { v.Repl.SyncAny = true }, "[] state=running"},
		{"on: asked, not acknowledging yet, server not waiting: at risk", cluster.SyncOn, semiRec(n2, n2, true),
			func(v *View) { v.Snap.Members[1].Ack.State = cluster.AckOff },
			"[] state=running problem=durability_at_risk"},
		{"on: asked, has not acted on this record yet, the server waiting: async first (it may hold waiting commits it will never acknowledge)", cluster.SyncOn, semiRec(n2, n2, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[1].Ack = &cluster.AckReport{State: cluster.AckOff, Epoch: 7, Gen: 2}
			}, "[set-sync-record names=[n2] acking=[n2] async] state=running problem=durability_at_risk"},
		{"on: a commit waits for an acknowledgement that does not come: async first", cluster.SyncOn, semiRec(n2, n2, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.DB.AckOverdue = "a commit waited 2s"
			}, "[set-sync-record names=[n2] acking=[n2] async] state=running problem=durability_at_risk reason=DURABILITY AT RISK: a commit waited 2s"},
		{"on: overdue, async recorded: the server stops waiting (releasing it)", cluster.SyncOn, semiRec(n2, n2, true),
			func(v *View) {
				v.Repl.SyncAny = true
				v.DB.AckOverdue = "a commit waited 2s"
			}, "[set-sync-standbys names=[]] state=running problem=durability_at_risk"},
		{"strict: a member asked still on its way to follow: it stays asked", cluster.SyncStrict, semiRec(n2, n2, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[1].Streaming, v.Snap.Members[1].Upstream = false, ""
				v.Snap.Members[2].Streaming, v.Snap.Members[2].Upstream = false, ""
			}, "[] state=running problem=writes_blocked"},
		{"strict: overdue: writes stay blocked, and say why", cluster.SyncStrict, semiRec([]string{"n2", "n3"}, []string{"n2", "n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.DB.AckOverdue = "a commit waited 2s"
			}, "[] state=running problem=writes_blocked reason=synchronous_mode strict: a commit waited 2s"},
		{"on: n2 gone from the store: the server stops waiting", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n2", "n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members = slices.Delete(v.Snap.Members, 1, 2)
			}, "[set-sync-record names=[n2,n3] acking=[n3]]"},
		{"on: n2 unheard, not asked: async first, though n3 acknowledges", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[2].Ack.State = cluster.AckOn
				v.Snap.Members = slices.Delete(v.Snap.Members, 1, 2)
			}, "[set-sync-record names=[n2,n3] acking=[n3] async] state=running problem=durability_at_risk reason=DURABILITY AT RISK: [n2]"},
		{"on: async recorded: the server stops waiting", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, true),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members = slices.Delete(v.Snap.Members, 1, 2)
			},
			"[set-sync-standbys names=[]] state=running problem=durability_at_risk"},
		{"n2 no longer asked, reports off under this record, n3 holds what n2 had when it stopped: it leaves", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, false),
			func(v *View) {
				v.Snap.Members[1].Streaming, v.Snap.Members[1].Upstream = false, ""
				v.Snap.Members[1].Position = cluster.PGPosition(1, 0x900)
				v.Snap.Members[1].Ack.OffFrom = ptr(cluster.PGPosition(1, 0x500))
				v.Snap.Members[2].Position = cluster.PGPosition(1, 0x600)
				v.Snap.Members[2].Ack.State = cluster.AckOn
			}, "[set-sync-record names=[n3] acking=[n3]]"},
		{"n2 reports off, but not yet where it stopped: it stays", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[1].Streaming, v.Snap.Members[1].Upstream = false, ""
				v.Snap.Members[2].Ack.State = cluster.AckOn
			}, "[] state=running"},
		{"n2 reports off, n3 does not hold where it stopped: it stays", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[1].Ack.OffFrom = ptr(cluster.PGPosition(1, 0x700))
				v.Snap.Members[2].Position = cluster.PGPosition(1, 0x600)
				v.Snap.Members[2].Ack.State = cluster.AckOn
			}, "[] state=running"},
		{"n2 reports off under an earlier record: it stays", cluster.SyncOn, semiRec([]string{"n2", "n3"}, []string{"n3"}, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members[1].Streaming, v.Snap.Members[1].Upstream = false, ""
				v.Snap.Members[1].Ack.Gen = 2
				v.Snap.Members[2].Ack.State = cluster.AckOn
			}, "[] state=running"},
		{"strict, nobody acknowledging: waits, writes blocked", cluster.SyncStrict, semiRec(nil, nil, false),
			func(v *View) {
				v.Repl.SyncAny = true
				v.Snap.Members = v.Snap.Members[:1]
			}, "[] state=running problem=writes_blocked"},
		{"off: stop asking", cluster.SyncOff, semiRec(n2, n2, false),
			func(v *View) { v.Repl.SyncAny = true }, "[set-sync-record names=[n2]]"},
		{"off: async before the server stops waiting", cluster.SyncOff, semiRec(n2, nil, false),
			func(v *View) { v.Repl.SyncAny = true; v.Snap.Members[1].Ack.State = cluster.AckOn },
			"[set-sync-record names=[n2] async]"},
		{"off: then stop waiting", cluster.SyncOff, semiRec(n2, nil, true),
			func(v *View) { v.Repl.SyncAny = true; v.Snap.Members[1].Ack.State = cluster.AckOn },
			"[set-sync-standbys names=[]]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			v := semiView(c.mode, c.rec)
			if c.mut != nil {
				c.mut(&v)
			}
			if got := decideSemiSync(v).String(); !strings.HasPrefix(got, c.want) {
				t.Errorf("plan %q, want prefix %q", got, c.want)
			}
		})
	}
}

// TestSemiSyncElection: with a record whose leader waited for
// acknowledgements, an election hears a final position from every member
// that may have acknowledged, and only they are candidates.
func TestSemiSyncElection(t *testing.T) {
	base := func(rec *cluster.SyncState) View {
		v := syncView(cluster.SyncOn)
		v.Engine, v.Self = semiSyncEngine, "n2"
		v.Snap.Leader, v.Snap.Sync = nil, rec
		v.Snap.Members = v.Snap.Members[1:]
		for i := range v.Snap.Members {
			v.Snap.Members[i].Streaming, v.Snap.Members[i].Upstream = false, ""
		}
		return v
	}
	both := []string{"n2", "n3"}
	t.Run("every member heard: both candidates", func(t *testing.T) {
		ms, lag, why, _ := semiSyncCandidates(base(semiRec(both, both, false)), 7, cluster.SyncOn)
		if why != "" || len(ms) != 2 || lag != 0 {
			t.Fatalf("candidates %v lag %d why %q", ms, lag, why)
		}
	})
	t.Run("one still streaming: wait for its final position", func(t *testing.T) {
		v := base(semiRec(both, both, false))
		v.Snap.Members[1].Streaming = true
		if _, _, why, _ := semiSyncCandidates(v, 7, cluster.SyncOn); !strings.Contains(why, "waiting for n3") {
			t.Fatalf("why %q, want waiting for n3", why)
		}
	})
	t.Run("one without a record: no failover candidate", func(t *testing.T) {
		v := base(semiRec(both, both, false))
		v.Snap.Members = v.Snap.Members[:1]
		if _, _, why, p := semiSyncCandidates(v, 7, cluster.SyncOn); p != cluster.ProblemNoFailoverCandidate || !strings.Contains(why, "n3") {
			t.Fatalf("why %q problem %s", why, p)
		}
	})
	t.Run("not recorded: not a candidate", func(t *testing.T) {
		if _, _, why, _ := semiSyncCandidates(base(semiRec([]string{"n3"}, nil, false)), 7, cluster.SyncOn); !strings.Contains(why, "not a failover candidate") {
			t.Fatalf("why %q", why)
		}
	})
	t.Run("async record, mode on: every member, with the lag gate", func(t *testing.T) {
		v := base(semiRec([]string{"n3"}, nil, true))
		v.Config.MaximumLagOnFailover = 1000
		if ms, lag, why, _ := semiSyncCandidates(v, 7, cluster.SyncOn); why != "" || len(ms) != 2 || lag != 1000 {
			t.Fatalf("candidates %v lag %d why %q", ms, lag, why)
		}
	})
	t.Run("async record, strict: none", func(t *testing.T) {
		if _, _, _, p := semiSyncCandidates(base(semiRec(both, nil, true)), 7, cluster.SyncStrict); p != cluster.ProblemNoFailoverCandidate {
			t.Fatalf("problem %s", p)
		}
	})
	t.Run("stale record, mode on: every member", func(t *testing.T) {
		if ms, _, why, _ := semiSyncCandidates(base(semiRec([]string{"n3"}, nil, false)), 8, cluster.SyncOn); why != "" || len(ms) != 2 {
			t.Fatalf("candidates %v why %q", ms, why)
		}
	})
}

// TestAckAction: a replica acknowledges while the record of the current
// epoch asks it to, and not otherwise; an earlier epoch's record changes
// nothing.
func TestAckAction(t *testing.T) {
	cases := []struct {
		name string
		rec  *cluster.SyncState
		ack  cluster.AckState
		want string
	}{
		{"asked, off: on", semiRec([]string{"n2"}, []string{"n2"}, false), cluster.AckOff, "set-acknowledging on"},
		{"asked, on: nothing", semiRec([]string{"n2"}, []string{"n2"}, false), cluster.AckOn, "<nil>"},
		{"not asked, on: off", semiRec([]string{"n2"}, nil, false), cluster.AckOn, "set-acknowledging off"},
		{"no record, on: off", nil, cluster.AckOn, "set-acknowledging off"},
		{"earlier epoch's record, on: nothing", &cluster.SyncState{Epoch: 6, Members: []string{"n3"}}, cluster.AckOn, "<nil>"},
		{"not measured: nothing", semiRec([]string{"n2"}, []string{"n2"}, false), cluster.AckUnknown, "<nil>"},
	}
	for _, c := range cases {
		v := semiView(cluster.SyncOn, c.rec)
		v.Self = "n2"
		v.DB.Role, v.DB.Ack = cluster.RoleReplica, c.ack
		if got := fmt.Sprint(ackAction(v)); got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
	v := semiView(cluster.SyncOn, semiRec([]string{"n2"}, []string{"n2"}, false))
	v.Self, v.DB.Role, v.DB.Ack = "n2", cluster.RoleReplica, cluster.AckOff
	v.Engine = db.Capabilities{Synchronous: true}
	if a := ackAction(v); a != nil {
		t.Errorf("an AcksNamed engine got %s", a)
	}
}

// TestSemiSyncRecordCoversAcknowledgers drives the leader's and the
// replicas' steps on a model over many seeds, with replicas failing,
// returning and mode changes, and checks after every step that each
// replica that acknowledges (or may) is in the record while the server
// waits, and that the record's Async is never clear while the server does
// not wait.
func TestSemiSyncRecordCoversAcknowledgers(t *testing.T) {
	waited := 0
	for seed := uint64(1); seed <= 300; seed++ {
		m := newSemiModel(seed)
		for step := 0; step < 400; step++ {
			m.step()
			if err := m.check(); err != "" {
				t.Fatalf("seed %d step %d: %s\n%s", seed, step, err, strings.Join(m.log, "\n"))
			}
		}
		if m.sawWaiting {
			waited++
		}
	}
	if waited < 270 {
		t.Errorf("the server waited in %d of 300 seeds: the model does not exercise the steps", waited)
	}
}

// TestSemiSyncUnaskedMemberLeavesUnderWrites: with every replica up and
// receiving each commit at once, a commit before each round, rounds in
// turn (the leader, n2, n3, n4: n4 always publishes last, so its position
// is always ahead of the others' published ones) and one acknowledger
// asked, the members no
// longer asked leave the record while the primary keeps committing. They
// are compared where they stopped acknowledging (AckReport.OffFrom); a
// comparison with their current positions kept n4 listed for ever.
func TestSemiSyncUnaskedMemberLeavesUnderWrites(t *testing.T) {
	m := newSemiModel(1)
	m.full = true
	m.rec = &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{"n2", "n3", "n4"}, Acking: []string{"n2", "n3", "n4"}, Gen: 1}
	m.waiting = true
	for _, n := range []string{"n2", "n3", "n4"} {
		m.ack[n] = cluster.AckOn
	}
	for round := 0; round < 40; round++ {
		m.leaderStep()
		for _, n := range []string{"n2", "n3", "n4"} {
			m.commit() // writes go on between the replicas' rounds
			m.replicaStep(n)
			m.replicaStep(n)
		}
		if err := m.check(); err != "" {
			t.Fatalf("round %d: %s\n%s", round, err, strings.Join(m.log, "\n"))
		}
		if len(m.rec.Members) == len(m.rec.Acking) && len(m.rec.Acking) == 1 && !m.rec.Async {
			t.Logf("record %+v after %d rounds", *m.rec, round+1)
			return
		}
	}
	t.Fatalf("record %+v after 40 rounds: the members no longer asked linger\n%s", *m.rec, strings.Join(m.log, "\n"))
}

// semiModel is a leader n1 and replicas n2..n4 on an AcksAny engine.
type semiModel struct {
	rnd        *rand.Rand
	mode       cluster.SyncMode
	rec        *cluster.SyncState
	waiting    bool
	ack        map[string]cluster.AckState // each replica's server state
	up         map[string]bool             // agent and database up (reachable)
	report     map[string]cluster.AckReport
	seen       map[string]*cluster.SyncState // the record each replica last read
	read       map[string]bool               // it read one and has not acted on it yet
	log        []string
	sawWaiting bool
	// lsn is each database's position (n1: the primary's); promised is
	// the furthest commit acknowledged while the record promised it (the
	// server waiting, the record not async).
	lsn      map[string]cluster.LSN
	pos      map[string]cluster.LSN // published with the report
	promised cluster.LSN
	// offSeen and offFrom are each replica's Tracker.observeAck state.
	offSeen map[string]bool
	offFrom map[string]*cluster.LSN
	// full: an up replica receives each commit at once (else some part of
	// what it lacks), and synchronous_node_count is 1.
	full bool
}

func newSemiModel(seed uint64) *semiModel {
	m := &semiModel{rnd: rand.New(rand.NewPCG(seed, 7)), mode: cluster.SyncOn, ack: map[string]cluster.AckState{},
		up: map[string]bool{}, report: map[string]cluster.AckReport{}, seen: map[string]*cluster.SyncState{}, read: map[string]bool{},
		lsn: map[string]cluster.LSN{"n1": 0}, pos: map[string]cluster.LSN{}, offSeen: map[string]bool{}, offFrom: map[string]*cluster.LSN{}}
	for _, n := range []string{"n2", "n3", "n4"} {
		m.ack[n], m.up[n], m.lsn[n] = cluster.AckOff, true, 0
	}
	return m
}

func (m *semiModel) view() View {
	v := semiView(m.mode, m.rec)
	v.Config.SynchronousNodeCount = 1 + m.rnd.IntN(2)
	if m.full {
		v.Config.SynchronousNodeCount = 1
	}
	v.Repl.SyncAny = m.waiting
	v.Snap.Members = v.Snap.Members[:1]
	for _, n := range []string{"n2", "n3", "n4"} {
		if !m.up[n] {
			continue
		}
		r := m.report[n]
		v.Snap.Members = append(v.Snap.Members, cluster.Member{Name: n, Role: cluster.RoleReplica, State: cluster.StateRunning,
			Streaming: true, Upstream: "n1", ConnHost: n, ConnPort: 5432, Ack: &r, Position: cluster.PGPosition(1, m.pos[n])})
	}
	return v
}

func (m *semiModel) step() {
	switch r := m.rnd.IntN(20); {
	case r == 0:
		n := []string{"n2", "n3", "n4"}[m.rnd.IntN(3)]
		m.up[n] = !m.up[n]
		m.log = append(m.log, fmt.Sprintf("%s up=%v", n, m.up[n]))
		return
	case r == 1:
		m.mode = []cluster.SyncMode{cluster.SyncOff, cluster.SyncOn, cluster.SyncStrict}[m.rnd.IntN(3)]
		m.log = append(m.log, "mode "+string(m.mode))
		return
	case r < 8:
		m.leaderStep()
	default:
		m.replicaStep([]string{"n2", "n3", "n4"}[m.rnd.IntN(3)])
	}
}

func (m *semiModel) leaderStep() {
	m.commit()
	p := decideSemiSync(m.view())
	m.log = append(m.log, "leader: "+p.String())
	for _, a := range p.Actions {
		switch a := a.(type) {
		case SetSyncRecord:
			rec := a.Record(m.rec, 7)
			m.rec = &rec
			if rec.Async {
				m.promised = 0 // the promise is withdrawn (durability at risk)
			}
		case SetSyncStandbys:
			m.waiting = a.Choice == SyncAny
			m.sawWaiting = m.sawWaiting || m.waiting
		}
	}
}

// commit: the primary commits one transaction; up replicas receive some
// of what they lack; while the server waits and the record promises, the
// furthest position an acknowledging replica received is acknowledged.
func (m *semiModel) commit() {
	m.lsn["n1"]++
	for _, n := range []string{"n2", "n3", "n4"} {
		switch {
		case m.up[n] && m.full:
			m.lsn[n] = m.lsn["n1"]
		case m.up[n] && m.lsn[n] < m.lsn["n1"]:
			m.lsn[n] += cluster.LSN(m.rnd.IntN(int(m.lsn["n1"]-m.lsn[n]) + 1))
		}
		if m.up[n] && m.waiting && m.ack[n] == cluster.AckOn && m.rec != nil && !m.rec.Async && m.lsn[n] > m.promised {
			m.promised = m.lsn[n]
		}
	}
}

// replicaStep is half an agent round of an up replica: first it reports
// its state under the record it last read and reads the record; at its
// next step it acts on what it read, which the leader may have replaced
// in between (the agent's order: probe, publish, load, decide, act).
func (m *semiModel) replicaStep(n string) {
	if !m.up[n] {
		return
	}
	if !m.read[n] {
		r := cluster.AckReport{State: m.ack[n]}
		switch {
		case m.ack[n] != cluster.AckOff:
			m.offSeen[n], m.offFrom[n] = false, nil
		case !m.offSeen[n]:
			m.offSeen[n] = true
		case m.offFrom[n] == nil:
			l := m.lsn[n]
			m.offFrom[n] = &l
		}
		if f := m.offFrom[n]; f != nil {
			r.OffFrom = ptr(cluster.PGPosition(1, *f))
		}
		if s := m.seen[n]; s != nil {
			r.Epoch, r.Gen = s.Epoch, s.Gen
		}
		m.report[n], m.pos[n] = r, m.lsn[n]
		m.seen[n], m.read[n] = nil, true
		if m.rec != nil {
			rec := *m.rec
			m.seen[n] = &rec
		}
		return
	}
	m.read[n] = false
	v := m.view()
	v.Snap.Sync = m.seen[n]
	v.Self, v.DB.Role, v.DB.Ack = n, cluster.RoleReplica, m.ack[n]
	if a, ok := ackAction(v).(SetAcknowledging); ok {
		m.ack[n] = a.State
		m.log = append(m.log, fmt.Sprintf("%s: %s (record gen %d)", n, a, m.seen[n].Gen))
	}
}

func (m *semiModel) check() string {
	if m.rec == nil {
		if m.waiting {
			return "the server waits with no record"
		}
		return ""
	}
	if !m.rec.Async && !m.waiting {
		return fmt.Sprintf("record %+v is not async while the server does not wait", *m.rec)
	}
	for n, st := range m.ack {
		if st == cluster.AckOn && !m.rec.Has(n) {
			return fmt.Sprintf("%s acknowledges but the record %+v does not list it", n, *m.rec)
		}
	}
	var held cluster.LSN
	for _, n := range m.rec.Members {
		held = max(held, m.lsn[n])
	}
	if !m.rec.Async && held < m.promised {
		return fmt.Sprintf("commit %d was acknowledged, but the members of %+v hold only up to %d (%v)", m.promised, *m.rec, held, m.lsn)
	}
	return ""
}

// TestSemiSyncPromotionPreStep: a promotion on an AcksAny engine carries
// the record over before it promotes; the server waits before it promotes
// when the carried record asks a member to acknowledge, or in strict, and
// otherwise starts asynchronous with the record saying so.
func TestSemiSyncPromotionPreStep(t *testing.T) {
	cases := []struct {
		name   string
		mode   cluster.SyncMode
		acking []string
		want   string
	}{
		{"on, an acknowledger carried over: wait", cluster.SyncOn, []string{"n2", "n3"}, "set-sync-record names=[n3] acking=[n3] set-sync-standbys names=[] any promote"},
		{"on, nobody carried over: asynchronous", cluster.SyncOn, []string{"n2"}, "set-sync-record names=[n3] async promote"},
		{"strict, nobody carried over: every live replica asked, wait", cluster.SyncStrict, []string{"n2"}, "set-sync-record names=[n3] acking=[n3] set-sync-standbys names=[] any promote"},
	}
	for _, c := range cases {
		v := semiView(c.mode, &cluster.SyncState{Leader: "n1", Epoch: 7, Members: []string{"n2", "n3"}, Acking: c.acking, Gen: 4})
		v.Self = "n2"
		var got []string
		for _, a := range promotionSteps(v, cluster.Promotion{Done: []cluster.PromotionStep{cluster.StepKey, cluster.StepFence}}, false) {
			if s := a.String(); !strings.HasPrefix(s, "publish") && !strings.HasPrefix(s, "record-failover") {
				got = append(got, s)
			}
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%s: %s, want %s", c.name, g, c.want)
		}
	}
}

// TestDivergedDetach: on an engine whose diverged members are detached
// (db.DivergedDetach), a member that cannot follow the leader keeps
// running read-only with its replication removed, where PostgreSQL's is
// stopped; once detached nothing more is done, and the reason says so.
func TestDivergedDetach(t *testing.T) {
	base := func(diverged db.DivergedPolicy) View {
		v := semiView(cluster.SyncOff, nil)
		v.Self, v.CannotFollowEpoch = "n2", 7
		v.Engine.Diverged = diverged
		v.DB = db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RoleReplica,
			UpstreamHost: "n1", UpstreamPort: 5432}
		return v
	}
	cases := []struct {
		name string
		v    func() View
		want string
	}{
		{"detach: replication configured", func() View { return base(db.DivergedDetach) }, "[detach] state=cannot_follow"},
		{"detach: done", func() View {
			v := base(db.DivergedDetach)
			v.DB.UpstreamHost, v.DB.UpstreamPort = "", 0
			return v
		}, "[] state=cannot_follow problem=cannot_follow reason=cannot follow n1 (epoch 7): this database's history diverged; it runs read-only and does not replicate"},
		{"stop: running", func() View { return base(db.DivergedStop) }, "[stop mode=fast] state=cannot_follow"},
		{"detach: the engine reports the divergence", func() View {
			v := base(db.DivergedDetach)
			v.CannotFollowEpoch = 0
			v.DB.Diverged = "errant GTIDs"
			return v
		}, "[mark-cannot-follow epoch=7, detach] state=cannot_follow"},
	}
	for _, c := range cases {
		if got := Decide(c.v()).String(); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want prefix %q", c.name, got, c.want)
		}
	}
}

// TestFollowAfterSyncRecord: on an AcksAny engine in synchronous mode a
// replica follows a new leader only once the leader's record of its epoch
// exists, and turns acknowledging on before its stream starts when the
// record asks it to.
func TestFollowAfterSyncRecord(t *testing.T) {
	v := semiView(cluster.SyncOn, &cluster.SyncState{Epoch: 6, Members: []string{"n2"}, Acking: []string{"n2"}})
	v.Self = "n2"
	v.DB = db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RoleReplica, Ack: cluster.AckOff}
	if got := Decide(v).String(); !strings.Contains(got, "waiting for n1's synchronous record of epoch 7") {
		t.Errorf("stale record: %s", got)
	}
	v.Snap.Sync = semiRec([]string{"n2"}, []string{"n2"}, false)
	if got := Decide(v).String(); !strings.HasPrefix(got, "[set-acknowledging on, follow upstream=n1]") {
		t.Errorf("record asks n2: %s", got)
	}
	v.Snap.Sync = semiRec(nil, nil, false)
	if got := Decide(v).String(); !strings.HasPrefix(got, "[follow upstream=n1]") {
		t.Errorf("record does not ask n2: %s", got)
	}
	v.Config.SynchronousMode, v.Snap.Sync = cluster.SyncOff, nil
	if got := Decide(v).String(); !strings.HasPrefix(got, "[follow upstream=n1]") {
		t.Errorf("mode off, no record: %s", got)
	}
}

func ptr[T any](v T) *T { return &v }

// TestTrackerAckOffFrom: a member's record gives OffFrom only from the
// second probe in a row that finds its side off (the first may have read
// the position before the side went off), keeps that position while the
// side stays off however far the database streams, and drops it once a
// probe finds the side on again.
func TestTrackerAckOffFrom(t *testing.T) {
	tr := Tracker{Self: "n2"}
	now := time.Unix(1000, 0)
	st := func(ack cluster.AckState, lsn cluster.LSN) db.Status {
		return db.Status{Running: true, Accepting: true, HasData: true, Role: cluster.RoleReplica, Ack: ack,
			Position: cluster.PGPosition(1, lsn)}
	}
	offFrom := func(s db.Status) string {
		tr.ObserveDB(now, s, cluster.Snapshot{})
		m := tr.Record(now, cluster.Member{Name: "n2"}, cluster.Snapshot{}, s)
		if m.Ack == nil || m.Ack.OffFrom == nil {
			return "none"
		}
		return m.Ack.OffFrom.String()
	}
	steps := []struct {
		st   db.Status
		want string
	}{
		{st(cluster.AckOn, 0x100), "none"},
		{st(cluster.AckOff, 0x200), "none"},
		{st(cluster.AckOff, 0x300), cluster.PGPosition(1, 0x300).String()},
		{st(cluster.AckOff, 0x900), cluster.PGPosition(1, 0x300).String()},
		{st(cluster.AckOn, 0xa00), "none"},
		{st(cluster.AckOff, 0xb00), "none"},
	}
	for i, s := range steps {
		if got := offFrom(s.st); got != s.want {
			t.Fatalf("probe %d (%s at %s): OffFrom %s, want %s", i+1, s.st.Ack, s.st.Position, got, s.want)
		}
	}
}
