package api

import (
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Health checks, with Patroni's semantics (patroni/api.py, do_GET): the
// status of each path is decided here from one State, and the query
// parameters each path applies are parsed here.

// checkQuery holds the query parameters a check applies.
type checkQuery struct {
	// maxLag is the lag bound in bytes; -1 when none was given.
	maxLag int64
	// streaming: replication_state=streaming was asked for.
	streaming bool
	// archive: replication_state=in archive recovery was asked for; hamgr
	// never runs replicas from a WAL archive, so it never matches.
	archive bool
	// mode says which position /readiness measures lag from.
	mode lagMode
	// tags are the ?tag_NAME=VALUE filters, sorted by name.
	tags []tagFilter
}

// tagFilter is one ?tag_NAME=VALUE parameter.
type tagFilter struct{ name, value string }

// tagPrefix starts every tag filter parameter, as in Patroni.
const tagPrefix = "tag_"

// params says which query parameters an endpoint applies; the others are
// ignored, as Patroni ignores them (the primary checks ignore tag filters).
type params struct{ lag, replState, tags, mode bool }

// paramsOf returns the parameters ep applies.
func paramsOf(ep endpoint) params {
	switch ep {
	case epReplica, epReadOnly, epSync, epAsync, epReadOnlySync, epQuorum, epReadOnlyQuorum:
		return params{lag: true, replState: true, tags: true}
	case epHealth:
		return params{tags: true}
	case epReadiness:
		return params{lag: true, mode: true}
	}
	return params{}
}

// parseCheckQuery parses the parameters of rawQuery that ep applies. A
// malformed query string, a parameter given twice or a value that means
// nothing is an error (the caller answers 400), so that a typo in a
// balancer's check shows as a failing check with an explanation instead of
// a silently ignored condition.
func parseCheckQuery(rawQuery string, ep endpoint) (checkQuery, error) {
	q := checkQuery{maxLag: -1, mode: lagApply}
	p := paramsOf(ep)
	if rawQuery == "" || p == (params{}) {
		return q, nil
	}
	vals, err := url.ParseQuery(rawQuery)
	if err != nil {
		return q, fmt.Errorf("malformed query string %q: %v", rawQuery, err)
	}
	for _, name := range slices.Sorted(maps.Keys(vals)) {
		if err := q.set(p, name, vals[name]); err != nil {
			return q, err
		}
	}
	return q, nil
}

// set applies one query parameter that p allows; it ignores the others.
func (q *checkQuery) set(p params, name string, vs []string) error {
	isTag := strings.HasPrefix(name, tagPrefix)
	known := (p.lag && name == "lag") || (p.replState && name == "replication_state") ||
		(p.mode && name == "mode") || (p.tags && isTag)
	if !known {
		return nil
	}
	if len(vs) != 1 {
		return fmt.Errorf("parameter %s given %d times; give it once", name, len(vs))
	}
	v := vs[0]
	var err error
	switch {
	case name == "lag":
		q.maxLag, err = parseLag(v)
	case name == "replication_state":
		switch v {
		case "streaming":
			q.streaming = true
		case "in archive recovery":
			q.archive = true
		default:
			err = fmt.Errorf("invalid value %q for parameter replication_state: want streaming (or Patroni's \"in archive recovery\", which no hamgr replica is in)", v)
		}
	case name == "mode":
		switch v {
		case "apply":
			q.mode = lagApply
		case "write":
			q.mode = lagWrite
		default:
			err = fmt.Errorf("invalid value %q for parameter mode: want apply (lag of replayed WAL, the default) or write (lag of received WAL)", v)
		}
	case isTag:
		tag := strings.TrimPrefix(name, tagPrefix)
		if tag == "" {
			return fmt.Errorf("parameter %s names no tag: write tag_NAME=VALUE, e.g. tag_dc=east", name)
		}
		q.tags = append(q.tags, tagFilter{name: tag, value: v})
	}
	return err
}

// serveCheck answers a health check endpoint: 200 or 503 with this member's
// status, or 400 for a malformed parameter.
func (h *handler) serveCheck(w http.ResponseWriter, r *http.Request, ep endpoint) {
	q, err := parseCheckQuery(r.URL.RawQuery, ep)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	st := h.src.State()
	status := http.StatusServiceUnavailable
	if checkPasses(&st, ep, q) {
		status = http.StatusOK
	}
	writeJSON(w, r, status, h.newMemberStatus(&st))
}

// checkPasses reports whether ep answers 200 for st. It follows Patroni's
// do_GET: the primary checks ignore tag filters; every other check that
// would pass must also match them.
func checkPasses(st *State, ep endpoint, q checkQuery) bool {
	var ok bool
	switch ep {
	case epPrimary:
		return isPrimary(st)
	case epStandbyLeader:
		// hamgr has no standby clusters, so there is never a standby leader.
		return false
	case epReplica:
		ok = replicaOK(st, q)
	case epReadOnly:
		ok = isPrimary(st) || replicaOK(st, q)
	case epSync:
		ok = isSyncStandby(st) && replicaOK(st, q)
	case epAsync:
		ok = !isSyncStandby(st) && replicaOK(st, q)
	case epReadOnlySync:
		ok = isPrimary(st) || (isSyncStandby(st) && replicaOK(st, q))
	case epQuorum:
		// Synchronous mode writes FIRST n (priority), never ANY n: no
		// member is ever a quorum standby.
		ok = false
	case epReadOnlyQuorum:
		ok = isPrimary(st)
	case epHealth:
		ok = st.Accepting
	}
	return ok && tagsMatch(st.Self.Tags, q.tags)
}

// isPrimary reports whether this member is the cluster's writable primary:
// its database is a primary that accepts connections and this agent holds
// the leader key. A primary without the key (say, one that lost its lease
// and has not yet demoted) must not receive writes, nor a key holder whose
// database is still being promoted or restarted.
func isPrimary(st *State) bool {
	return st.Self.Role == cluster.RolePrimary && st.Accepting && st.HoldsLeader
}

// replicaOK is Patroni's replica condition: this member's database runs as
// a replica and accepts connections, its agent reports it running, it is
// not tagged noloadbalance and has not diverged, and it meets q's
// replication_state and lag bound. It need not be streaming at this moment
// (a replica of a failed primary keeps serving reads); only
// replication_state=streaming asks for that.
func replicaOK(st *State, q checkQuery) bool {
	m := &st.Self
	switch {
	case m.Role != cluster.RoleReplica, !st.Accepting, m.State != cluster.StateRunning,
		m.Diverged, m.Tags.NoLoadBalance, q.archive, q.streaming && !m.Streaming:
		return false
	case q.maxLag < 0:
		return true
	}
	lag, ok := replicaLag(st, lagApply)
	return ok && lag <= q.maxLag
}

// isSyncStandby reports whether the leader's record lists this member as a
// synchronous standby: synchronous mode is on, and the record is the
// current leader's (or, while nobody holds the key, the last one written:
// no commit is acknowledged without a leader).
func isSyncStandby(st *State) bool {
	if !st.SyncMode.Enabled() || !st.Sync.Has(st.Self.Name) {
		return false
	}
	return st.Leader == nil || st.Sync.Epoch == st.Leader.Epoch
}

// tagsMatch reports whether tags has every filter's tag with exactly its
// value. As in Patroni, the boolean tags exist only when set (their value
// is then "true"), and a tag the member lacks fails the filter.
func tagsMatch(tags cluster.Tags, filters []tagFilter) bool {
	for _, f := range filters {
		v, ok := tagValue(tags, f.name)
		if !ok || v != f.value {
			return false
		}
	}
	return true
}

// tagValue returns the value of the tag called name, and whether the
// member has it.
func tagValue(tags cluster.Tags, name string) (string, bool) {
	switch name {
	case "nofailover":
		return "true", tags.NoFailover
	case "noloadbalance":
		return "true", tags.NoLoadBalance
	case "priority":
		return strconv.Itoa(tags.Priority), true
	}
	v, ok := tags.Custom[name]
	return v, ok
}

// readinessView is the JSON body of /readiness.
type readinessView struct {
	Ready bool `json:"ready"`
	// Reason says why the member is not ready; empty when it is.
	Reason string `json:"reason"`
}

// serveReadiness answers /readiness: 200 for the leader key's holder or a
// replica that streams and is close enough to the leader, else 503.
func (h *handler) serveReadiness(w http.ResponseWriter, r *http.Request) {
	q, err := parseCheckQuery(r.URL.RawQuery, epReadiness)
	if err != nil {
		writeError(w, r, http.StatusBadRequest, err.Error())
		return
	}
	st := h.src.State()
	v := readinessView{Reason: notReady(&st, q)}
	v.Ready = v.Reason == ""
	status := http.StatusServiceUnavailable
	if v.Ready {
		status = http.StatusOK
	}
	writeJSON(w, r, status, v)
}

// notReady is Patroni's readiness rule (patroni/api.py, _readiness): the
// holder of the leader key is ready; any other member only while its
// database accepts connections as a running replica (not diverged) that
// streams, with its lag behind the leader — of replayed WAL, or of
// received WAL with mode=write — at most q's bound, maximum_lag_on_failover
// by default. It returns why not, or "" when ready.
func notReady(st *State, q checkQuery) string {
	if st.HoldsLeader {
		return ""
	}
	m := &st.Self
	switch {
	case !st.Accepting:
		return "the database does not accept connections"
	case m.Role != cluster.RoleReplica:
		return fmt.Sprintf("the database runs as %s and this agent does not hold the leader key", m.Role)
	case m.State != cluster.StateRunning:
		return fmt.Sprintf("the agent reports state %s: %s", m.State, m.Reason)
	case m.Diverged:
		return "this replica's history diverged from its upstream's"
	case !m.Streaming:
		return "the replica does not stream WAL from an upstream"
	}
	bound := q.maxLag
	if bound < 0 {
		bound = st.Config.MaximumLagOnFailover
	}
	lag, ok := replicaLag(st, q.mode)
	what := "replay"
	if q.mode == lagWrite {
		what = "receive"
	}
	switch {
	case !ok:
		return "the leader's WAL position is unknown, so the replica's lag cannot be measured"
	case lag > bound:
		return fmt.Sprintf("%s lag %d bytes exceeds the bound of %d bytes", what, lag, bound)
	}
	return ""
}

// LivenessBound is how long /liveness tolerates the agent's loop not
// completing a round before it answers 503: 2 × ttl + primary_start_timeout
// (50 s with the default timing, 20 s with the fast profile).
//
// A round of a working agent consists of store calls (each bounded by half
// of retry_timeout, and ttl > loop_wait + retry_timeout), probes of its
// database (2 s each), at most one database start (which waits up to
// primary_start_timeout, the crash recovery a primary is allowed), and the
// wait of loop_wait before the next one; 2 × ttl covers all but the start.
// Patroni uses ttl on a primary and 2 × ttl on a replica; hamgr uses one
// bound for every member because its loop waits for a database start
// inside the round (a liveness failure then would restart an agent during
// crash recovery), and because its lease renewal runs beside the loop, so
// the lease gives no shorter bound on a primary. Clone, re-clone, pg_rewind
// and initdb also run inside a round and may take longer (up to 30
// minutes); /liveness answers 503 while one does.
func LivenessBound(c cluster.DynamicConfig) time.Duration {
	return 2*time.Duration(c.TTL) + time.Duration(c.PrimaryStartTimeout)
}

// livenessView is the JSON body of /liveness.
type livenessView struct {
	Alive  bool `json:"alive"`
	Paused bool `json:"paused"`
	// LastLoop is when the loop last completed a round (null: none yet);
	// Age the seconds since then, or since the agent started.
	LastLoop *time.Time `json:"last_loop"`
	Age      *float64   `json:"age_seconds"`
	// Limit is LivenessBound in seconds.
	Limit float64 `json:"limit_seconds"`
}

// serveLiveness answers /liveness: 503 when the loop has not completed a
// round for longer than LivenessBound, measured from the agent's start
// until the first round; 200 otherwise, and always while the cluster is
// paused (as in Patroni: maintenance may stop the loop's work) or when
// the Source gives no timing.
func (h *handler) serveLiveness(w http.ResponseWriter, r *http.Request) {
	st := h.src.State()
	bound := LivenessBound(st.Config)
	v := livenessView{Alive: true, Paused: st.Paused, LastLoop: timeOf(st.LastLoop), Limit: bound.Seconds()}
	since := st.LastLoop
	if since.IsZero() {
		since = st.Started
	}
	if !since.IsZero() {
		age := h.now().Sub(since)
		secs := age.Seconds()
		v.Age = &secs
		v.Alive = st.Paused || st.Config.TTL <= 0 || age <= bound
	}
	status := http.StatusOK
	if !v.Alive {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, r, status, v)
}
