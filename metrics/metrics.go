package metrics

import (
	"math"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/hamgr/hamgr/cluster"
)

// Failover kinds, as recorded in the cluster history and as values of the
// kind label of hamgr_failovers_total.
const (
	KindFailover       = cluster.HistoryFailover
	KindSwitchover     = cluster.HistorySwitchover
	KindManualFailover = cluster.HistoryManualFailover
)

// StoreOps are the op label values of hamgr_etcd_errors_total that are
// exported at 0 from the start, so that rate() and increase() see the
// first error. Other values are accepted as they come.
var StoreOps = []string{"grant", "keepalive", "lease_lost", "publish", "load", "append_history"}

// roles are the values of the role label of hamgr_role.
var roles = []cluster.Role{cluster.RolePrimary, cluster.RoleReplica, cluster.RoleUnknown}

// loopBuckets are the upper bounds, in seconds, of the loop duration
// histogram: a healthy round takes milliseconds; one stuck on a store or
// database timeout takes seconds.
var loopBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Metrics holds one agent's Prometheus collectors and the registry they are
// registered with. Create it with New.
type Metrics struct {
	reg *prometheus.Registry

	role         *prometheus.GaugeVec
	isLeader     prometheus.Gauge
	walPosition  prometheus.Gauge
	timeline     prometheus.Gauge
	lagBytes     prometheus.Gauge
	replayLag    prometheus.Gauge
	epoch        prometheus.Gauge
	paused       prometheus.Gauge
	failovers    *prometheus.CounterVec
	switchovers  prometheus.Counter
	stepSeconds  *prometheus.GaugeVec
	loopDuration prometheus.Histogram
	lastLoop     prometheus.Gauge
	storeErrors  *prometheus.CounterVec
	probeErrors  prometheus.Counter
	selfFences   prometheus.Counter
	fences       *prometheus.CounterVec
	syncCount    prometheus.Gauge
	atRisk       prometheus.Gauge
	problem      *prometheus.GaugeVec
	fenced       prometheus.Gauge
	fenceOwed    prometheus.Gauge
	publishes    *prometheus.CounterVec
	publishFail  *prometheus.GaugeVec
	publishSecs  *prometheus.GaugeVec
}

// New returns the metrics of member in cluster, registered with a new
// registry of their own. Before the first observation the member reports
// role unknown, no leadership, and unknown position and lag.
func New(clusterName, member string) *Metrics {
	labels := prometheus.Labels{"cluster": clusterName, "member": member}
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: labels})
	}
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help, ConstLabels: labels})
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		role: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hamgr_role", Help: "1 for this member's current database role, 0 for the others.", ConstLabels: labels,
		}, []string{"role"}),
		isLeader:    gauge("hamgr_is_leader", "1 while this agent holds the leader key with a live lease."),
		walPosition: gauge("hamgr_wal_position_bytes", "This member's WAL position as a byte offset (flushed on a primary, furthest of received and replayed on a replica)."),
		timeline:    gauge("hamgr_timeline", "This member's PostgreSQL timeline."),
		lagBytes:    gauge("hamgr_lag_bytes", "Bytes this member is behind the leader's last published position; NaN when unknown."),
		replayLag:   gauge("hamgr_replay_lag_seconds", "Seconds of replay delay on a replica; NaN when unknown."),
		epoch:       gauge("hamgr_epoch", "Epoch (fencing token) of the leader key as last read; 0 when no one holds it."),
		paused:      gauge("hamgr_paused", "1 while automatic failover is paused."),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hamgr_failovers_total", Help: "Leadership changes this member completed by promoting its database, by kind.", ConstLabels: labels,
		}, []string{"kind"}),
		switchovers: counter("hamgr_switchovers_total", "Switchovers this member completed by promoting its database (also counted in hamgr_failovers_total{kind=\"switchover\"})."),
		stepSeconds: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hamgr_last_failover_step_seconds", Help: "Duration of each step of the latest failover or switchover this member completed.", ConstLabels: labels,
		}, []string{"step"}),
		loopDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hamgr_loop_duration_seconds", Help: "Duration of the HA loop's rounds.", ConstLabels: labels, Buckets: loopBuckets,
		}),
		lastLoop: gauge("hamgr_last_loop_timestamp_seconds", "Unix time at which the HA loop last completed a round; 0 before the first."),
		storeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hamgr_etcd_errors_total", Help: "Failed store (etcd) operations, by operation.", ConstLabels: labels,
		}, []string{"op"}),
		probeErrors: counter("hamgr_db_probe_errors_total", "Failed probes of the local database."),
		selfFences:  counter("hamgr_self_fences_total", "Times this agent stopped its database because it could not renew its lease in time."),
		fences: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hamgr_fences_total", Help: "Fence attempts of an old primary this agent made in a promotion's fence step, by result: confirmed, failed (retried), unconfirmed (fencing best-effort promoted without a confirmation).", ConstLabels: labels,
		}, []string{"result"}),
		syncCount: gauge("hamgr_synchronous_standbys", "Synchronous standbys recorded by this leader for its epoch (0 on replicas)."),
		fenced:    gauge("hamgr_fenced_members", "Members with an operator's fence recorded in the store (hamgrctl fence)."),
		fenceOwed: gauge("hamgr_fence_owed", "1 while a promotion took the leader key without confirming the fence it owes its old primary (the next promotion fences it first), 0 otherwise."),
		atRisk:    gauge("hamgr_durability_at_risk", "1 on a leader in synchronous_mode on that runs asynchronously because no standby is healthy (the same as hamgr_problem{code=\"durability_at_risk\"})."),
		problem: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hamgr_problem", Help: "1 for the problem this member's last HA decision reported (see docs/design.md, Problems), 0 for the others.", ConstLabels: labels,
		}, []string{"code"}),
		publishes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hamgr_publish_total", Help: "Attempts of each discovery publisher, by result (ok: published and read back; error).", ConstLabels: labels,
		}, []string{"publisher", "result"}),
		publishFail: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hamgr_publish_failing", Help: "1 while a discovery publisher's last attempt failed (problem publish_failed), 0 once it succeeded.", ConstLabels: labels,
		}, []string{"publisher"}),
		publishSecs: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hamgr_publish_seconds", Help: "Duration of each discovery publisher's last attempt.", ConstLabels: labels,
		}, []string{"publisher"}),
	}
	m.reg.MustRegister(
		m.role, m.isLeader, m.walPosition, m.timeline, m.lagBytes, m.replayLag, m.epoch, m.paused,
		m.failovers, m.switchovers, m.stepSeconds, m.loopDuration, m.lastLoop, m.storeErrors,
		m.probeErrors, m.selfFences, m.fences, m.syncCount, m.atRisk, m.problem, m.fenced, m.fenceOwed,
		m.publishes, m.publishFail, m.publishSecs,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	m.setRole(cluster.RoleUnknown)
	m.lagBytes.Set(math.NaN())
	m.replayLag.Set(math.NaN())
	for _, k := range []cluster.HistoryKind{KindFailover, KindSwitchover, KindManualFailover} {
		m.failovers.WithLabelValues(string(k))
	}
	for _, op := range StoreOps {
		m.storeErrors.WithLabelValues(op)
	}
	m.ObserveProblem(cluster.ProblemNone)
	return m
}

// Handler returns the HTTP handler that serves the registry in the
// Prometheus exposition formats. A collection error answers 500.
func (m *Metrics) Handler() http.Handler {
	if m == nil {
		return http.NotFoundHandler()
	}
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.HTTPErrorOnError})
}

// Registry returns the registry the metrics are registered with, for
// callers that want to add collectors of their own or gather directly.
func (m *Metrics) Registry() *prometheus.Registry {
	if m == nil {
		return nil
	}
	return m.reg
}

// ObserveMember records this member's state as of the end of a loop round:
// its database role and position, its lag behind the leader in bytes
// (negative: unknown), its replay delay in seconds (NaN or negative:
// unknown), the leader key's epoch (0: no leader), whether this agent holds
// the leader key and whether automatic failover is paused.
func (m *Metrics) ObserveMember(role cluster.Role, pos cluster.Position, lagBytes int64, replayLagSeconds float64, epoch cluster.Epoch, holdsLeader bool, paused bool) {
	if m == nil {
		return
	}
	m.setRole(role)
	tl, lsn, _ := pos.PostgreSQL()
	m.walPosition.Set(float64(lsn))
	m.timeline.Set(float64(tl))
	if lagBytes < 0 {
		m.lagBytes.Set(math.NaN())
	} else {
		m.lagBytes.Set(float64(lagBytes))
	}
	if math.IsNaN(replayLagSeconds) || replayLagSeconds < 0 {
		m.replayLag.Set(math.NaN())
	} else {
		m.replayLag.Set(replayLagSeconds)
	}
	m.epoch.Set(float64(epoch))
	m.isLeader.Set(boolFloat(holdsLeader))
	m.paused.Set(boolFloat(paused))
}

// setRole sets hamgr_role to 1 for role and 0 for every other role.
func (m *Metrics) setRole(role cluster.Role) {
	for _, r := range roles {
		v := 0.0
		if r == role {
			v = 1
		}
		m.role.WithLabelValues(r.String()).Set(v)
	}
}

// ObserveLoop records the duration of one loop round and that it ended now.
func (m *Metrics) ObserveLoop(d time.Duration) {
	if m == nil {
		return
	}
	m.loopDuration.Observe(d.Seconds())
	m.lastLoop.SetToCurrentTime()
}

// StoreError counts one failed store operation op (see StoreOps).
func (m *Metrics) StoreError(op string) {
	if m == nil {
		return
	}
	m.storeErrors.WithLabelValues(op).Inc()
}

// ProbeError counts one failed probe of the local database.
func (m *Metrics) ProbeError() {
	if m == nil {
		return
	}
	m.probeErrors.Inc()
}

// Failover counts one leadership change completed by this member's
// promotion, of kind (KindFailover, KindSwitchover or KindManualFailover;
// an empty kind counts as KindFailover), and replaces the step durations of
// the previous one with steps.
func (m *Metrics) Failover(kind cluster.HistoryKind, steps []cluster.Step) {
	if m == nil {
		return
	}
	if kind == "" {
		kind = KindFailover
	}
	m.failovers.WithLabelValues(string(kind)).Inc()
	if kind == KindSwitchover {
		m.switchovers.Inc()
	}
	m.stepSeconds.Reset()
	for _, s := range steps {
		m.stepSeconds.WithLabelValues(s.Name).Set(time.Duration(s.Duration).Seconds())
	}
}

// Fence counts one fence attempt by its result.
func (m *Metrics) Fence(result cluster.FenceResult) {
	if m == nil {
		return
	}
	m.fences.WithLabelValues(string(result)).Inc()
}

// SelfFence counts one self-fencing stop of the local database.
func (m *Metrics) SelfFence() {
	if m == nil {
		return
	}
	m.selfFences.Inc()
}

// boolFloat is 1 for true and 0 for false.
func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// ObserveSync records this leader's synchronous standbys (standbys recorded
// for its epoch). Replicas report 0.
func (m *Metrics) ObserveSync(standbys int) {
	if m == nil {
		return
	}
	m.syncCount.Set(float64(standbys))
}

// ObserveFences records the fences the store holds: how many members an
// operator's fence is recorded for, and the member a promotion owes a
// fence ("": none).
func (m *Metrics) ObserveFences(fenced int, owedTo string) {
	if m == nil {
		return
	}
	m.fenced.Set(float64(fenced))
	m.fenceOwed.Set(boolFloat(owedTo != ""))
}

// ObserveProblem records the problem of this member's last HA decision
// (cluster.ProblemNone: none): hamgr_problem is 1 for its code and 0 for
// every other code of cluster.ProblemTable, and hamgr_durability_at_risk
// is 1 exactly when it is cluster.ProblemDurabilityAtRisk.
func (m *Metrics) ObserveProblem(p cluster.Problem) {
	if m == nil {
		return
	}
	for _, i := range cluster.ProblemTable() {
		m.problem.WithLabelValues(string(i.Code)).Set(boolFloat(i.Code == p))
	}
	m.atRisk.Set(boolFloat(p == cluster.ProblemDurabilityAtRisk))
}

// Publish records one attempt of the discovery publisher named publisher:
// hamgr_publish_total counts it by result, hamgr_publish_failing says
// whether it failed and hamgr_publish_seconds how long it took.
func (m *Metrics) Publish(publisher string, err error, took time.Duration) {
	if m == nil {
		return
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	m.publishes.WithLabelValues(publisher, result).Inc()
	m.publishFail.WithLabelValues(publisher).Set(boolFloat(err != nil))
	m.publishSecs.WithLabelValues(publisher).Set(took.Seconds())
}
