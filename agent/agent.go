package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hamgr/hamgr/api"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/ha"
	"github.com/hamgr/hamgr/lagmon"
)

// Clock is the agent's source of time.
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
	// UseRewind lets a diverged former primary rejoin by pg_rewind;
	// AllowReclone lets a member that cannot rewind be cloned again.
	UseRewind    bool
	AllowReclone bool
	// Metrics, if set, receives the agent's measurements (see package
	// metrics); nil discards them.
	Metrics Metrics
}

// Event is a notable step, with the agent's time.
type Event struct {
	At     time.Time
	Member string
	What   string
}

// Agent is one member's HA loop. Create with New, run with Run.
type Agent struct {
	opts    Options
	log     *slog.Logger
	clk     Clock
	started time.Time // when New ran, for the API's /liveness

	mu            sync.Mutex
	leaseID       int64
	lastRenewSent time.Time
	cfg           cluster.DynamicConfig
	holdsLeader   cluster.Epoch // epoch this agent believes it leads (0: none)
	snap          cluster.Snapshot
	storeOK       bool
	self          cluster.Member
	accepting     bool
	lastLoop      time.Time

	// loop-only state
	track          ha.Tracker // what the View remembers between rounds
	lastPlan       string
	lastPlanKey    string
	lastPlanLogged time.Time
	electedAt      time.Time
	notBefore      time.Time            // no round before this (backoff after a failed action)
	lastSeen       map[string]time.Time // member → last time seen (for slot housekeeping)
	syncTracker    lagmon.SyncTracker
	wake           chan struct{}
}

// New returns an agent; it does nothing until Run.
func New(opts Options) *Agent {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	opts.Metrics = metricsOrNop(opts.Metrics)
	return &Agent{
		opts: opts, log: opts.Logger.With("member", opts.Name), clk: opts.Clock, cfg: opts.Config,
		track: ha.Tracker{Self: opts.Name}, wake: make(chan struct{}, 1), started: opts.Clock.Now(),
	}
}

// Run loops until ctx ends. It returns nil on cancellation; it never stops
// the database on the way out (a restarted agent adopts it).
func (a *Agent) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	changes := a.opts.Store.Changes(ctx)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); a.renewLoop(ctx) }()
	go func() { defer wg.Done(); a.fenceLoop(ctx) }()
	defer wg.Wait()
	exited := a.opts.DB.Exited()
	for {
		soon := a.round(ctx)
		wait := a.config().LoopWait
		d := time.Duration(wait)
		if soon > 0 && soon < d {
			d = soon
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case <-changes:
		case at := <-exited:
			a.log.Warn("database process exited", "at", at)
			a.emit("database process exited")
		case <-a.wake:
		}
		t.Stop()
		if d := a.notBefore.Sub(a.clk.Now()); d > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(d):
			}
		}
	}
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

// State is the agent's current view for the HTTP API.
func (a *Agent) State() api.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	st := api.State{
		Cluster: a.opts.Cluster, Self: a.self, Accepting: a.accepting,
		Leader: a.snap.Leader, Members: a.snap.Members, Paused: a.cfg.Paused,
		StoreOK: a.storeOK, LastLoop: a.lastLoop, SyncMode: a.cfg.SynchronousMode, Sync: a.snap.Sync,
		Config: a.cfg, Started: a.started,
	}
	if l := a.track.LastLeader; l != nil {
		st.LastLeaderLSN = l.Position.LSN
	}
	st.HoldsLeader = a.holdsLeader != 0 && a.snap.Leader != nil && a.snap.Leader.Epoch == a.holdsLeader &&
		a.clk.Now().Before(detector.FenceDeadline(a.lastRenewSent, a.cfg))
	return st
}

// renewLoop keeps the session lease alive, every loop_wait, retrying every
// 500 ms after a failure. It records when each successful request was sent.
func (a *Agent) renewLoop(ctx context.Context) {
	for {
		a.mu.Lock()
		id, cfg, last := a.leaseID, a.cfg, a.lastRenewSent
		a.mu.Unlock()
		next := time.Duration(cfg.LoopWait)
		if id != 0 && a.clk.Now().Sub(last) >= next-50*time.Millisecond {
			sent := a.clk.Now()
			rctx, cancel := context.WithTimeout(ctx, time.Duration(cfg.RetryTimeout)/2)
			err := a.opts.Store.KeepAlive(rctx)
			cancel()
			a.mu.Lock()
			switch {
			case err == nil:
				if a.leaseID == id {
					a.lastRenewSent = sent
				}
			case errors.Is(err, dcs.ErrLeaseLost):
				if a.leaseID == id {
					a.leaseID = 0
				}
				a.opts.Metrics.StoreError(opLeaseLost)
				a.log.Warn("lease lost", "lease", fmt.Sprintf("%x", id))
			default:
				a.log.Warn("lease renewal failed", "err", err)
				a.opts.Metrics.StoreError(opKeepAlive)
				next = 500 * time.Millisecond
			}
			a.mu.Unlock()
			if err != nil {
				a.poke()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(min(next, 250*time.Millisecond)):
		}
	}
}

// fenceLoop is rule 2 of package ha, enforced on its own timer so that a
// loop round blocked on a slow store or database cannot delay it: a leader
// whose renewals have failed until its fence deadline stops its database
// at once.
func (a *Agent) fenceLoop(ctx context.Context) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		a.mu.Lock()
		// Whatever the database is doing (even crash recovery, when it is
		// not yet known to be a primary), a leader past its deadline stops it.
		due := a.holdsLeader != 0 && !a.lastRenewSent.IsZero() &&
			!a.clk.Now().Before(detector.FenceDeadline(a.lastRenewSent, a.cfg))
		epoch := a.holdsLeader
		a.mu.Unlock()
		if !due {
			continue
		}
		a.log.Error("self-fencing: lease not renewed in time; stopping the database before the lease can expire",
			"epoch", epoch)
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := a.opts.DB.Stop(sctx, db.StopImmediate)
		cancel()
		if err != nil {
			a.log.Error("self-fencing stop failed", "err", err)
			continue
		}
		a.emit("self-fenced: stopped database")
		a.opts.Metrics.SelfFence()
		a.mu.Lock()
		a.holdsLeader = 0
		a.mu.Unlock()
		a.poke()
	}
}

func (a *Agent) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}
