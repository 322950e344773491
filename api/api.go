package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// State is the agent's status the handler answers from: cluster.AgentStatus,
// which the agent builds (package agent does not import this package).
type State = cluster.AgentStatus

// Source gives the handler the agent's current State. State is called once
// per request, possibly from many goroutines at once.
type Source interface {
	State() State
}

// Options tunes NewHandler. The zero value is ready to use.
type Options struct {
	// Logger receives one Debug record per request and an Error record for
	// every panic recovered while answering. Nil means slog.Default().
	Logger *slog.Logger
	// Now returns the current time, used for the age of the agent's last
	// loop round in the member status. Nil means time.Now.
	Now func() time.Time
	// Operator carries out the mutating endpoints (switchover, failover,
	// pause, resume). Nil makes them answer 503 once authorized.
	Operator Operator
	// Token is the bearer token the mutating endpoints require, compared
	// as given (trim it before). Empty disables them: they answer 403.
	Token string
	// Metrics, if set, answers GET /metrics (see package metrics); nil
	// makes /metrics answer 404.
	Metrics http.Handler
	// Failsafe answers POST /failsafe (failsafe_mode; the agent
	// implements it); nil makes it answer 503 once authorized.
	Failsafe FailsafeConfirmer
}

// FailsafeConfirmer answers a leader's failsafe request: package agent's
// Agent.ConfirmFailsafe.
type FailsafeConfirmer interface {
	ConfirmFailsafe(req cluster.FailsafeRequest) cluster.FailsafeAnswer
}

// allowedMethods is the Allow header of every response that carries one.
const allowedMethods = "GET, HEAD, OPTIONS"

// endpoint says how one path is answered.
type endpoint int

const (
	epPrimary endpoint = 1 + iota
	epStandbyLeader
	epReplica
	epReadOnly
	epSync
	epAsync
	epReadOnlySync
	epQuorum
	epReadOnlyQuorum
	epHealth
	epReadiness
	epLiveness
	epStatus
	epCluster
	epMetrics
	epSwitchover
	epFailover
	epPause
	epResume
	epFailsafe
	epAlive
)

// routes maps each served path to its endpoint: Patroni's names (and its
// aliases) for every check. Paths are matched exactly, after dropping one
// trailing slash.
var routes = map[string]endpoint{
	"/":                      epPrimary, // Patroni: GET / is GET /primary
	"/primary":               epPrimary,
	"/master":                epPrimary,
	"/leader":                epPrimary,
	"/read-write":            epPrimary,
	"/standby-leader":        epStandbyLeader,
	"/standby_leader":        epStandbyLeader,
	"/replica":               epReplica,
	"/read-only":             epReadOnly,
	"/synchronous":           epSync,
	"/sync":                  epSync,
	"/asynchronous":          epAsync,
	"/async":                 epAsync,
	"/read-only-sync":        epReadOnlySync,
	"/read-only-synchronous": epReadOnlySync,
	"/quorum":                epQuorum,
	"/read-only-quorum":      epReadOnlyQuorum,
	"/health":                epHealth,
	"/readiness":             epReadiness,
	"/liveness":              epLiveness,
	"/patroni":               epStatus,
	"/status":                epStatus,
	"/cluster":               epCluster,
	"/metrics":               epMetrics,
	"/switchover":            epSwitchover,
	"/failover":              epFailover,
	"/pause":                 epPause,
	"/resume":                epResume,
	"/failsafe":              epFailsafe,
	"/alive":                 epAlive,
}

// handler is the http.Handler NewHandler returns.
type handler struct {
	src      Source
	log      *slog.Logger
	now      func() time.Time
	op       Operator
	metrics  http.Handler
	failsafe FailsafeConfirmer
	// hasToken is true when a token is configured; tokenSum is its
	// SHA-256 digest (the token itself is not kept).
	hasToken bool
	tokenSum [sha256.Size]byte
	// closing is closed when the server shuts down: it ends the held
	// GET /alive requests, which would otherwise hold the shutdown up.
	closing   chan struct{}
	closeOnce sync.Once
}

// NewHandler returns the agent's HTTP API handler, answering every request
// from one call to src.State(). It panics if src is nil.
func NewHandler(src Source, opts Options) http.Handler {
	if src == nil {
		panic("api.NewHandler: nil Source")
	}
	h := &handler{src: src, log: opts.Logger, now: opts.Now, op: opts.Operator, metrics: opts.Metrics, failsafe: opts.Failsafe,
		closing: make(chan struct{})}
	if opts.Token != "" {
		h.hasToken, h.tokenSum = true, sha256.Sum256([]byte(opts.Token))
	}
	if h.log == nil {
		h.log = slog.Default()
	}
	if h.now == nil {
		h.now = time.Now
	}
	return h
}

// ServeHTTP routes the request, checks its method and answers it.
func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &statusWriter{ResponseWriter: w}
	defer func() {
		h.log.Debug("api request", "method", r.Method, "uri", r.URL.RequestURI(),
			"status", rw.status, "remote", r.RemoteAddr, "duration", time.Since(start))
	}()
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler {
			panic(p)
		}
		h.log.Error("api: panic while answering request",
			"method", r.Method, "path", r.URL.Path, "panic", fmt.Sprint(p))
		if rw.status != 0 {
			// Too late for a clean error: abort the connection so the
			// client sees a failure rather than a truncated answer.
			panic(http.ErrAbortHandler)
		}
		writeError(rw, r, http.StatusInternalServerError, "internal error; see the agent's log")
	}()

	path := r.URL.Path
	if len(path) > 1 {
		path = strings.TrimSuffix(path, "/")
	}
	ep, ok := routes[path]
	if !ok {
		writeError(rw, r, http.StatusNotFound, fmt.Sprintf("no endpoint %q; see the hamgr api package documentation for the served paths", r.URL.Path))
		return
	}
	if _, mutating := operatorMethods[ep]; mutating {
		h.serveOperator(rw, r, ep, path)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		rw.Header().Set("Allow", allowedMethods)
		writeError(rw, r, http.StatusMethodNotAllowed, fmt.Sprintf("method %s not allowed on %s; it is read-only and answers %s", r.Method, path, allowedMethods))
		return
	}
	if r.Method == http.MethodOptions {
		rw.Header().Set("Allow", allowedMethods)
	}

	switch ep {
	case epMetrics:
		if h.metrics == nil {
			writeError(rw, r, http.StatusNotFound, "metrics are not enabled on this agent")
			return
		}
		h.metrics.ServeHTTP(rw, r)
	case epLiveness:
		h.serveLiveness(rw, r)
	case epAlive:
		h.serveAlive(rw, r)
	case epReadiness:
		h.serveReadiness(rw, r)
	case epCluster:
		st := h.src.State()
		writeJSON(rw, r, http.StatusOK, newClusterView(&st))
	case epStatus:
		st := h.src.State()
		writeJSON(rw, r, http.StatusOK, h.newMemberStatus(&st))
	default:
		h.serveCheck(rw, r, ep)
	}
}

// statusWriter remembers the status code written, for the request log.
type statusWriter struct {
	http.ResponseWriter
	status int
}

// WriteHeader records the status and passes it on.
func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write records an implicit 200 and passes the bytes on.
func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// writeJSON answers with status and v encoded as JSON. The body is encoded
// before anything is written so that an encoding failure can still answer
// 500, and so that HEAD responses carry the Content-Length a GET would.
func writeJSON(w http.ResponseWriter, r *http.Request, status int, v any) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		status = http.StatusInternalServerError
		buf.Reset()
		_ = json.NewEncoder(&buf).Encode(map[string]string{"error": "encode response: " + err.Error()})
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", fmt.Sprint(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// writeError answers with status and {"error": msg}.
func writeError(w http.ResponseWriter, r *http.Request, status int, msg string) {
	writeJSON(w, r, status, map[string]string{"error": msg})
}

// memberStatus is the JSON body of the status and health endpoints.
type memberStatus struct {
	Name    string `json:"name"`
	Cluster string `json:"cluster"`
	// Role is the database's role: "primary", "replica" or "unknown".
	Role   string              `json:"role"`
	State  cluster.MemberState `json:"state"`
	Reason string              `json:"reason"`
	// Problem is the code of the condition Reason describes when an
	// operator should look (cluster.ProblemTable); absent when none.
	Problem     cluster.Problem `json:"problem,omitempty"`
	Accepting   bool            `json:"accepting"`
	HoldsLeader bool            `json:"holds_leader"`
	// Leader and Epoch are null when no one holds the leader key.
	Leader  *string        `json:"leader"`
	Epoch   *cluster.Epoch `json:"epoch"`
	Paused  bool           `json:"paused"`
	StoreOK bool           `json:"store_ok"`
	// Position is the database's position, tagged with its engine; every
	// engine's fits. Timeline, LSN, ReceiveLSN and ReplayLSN repeat a
	// PostgreSQL position's parts in the fields Patroni's clients read.
	Position   cluster.Position `json:"position"`
	Timeline   uint32           `json:"timeline"`
	LSN        cluster.LSN      `json:"lsn"`
	ReceiveLSN *cluster.LSN     `json:"receive_lsn,omitempty"`
	ReplayLSN  *cluster.LSN     `json:"replay_lsn,omitempty"`
	// Lag is in the engine's lag unit (bytes for PostgreSQL); null when
	// unknown.
	Lag       *int64 `json:"lag"`
	Streaming bool   `json:"streaming"`
	// Diverged: the engine reports this replica's history diverged from
	// its upstream's. SyncStandby: the leader's record lists this member
	// as a synchronous standby (omitted when false, as Patroni does).
	Diverged    bool         `json:"diverged"`
	SyncStandby bool         `json:"sync_standby,omitempty"`
	Upstream    string       `json:"upstream"`
	APIURL      string       `json:"api_url"`
	Host        string       `json:"host"`
	Port        int          `json:"port"`
	Tags        cluster.Tags `json:"tags"`
	UpdatedAt   *time.Time   `json:"updated_at"`
	LastLoop    *time.Time   `json:"last_loop"`
	// LastLoopAge is the seconds since LastLoop; null when there was none.
	LastLoopAge *float64 `json:"last_loop_age_seconds"`
}

// newMemberStatus builds this member's status from st.
func (h *handler) newMemberStatus(st *State) memberStatus {
	m := &st.Self
	s := memberStatus{
		Name:        m.Name,
		Cluster:     st.Cluster,
		Role:        m.Role.String(),
		State:       m.State,
		Reason:      m.Reason,
		Problem:     m.Problem,
		Accepting:   st.Accepting,
		HoldsLeader: st.HoldsLeader,
		Paused:      st.Paused,
		StoreOK:     st.StoreOK,
		Position:    m.Position,
		Lag:         lagOf(m),
		Streaming:   m.Streaming,
		Diverged:    m.Diverged,
		SyncStandby: isSyncStandby(st),
		Upstream:    m.Upstream,
		APIURL:      m.APIURL,
		Host:        m.ConnHost,
		Port:        m.ConnPort,
		Tags:        m.Tags,
		UpdatedAt:   timeOf(m.UpdatedAt),
		LastLoop:    timeOf(st.LastLoop),
	}
	if st.Leader != nil {
		name, epoch := st.Leader.Name, st.Leader.Epoch
		s.Leader, s.Epoch = &name, &epoch
	}
	s.Timeline, s.LSN, _ = m.Position.PostgreSQL()
	if _, v, ok := m.Received.PostgreSQL(); ok && v != 0 {
		s.ReceiveLSN = &v
	}
	if _, v, ok := m.Replayed.PostgreSQL(); ok && v != 0 {
		s.ReplayLSN = &v
	}
	if !st.LastLoop.IsZero() {
		age := h.now().Sub(st.LastLoop).Seconds()
		s.LastLoopAge = &age
	}
	return s
}

// clusterView is the JSON body of /cluster.
type clusterView struct {
	Cluster string `json:"cluster"`
	// Leader and Epoch are null when no one holds the leader key.
	Leader *string        `json:"leader"`
	Epoch  *cluster.Epoch `json:"epoch"`
	Paused bool           `json:"paused"`
	// SynchronousMode is off, on or strict; SynchronousStandbys the members
	// recorded as holding every acknowledged commit for the current epoch.
	// DurabilityAtRisk is true when the leader's record reports
	// cluster.ProblemDurabilityAtRisk (mode on, running asynchronously).
	SynchronousMode     string   `json:"synchronous_mode"`
	SynchronousStandbys []string `json:"synchronous_standbys"`
	DurabilityAtRisk    bool     `json:"durability_at_risk"`
	// Fenced lists the operators' fences (hamgrctl fence) by member ({}:
	// none); FenceOwed is the fence a promotion took the leader key for and
	// has not confirmed yet (null: none owed): the next promotion fences
	// that member first.
	Fenced    map[string]cluster.FenceOutcome `json:"fenced"`
	FenceOwed *cluster.FenceOwed              `json:"fence_owed"`
	Members   []clusterMember                 `json:"members"`
}

// clusterMember is one member in /cluster.
type clusterMember struct {
	Name string `json:"name"`
	// Role is "leader" for the leader key's holder, else the database's role.
	Role    string              `json:"role"`
	State   cluster.MemberState `json:"state"`
	Reason  string              `json:"reason"`
	Problem cluster.Problem     `json:"problem,omitempty"`
	APIURL  string              `json:"api_url"`
	Host    string              `json:"host"`
	Port    int                 `json:"port"`
	// Position is the member's position, tagged with its engine;
	// Timeline and LSN repeat a PostgreSQL position's parts.
	Position  cluster.Position `json:"position"`
	Timeline  uint32           `json:"timeline"`
	LSN       cluster.LSN      `json:"lsn"`
	Lag       *int64           `json:"lag"`
	Streaming bool             `json:"streaming"`
	Upstream  string           `json:"upstream"`
	// Coordinates are the database's own log coordinates (a binary log
	// file and offset), for operators; absent when the engine shows none.
	Coordinates string       `json:"coordinates,omitempty"`
	Tags        cluster.Tags `json:"tags"`
	UpdatedAt   *time.Time   `json:"updated_at"`
}

// newClusterView builds the /cluster body from st's snapshot. The members are
// the snapshot's records as published, sorted by name.
func newClusterView(st *State) clusterView {
	v := clusterView{
		Cluster:   st.Cluster,
		Paused:    st.Paused,
		Fenced:    map[string]cluster.FenceOutcome{},
		FenceOwed: st.FenceOwed,
		Members:   make([]clusterMember, 0, len(st.Members)),
	}
	for name, f := range st.Fenced {
		v.Fenced[name] = f
	}
	leader := ""
	if st.Leader != nil {
		name, epoch := st.Leader.Name, st.Leader.Epoch
		v.Leader, v.Epoch = &name, &epoch
		leader = name
	}
	v.SynchronousMode = string(cluster.SyncOff)
	if st.SyncMode.Enabled() {
		v.SynchronousMode = string(st.SyncMode)
	}
	v.SynchronousStandbys = []string{}
	if st.Sync != nil && st.Leader != nil && st.Sync.Epoch == st.Leader.Epoch {
		v.SynchronousStandbys = append(v.SynchronousStandbys, st.Sync.Members...)
	}
	if st.Leader != nil {
		for _, m := range st.Members {
			if m.Name == st.Leader.Name {
				v.DurabilityAtRisk = m.Problem == cluster.ProblemDurabilityAtRisk
			}
		}
	}
	for i := range st.Members {
		m := &st.Members[i]
		role := m.Role.String()
		if leader != "" && m.Name == leader {
			role = "leader"
		}
		tl, lsn, _ := m.Position.PostgreSQL()
		v.Members = append(v.Members, clusterMember{
			Name:        m.Name,
			Role:        role,
			State:       m.State,
			Reason:      m.Reason,
			Problem:     m.Problem,
			APIURL:      m.APIURL,
			Host:        m.ConnHost,
			Port:        m.ConnPort,
			Position:    m.Position,
			Timeline:    tl,
			LSN:         lsn,
			Lag:         lagOf(m),
			Streaming:   m.Streaming,
			Upstream:    m.Upstream,
			Coordinates: m.Coordinates,
			Tags:        m.Tags,
			UpdatedAt:   timeOf(m.UpdatedAt),
		})
	}
	slices.SortStableFunc(v.Members, func(a, b clusterMember) int { return strings.Compare(a.Name, b.Name) })
	return v
}

// lagOf returns m's lag in bytes, or nil when it is unknown (negative).
func lagOf(m *cluster.Member) *int64 {
	if m.LagBytes < 0 {
		return nil
	}
	v := m.LagBytes
	return &v
}

// timeOf returns &t, or nil for the zero time.
func timeOf(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// serveAlive answers GET /alive with 200 at once and then holds the
// response open, sending nothing, until the client goes away or the
// server shuts down. The other members' agents hold one each to the
// leader's agent: the connection drops the moment the agent process dies
// (its kernel closes the socket), which wakes their loops at once (the
// take-over on proof of death), and costs nothing while idle.
func (h *handler) serveAlive(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	// The server's read and write timeouts are for ordinary requests.
	_ = rc.SetReadDeadline(time.Time{})
	_ = rc.SetWriteDeadline(time.Time{})
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodGet {
		return
	}
	if err := rc.Flush(); err != nil {
		return
	}
	select {
	case <-r.Context().Done():
	case <-h.closing:
	}
}

// closeStreams ends every held GET /alive (the server is shutting down).
func (h *handler) closeStreams() { h.closeOnce.Do(func() { close(h.closing) }) }
