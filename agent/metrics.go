package agent

import (
	"math"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Metrics receives the agent's measurements. *metrics.Metrics (package
// github.com/hamgr/hamgr/metrics) implements it; NopMetrics discards them.
// Implementations must be safe for concurrent use: the loop, renewLoop and
// fenceLoop call them from different goroutines.
type Metrics interface {
	// ObserveMember records this member's state at the end of a round.
	ObserveMember(role cluster.Role, pos cluster.Position, lagBytes int64, replayLagSeconds float64, epoch cluster.Epoch, holdsLeader bool, paused bool)
	// ObserveLoop records how long a round took.
	ObserveLoop(d time.Duration)
	// StoreError counts a failed store operation, named by op.
	StoreError(op string)
	// ProbeError counts a failed probe of the local database.
	ProbeError()
	// Failover counts a leadership change completed by this member's
	// promotion and records its steps.
	Failover(kind cluster.HistoryKind, steps []cluster.Step)
	// SelfFence counts a self-fencing stop of the local database.
	SelfFence()
	// Fence counts a fence attempt of an old primary by its result.
	Fence(result cluster.FenceResult)
	// ObserveSync records the leader's recorded synchronous standbys.
	ObserveSync(standbys int)
	// ObserveProblem records the problem of this member's last decision
	// (ha.Plan.Problem, as published in its record; ProblemNone: none).
	ObserveProblem(p cluster.Problem)
	// ObserveFences records the fences in the store: how many members
	// an operator fenced, and the member a promotion owes a fence ("":
	// none).
	ObserveFences(fenced int, owedTo string)
	// Publish records one attempt of the discovery publisher named
	// publisher: its error (nil: it published and read back) and how long
	// it took.
	Publish(publisher string, err error, took time.Duration)
}

// NopMetrics is a Metrics that discards everything: the agent's default.
type NopMetrics struct{}

// ObserveMember does nothing.
func (NopMetrics) ObserveMember(cluster.Role, cluster.Position, int64, float64, cluster.Epoch, bool, bool) {
}

// ObserveLoop does nothing.
func (NopMetrics) ObserveLoop(time.Duration) {}

// StoreError does nothing.
func (NopMetrics) StoreError(string) {}

// ProbeError does nothing.
func (NopMetrics) ProbeError() {}

// Failover does nothing.
func (NopMetrics) Failover(cluster.HistoryKind, []cluster.Step) {}

// SelfFence does nothing.
func (NopMetrics) SelfFence() {}

// Fence does nothing.
func (NopMetrics) Fence(cluster.FenceResult) {}

// ObserveSync does nothing.
func (NopMetrics) ObserveSync(int) {}

// ObserveProblem does nothing.
func (NopMetrics) ObserveProblem(cluster.Problem) {}

// ObserveFences does nothing.
func (NopMetrics) ObserveFences(int, string) {}

// Publish does nothing.
func (NopMetrics) Publish(string, error, time.Duration) {}

// Store operation names for Metrics.StoreError (the op label of
// hamgr_etcd_errors_total).
const (
	opGrant         = "grant"
	opKeepAlive     = "keepalive"
	opLeaseLost     = "lease_lost"
	opPublish       = "publish"
	opLoad          = "load"
	opAppendHistory = "append_history"
)

// metricsOrNop returns m, or NopMetrics when m is nil.
func metricsOrNop(m Metrics) Metrics {
	if m == nil {
		return NopMetrics{}
	}
	return m
}

// observeRound reports the round that began at start to m: its wall-clock
// duration (real time, not the agent's Clock) and this member's state as
// published in the round. Leadership is judged as the API judges it, so
// hamgr_is_leader and /primary agree.
func (a *Agent) observeRound(m Metrics, start time.Time) {
	st := a.State()
	epoch := cluster.Epoch(0)
	if st.Leader != nil {
		epoch = st.Leader.Epoch
	}
	// The agent does not measure replay delay in seconds yet: unknown.
	lagSeconds := st.Self.LagSeconds
	if lagSeconds < 0 {
		lagSeconds = math.NaN()
	}
	m.ObserveMember(st.Self.Role, st.Self.Position, st.Self.LagBytes, lagSeconds, epoch, st.HoldsLeader, st.Paused)
	standbys := 0
	if st.HoldsLeader {
		a.mu.Lock()
		if s := a.snap.Sync; s != nil && st.Leader != nil && s.Epoch == st.Leader.Epoch {
			standbys = len(s.Members)
		}
		a.mu.Unlock()
	}
	m.ObserveSync(standbys)
	// The problem is the one the round's decision derived (ha.Decide),
	// not worked out again here.
	m.ObserveProblem(st.Self.Problem)
	owed := ""
	if st.FenceOwed != nil {
		owed = st.FenceOwed.Target
	}
	m.ObserveFences(len(st.Fenced), owed)
	m.ObserveLoop(a.clk.Now().Sub(start))
}
