package hasim

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
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
	// and postgresql.reclone_on_rewind_failure options, passed into every
	// View (ha.View.UseRewind, ha.View.AllowReclone).
	UseRewind    bool
	AllowReclone bool
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
}

// World is the simulated cluster. It is not safe for concurrent use.
type World struct {
	cfg   Config
	now   time.Time
	step  int
	store store
	nodes []*node
	log   []string
	// violations found during the current step.
	violations []string
	maxEpoch   cluster.Epoch
	// Promotions lists "name@epoch" for every promotion, in order.
	Promotions []string
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
}

type node struct {
	spec MemberSpec
	// alive is false while the node (agent and database) is down.
	alive bool
	db    simDB
	a     *agent
	// agentDown is true while the agent process is down (database untouched).
	agentDown bool
	paused    bool
	// partitioned agents cannot reach the store.
	partitioned bool
	incarnation int
	// rejoinEpoch is the highest epoch issued (World.maxEpoch) when this
	// member's data was last cloned, rewound or re-cloned from an upstream, and
	// rejoinedFrom that upstream: any leader key it may be promoted under
	// afterwards must be newer.
	rejoinEpoch  cluster.Epoch
	rejoinedFrom string
}

// New builds a World.
func New(cfg Config) *World {
	cfg.defaults()
	w := &World{cfg: cfg, now: Origin}
	w.store = store{leases: map[int64]lease{}, members: map[string]memberRec{}, config: cfg.Dynamic}
	for _, s := range cfg.Members {
		n := &node{spec: s, alive: true, db: simDB{lag: s.Lag}}
		n.a = newAgent(n, 1)
		n.incarnation = 1
		w.nodes = append(w.nodes, n)
	}
	if !cfg.Fresh && len(w.nodes) > 0 {
		w.store.initialized = w.nodes[0].spec.Name
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

// seed makes the first member the leader of a running cluster: every agent
// holds a lease and has published its record; the first holds the key.
func (w *World) seed() {
	for _, n := range w.nodes {
		w.ensureLease(n)
		w.probe(n)
	}
	first := w.nodes[0]
	if err := w.do(first, ha.View{}, ha.Plan{}, ha.Action{Kind: ha.AcquireLeader}); err != nil {
		panic("hasim: seed: " + err.Error())
	}
	for _, n := range w.nodes {
		n.a.self.State = cluster.StateRunning
		w.publishAndLoad(n, w.probe(n))
		n.a.track.ObserveLeader(w.now, w.store.snapshot())
	}
	for i, n := range w.nodes {
		// Spread the first rounds over the loop like real agents.
		n.a.nextRound = w.now.Add(time.Duration(i+1) * w.cfg.Tick)
	}
}

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
		w.advanceDB(n)
	}
	for _, n := range w.nodes {
		if n.agentRuns() {
			w.renew(n)
			w.fenceTimer(n)
		}
	}
	w.store.expire(w)
	k := len(w.nodes)
	for i := range k {
		n := w.nodes[(i+w.step)%k]
		if n.agentRuns() && !w.now.Before(n.a.nextRound) && !w.now.Before(n.a.notBefore) {
			w.round(n)
		}
	}
	w.checkPrimaries()
	if len(w.violations) > 0 {
		err := &InvariantError{Step: w.step, At: w.now.Sub(Origin), Violations: w.violations, Log: append([]string(nil), w.log...)}
		w.violations = nil
		return err
	}
	return nil
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

func (n *node) agentRuns() bool { return n.alive && !n.agentDown && !n.paused }

func (n *node) writable() bool {
	return n.alive && n.db.running && n.db.accepting && !n.db.standby
}

func (w *World) checkPrimaries() {
	var ps []string
	for _, n := range w.nodes {
		if n.writable() {
			ps = append(ps, n.spec.Name)
		}
	}
	if len(ps) > 1 {
		w.violate("%d writable primaries at once: %s (leader key %s)", len(ps), strings.Join(ps, ", "), w.store.leaderString())
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
func (w *World) Leader() *cluster.Leader {
	if w.store.leader == nil {
		return nil
	}
	l := *w.store.leader
	return &l
}

// MemberStatus is what a test may inspect about a member.
type MemberStatus struct {
	Name string
	// DB is what a probe of the member's database returns now.
	DB db.Status
	// State and Reason are the agent's last plan's.
	State  cluster.MemberState
	Reason string
	// LastPlan is the agent's last plan, rendered.
	LastPlan string
	// LeaseID is the agent's current lease; HoldsLeader is whether the
	// leader key is bound to it.
	LeaseID     int64
	HoldsLeader bool
	Alive       bool
	Paused      bool
	Partitioned bool
}

// Status reports one member.
func (w *World) Status(name string) MemberStatus {
	n := w.node(name)
	l := w.store.leader
	return MemberStatus{
		Name: name, DB: n.db.status(n.alive), State: n.a.self.State, Reason: n.a.self.Reason, LastPlan: n.a.lastPlan,
		LeaseID: n.a.leaseID, HoldsLeader: l != nil && l.Name == name && l.Lease == n.a.leaseID && n.a.leaseID != 0,
		Alive: n.alive && !n.agentDown, Paused: n.paused, Partitioned: n.partitioned,
	}
}

// Summary renders every member on one line each, for failure messages.
func (w *World) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "t=+%s leader=%s\n", w.now.Sub(Origin), w.store.leaderString())
	for _, n := range w.nodes {
		fmt.Fprintf(&b, "  %s: alive=%v agentDown=%v paused=%v partitioned=%v db=%s plan=%s\n", n.spec.Name, n.alive,
			n.agentDown, n.paused, n.partitioned, n.db.String(), n.a.lastPlan)
	}
	return b.String()
}

// store is the simulated etcd.
type store struct {
	rev         int64
	nextLease   int64
	leases      map[int64]lease
	leader      *cluster.Leader
	lastLeader  *cluster.LastLeader
	members     map[string]memberRec
	initialized string
	config      cluster.DynamicConfig
	history     []cluster.HistoryEntry
	// request is the pending operator request (switchover or failover).
	request *cluster.Request
}

type lease struct {
	expires     time.Time
	owner       string
	incarnation int
}

type memberRec struct {
	m     cluster.Member
	lease int64
}

func (s *store) leaderString() string {
	if s.leader == nil {
		return "none"
	}
	return fmt.Sprintf("%s@%d(lease %d)", s.leader.Name, s.leader.Epoch, s.leader.Lease)
}

// expire deletes every lease whose TTL ran out, with the keys bound to it.
func (s *store) expire(w *World) {
	ids := make([]int64, 0, len(s.leases))
	for id := range s.leases {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		l := s.leases[id]
		if w.now.Before(l.expires) {
			continue
		}
		n := w.node(l.owner)
		// Rule 2: the owner must have stopped writing before now. A
		// paused agent cannot (only a watchdog could); a dead agent's
		// successor adopts the database under a new lease.
		if n.writable() && n.incarnation == l.incarnation && !n.agentDown && !n.paused {
			w.violate("lease %d of %s expired while its database is still a writable primary (last renewal sent +%s)",
				id, l.owner, n.a.lastRenewSent.Sub(Origin))
		}
		s.revoke(w, id, "expired")
	}
}

func (s *store) revoke(w *World, id int64, why string) {
	delete(s.leases, id)
	changed := false
	if s.leader != nil && s.leader.Lease == id {
		w.logf("store: leader key %s deleted (lease %s)", s.leaderString(), why)
		s.leader = nil
		changed = true
	}
	for name, r := range s.members {
		if r.lease == id {
			delete(s.members, name)
			changed = true
		}
	}
	if changed {
		s.rev++
		w.wakeAll()
	}
}

func (s *store) snapshot() cluster.Snapshot {
	snap := cluster.Snapshot{Revision: s.rev, Initialized: s.initialized}
	if s.leader != nil {
		l := *s.leader
		snap.Leader = &l
	}
	if s.lastLeader != nil {
		l := *s.lastLeader
		snap.LastLeader = &l
	}
	for _, r := range s.members {
		snap.Members = append(snap.Members, r.m)
	}
	sort.Slice(snap.Members, func(i, j int) bool { return snap.Members[i].Name < snap.Members[j].Name })
	cfg := s.config
	snap.Config = &cfg
	if s.request != nil {
		r := *s.request
		if r.Handoff != nil {
			h := *r.Handoff
			r.Handoff = &h
		}
		snap.Request = &r
	}
	return snap
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

// wakeAll is the store watch: every running agent re-decides at the next tick.
func (w *World) wakeAll() {
	for _, n := range w.nodes {
		if n.a.nextRound.After(w.now) {
			n.a.nextRound = w.now
		}
	}
}

// simDB is a simulated PostgreSQL.
type simDB struct {
	hasData   bool
	running   bool
	accepting bool
	// standby is the data directory's role: true for a replica
	// (standby.signal), false for a primary.
	standby  bool
	timeline uint32
	lsn      cluster.LSN
	// forks maps each earlier timeline of this database's history to the
	// position where it ended.
	forks     map[uint32]cluster.LSN
	upstream  string
	streaming bool
	// readyAt is when a starting server begins to accept connections.
	readyAt time.Time
	// crashed means the next start needs crash recovery.
	crashed bool
	// stopPos is the shutdown checkpoint's location after a clean (fast)
	// stop of a primary: what the control data, and so a probe of the
	// stopped server, reports. Zero otherwise.
	stopPos cluster.LSN
	// failStarts makes the next that many starts fail.
	failStarts int
	lag        cluster.LSN
}

func (d *simDB) String() string {
	role := "primary"
	if d.standby {
		role = "replica"
	}
	state := "stopped"
	switch {
	case !d.hasData:
		state = "empty"
	case d.running && d.accepting:
		state = "running"
	case d.running:
		state = "starting"
	}
	s := fmt.Sprintf("%s/%s tl=%d lsn=%s", state, role, d.timeline, d.lsn)
	if d.streaming {
		s += " streaming<-" + d.upstream
	}
	return s
}

func (d *simDB) status(alive bool) db.Status {
	pos := cluster.Position{LSN: d.lsn, Timeline: d.timeline}
	if !d.running && d.stopPos != 0 {
		pos.LSN = d.stopPos
	}
	// A stopped data directory without standby.signal was last run as a
	// primary (what the postgres prober reads from the files).
	wasPrimary := d.hasData && !d.standby && !d.running
	if !alive {
		return db.Status{HasData: d.hasData, Position: pos, WasPrimary: wasPrimary}
	}
	st := db.Status{
		Running: d.running, Accepting: d.running && d.accepting, HasData: d.hasData,
		Position: pos, WasPrimary: wasPrimary,
	}
	if st.Accepting {
		st.Role = cluster.RolePrimary
		if d.standby {
			st.Role = cluster.RoleReplica
			st.ReceiveLSN, st.ReplayLSN = d.lsn, d.lsn
		}
	}
	if st.Accepting && d.standby && d.streaming {
		st.Streaming = true
		st.UpstreamHost, st.UpstreamPort = d.upstream, 5432
	}
	return st
}

func copyForks(m map[uint32]cluster.LSN) map[uint32]cluster.LSN {
	c := make(map[uint32]cluster.LSN, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// canFollow reports whether a replica at r can stream from u (PostgreSQL's
// timeline history check).
func canFollow(r, u *simDB) bool {
	switch {
	case r.timeline == u.timeline:
		return r.lsn <= u.lsn
	case r.timeline < u.timeline:
		end, ok := u.forks[r.timeline]
		return ok && r.lsn <= end
	default:
		return false
	}
}

// advanceDB moves one database forward by a tick.
func (w *World) advanceDB(n *node) {
	d := &n.db
	if !n.alive || !d.running {
		d.streaming = false
		return
	}
	if !d.accepting && !w.now.Before(d.readyAt) {
		d.accepting, d.crashed = true, false
		if !d.standby {
			w.logf("%s: database finished starting and accepts writes", n.spec.Name)
			w.checkHoldsKey(n, "became a writable primary (start finished)")
		}
	}
	if !d.accepting {
		return
	}
	if !d.standby {
		d.lsn += w.cfg.WritePerTick
		return
	}
	was := d.streaming
	d.streaming = false
	if d.upstream != "" {
		u := w.node(d.upstream)
		if u != n && u.alive && u.db.running && u.db.accepting && canFollow(d, &u.db) {
			d.streaming = true
			if u.db.lsn > d.lsn+d.lag {
				d.lsn = u.db.lsn - d.lag
			}
			if u.db.timeline > d.timeline {
				d.timeline, d.forks = u.db.timeline, copyForks(u.db.forks)
			}
		}
	}
	if was != d.streaming {
		w.logf("%s: streaming from %q: %v", n.spec.Name, d.upstream, d.streaming)
	}
}

// checkHoldsKey: no database becomes a writable primary unless its agent
// holds the leader key on its current, live lease.
func (w *World) checkHoldsKey(n *node, what string) {
	l := w.store.leader
	a := n.a
	_, live := w.store.leases[a.leaseID]
	if l == nil || l.Name != n.spec.Name || a.leaseID == 0 || l.Lease != a.leaseID || !live {
		w.violate("%s %s without holding the leader key (key %s, agent lease %d, lease live %v)",
			n.spec.Name, what, w.store.leaderString(), a.leaseID, live)
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
