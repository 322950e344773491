package hasim

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/db/postgres"
	"github.com/hamgr/hamgr/dcs/memstore"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/ha"
)

// Origin is the simulated clock's starting time.
var Origin = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// MemberSpec describes one member.
type MemberSpec struct {
	Name string
	Tags cluster.Tags
	// Lag is how many bytes this member's database trails its upstream
	// while streaming.
	Lag cluster.LSN
	// UseRewind and AllowReclone are the agent's postgresql.use_pg_rewind
	// and postgresql.reclone_on_rewind_failure options (the rejoin
	// methods of agent.Options.Engine).
	UseRewind    bool
	AllowReclone bool
	// Fencer gives the member's agent a fencer (agent.Options.Fencer)
	// that powers the old primary's simulated machine off before it
	// promotes over it.
	Fencer bool
}

// rejoin is the set of rejoin methods the spec allows.
func (s MemberSpec) rejoin() db.RejoinMethods {
	var m db.RejoinMethods
	if s.UseRewind {
		m |= db.RejoinResync
	}
	if s.AllowReclone {
		m |= db.RejoinReclone
	}
	return m
}

// Config configures a World. Zero fields take the defaults noted.
type Config struct {
	Members []MemberSpec
	// Dynamic is the cluster configuration (default: ttl 3s, loop_wait 1s,
	// retry_timeout 1s, primary_start_timeout 3s).
	Dynamic cluster.DynamicConfig
	// Tick is how far each Step advances the clock (default 100ms).
	Tick time.Duration
	// StartTime is how long a clean start takes until the database
	// accepts connections (default 100ms); RecoveryTime is the same after a
	// crash or an immediate stop (default 500ms).
	StartTime    time.Duration
	RecoveryTime time.Duration
	// WritePerTick is how many WAL bytes a writable primary produces per
	// tick (default 0x100).
	WritePerTick cluster.LSN
	// ReceiverTimeout is every replica's WAL receiver timeout (default
	// 4s): a connected receiver keeps a silent sender that long.
	ReceiverTimeout time.Duration
	// SemiSync gives every member an engine that takes any replica's
	// acknowledgement (db.AcksAny, MariaDB's semi-synchronous
	// replication) instead of PostgreSQL's named standbys, with the
	// durability invariant below.
	SemiSync bool
	// Fresh starts from empty data directories and an uninitialized store;
	// otherwise the first member leads a healthy cluster at the first
	// step and every other member streams from it.
	Fresh bool
}

func (c *Config) defaults() {
	if c.Dynamic.LoopWait == 0 {
		c.Dynamic = cluster.DynamicConfig{
			TTL: cluster.Duration(3 * time.Second), LoopWait: cluster.Duration(time.Second),
			RetryTimeout: cluster.Duration(time.Second), PrimaryStartTimeout: cluster.Duration(3 * time.Second),
		}
	}
	if c.Dynamic.Fencing == "" && slices.ContainsFunc(c.Members, func(m MemberSpec) bool { return m.Fencer }) {
		// Members with a fencer fence: a world that gives them one
		// without a policy means require.
		c.Dynamic.Fencing = cluster.FencingRequire
	}
	if c.Tick == 0 {
		c.Tick = 100 * time.Millisecond
	}
	if c.StartTime == 0 {
		c.StartTime = 100 * time.Millisecond
	}
	if c.RecoveryTime == 0 {
		c.RecoveryTime = 500 * time.Millisecond
	}
	if c.WritePerTick == 0 {
		c.WritePerTick = 0x100
	}
	if c.ReceiverTimeout == 0 {
		c.ReceiverTimeout = 4 * time.Second
	}
}

// World is the simulated cluster. It is not safe for concurrent use.
type World struct {
	cfg   Config
	now   time.Time
	step  int
	store *memstore.Cluster
	nodes []*node
	log   []string
	// violations found during the current step.
	violations []string
	maxEpoch   cluster.Epoch
	// leaderAt names the member that took the key of each epoch seen;
	// fencedAt the epochs whose leader fenced (checkFence).
	leaderAt map[cluster.Epoch]string
	fencedAt map[cluster.Epoch]string
	wakeRev  int64
	// storeDown is a store outage: no agent reaches it.
	storeDown bool
	// revoked holds the leases the store revoked before their TTL ran out
	// (faults RevokeLeases, StoreReturn).
	revoked map[int64]bool
	// Promotions lists "name@epoch" for every promotion, in order.
	Promotions []string
	// promised is, per timeline, the furthest position a SemiSync
	// primary had acknowledged while its record promised it (acknowledge).
	promised map[uint32]cluster.LSN
	// Acknowledged counts the ticks in which a SemiSync primary
	// acknowledged under a promise.
	Acknowledged int
	// Switchovers lists "from->to@epoch" for every completed switchover.
	Switchovers []string
	// Rewinds lists "name<-upstream@epoch" for every successful pg_rewind,
	// with " (no rewind required)" appended when it found nothing to do;
	// RewindFailures the same for failed ones.
	Rewinds        []string
	RewindFailures []string
	// Reclones lists "name<-upstream@epoch" for every successful re-clone
	// (data deleted, upstream copied).
	Reclones []string
	// Fences lists "fencer->target@epoch" for every fence; Publications
	// "name@epoch" for every publish step that succeeded.
	Fences       []string
	Publications []string
	// ReplicaSets lists, in order, every publication of the replica set
	// (primary@epoch:[hosts]) by the agents' publishers.
	ReplicaSets []string
	// PrePromotes lists "name@epoch over old" for every pre_promote hook
	// that succeeded.
	PrePromotes []string
	// TakeOvers lists "name<-old@epoch" for every take-over of a held
	// leader key on proof of death (checkTakeOver).
	TakeOvers []string
}

// node is one simulated machine: a database, and the real hamgr agent
// (package agent) running beside it on the simulated clock, talking to
// the database through an engine and to the store through a memstore
// client of its own.
type node struct {
	spec MemberSpec
	// rounds counts the rounds its agents ran; hurried those that asked
	// for the next one at once (in under 50ms); portChecks the leader-gone
	// port checks they made (simReach.Refusals).
	rounds, hurried, portChecks int
	// lossAnswered is the store's StreamLossRevision its agents last
	// answered (answerLosses).
	lossAnswered int64
	// alive is false while the node (agent and database) is down.
	alive bool
	db    simDB
	eng   *engine
	a     *agent.Agent
	// client is the current agent process's store connection; a new
	// agent process gets a new one (the old one's lease lingers until it
	// expires, as a dead process's does).
	client *memstore.Client
	// agentDown is true while the agent process is down (database untouched).
	agentDown bool
	paused    bool
	// partitioned agents cannot reach the store.
	partitioned bool
	// frozen is a whole machine stopped (a VM paused, SIGSTOP of every
	// process): its agent does nothing, its database moves nothing and
	// acknowledges nothing, nobody reaches it, and every connection to it
	// stays up but silent.
	frozen bool
	// overloaded is a machine so busy that connections to its database
	// time out while it keeps working (and writing).
	overloaded bool
	// rejecting is a firewall on this machine that resets every
	// connection from the other members (fault Reject).
	rejecting bool
	// agentGoneAt is when the agent last died or was paused.
	agentGoneAt time.Time
	// thawedAt is when the machine was last thawed. In that step its
	// agent runs before its database moves: the simulator assumes the
	// agent's fence timer wins the race against a resumed database (on
	// real machines nothing guarantees it; fencing does).
	thawedAt    time.Time
	incarnation int
	nextRound   time.Time
	nextRenew   time.Time
	// promotedLSN is where the database was at its last promotion.
	promotedLSN cluster.LSN
	// rejoinEpoch is the highest epoch issued (World.maxEpoch) when this
	// member's data was last cloned, rewound or re-cloned from an upstream, and
	// rejoinedFrom that upstream: any leader key it may be promoted under
	// afterwards must be newer.
	rejoinEpoch  cluster.Epoch
	rejoinedFrom string
	// removed is set when the data was removed to be cloned again.
	removed bool
	// failCalls counts the injected failures left per call (FailCall);
	// dieOn is the call the agent process dies in (DieOnCall).
	failCalls map[Call]int
	dieOn     Call
	// apiCut: nobody reaches this agent's API, and it reaches no other
	// (CutAPI).
	apiCut bool
	// nextFailsafe is when the agent's failsafe step is next due.
	nextFailsafe time.Time
}

// New builds a World.
func New(cfg Config) *World {
	cfg.defaults()
	w := &World{cfg: cfg, now: Origin, revoked: map[int64]bool{}, promised: map[uint32]cluster.LSN{}}
	w.store = memstore.New(w.Now)
	for _, s := range cfg.Members {
		n := &node{spec: s, alive: true, db: simDB{lag: s.Lag}}
		n.eng = &engine{w: w, n: n, exited: make(chan time.Time)}
		w.nodes = append(w.nodes, n)
		w.startAgent(n)
	}
	if !cfg.Fresh && len(w.nodes) > 0 {
		for i, n := range w.nodes {
			n.db = simDB{hasData: true, running: true, accepting: true, standby: i > 0, timeline: 1,
				lsn: 0x1000000, lag: n.spec.Lag, forks: map[uint32]cluster.LSN{}}
			if i > 0 {
				n.db.upstream = w.nodes[0].spec.Name
			}
		}
		w.seed()
	}
	return w
}

// seed makes the first member the leader of a running cluster: it runs
// the first agent's round alone (it takes the key for its running
// primary), then every other agent's (they follow it).
func (w *World) seed() {
	first := w.nodes[0]
	if _, err := first.client.Initialize(context.Background(), first.spec.Name, w.cfg.Dynamic); err != nil {
		panic("hasim: seed: " + err.Error())
	}
	for _, n := range w.nodes {
		w.round(n)
	}
	if w.store.Snapshot().Leader == nil {
		panic("hasim: seed: " + first.spec.Name + " did not take the leader key:\n" + strings.Join(w.log, "\n"))
	}
	for i, n := range w.nodes {
		// Spread the first rounds over the loop like real agents.
		n.nextRound = w.now.Add(time.Duration(i+1) * w.cfg.Tick)
	}
}

// startAgent starts a fresh agent process on n: no lease, no memory.
func (w *World) startAgent(n *node) {
	n.incarnation++
	n.client = w.store.Client(fmt.Sprintf("%s#%d", n.spec.Name, n.incarnation))
	n.client.SetReachable(!n.partitioned && !w.storeDown)
	host, port := addr(n.spec.Name)
	opts := agent.Options{
		Cluster: "sim", Name: n.spec.Name, Tags: n.spec.Tags, Config: w.cfg.Dynamic,
		DB: n.eng, Store: faultyStore{Client: n.client, w: w, n: n}, ConnHost: host, ConnPort: port,
		Logger: slog.New(&logHandler{w: w}), Clock: worldClock{w},
		Engine:     w.capabilities(n),
		Background: func(fn func()) { fn() }, // the simulated clock does not move during an action
		Publishers: []discovery.Publisher{simPublisher{w: w, n: n}},
		PrePromote: simPrePromoter{w: w, n: n},
		Peers:      simPeers{w: w, n: n},
		APIURL:     apiURL(n.spec.Name),
		Reach:      simReach{w: w, n: n},
	}
	if n.spec.Fencer {
		opts.Fencer = simFencer{w: w, n: n}
	}
	n.a = agent.New(opts)
	n.nextRound, n.nextRenew, n.nextFailsafe = w.now, w.now, w.now
}

// worldClock is the agents' clock: the simulated one.
type worldClock struct{ w *World }

func (c worldClock) Now() time.Time { return c.w.now }

// Now is the simulated clock.
func (w *World) Now() time.Time { return w.now }

// Config returns the effective configuration.
func (w *World) Config() Config { return w.cfg }

// Log is everything that happened so far, one line per event.
func (w *World) Log() []string { return w.log }

func (w *World) logf(format string, args ...any) {
	w.log = append(w.log, fmt.Sprintf("%8s #%d ", w.now.Sub(Origin), w.step)+fmt.Sprintf(format, args...))
}

func (w *World) violate(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.violations = append(w.violations, msg)
	w.logf("INVARIANT VIOLATED: %s", msg)
}

func (w *World) node(name string) *node {
	for _, n := range w.nodes {
		if n.spec.Name == name {
			return n
		}
	}
	panic("hasim: no member " + name)
}

// InvariantError is a violated invariant, with the log up to that step.
type InvariantError struct {
	Step       int
	At         time.Duration
	Violations []string
	Log        []string
}

// Error lists the violations and the log.
func (e *InvariantError) Error() string {
	return fmt.Sprintf("step %d (+%s): %s\n--- log ---\n%s", e.Step, e.At, strings.Join(e.Violations, "; "),
		strings.Join(e.Log, "\n"))
}

// Step advances the clock by one tick after applying faults, runs every
// agent that is due and checks the invariants. It returns an
// *InvariantError when one is violated.
func (w *World) Step(faults ...Fault) error {
	w.step++
	w.now = w.now.Add(w.cfg.Tick)
	for _, f := range faults {
		w.inject(f)
	}
	for _, n := range w.nodes {
		if !n.thawedAt.Equal(w.now) {
			w.advanceDB(n)
		}
	}
	ctx := context.Background()
	for _, n := range w.nodes {
		if !n.agentRuns() {
			continue
		}
		if !w.now.Before(n.nextRenew) {
			n.nextRenew = w.now.Add(n.a.Renew(ctx))
		}
		if !w.now.Before(n.nextFailsafe) {
			n.nextFailsafe = w.now.Add(n.a.Failsafe(ctx))
		}
		n.a.Fence(ctx)
	}
	if !w.storeDown {
		w.expire() // a store without quorum expires no lease
	}
	w.wakeOnChange()
	w.answerLosses()
	k := len(w.nodes)
	for i := range k {
		n := w.nodes[(i+w.step)%k]
		if n.agentRuns() && !w.now.Before(n.nextRound) && !w.now.Before(n.a.NotBefore()) {
			w.round(n)
			w.wakeOnChange()
			w.answerLosses()
		}
	}
	for _, n := range w.nodes {
		if n.agentRuns() {
			n.a.Republish(ctx) // cheap when nothing is to be published
		}
	}
	w.checkPrimaries()
	w.checkEpochs()
	if len(w.violations) > 0 {
		err := &InvariantError{Step: w.step, At: w.now.Sub(Origin), Violations: w.violations, Log: append([]string(nil), w.log...)}
		w.violations = nil
		return err
	}
	return nil
}

// round runs one round of n's agent and schedules the next.
func (w *World) round(n *node) {
	wait := n.a.Round(context.Background())
	n.rounds++
	if wait < 50*time.Millisecond {
		n.hurried++
	}
	n.nextRound = w.now.Add(wait)
}

// PortChecks is how many times member's agents checked the leader's
// ports for a take-over.
func (w *World) PortChecks(member string) int {
	if n := w.node(member); n != nil {
		return n.portChecks
	}
	return 0
}

// Rounds is how many rounds member's agents have run, and how many of
// them asked for the next one at once (in under 50ms).
func (w *World) Rounds(member string) (rounds, hurried int) {
	if n := w.node(member); n != nil {
		return n.rounds, n.hurried
	}
	return 0, 0
}

// wakeOnChange is the store watch: after a change an agent's watch would
// wake it for, every running agent re-decides at once.
func (w *World) wakeOnChange() {
	if rev := w.store.WakeRevision(); rev != w.wakeRev {
		w.wakeRev = rev
		for _, n := range w.nodes {
			if n.nextRound.After(w.now) {
				n.nextRound = w.now
			}
		}
	}
}

// answerLosses has every running agent answer the member records that
// reported a stream loss since it last answered, at once, as the real
// agent does on its store watch (Agent.AnswerStreamLoss; a cut-off
// agent's write fails). A paused agent answers when it runs again, as a
// watch delivers what queued meanwhile.
func (w *World) answerLosses() {
	rev := w.store.StreamLossRevision()
	for _, n := range w.nodes {
		if n.agentRuns() && n.lossAnswered < rev {
			n.lossAnswered = rev
			n.a.AnswerStreamLoss(context.Background())
		}
	}
}

// expire lets the store expire leases whose TTL ran out. Rule 2: the
// owner must have stopped writing before then. A paused agent cannot
// (only a watchdog could); a dead agent's successor adopts the database
// under a new lease.
func (w *World) expire() {
	for _, e := range w.store.Expire() {
		for _, n := range w.nodes {
			if n.client != e.Owner {
				continue
			}
			if n.writable() && !n.agentDown && !n.paused && !n.frozen && !w.failsafeCovers(n) {
				w.violate("lease %d of %s expired while its database is still a writable primary", e.ID, e.Owner.Name())
			}
		}
		w.logf("store: lease %d of %s expired", e.ID, e.Owner.Name())
	}
}

// checkEpochs: epochs only grow.
func (w *World) checkEpochs() {
	l := w.store.Snapshot().Leader
	if l == nil || l.Epoch == w.maxEpoch {
		return
	}
	if l.Epoch < w.maxEpoch {
		w.violate("epoch went from %d to %d", w.maxEpoch, l.Epoch)
		return
	}
	w.maxEpoch = l.Epoch
	if w.leaderAt == nil {
		w.leaderAt = map[cluster.Epoch]string{}
	}
	w.leaderAt[l.Epoch] = l.Name
	w.logf("store: %s took the leader key, epoch %d", l.Name, l.Epoch)
}

// Run steps for d of simulated time, stopping at the first violation.
func (w *World) Run(d time.Duration) error {
	end := w.now.Add(d)
	for w.now.Before(end) {
		if err := w.Step(); err != nil {
			return err
		}
	}
	return nil
}

func (n *node) agentRuns() bool { return n.alive && !n.agentDown && !n.paused && !n.frozen }

// writable reports whether n's database can acknowledge a write now: a
// frozen machine cannot until it is thawed.
func (n *node) writable() bool {
	return n.alive && !n.dbFrozen() && n.db.running && n.db.accepting && !n.db.standby
}

// dbFrozen reports whether n's database moves nothing: its machine is
// frozen, or its agent suspended it.
func (n *node) dbFrozen() bool { return n.frozen || n.db.suspended }

// probe is what the agent's probe of its own database returns now. A
// replica whose receiver reached its upstream holds the upstream's
// timeline history and reports when its own history left it (db/postgres
// reads the history files its receiver fetched).
func (w *World) probe(n *node) db.Status {
	st := n.db.status(w.now, n.alive, w.cfg.ReceiverTimeout)
	d := &n.db
	if w.cfg.SemiSync && st.Accepting {
		st.Ack = cluster.AckOff
		if d.ack {
			st.Ack = cluster.AckOn
		}
	}
	if st.Accepting && !d.standby && d.hung {
		st.Stalled = "a new connection did not complete in 3s: timeout"
	}
	if !st.Accepting || !d.standby || d.upstream == "" || d.upstream == n.spec.Name {
		return st
	}
	if u := w.node(d.upstream); u.alive && !u.dbFrozen() && u.db.running && u.db.accepting && !canFollow(d, &u.db) {
		st.Diverged = fmt.Sprintf("%s's history (timeline %d) left this replica's timeline %d before %s", u.spec.Name, u.db.timeline, d.timeline, d.lsn)
		st.UpstreamHost, st.UpstreamPort = d.upstream, 5432
	}
	return st
}

func (w *World) checkPrimaries() {
	if ps := w.Primaries(); len(ps) > 1 {
		w.violate("%d writable primaries at once: %s (leader key %s)", len(ps), strings.Join(ps, ", "), w.leaderString())
	}
}

// Primaries names the members whose databases are writable primaries.
func (w *World) Primaries() []string {
	var ps []string
	for _, n := range w.nodes {
		if n.writable() {
			ps = append(ps, n.spec.Name)
		}
	}
	return ps
}

// Leader is the leader key, or nil.
func (w *World) Leader() *cluster.Leader { return w.store.Snapshot().Leader }

func (w *World) leaderString() string {
	l := w.Leader()
	if l == nil {
		return "none"
	}
	return fmt.Sprintf("%s@%d(lease %d)", l.Name, l.Epoch, l.Lease)
}

// MemberStatus is what a test may inspect about a member.
type MemberStatus struct {
	Name string
	// DB is what a probe of the member's database returns now.
	DB db.Status
	// State, Reason and Problem are the agent's last plan's.
	State   cluster.MemberState
	Reason  string
	Problem cluster.Problem
	// LastPlan is the agent's last plan, rendered.
	LastPlan string
	// LeaseID is the agent's current lease; HoldsLeader is whether the
	// leader key is bound to it.
	LeaseID     int64
	HoldsLeader bool
	Alive       bool
	Paused      bool
	Partitioned bool
	// Tracker is what the agent remembers between rounds.
	Tracker ha.Tracker
}

// Status reports one member.
func (w *World) Status(name string) MemberStatus {
	n := w.node(name)
	l := w.Leader()
	st := n.a.State()
	id := n.client.LeaseID()
	return MemberStatus{
		Name: name, DB: w.probe(n), State: st.Self.State, Reason: st.Self.Reason, Problem: st.Self.Problem, LastPlan: n.a.LastPlan(),
		LeaseID: id, HoldsLeader: l != nil && l.Name == name && l.Lease == id && id != 0 && w.store.LeaseAlive(id),
		Alive: n.alive && !n.agentDown, Paused: n.paused, Partitioned: n.partitioned, Tracker: n.a.Tracker(),
	}
}

// Summary renders every member on one line each, for failure messages.
func (w *World) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=+%s leader=%s\n", w.now.Sub(Origin), w.leaderString())
	for _, n := range w.nodes {
		fmt.Fprintf(&b, "  %s: alive=%v agentDown=%v paused=%v frozen=%v hung=%v partitioned=%v db=%s plan=%s\n", n.spec.Name, n.alive,
			n.agentDown, n.paused, n.frozen, n.db.hung, n.partitioned, n.db.String(), n.a.LastPlan())
	}
	return b.String()
}

// addr is the simulated database address of a member: its name and the
// default port.
func addr(name string) (string, int) { return name, 5432 }

// nodeAt is the member whose database listens at host:port, or nil.
func (w *World) nodeAt(host string, port int) *node {
	for _, n := range w.nodes {
		if h, p := addr(n.spec.Name); h == host && p == port {
			return n
		}
	}
	return nil
}

// checkHoldsKey: no database becomes a writable primary unless its agent
// holds the leader key on its current, live lease.
func (w *World) checkHoldsKey(n *node, what string) {
	l := w.Leader()
	id := n.client.LeaseID()
	live := w.store.LeaseAlive(id)
	if !live && w.revoked[id] && (l == nil || l.Lease == id) {
		// The store revoked the lease before its TTL: until the agent
		// notices (at its next renewal, or the next store write), its
		// database can become writable without the key. Only the store
		// broke the rules here; "at most one writable primary" still
		// holds (a writable old primary is never promoted over).
		w.logf("%s %s after the store revoked its lease %d (allowed until the agent notices)", n.spec.Name, what, id)
		return
	}
	if s := w.store.Snapshot(); l == nil && s.LastLeader == nil && s.Initialized == n.spec.Name {
		// The first database of a new cluster starts (initdb, then
		// start) before its agent takes the key, in the same plan; when
		// taking it fails the next round takes it. Nobody has led, so no
		// other database can be a primary meanwhile (the others wait,
		// empty, for a leader to clone).
		w.logf("%s %s before taking the key of a cluster nobody has led yet (allowed: the bootstrap)", n.spec.Name, what)
		return
	}
	if l == nil || l.Name != n.spec.Name || id == 0 || l.Lease != id || !live {
		w.violate("%s %s without holding the leader key (key %s, agent lease %d, lease live %v)",
			n.spec.Name, what, w.leaderString(), id, live)
		return
	}
	// A member whose data was made a copy of another's history may be
	// writable only under a key acquired after that (never in the epoch
	// it rejoined in, nor an older one).
	if n.rejoinEpoch != 0 && l.Epoch <= n.rejoinEpoch {
		w.violate("%s %s in epoch %d, but it was cloned, rewound or re-cloned from %s when epoch %d had been issued",
			n.spec.Name, what, l.Epoch, n.rejoinedFrom, n.rejoinEpoch)
	}
}

// logHandler writes the agents' Info and more severe records into the
// world's log, stamped with the simulated time.
type logHandler struct {
	w     *World
	attrs []slog.Attr
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	member := ""
	add := func(a slog.Attr) bool {
		if a.Key == "member" {
			member = a.Value.String()
			return true
		}
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	}
	for _, a := range h.attrs {
		add(a)
	}
	r.Attrs(add)
	h.w.logf("%s: %s%s", member, r.Message, b.String())
	return nil
}

func (h *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &logHandler{w: h.w, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *logHandler) WithGroup(string) slog.Handler { return h }

// capabilities are n's engine's: PostgreSQL's, or with SemiSync an engine
// that takes any replica's acknowledgement.
func (w *World) capabilities(n *node) db.Capabilities {
	c := postgres.Capabilities(n.spec.rejoin())
	if w.cfg.SemiSync {
		c.Acks = db.AcksAny
	}
	return c
}
