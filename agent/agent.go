package agent

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/ha"
	"github.com/hamgr/hamgr/lagmon"
	"github.com/hamgr/hamgr/stonith"
)

// Clock is the agent's source of time. Every time the agent reads, for
// decisions, records and timers alike, comes from it; only Run's waits use
// real timers.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Options configure an Agent.
type Options struct {
	Cluster string
	Name    string
	Tags    cluster.Tags
	// Config is the static timing from the config file; it is written to
	// the store when this member bootstraps the cluster, and used until the
	// store's dynamic config is read.
	Config cluster.DynamicConfig
	DB     db.Database
	Store  dcs.Store
	// APIURL, ConnHost and ConnPort are published in the member record.
	APIURL   string
	ConnHost string
	ConnPort int
	Logger   *slog.Logger
	Clock    Clock
	// Events, if set, receives a line for each notable step (used by the
	// demo to print a timeline). Sends never block.
	Events chan<- Event
	// Engine is what the database engine can do, as far as the operator
	// allowed it (which rejoin methods, whether it keeps replication
	// slots), and its names for its tools and settings; see
	// db.Capabilities. The engine provides it (postgres.Capabilities);
	// the zero value allows no rejoin and manages no slots.
	Engine db.Capabilities
	// Metrics, if set, receives the agent's measurements (see package
	// metrics); nil discards them.
	Metrics Metrics
	// Background runs the long actions (clone, re-clone, rewind) while
	// the loop goes on; nil runs each on a goroutine of its own. The
	// simulator runs them at once.
	Background func(fn func())
	// OnStop is what Run does with the database when its context ends
	// (default OnStopHandover).
	OnStop OnStop
	// Fencer, if set, fences the old primary in the fence step of a
	// promotion over it (before this member's database is promoted);
	// nil relies on the liveness evidence alone.
	Fencer stonith.Fencer
	// Publishers run, in order, in the publish step of a promotion
	// (after the database is promoted, before the promotion is recorded),
	// and again whenever what this member is differs from what they last
	// published (see Republish); MemberPublishers also publish replicas
	// and withdraw on a clean stop.
	Publishers []discovery.Publisher
	// Peers asks the other members to confirm this leader while it cannot
	// reach the store (failsafe_mode); nil never asks, so the leader
	// stops at its fence deadline as without failsafe.
	Peers FailsafePeers
	// Observers are told, in order, what each round left behind, and that
	// Run has stopped (see RoundObserver).
	Observers []RoundObserver
	// PublishTimeout bounds one attempt of one publisher (zero:
	// DefaultPublishTimeout).
	PublishTimeout time.Duration
	// PrePromote, if set, runs in the promote step of a promotion, before
	// the database is promoted (the pre_promote hook); its error fails the
	// step, which is retried.
	PrePromote discovery.PrePromoter
	// Reach checks the leader's ports for the take-over on proof of death
	// (nil: TCP connects; the simulator gives its twin).
	Reach Reacher
	// Link holds the leader link (api.AliveClient: GET /alive on the
	// leader's agent), whose drop wakes the loop at once; nil: none.
	Link LeaderLinker
}

// OnStop is what a clean stop of the agent does with its database.
type OnStop int

// On-stop modes.
const (
	// OnStopHandover: a primary switches over to the best replica (no
	// acknowledged write is lost), then its database stops; a replica's
	// database stops. Without a replica to hand over to it is OnStopStop.
	OnStopHandover OnStop = iota
	// OnStopStop: the database stops (fast shutdown) and a primary
	// releases the leader key, so a replica that received everything takes
	// over.
	OnStopStop
	// OnStopLeaveRunning: the database keeps running; a restarted agent
	// adopts it. A primary has no leader key meanwhile.
	OnStopLeaveRunning
)

// Event is a notable step, with the agent's time.
type Event struct {
	At     time.Time
	Member string
	What   string
}

// Agent is one member's HA loop. Create with New, run with Run.
//
// Run drives three step functions, each of which a simulator may also call
// directly and synchronously, with a fake Clock and twins of the database
// and the store (package ha/hasim does): Renew (the lease renewer), Fence
// (the fence timer) and Round (observe, decide, execute). In production
// Renew and Fence run on goroutines of their own, so that a slow round
// cannot delay them.
type Agent struct {
	opts    Options
	log     *slog.Logger
	clk     Clock
	started time.Time // when New ran, for the API's /liveness

	fenceMu sync.Mutex // serializes Fence

	mu            sync.Mutex
	leaseID       int64
	lastRenewSent time.Time
	nextRenew     time.Time // no renewal before this
	cfg           cluster.DynamicConfig
	holdsLeader   cluster.Epoch // epoch this agent believes it leads (0: none)
	// leaseLostInRound: an action of this round found the lease gone.
	leaseLostInRound bool
	// repeated is the action list the previous round ran with success
	// ("": none, or it failed), repeats how many rounds in a row ran it
	// again; a repeat waits longer each time (repeatsLastPlan).
	repeated  string
	repeats   int
	snap      cluster.Snapshot
	storeOK   bool
	self      cluster.Member
	accepting bool
	dbRunning bool      // the database process existed at the latest probe
	probedAt  time.Time // when the latest probe of the database returned
	busy      string    // the long action running in the background ("": none)
	lastLoop  time.Time

	// failsafe mode (failsafe.go)
	failsafeRec      *cluster.FailsafeState // this leader's record in the store, as last read or written (nil: none or unknown)
	failsafeGen      int                    // bumped by every write of the record: a round asked under an older one counts for nothing
	lastFailsafeSent time.Time              // send time of the last round every member confirmed
	failsafeEpoch    cluster.Epoch          // the epoch lastFailsafeSent was confirmed for
	nextFailsafe     time.Time              // no failsafe round before this (retry after a failed one)
	promise          ha.FailsafePromise     // the last confirmation this member gave another leader
	acquiring        int                    // attempts to take the leader key under way

	// loop-only state
	cfgGate, leaseGate cluster.ConfigGate // round only; not safe for concurrent use
	track              ha.Tracker         // what the View remembers between rounds
	lastPlan           string
	lastPlanKey        string
	lastPlanLogged     time.Time
	lastLiveness       string
	promotedAt         time.Time // when this agent last promoted its database
	// fencedOld is the fence of the old primary this run confirmed for the leader key of
	// epoch fencedOld.epoch: a fence whose record could not be written is
	// recorded again, not repeated (at most one fence per epoch).
	fencedOld   fencedEpoch
	notBefore   time.Time            // no round before this (backoff after a failed action)
	lastSeen    map[string]time.Time // member → last time seen (for slot housekeeping)
	syncTracker lagmon.SyncTracker
	wake        chan struct{}
	// fenceWake wakes the fence timer in Run when its deadline may have
	// moved earlier: the agent started to lead, or the timing changed.
	fenceWake chan struct{}
	// failsafeWake wakes the failsafe goroutine in Run when failsafe_mode
	// was turned on (while it is off the goroutine has nothing to watch).
	failsafeWake chan struct{}
	// recordMu serializes the writes of this member's record: a round's
	// (publishAndLoad) and the answer to a stream loss (AnswerStreamLoss),
	// so the older of two never lands last.
	recordMu sync.Mutex

	// Publishing (see Republish). pubMu serializes the publishers' calls
	// (the promotion's publish step, Republish, the withdrawal); pubs and
	// replPubs (one per publisher: this member's publication, and the
	// replica set's) and pubSteps are guarded by mu.
	pubMu       sync.Mutex
	withdrawn   bool // the agent stopped and withdrew (guarded by pubMu)
	pubs        []pubState
	replPubs    []pubState
	pubSteps    pubSteps
	publishWake chan struct{}

	// The leader link (leaderlink.go), guarded by mu but linkWake.
	linkTarget  string
	linkCancel  context.CancelFunc
	linkLostAt  time.Time
	linkWake    chan struct{}
	lastGoneLog string
	// lastRefused is the last leader-gone probe whose port checks all
	// were refused, made at lastRefusedAt (leaderlink.go).
	lastRefused   ha.LeaderGoneProbe
	lastRefusedAt time.Time
}

// New returns an agent; it does nothing until Run (or its step functions)
// is called.
func New(opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	opts.Metrics = metricsOrNop(opts.Metrics)
	if opts.Background == nil {
		opts.Background = func(fn func()) { go fn() }
	}
	return &Agent{
		opts: opts, log: opts.Logger.With("member", opts.Name), clk: opts.Clock, cfg: opts.Config,
		track: ha.Tracker{Self: opts.Name}, wake: make(chan struct{}, 1), fenceWake: make(chan struct{}, 1), failsafeWake: make(chan struct{}, 1),
		started: opts.Clock.Now(), pubs: make([]pubState, len(opts.Publishers)),
		replPubs: make([]pubState, len(opts.Publishers)), publishWake: make(chan struct{}, 1),
		linkWake: make(chan struct{}, 1),
	}
}

// Run's timers. The renewer sleeps until the next renewal is due (Renew
// says when), or renewTick while the agent has no lease. The fence timer
// sleeps until the fence deadline while the agent leads, and while it does
// not lead until it is woken (fenceWake: it started to lead, the timing
// changed), at most fenceIdle; fenceTick is how soon it retries a fence
// that could not stop the database. The deadline only moves later while
// the agent leads (each renewal, each confirmed failsafe round), so waking
// at the old one and sleeping again is exact; whatever could move it
// earlier pokes the timer. Sleeping until the deadline rather than polling
// keeps an idle agent's wakeups few, and is as exact: after a freeze the
// timer fires as soon as the process runs again, and finds itself past the
// deadline.
const (
	renewTick = 250 * time.Millisecond
	fenceTick = 50 * time.Millisecond
	fenceIdle = time.Minute
)

// Run loops until ctx ends, then stops as Options.OnStop says (a primary
// hands over, or stops and releases the key, or PostgreSQL is left
// running for a restarted agent to adopt) and returns nil.
func (a *Agent) Run(ctx context.Context) error {
	// The renewer, the fence timer and the stop itself outlive ctx: a
	// primary must keep its lease while it hands over.
	inner, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	changes := a.opts.Store.Changes(inner)
	losses := a.opts.Store.StreamLosses(inner)
	var wg sync.WaitGroup
	wg.Add(6)
	go func() {
		defer wg.Done()
		a.runLink(inner)
	}()
	go func() {
		defer wg.Done()
		for range losses {
			a.AnswerStreamLoss(inner)
		}
	}()
	go func() {
		defer wg.Done()
		for sleep(inner, a.Renew(inner)) {
		}
	}()
	go func() {
		defer wg.Done()
		for a.waitPublish(inner, a.Republish(inner)) {
		}
	}()
	go func() {
		defer wg.Done()
		for a.waitFailsafe(inner, a.Failsafe(inner)) {
		}
	}()
	go func() {
		defer wg.Done()
		for {
			a.Fence(inner)
			if !a.waitFence(inner) {
				return
			}
		}
	}()
	defer wg.Wait()
	defer cancel()
	exited := a.opts.DB.Exited()
	for ctx.Err() == nil {
		t := time.NewTimer(a.Round(inner))
		select {
		case <-ctx.Done():
		case <-t.C:
		case <-changes:
		case at := <-exited:
			a.log.Warn("database process exited", "at", at)
			a.emit("database process exited")
		case <-a.wake:
		}
		t.Stop()
		sleep(ctx, a.NotBefore().Sub(a.clk.Now()))
	}
	a.stop(inner)
	a.notifyObservers(inner, PhaseStopped)
	return nil
}

// waitFence sleeps until the fence timer's next check (see fenceIdle) or
// until fenceWake, and reports false when ctx ended.
func (a *Agent) waitFence(ctx context.Context) bool {
	a.mu.Lock()
	d := fenceIdle
	if a.holdsLeader != 0 && !a.lastRenewSent.IsZero() {
		d = detector.FenceDeadline(a.fenceFromLocked(), a.cfg).Sub(a.clk.Now())
		if d <= 0 {
			d = fenceTick // Fence could not stop the database: retry
		}
	}
	a.mu.Unlock()
	return sleepOrWake(ctx, d, a.fenceWake)
}

// waitFailsafe sleeps d or until failsafeWake, and reports false when
// ctx ended.
func (a *Agent) waitFailsafe(ctx context.Context, d time.Duration) bool {
	return sleepOrWake(ctx, d, a.failsafeWake)
}

// sleepOrWake sleeps d or until wake, and reports false when ctx ended.
func sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
	case <-wake:
	}
	return true
}

// signal wakes whoever waits on ch, unless a wakeup is already pending.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// pokeFence wakes the fence timer (see fenceWake).
func (a *Agent) pokeFence() {
	signal(a.fenceWake)
}

// sleep waits d (not at all when d <= 0) and reports false when ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// NotBefore is the time before which no round may start: a failed action
// is retried only after its back-off, whatever wakes the loop meanwhile.
func (a *Agent) NotBefore() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.notBefore
}

func (a *Agent) config() cluster.DynamicConfig {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

func (a *Agent) emit(what string) {
	if a.opts.Events == nil {
		return
	}
	select {
	case a.opts.Events <- Event{At: a.clk.Now(), Member: a.opts.Name, What: what}:
	default:
	}
}

// State is the agent's current status for the HTTP API (it implements
// api.Source).
func (a *Agent) State() cluster.AgentStatus {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := cluster.AgentStatus{
		Cluster: a.opts.Cluster, Self: a.self, Accepting: a.accepting,
		Leader: a.snap.Leader, Members: a.snap.Members, Paused: a.cfg.Paused,
		StoreOK: a.storeOK, LastLoop: a.lastLoop, SyncMode: a.cfg.SynchronousMode, Sync: a.snap.Sync,
		Config: a.cfg, Started: a.started, Fenced: a.snap.Fenced, FenceOwed: a.snap.FenceOwed,
	}
	if l := a.track.LastLeader; l != nil {
		st.LastLeaderPosition = l.Position
	}
	st.HoldsLeader = a.holdsLeader != 0 && a.snap.Leader != nil && a.snap.Leader.Epoch == a.holdsLeader &&
		a.clk.Now().Before(detector.FenceDeadline(a.fenceFromLocked(), a.cfg))
	return st
}

func (a *Agent) poke() {
	signal(a.wake)
}

// LastPlan is the latest plan the loop decided, rendered (for tests and the
// simulator).
func (a *Agent) LastPlan() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.lastPlan
}

// Tracker returns a copy of what the loop remembers between rounds (for
// tests and the simulator).
func (a *Agent) Tracker() ha.Tracker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.track
}
