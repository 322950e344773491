package api

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
)

// fakeSource returns a fixed State.
type fakeSource struct{ st State }

func (f fakeSource) State() State { return f.st }

// sourceFunc adapts a function to Source.
type sourceFunc func() State

func (f sourceFunc) State() State { return f() }

var t0 = time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newTestHandler(st State) http.Handler {
	return NewHandler(fakeSource{st}, Options{Logger: quietLogger(), Now: func() time.Time { return t0 }})
}

// do sends one request to h and returns the recorded response.
func do(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// facts are what decides a member's check answers; state builds the State
// an agent with these facts would give.
type facts struct {
	role                        cluster.Role
	accepting, holds, streaming bool
	// starting: the agent reports state starting instead of running.
	starting bool
	// diverged, noLB: the record's Diverged and the noloadbalance tag.
	diverged, noLB bool
	// sync: the current leader's sync record lists this member.
	sync bool
	// lag is how far replay trails the leader's published position; -1:
	// unknown (no leader record and no last leader position).
	lag int64
}

// refLSN is the leader's published position in states built from facts.
const refLSN = cluster.LSN(0x5000000)

func (f facts) state() State {
	self := cluster.Member{
		Name:      "pg1",
		Role:      f.role,
		State:     cluster.StateRunning,
		Position:  cluster.PGPosition(2, refLSN),
		Received:  cluster.PGPosition(2, refLSN),
		Replayed:  cluster.PGPosition(2, refLSN),
		LagBytes:  f.lag,
		Streaming: f.streaming,
		Diverged:  f.diverged,
		APIURL:    "http://10.0.0.1:8008",
		ConnHost:  "10.0.0.1",
		ConnPort:  5432,
		Tags:      cluster.Tags{Priority: 1, NoLoadBalance: f.noLB, Custom: map[string]string{"dc": "east"}},
		UpdatedAt: t0.Add(-time.Second),
	}
	if f.starting {
		self.State = cluster.StateStarting
	}
	if f.lag > 0 && !f.holds { // the key holder is its own reference
		self.Replayed = cluster.PGPosition(2, refLSN-cluster.LSN(f.lag))
	}
	leader := cluster.Member{Name: "pg2", Role: cluster.RolePrimary, State: cluster.StateRunning,
		Position: cluster.PGPosition(2, refLSN), ConnHost: "10.0.0.2", ConnPort: 5432}
	st := State{
		Cluster:     "main",
		Self:        self,
		Accepting:   f.accepting,
		HoldsLeader: f.holds,
		StoreOK:     true,
		LastLoop:    t0.Add(-2 * time.Second),
		Started:     t0.Add(-time.Hour),
		Config:      fastTiming,
		SyncMode:    cluster.SyncOn,
		Leader:      &cluster.Leader{Name: "pg2", Epoch: 42, Lease: 9},
		Members:     []cluster.Member{self, leader},
	}
	if f.role == cluster.RoleReplica {
		st.Self.Upstream = "pg2"
		st.Members[0] = st.Self
	}
	if f.holds {
		st.Leader = &cluster.Leader{Name: "pg1", Epoch: 42, Lease: 7}
		st.Members = st.Members[:1]
	} else if f.lag < 0 {
		st.Members = st.Members[:1] // the leader's record cannot be read
	}
	st.Sync = &cluster.SyncState{Leader: st.Leader.Name, Epoch: 42, Members: []string{"pg3"}}
	if f.sync {
		st.Sync.Members = []string{"pg1", "pg3"}
	}
	return st
}

// fastTiming is the fast profile, with maximum_lag_on_failover 1MB.
var fastTiming = cluster.DynamicConfig{
	TTL: cluster.Duration(5 * time.Second), LoopWait: cluster.Duration(time.Second),
	RetryTimeout: cluster.Duration(3 * time.Second), PrimaryStartTimeout: cluster.Duration(10 * time.Second),
	MaximumLagOnFailover: 1 << 20,
}

// selfState builds a running member's State with the given facts.
func selfState(role cluster.Role, accepting, holds, streaming bool, lag int64) State {
	return facts{role: role, accepting: accepting, holds: holds, streaming: streaming, lag: lag}.state()
}

const mb16 = 16 << 20

// expected is the specification, spelled out independently of the handler
// from Patroni's do_GET and _readiness: the status each path must answer
// for a member with facts f.
func expected(path string, f facts) int {
	primary := f.role == cluster.RolePrimary && f.accepting && f.holds
	replica := f.role == cluster.RoleReplica && f.accepting && !f.starting && !f.diverged && !f.noLB
	lagKnown, lag := f.holds || f.lag >= 0, max(f.lag, 0)
	if f.holds {
		lag = 0 // the leader's position is its own
	}
	within := func(bound int64) bool { return lagKnown && lag <= bound }
	// readiness: the leader key's holder, or a streaming replica close
	// enough (replay lag; received lag is always 0 in facts states).
	ready := func(lagOK bool) bool {
		return f.holds || (f.role == cluster.RoleReplica && f.accepting && !f.starting && !f.diverged && f.streaming && lagOK)
	}
	ok := false
	switch path {
	case "/", "/primary", "/master", "/leader", "/read-write", "/primary/", "/primary?lag=garbage",
		"/primary?tag_dc=west", "/?replication_state=bogus":
		ok = primary
	case "/standby-leader", "/standby_leader":
		ok = false
	case "/replica", "/replica/", "/replica?tag_dc=east", "/replica?foo=1", "/replica?mode=bogus":
		ok = replica
	case "/replica?tag_dc=west", "/replica?tag_zone=a", "/replica?replication_state=in%20archive%20recovery":
		ok = false
	case "/replica?lag=16MB", "/replica?lag=16777216", "/replica?lag=16384kB", "/replica?foo=1&lag=16mb", "/replica?lag=16%20MiB":
		ok = replica && within(mb16)
	case "/replica?replication_state=streaming":
		ok = replica && f.streaming
	case "/read-only":
		ok = primary || replica
	case "/read-only?lag=16MB":
		ok = primary || (replica && within(mb16))
	case "/read-only?tag_dc=west":
		ok = false
	case "/sync", "/synchronous":
		ok = f.sync && replica
	case "/async", "/asynchronous":
		ok = !f.sync && replica
	case "/async?lag=16MB":
		ok = !f.sync && replica && within(mb16)
	case "/read-only-sync", "/read-only-synchronous":
		ok = primary || (f.sync && replica)
	case "/quorum":
		ok = false
	case "/read-only-quorum":
		ok = primary
	case "/health", "/health?lag=garbage":
		ok = f.accepting
	case "/health?tag_dc=west":
		ok = false
	case "/readiness", "/readiness?tag_dc=west":
		ok = ready(within(1 << 20)) // maximum_lag_on_failover
	case "/readiness?lag=16MB":
		ok = ready(within(mb16))
	case "/readiness?mode=write":
		ok = ready(lagKnown)
	case "/liveness", "/patroni", "/status", "/cluster":
		ok = true
	default:
		panic("no expectation for " + path)
	}
	if ok {
		return http.StatusOK
	}
	return http.StatusServiceUnavailable
}

var checkPaths = []string{
	"/", "/primary", "/master", "/leader", "/read-write", "/primary/", "/primary?lag=garbage",
	"/primary?tag_dc=west", "/?replication_state=bogus",
	"/standby-leader", "/standby_leader",
	"/replica", "/replica/", "/replica?tag_dc=east", "/replica?foo=1", "/replica?mode=bogus",
	"/replica?tag_dc=west", "/replica?tag_zone=a", "/replica?replication_state=in%20archive%20recovery",
	"/replica?lag=16MB", "/replica?lag=16777216", "/replica?lag=16384kB", "/replica?foo=1&lag=16mb", "/replica?lag=16%20MiB",
	"/replica?replication_state=streaming",
	"/read-only", "/read-only?lag=16MB", "/read-only?tag_dc=west",
	"/sync", "/synchronous", "/async", "/asynchronous", "/async?lag=16MB",
	"/read-only-sync", "/read-only-synchronous", "/quorum", "/read-only-quorum",
	"/health", "/health?lag=garbage", "/health?tag_dc=west",
	"/readiness", "/readiness?tag_dc=west", "/readiness?lag=16MB", "/readiness?mode=write",
	"/liveness", "/patroni", "/status", "/cluster",
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodOptions}

// allFacts lists every combination of the facts that decide the checks.
func allFacts() []facts {
	var out []facts
	bools := []bool{false, true}
	for _, role := range []cluster.Role{cluster.RolePrimary, cluster.RoleReplica, cluster.RoleUnknown} {
		for _, accepting := range bools {
			for _, holds := range bools {
				for _, streaming := range bools {
					for _, lag := range []int64{-1, 0, 1 << 20, mb16, mb16 + 1} {
						for _, other := range []facts{{}, {starting: true}, {diverged: true}, {noLB: true}, {sync: true}} {
							f := other
							f.role, f.accepting, f.holds, f.streaming, f.lag = role, accepting, holds, streaming, lag
							out = append(out, f)
						}
					}
				}
			}
		}
	}
	return out
}

// TestEndpointMatrix checks every check endpoint against the specification
// for every combination of facts, with GET, HEAD and OPTIONS.
func TestEndpointMatrix(t *testing.T) {
	n := 0
	for _, f := range allFacts() {
		h := newTestHandler(f.state())
		for _, path := range checkPaths {
			want := expected(path, f)
			for _, method := range methods {
				n++
				rec := do(t, h, method, path)
				if rec.Code != want {
					t.Errorf("%s %s with %+v: got %d, want %d (body %s)", method, path, f, rec.Code, want, rec.Body)
				}
				if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
					t.Errorf("%s %s: Content-Type %q", method, path, ct)
				}
				if method == http.MethodHead && rec.Body.Len() != 0 {
					t.Errorf("HEAD %s: body %q, want none", path, rec.Body)
				}
				if method == http.MethodOptions && rec.Header().Get("Allow") != "GET, HEAD, OPTIONS" {
					t.Errorf("OPTIONS %s: Allow %q", path, rec.Header().Get("Allow"))
				}
			}
		}
	}
	t.Logf("%d requests", n)
}

// Facts and States for endpointCases.
var (
	primary = facts{role: cluster.RolePrimary, accepting: true, holds: true}
	replica = facts{role: cluster.RoleReplica, accepting: true, streaming: true, lag: 5}
)

// factsWith returns f changed by change.
func factsWith(f facts, change func(*facts)) facts { change(&f); return f }

// stateWith returns f's State changed by change.
func stateWith(f facts, change func(*State)) State {
	s := f.state()
	change(&s)
	return s
}

// failover is a replica's State after the leader key expired: no leader,
// no leader record, lastLeader the last position seen of the old leader.
func failover(lastLeader cluster.LSN, replayLag int64) State {
	return stateWith(factsWith(replica, func(f *facts) { f.streaming = false; f.lag = replayLag }), func(s *State) {
		s.Leader, s.Members, s.LastLeaderPosition, s.Sync = nil, s.Members[:1], cluster.Position{}, nil
		if lastLeader != 0 {
			s.LastLeaderPosition = cluster.PGPosition(2, lastLeader)
		}
	})
}

// endpointCases are the cases that matter most, in words, so that a mistake
// shared by the handler and expected() still shows.
var endpointCases = []struct {
	name string
	st   State
	path string
	want int
}{
	{"bare option httpchk: OPTIONS / on the primary", primary.state(), "/", 200},
	{"bare option httpchk: OPTIONS / on a replica", replica.state(), "/", 503},
	{"primary holding the key", primary.state(), "/primary", 200},
	{"primary without the key is not the primary", factsWith(primary, func(f *facts) { f.holds = false }).state(), "/primary", 503},
	{"primary without the key is not read-only either", factsWith(primary, func(f *facts) { f.holds = false }).state(), "/read-only", 503},
	{"primary whose database is down", factsWith(primary, func(f *facts) { f.accepting = false }).state(), "/master", 503},
	{"replica holding the key (promoting) is not the leader", factsWith(replica, func(f *facts) { f.holds = true }).state(), "/leader", 503},
	{"no standby leader, even on the primary", primary.state(), "/standby-leader", 503},
	{"primary is not a replica", primary.state(), "/replica", 503},
	{"primary is read-only ok", primary.state(), "/read-only", 200},
	{"primary ignores the lag bound on read-only", factsWith(primary, func(f *facts) { f.lag = -1 }).state(), "/read-only?lag=0", 200},
	{"primary ignores tag filters", primary.state(), "/primary?tag_dc=west", 200},
	{"primary with noloadbalance is read-only ok", factsWith(primary, func(f *facts) { f.noLB = true }).state(), "/read-only", 200},
	{"streaming replica", replica.state(), "/replica", 200},
	{"replica not streaming stays in the pool", factsWith(replica, func(f *facts) { f.streaming = false }).state(), "/replica", 200},
	{"replica not streaming, streaming asked", factsWith(replica, func(f *facts) { f.streaming = false }).state(), "/replica?replication_state=streaming", 503},
	{"replica still starting", factsWith(replica, func(f *facts) { f.starting = true }).state(), "/replica", 503},
	{"diverged replica", factsWith(replica, func(f *facts) { f.diverged = true }).state(), "/replica", 503},
	{"diverged replica is not read-only", factsWith(replica, func(f *facts) { f.diverged = true }).state(), "/read-only", 503},
	{"diverged replica is not async", factsWith(replica, func(f *facts) { f.diverged = true }).state(), "/async", 503},
	{"diverged replica is not ready", factsWith(replica, func(f *facts) { f.diverged = true }).state(), "/readiness", 503},
	{"diverged replica's database is healthy", factsWith(replica, func(f *facts) { f.diverged = true }).state(), "/health", 200},
	{"noloadbalance replica", factsWith(replica, func(f *facts) { f.noLB = true }).state(), "/replica", 503},
	{"noloadbalance replica is healthy", factsWith(replica, func(f *facts) { f.noLB = true }).state(), "/health", 200},
	{"noloadbalance replica is ready", factsWith(replica, func(f *facts) { f.noLB = true }).state(), "/readiness", 200},
	{"replica not streaming is healthy", factsWith(replica, func(f *facts) { f.streaming = false }).state(), "/health", 200},
	{"replica with unknown lag, no bound", factsWith(replica, func(f *facts) { f.lag = -1 }).state(), "/replica", 200},
	{"replica with unknown lag, bound", factsWith(replica, func(f *facts) { f.lag = -1 }).state(), "/replica?lag=1TB", 503},
	{"replica lag equal to bound", factsWith(replica, func(f *facts) { f.lag = 1024 }).state(), "/replica?lag=1kB", 200},
	{"replica lag one byte over bound", factsWith(replica, func(f *facts) { f.lag = 1025 }).state(), "/replica?lag=1kB", 503},
	{"replica lag 0 bound 0", factsWith(replica, func(f *facts) { f.lag = 0 }).state(), "/replica?lag=0", 200},
	{"replica over bound on read-only", factsWith(replica, func(f *facts) { f.lag = 2048 }).state(), "/read-only?lag=1kB", 503},
	{"lag is of replayed WAL: received all, replayed 2kB less",
		stateWith(factsWith(replica, func(f *facts) { f.lag = 2048 }), func(s *State) { s.Self.LagBytes = 0 }), "/replica?lag=1kB", 503},
	{"failover: lag against the last leader position, within", failover(refLSN, 1<<20), "/replica?lag=16MB", 200},
	{"failover: lag against the last leader position, over", failover(refLSN, mb16+1), "/replica?lag=16MB", 503},
	{"failover: no leader position ever seen", failover(0, 0), "/replica?lag=16MB", 503},
	{"failover: running replica without a bound", failover(0, 0), "/replica", 200},
	{"failover: not ready (not streaming)", failover(refLSN, 0), "/readiness", 503},
	{"tag filter matches", replica.state(), "/replica?tag_dc=east", 200},
	{"tag filter is case-sensitive", replica.state(), "/replica?tag_dc=East", 503},
	{"every tag filter must match", replica.state(), "/replica?tag_dc=east&tag_rack=1", 503},
	{"tag filter on priority", replica.state(), "/replica?tag_priority=1", 200},
	{"tag filter on an unset boolean tag fails, as in Patroni", replica.state(), "/replica?tag_nofailover=false", 503},
	{"tag filter on a set boolean tag", stateWith(replica, func(s *State) { s.Self.Tags.NoFailover = true }), "/replica?tag_nofailover=true", 200},
	{"tag filter on health", replica.state(), "/health?tag_dc=west", 503},
	{"tag filter on read-only of the primary", primary.state(), "/read-only?tag_dc=west", 503},
	{"sync standby", factsWith(replica, func(f *facts) { f.sync = true }).state(), "/sync", 200},
	{"sync standby is not async", factsWith(replica, func(f *facts) { f.sync = true }).state(), "/async", 503},
	{"sync standby of an older epoch is async",
		stateWith(factsWith(replica, func(f *facts) { f.sync = true }), func(s *State) { s.Sync.Epoch = 41 }), "/async", 200},
	{"sync standby of an older epoch is not sync",
		stateWith(factsWith(replica, func(f *facts) { f.sync = true }), func(s *State) { s.Sync.Epoch = 41 }), "/sync", 503},
	{"sync standby while nobody holds the key",
		stateWith(factsWith(replica, func(f *facts) { f.sync = true }), func(s *State) { s.Leader = nil }), "/sync", 200},
	{"synchronous mode off: nobody is sync",
		stateWith(factsWith(replica, func(f *facts) { f.sync = true }), func(s *State) { s.SyncMode = cluster.SyncOff }), "/synchronous", 503},
	{"synchronous mode off: every replica is async",
		stateWith(factsWith(replica, func(f *facts) { f.sync = true }), func(s *State) { s.SyncMode = "" }), "/asynchronous", 200},
	{"primary is read-only-sync", primary.state(), "/read-only-sync", 200},
	{"no quorum standbys with FIRST n", factsWith(replica, func(f *facts) { f.sync = true }).state(), "/quorum", 503},
	{"read-only-quorum is the primary only", factsWith(replica, func(f *facts) { f.sync = true }).state(), "/read-only-quorum", 503},
	{"read-only-quorum on the primary", primary.state(), "/read-only-quorum", 200},
	{"leader key holder is ready even while its database restarts", factsWith(primary, func(f *facts) { f.accepting = false }).state(), "/readiness", 200},
	{"primary without the key is not ready", factsWith(primary, func(f *facts) { f.holds = false }).state(), "/readiness", 503},
	{"replica over maximum_lag_on_failover is not ready", factsWith(replica, func(f *facts) { f.lag = 2 << 20 }).state(), "/readiness", 503},
	{"readiness with a larger bound", factsWith(replica, func(f *facts) { f.lag = 2 << 20 }).state(), "/readiness?lag=4MB", 200},
	{"readiness mode=write counts received WAL", factsWith(replica, func(f *facts) { f.lag = 2 << 20 }).state(), "/readiness?mode=write", 200},
	{"readiness mode=apply is the default", factsWith(replica, func(f *facts) { f.lag = 2 << 20 }).state(), "/readiness?mode=apply", 503},
	{"database down: health", factsWith(replica, func(f *facts) { f.accepting = false }).state(), "/health", 503},
	{"database down: liveness", factsWith(replica, func(f *facts) { f.accepting = false }).state(), "/liveness", 200},
	{"database down: status", facts{role: cluster.RoleUnknown, lag: -1}.state(), "/status", 200},
	{"unknown path", primary.state(), "/nope", 404},
	{"prefix of a path", primary.state(), "/primaryx", 404},
}

// TestEndpointCases checks endpointCases with GET, HEAD and OPTIONS.
func TestEndpointCases(t *testing.T) {
	for _, c := range endpointCases {
		t.Run(c.name, func(t *testing.T) {
			h := newTestHandler(c.st)
			for _, m := range methods {
				if rec := do(t, h, m, c.path); rec.Code != c.want {
					t.Errorf("%s %s: got %d, want %d: %s", m, c.path, rec.Code, c.want, rec.Body)
				}
			}
		})
	}
}

// TestLiveness: 503 once the loop has not completed a round for longer than
// LivenessBound (from the agent's start until the first round), except
// while paused.
func TestLiveness(t *testing.T) {
	bound := LivenessBound(fastTiming)
	if bound != 20*time.Second {
		t.Fatalf("LivenessBound(fast profile) = %v, want 2 × 5s + 10s", bound)
	}
	if b := LivenessBound(cluster.DynamicConfig{TTL: cluster.Duration(10 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second)}); b != 50*time.Second {
		t.Errorf("LivenessBound(default timing) = %v, want 50s", b)
	}
	base := selfState(cluster.RoleReplica, true, false, true, 0)
	cases := []struct {
		name   string
		change func(*State)
		want   int
		age    float64 // -1: null
	}{
		{"round 2 s ago", func(s *State) {}, 200, 2},
		{"round exactly the bound ago", func(s *State) { s.LastLoop = t0.Add(-bound) }, 200, 20},
		{"round just over the bound ago", func(s *State) { s.LastLoop = t0.Add(-bound - time.Millisecond) }, 503, 20.001},
		{"stuck, but paused", func(s *State) { s.LastLoop, s.Paused = t0.Add(-time.Hour), true }, 200, 3600},
		{"no round yet, started just now", func(s *State) { s.LastLoop, s.Started = time.Time{}, t0.Add(-time.Second) }, 200, 1},
		{"no round since a start long ago", func(s *State) { s.LastLoop, s.Started = time.Time{}, t0.Add(-time.Minute) }, 503, 60},
		{"nothing known", func(s *State) { s.LastLoop, s.Started = time.Time{}, time.Time{} }, 200, -1},
		{"no timing known", func(s *State) { s.LastLoop, s.Config = t0.Add(-time.Hour), cluster.DynamicConfig{} }, 200, 3600},
		{"primary uses the same bound", func(s *State) {
			*s = selfState(cluster.RolePrimary, true, true, false, 0)
			s.LastLoop = t0.Add(-bound - time.Second)
		}, 503, 21},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := base
			c.change(&st)
			rec := do(t, newTestHandler(st), http.MethodGet, "/liveness")
			if rec.Code != c.want {
				t.Fatalf("got %d, want %d: %s", rec.Code, c.want, rec.Body)
			}
			var v struct {
				Alive bool     `json:"alive"`
				Age   *float64 `json:"age_seconds"`
				Limit float64  `json:"limit_seconds"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			if v.Alive != (c.want == 200) || (c.age < 0) != (v.Age == nil) || (v.Age != nil && fmt.Sprintf("%.3f", *v.Age) != fmt.Sprintf("%.3f", c.age)) {
				t.Errorf("body %s: want alive %t, age %v", rec.Body, c.want == 200, c.age)
			}
		})
	}
}

// TestReadinessReason: a 503 from /readiness says why.
func TestReadinessReason(t *testing.T) {
	for _, c := range []struct {
		f    facts
		path string
		has  string
	}{
		{facts{role: cluster.RoleReplica, accepting: false}, "/readiness", "does not accept connections"},
		{facts{role: cluster.RolePrimary, accepting: true}, "/readiness", "runs as primary and this agent does not hold the leader key"},
		{facts{role: cluster.RoleReplica, accepting: true, starting: true}, "/readiness", "state starting"},
		{facts{role: cluster.RoleReplica, accepting: true, diverged: true, streaming: true}, "/readiness", "diverged"},
		{facts{role: cluster.RoleReplica, accepting: true}, "/readiness", "does not stream"},
		{facts{role: cluster.RoleReplica, accepting: true, streaming: true, lag: -1}, "/readiness", "lag cannot be measured"},
		{facts{role: cluster.RoleReplica, accepting: true, streaming: true, lag: 2 << 20}, "/readiness", "replay lag 2097152 bytes exceeds the bound of 1048576 bytes"},
		{facts{role: cluster.RoleReplica, accepting: true, streaming: true, lag: 2 << 20}, "/readiness?lag=1kB&mode=write", ""},
	} {
		rec := do(t, newTestHandler(c.f.state()), http.MethodGet, c.path)
		var v struct {
			Ready  bool   `json:"ready"`
			Reason string `json:"reason"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		if (c.has == "") != v.Ready || (c.has == "") != (rec.Code == 200) || !strings.Contains(v.Reason, c.has) || (c.has == "" && v.Reason != "") {
			t.Errorf("%+v %s: %d %s, want reason %q", c.f, c.path, rec.Code, rec.Body, c.has)
		}
	}
}

func TestParseLag(t *testing.T) {
	good := map[string]int64{
		"0":                   0,
		"1048576":             1048576,
		"16MB":                16 << 20,
		"16mb":                16 << 20,
		"1kB":                 1024,
		"1KB":                 1024,
		"1KiB":                1024,
		"7B":                  7,
		"2GB":                 2 << 30,
		"1TB":                 1 << 40,
		"3tb":                 3 << 40,
		"2TiB":                2 << 40,
		" 3 MB ":              3 << 20,
		"8589934591GB":        8589934591 << 30,
		"9223372036854775807": 1<<63 - 1,
	}
	for in, want := range good {
		got, err := parseLag(in)
		if err != nil || got != want {
			t.Errorf("parseLag(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := []string{"", " ", "abc", "-1", "+1", "1.5MB", "16PB", "16M", "16 M B", "MB", "0x10", "1e6",
		"8589934592GB", "8388608TB", "9223372036854775808", "99999999999999999999999"}
	for _, in := range bad {
		if got, err := parseLag(in); err == nil {
			t.Errorf("parseLag(%q) = %d, want an error", in, got)
		} else if !strings.Contains(err.Error(), "parameter lag") || !strings.Contains(err.Error(), "GB or TB") {
			t.Errorf("parseLag(%q) error %q does not name the parameter and the accepted forms", in, err)
		}
	}
}

// TestLagAcceptsWhatConfigAccepts: every byte size the config file takes
// is a valid lag bound, with the same value.
func TestLagAcceptsWhatConfigAccepts(t *testing.T) {
	for _, s := range []string{"0", "64B", "512kB", "16MB", "1GB", "2TB", "1KiB", "3MiB", "4GiB", "5TiB", "16 mb", "7"} {
		want, err := config.ParseByteSize(s)
		if err != nil {
			t.Fatalf("config.ParseByteSize(%q): %v", s, err)
		}
		if got, err := parseLag(s); err != nil || got != int64(want) {
			t.Errorf("parseLag(%q) = %d, %v; config says %d", s, got, err, want)
		}
	}
}

// TestBadQueryIs400 checks that a malformed parameter of a check answers
// 400 with an explanation on every method, whatever the member's state.
func TestBadQueryIs400(t *testing.T) {
	for _, st := range []State{
		selfState(cluster.RoleReplica, true, false, true, 0),
		selfState(cluster.RolePrimary, true, true, false, 0),
	} {
		h := newTestHandler(st)
		for _, c := range []struct{ target, has string }{
			{"/replica?lag=abc", "lag=16MB"}, {"/replica?lag=", "lag=16MB"}, {"/replica?lag=-5", "lag=16MB"},
			{"/replica?lag=1.5GB", "lag=16MB"}, {"/replica?lag=16PB", "lag=16MB"}, {"/read-only?lag=lots", "lag=16MB"},
			{"/async?lag=lots", "lag=16MB"}, {"/sync?lag=lots", "lag=16MB"}, {"/readiness?lag=lots", "lag=16MB"},
			{"/replica?lag=1MB&lag=2MB", "parameter lag given 2 times"},
			{"/replica?lag=%zz", "query"},
			{"/replica?replication_state=stream", "replication_state"},
			{"/replica?tag_=east", "tag_NAME=VALUE"},
			{"/replica?tag_dc=east&tag_dc=west", "parameter tag_dc given 2 times"},
			{"/health?tag_=x", "tag_NAME=VALUE"},
			{"/readiness?mode=replay", "apply"},
		} {
			for _, m := range methods {
				rec := do(t, h, m, c.target)
				if rec.Code != http.StatusBadRequest {
					t.Errorf("%s %s: got %d, want 400", m, c.target, rec.Code)
					continue
				}
				if m == http.MethodGet && !strings.Contains(errorOf(t, rec), c.has) {
					t.Errorf("%s: error %q does not say %q", c.target, errorOf(t, rec), c.has)
				}
			}
		}
	}
}

func TestMethodNotAllowed(t *testing.T) {
	h := newTestHandler(selfState(cluster.RolePrimary, true, true, false, 0))
	for _, path := range checkPaths {
		for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, "TRACE"} {
			rec := do(t, h, m, path)
			if rec.Code != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: got %d, want 405", m, path, rec.Code)
			}
			if a := rec.Header().Get("Allow"); a != "GET, HEAD, OPTIONS" {
				t.Errorf("%s %s: Allow %q", m, path, a)
			}
		}
	}
}

func TestStatusBody(t *testing.T) {
	st := selfState(cluster.RoleReplica, true, false, true, 4096)
	st.Self.Position, st.Self.Received, st.Self.Replayed = cluster.PGPosition(2, 0x3000060), cluster.PGPosition(2, 0x3000100), cluster.Position{}
	st.Self.Tags = cluster.Tags{NoFailover: true, Priority: 3, Custom: map[string]string{"dc": "east"}}
	st.Sync, st.Paused = nil, true
	h := newTestHandler(st)
	for _, path := range []string{"/", "/patroni", "/status", "/replica", "/primary", "/health", "/read-only"} {
		rec := do(t, h, http.MethodGet, path)
		var got map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
			t.Fatalf("%s: %v: %s", path, err, rec.Body)
		}
		want := map[string]any{
			"name": "pg1", "cluster": "main", "role": "replica", "state": "running", "reason": "",
			"accepting": true, "holds_leader": false, "leader": "pg2", "epoch": 42.0, "paused": true,
			"store_ok": true, "timeline": 2.0, "lsn": "0/3000060", "receive_lsn": "0/3000100", "lag": 4096.0,
			"position":  map[string]any{"engine": "postgresql", "timeline": 2.0, "lsn": "0/3000060"},
			"streaming": true, "diverged": false, "upstream": "pg2", "api_url": "http://10.0.0.1:8008", "host": "10.0.0.1",
			"port": 5432.0, "tags": map[string]any{"nofailover": true, "priority": 3.0, "custom": map[string]any{"dc": "east"}},
			"updated_at": "2026-03-04T05:06:06Z", "last_loop": "2026-03-04T05:06:05Z", "last_loop_age_seconds": 2.0,
		}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s body:\n got %v\nwant %v", path, got, want)
		}
	}
	// No leader, unknown lag, never looped: nulls rather than made-up values.
	st = selfState(cluster.RoleUnknown, false, false, false, -1)
	st.Leader, st.LastLoop, st.Self.UpdatedAt = nil, time.Time{}, time.Time{}
	rec := do(t, newTestHandler(st), http.MethodGet, "/health")
	var got map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"leader", "epoch", "lag", "updated_at", "last_loop", "last_loop_age_seconds"} {
		if v, ok := got[k]; !ok || v != nil {
			t.Errorf("%s = %v (present %v), want null", k, v, ok)
		}
	}
	if rec.Code != http.StatusServiceUnavailable || got["role"] != "unknown" {
		t.Errorf("got %d role %v", rec.Code, got["role"])
	}
	// A diverged synchronous standby says both.
	st = selfState(cluster.RoleReplica, true, false, true, 0)
	st.Self.Diverged, st.Sync.Members = true, []string{"pg1"}
	got = nil
	rec = do(t, newTestHandler(st), http.MethodGet, "/patroni")
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["diverged"] != true || got["sync_standby"] != true {
		t.Errorf("diverged %v sync_standby %v: %s", got["diverged"], got["sync_standby"], rec.Body)
	}
	// A problem appears as its code, beside the reason.
	st.Self.Problem, st.Self.Reason = cluster.ProblemDatabaseNotStarting, "database does not start (5 failed attempts)"
	rec = do(t, newTestHandler(st), http.MethodGet, "/health")
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got["problem"] != "database_not_starting" || got["reason"] != st.Self.Reason {
		t.Errorf("problem %v reason %v, want database_not_starting and the reason", got["problem"], got["reason"])
	}
}

func TestClusterJSON(t *testing.T) {
	st := selfState(cluster.RoleReplica, true, false, true, 10)
	st.Paused, st.SyncMode, st.Sync = true, "", nil
	st.Leader = &cluster.Leader{Name: "b", Epoch: 1234567, Lease: 99}
	st.Members = []cluster.Member{
		{Name: "c", Role: cluster.RoleReplica, State: cluster.StateCannotFollow, Reason: "timeline diverged; run rewind",
			Problem: cluster.ProblemCannotFollow, LagBytes: -1, APIURL: "http://c:8008", ConnHost: "c", ConnPort: 5432, Upstream: "b",
			Position: cluster.PGPosition(1, 0x100)},
		{Name: "a", Role: cluster.RoleReplica, State: cluster.StateRunning, LagBytes: 0, Streaming: true, Upstream: "b",
			APIURL: "http://a:8008", ConnHost: "a", ConnPort: 5433, Tags: cluster.Tags{Priority: 1},
			Position: cluster.PGPosition(3, 0x2_00000010), UpdatedAt: t0},
		{Name: "b", Role: cluster.RolePrimary, State: cluster.StateRunning, APIURL: "http://b:8008", ConnHost: "b", ConnPort: 5432,
			Position: cluster.PGPosition(3, 0x2_00000010)},
		{Name: "d", Role: cluster.RolePrimary, State: cluster.StateFenced, LagBytes: -1},
	}
	orig := slices.Clone(st.Members)
	h := newTestHandler(st)
	for _, m := range methods {
		if rec := do(t, h, m, "/cluster"); rec.Code != 200 {
			t.Fatalf("%s /cluster: %d", m, rec.Code)
		}
	}
	if !slices.EqualFunc(st.Members, orig, func(a, b cluster.Member) bool { return a.Name == b.Name }) {
		t.Error("handler reordered the source's members")
	}
	rec := do(t, h, http.MethodGet, "/cluster")
	var got struct {
		Cluster string           `json:"cluster"`
		Leader  *string          `json:"leader"`
		Epoch   *int64           `json:"epoch"`
		Paused  bool             `json:"paused"`
		Members []map[string]any `json:"members"`

		SynchronousMode     string   `json:"synchronous_mode"`
		SynchronousStandbys []string `json:"synchronous_standbys"`
		DurabilityAtRisk    bool     `json:"durability_at_risk"`

		Fenced    map[string]any `json:"fenced"`
		FenceOwed any            `json:"fence_owed"`
	}
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Cluster != "main" || got.Leader == nil || *got.Leader != "b" || got.Epoch == nil || *got.Epoch != 1234567 || !got.Paused {
		t.Errorf("header: %+v", got)
	}
	if got.SynchronousMode != "off" || len(got.SynchronousStandbys) != 0 || got.DurabilityAtRisk {
		t.Errorf("synchronous fields without synchronous mode: %+v", got)
	}
	var names, roles []string
	for _, m := range got.Members {
		names = append(names, m["name"].(string))
		roles = append(roles, m["role"].(string))
	}
	if !slices.Equal(names, []string{"a", "b", "c", "d"}) {
		t.Errorf("names %v, want sorted", names)
	}
	if !slices.Equal(roles, []string{"replica", "leader", "replica", "primary"}) {
		t.Errorf("roles %v", roles)
	}
	keys := []string{"name", "role", "state", "reason", "api_url", "host", "port", "position", "timeline", "lsn", "lag",
		"streaming", "upstream", "tags", "updated_at"}
	for _, m := range got.Members {
		var have []string
		for k := range m {
			have = append(have, k)
		}
		slices.Sort(have)
		want := slices.Sorted(slices.Values(keys))
		if m["name"] == "c" { // the only one with a problem; absent for the others
			want = slices.Sorted(slices.Values(append(slices.Clone(keys), "problem")))
		}
		if !slices.Equal(have, want) {
			t.Errorf("member %v keys %v, want %v", m["name"], have, want)
		}
	}
	a, c := got.Members[0], got.Members[2]
	if p, _ := a["position"].(map[string]any); fmt.Sprint(p) != fmt.Sprint(map[string]any{"engine": "postgresql", "timeline": 3.0, "lsn": "2/10"}) {
		t.Errorf("member a position %v", a["position"])
	}
	if a["lsn"] != "2/10" || a["timeline"] != 3.0 || a["lag"] != 0.0 || a["streaming"] != true || a["port"] != 5433.0 ||
		a["host"] != "a" || a["api_url"] != "http://a:8008" || a["upstream"] != "b" || a["updated_at"] != "2026-03-04T05:06:07Z" {
		t.Errorf("member a: %v", a)
	}
	if c["lag"] != nil || c["state"] != "cannot_follow" || c["reason"] != "timeline diverged; run rewind" || c["updated_at"] != nil ||
		c["problem"] != "cannot_follow" {
		t.Errorf("member c: %v", c)
	}
	if strings.Contains(rec.Body.String(), "lease") || strings.Contains(rec.Body.String(), "99") {
		t.Errorf("lease id leaked: %s", rec.Body)
	}

	// No leader and no members: null leader and epoch, empty list.
	rec = do(t, newTestHandler(State{Cluster: "x"}), http.MethodGet, "/cluster")
	if s := rec.Body.String(); s != `{"cluster":"x","leader":null,"epoch":null,"paused":false,"synchronous_mode":"off","synchronous_standbys":[],"durability_at_risk":false,"fenced":{},"fence_owed":null,"members":[]}`+"\n" {
		t.Errorf("empty cluster: %s", s)
	}
}

// TestOneStatePerRequest checks that each request reads the Source once.
func TestOneStatePerRequest(t *testing.T) {
	calls := 0
	h := NewHandler(sourceFunc(func() State { calls++; return selfState(cluster.RolePrimary, true, true, false, 0) }), Options{Logger: quietLogger()})
	for _, path := range checkPaths {
		calls = 0
		do(t, h, http.MethodGet, path)
		if calls != 1 {
			t.Errorf("%s: %d calls to State, want 1", path, calls)
		}
	}
	calls = 0
	do(t, h, http.MethodGet, "/replica?lag=bad")
	do(t, h, http.MethodGet, "/readiness?mode=bad")
	do(t, h, http.MethodPost, "/primary")
	if calls != 0 {
		t.Errorf("rejected requests read the state %d times", calls)
	}
}

func TestPanickingSource(t *testing.T) {
	var logs strings.Builder
	h := NewHandler(sourceFunc(func() State { panic("boom") }), Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	rec := do(t, h, http.MethodGet, "/primary")
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("got %d, want 500", rec.Code)
	}
	if !strings.Contains(logs.String(), "boom") {
		t.Errorf("panic not logged: %q", logs.String())
	}
	// /liveness reads the State too: an agent that cannot give one is not
	// alive.
	if rec := do(t, h, http.MethodGet, "/liveness"); rec.Code != http.StatusInternalServerError {
		t.Errorf("liveness with a broken source: %d, want 500", rec.Code)
	}
}

func TestRequestLog(t *testing.T) {
	var logs strings.Builder
	h := NewHandler(fakeSource{selfState(cluster.RolePrimary, true, true, false, 0)},
		Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
	do(t, h, http.MethodOptions, "/primary")
	if s := logs.String(); !strings.Contains(s, "method=OPTIONS") || !strings.Contains(s, "status=200") || !strings.Contains(s, "uri=/primary") {
		t.Errorf("log: %q", s)
	}
}

func TestNewHandlerNilSource(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic for a nil Source")
		}
	}()
	NewHandler(nil, Options{})
}

// TestClusterSyncFields: /cluster says which standbys are synchronous for
// the current epoch, and, from the leader's record (its problem code),
// when durability is at risk.
func TestClusterSyncFields(t *testing.T) {
	leader := &cluster.Leader{Name: "b", Epoch: 9}
	for _, c := range []struct {
		mode     cluster.SyncMode
		sync     *cluster.SyncState
		problem  cluster.Problem // of the leader's record
		standbys string
		atRisk   bool
	}{
		{cluster.SyncOn, &cluster.SyncState{Leader: "b", Epoch: 9, Members: []string{"a"}}, cluster.ProblemNone, "a", false},
		{cluster.SyncOn, &cluster.SyncState{Leader: "b", Epoch: 9, Members: []string{}}, cluster.ProblemDurabilityAtRisk, "", true},
		{cluster.SyncOn, &cluster.SyncState{Leader: "x", Epoch: 3, Members: []string{"b"}}, cluster.ProblemDurabilityAtRisk, "", true},
		{cluster.SyncOn, &cluster.SyncState{Leader: "b", Epoch: 9, Members: []string{}}, cluster.ProblemNone, "", false},
		{cluster.SyncStrict, nil, cluster.ProblemWritesBlocked, "", false},
	} {
		members := []cluster.Member{{Name: "a", Role: cluster.RoleReplica, Problem: cluster.ProblemDurabilityAtRisk},
			{Name: "b", Role: cluster.RolePrimary, Problem: c.problem}}
		h := newTestHandler(State{Cluster: "main", Leader: leader, SyncMode: c.mode, Sync: c.sync, Members: members})
		rec := do(t, h, http.MethodGet, "/cluster")
		var got struct {
			SynchronousMode     string   `json:"synchronous_mode"`
			SynchronousStandbys []string `json:"synchronous_standbys"`
			DurabilityAtRisk    bool     `json:"durability_at_risk"`
		}
		if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.SynchronousMode != string(c.mode) || strings.Join(got.SynchronousStandbys, ",") != c.standbys || got.DurabilityAtRisk != c.atRisk {
			t.Errorf("mode %s sync %+v: got %+v", c.mode, c.sync, got)
		}
	}
}

// /cluster shows the operators' fences and a fence a promotion owes.
func TestClusterFences(t *testing.T) {
	st := State{Cluster: "main", Leader: &cluster.Leader{Name: "b", Epoch: 9},
		Fenced:    map[string]cluster.FenceOutcome{"a": {Target: "a", Driver: "ipmi power off", Result: cluster.FenceConfirmed, By: "hamgrctl on ops1"}},
		FenceOwed: &cluster.FenceOwed{Target: "c", Lost: 7, By: "b"}}
	rec := do(t, newTestHandler(st), http.MethodGet, "/cluster")
	var got struct {
		Fenced    map[string]cluster.FenceOutcome `json:"fenced"`
		FenceOwed *cluster.FenceOwed              `json:"fence_owed"`
	}
	if err := json.NewDecoder(rec.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if f := got.Fenced["a"]; len(got.Fenced) != 1 || f.Result != cluster.FenceConfirmed || f.Driver != "ipmi power off" {
		t.Errorf("fenced = %+v, want a confirmed by ipmi power off", got.Fenced)
	}
	if o := got.FenceOwed; o == nil || o.Target != "c" || o.Lost != 7 || o.By != "b" {
		t.Errorf("fence_owed = %+v, want c (epoch 7) owed by b", o)
	}
}
