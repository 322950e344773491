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

// selfState builds a State for one member with the given facts.
func selfState(role cluster.Role, accepting, holds, streaming bool, lag int64) State {
	self := cluster.Member{
		Name:      "pg1",
		Role:      role,
		State:     cluster.StateRunning,
		Position:  cluster.Position{LSN: 0x3000060, Timeline: 2},
		LagBytes:  lag,
		Streaming: streaming,
		APIURL:    "http://10.0.0.1:8008",
		ConnHost:  "10.0.0.1",
		ConnPort:  5432,
		UpdatedAt: t0.Add(-time.Second),
	}
	if role == cluster.RoleReplica {
		self.Upstream = "pg2"
	}
	st := State{
		Cluster:     "main",
		Self:        self,
		Accepting:   accepting,
		HoldsLeader: holds,
		Members:     []cluster.Member{self},
		StoreOK:     true,
		LastLoop:    t0.Add(-2 * time.Second),
	}
	if holds {
		st.Leader = &cluster.Leader{Name: "pg1", Epoch: 42, Lease: 7}
	} else {
		st.Leader = &cluster.Leader{Name: "pg2", Epoch: 42, Lease: 9}
	}
	return st
}

const mb16 = 16 << 20

// expected is the specification, spelled out independently of the handler:
// the status each path must answer for a member with these facts.
func expected(path string, role cluster.Role, accepting, holds, streaming bool, lag int64) int {
	primary := role == cluster.RolePrimary && accepting && holds
	replica := role == cluster.RoleReplica && accepting && streaming
	within16MB := lag >= 0 && lag <= mb16
	ok := false
	switch path {
	case "/primary", "/master", "/leader", "/read-write", "/primary/", "/primary?lag=garbage":
		ok = primary
	case "/replica", "/replica/":
		ok = replica
	case "/replica?lag=16MB", "/replica?lag=16777216", "/replica?lag=16384kB", "/replica?foo=1&lag=16mb":
		ok = replica && within16MB
	case "/read-only":
		ok = primary || replica
	case "/read-only?lag=16MB":
		ok = primary || (replica && within16MB)
	case "/health":
		ok = accepting
	case "/liveness", "/", "/patroni", "/status", "/cluster":
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
	"/primary", "/master", "/leader", "/read-write", "/primary/", "/primary?lag=garbage",
	"/replica", "/replica/", "/replica?lag=16MB", "/replica?lag=16777216", "/replica?lag=16384kB", "/replica?foo=1&lag=16mb",
	"/read-only", "/read-only?lag=16MB",
	"/health", "/liveness", "/", "/patroni", "/status", "/cluster",
}

var methods = []string{http.MethodGet, http.MethodHead, http.MethodOptions}

// TestEndpointMatrix checks every endpoint for every combination of role,
// accepting, holding the leader key, streaming and lag, with GET, HEAD and
// OPTIONS.
func TestEndpointMatrix(t *testing.T) {
	roles := []cluster.Role{cluster.RolePrimary, cluster.RoleReplica, cluster.RoleUnknown}
	bools := []bool{false, true}
	lags := []int64{-1, 0, mb16, mb16 + 1}
	n := 0
	for _, role := range roles {
		for _, accepting := range bools {
			for _, holds := range bools {
				for _, streaming := range bools {
					for _, lag := range lags {
						h := newTestHandler(selfState(role, accepting, holds, streaming, lag))
						for _, path := range checkPaths {
							want := expected(path, role, accepting, holds, streaming, lag)
							for _, method := range methods {
								n++
								rec := do(t, h, method, path)
								if rec.Code != want {
									t.Errorf("%s %s with role=%v accepting=%v holds=%v streaming=%v lag=%d: got %d, want %d (body %s)",
										method, path, role, accepting, holds, streaming, lag, rec.Code, want, rec.Body)
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
				}
			}
		}
	}
	t.Logf("%d requests", n)
}

// TestEndpointCases pins the cases that matter most in words, so that a
// mistake shared by the handler and expected() still shows.
func TestEndpointCases(t *testing.T) {
	cases := []struct {
		name string
		st   State
		path string
		want int
	}{
		{"primary holding the key", selfState(cluster.RolePrimary, true, true, false, 0), "/primary", 200},
		{"primary without the key is not the primary", selfState(cluster.RolePrimary, true, false, false, 0), "/primary", 503},
		{"primary without the key is not read-only either", selfState(cluster.RolePrimary, true, false, false, 0), "/read-only", 503},
		{"primary whose database is down", selfState(cluster.RolePrimary, false, true, false, 0), "/master", 503},
		{"replica holding the key is not the primary", selfState(cluster.RoleReplica, true, true, true, 0), "/leader", 503},
		{"primary is not a replica", selfState(cluster.RolePrimary, true, true, false, 0), "/replica", 503},
		{"primary is read-only ok", selfState(cluster.RolePrimary, true, true, false, 0), "/read-only", 200},
		{"primary ignores the lag bound on read-only", selfState(cluster.RolePrimary, true, true, false, -1), "/read-only?lag=0", 200},
		{"streaming replica", selfState(cluster.RoleReplica, true, false, true, 5), "/replica", 200},
		{"replica not streaming", selfState(cluster.RoleReplica, true, false, false, 5), "/replica", 503},
		{"replica not streaming is still healthy", selfState(cluster.RoleReplica, true, false, false, 5), "/health", 200},
		{"replica with unknown lag, no bound", selfState(cluster.RoleReplica, true, false, true, -1), "/replica", 200},
		{"replica with unknown lag, bound", selfState(cluster.RoleReplica, true, false, true, -1), "/replica?lag=1GB", 503},
		{"replica lag equal to bound", selfState(cluster.RoleReplica, true, false, true, 1024), "/replica?lag=1kB", 200},
		{"replica lag one byte over bound", selfState(cluster.RoleReplica, true, false, true, 1025), "/replica?lag=1kB", 503},
		{"replica lag 0 bound 0", selfState(cluster.RoleReplica, true, false, true, 0), "/replica?lag=0", 200},
		{"replica over bound on read-only", selfState(cluster.RoleReplica, true, false, true, 2048), "/read-only?lag=1kB", 503},
		{"database down: health", selfState(cluster.RoleReplica, false, false, true, 0), "/health", 503},
		{"database down: liveness", selfState(cluster.RoleReplica, false, false, true, 0), "/liveness", 200},
		{"database down: status", selfState(cluster.RoleUnknown, false, false, false, -1), "/status", 200},
		{"unknown path", selfState(cluster.RolePrimary, true, true, false, 0), "/nope", 404},
		{"prefix of a path", selfState(cluster.RolePrimary, true, true, false, 0), "/primaryx", 404},
	}
	for _, c := range cases {
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

// TestBadLagIs400 checks that a malformed bound answers 400 with an
// explanation on every method, whatever the member's state.
func TestBadLagIs400(t *testing.T) {
	for _, st := range []State{
		selfState(cluster.RoleReplica, true, false, true, 0),
		selfState(cluster.RolePrimary, true, true, false, 0),
	} {
		h := newTestHandler(st)
		for _, target := range []string{
			"/replica?lag=abc", "/replica?lag=", "/replica?lag=-5", "/replica?lag=1.5GB", "/replica?lag=16PB",
			"/replica?lag=1MB&lag=2MB", "/replica?lag=%zz", "/read-only?lag=lots",
		} {
			for _, m := range methods {
				rec := do(t, h, m, target)
				if rec.Code != http.StatusBadRequest {
					t.Errorf("%s %s: got %d, want 400", m, target, rec.Code)
					continue
				}
				if m != http.MethodGet {
					continue
				}
				var body map[string]string
				if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
					t.Fatalf("%s: body %q: %v", target, rec.Body, err)
				}
				msg := body["error"]
				if target == "/replica?lag=%zz" {
					if !strings.Contains(msg, "query") {
						t.Errorf("%s: error %q does not mention the query", target, msg)
					}
					continue
				}
				if !strings.Contains(msg, "lag") || !strings.Contains(msg, "16MB") || !strings.Contains(msg, "1048576") {
					t.Errorf("%s: error %q does not name the parameter and its forms", target, msg)
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
	st.Self.ReceiveLSN = 0x3000100
	st.Self.Tags = cluster.Tags{NoFailover: true, Priority: 3}
	st.Paused = true
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
			"streaming": true, "upstream": "pg2", "api_url": "http://10.0.0.1:8008", "host": "10.0.0.1",
			"port": 5432.0, "tags": map[string]any{"nofailover": true, "priority": 3.0},
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
}

func TestClusterJSON(t *testing.T) {
	st := selfState(cluster.RoleReplica, true, false, true, 10)
	st.Paused = true
	st.Leader = &cluster.Leader{Name: "b", Epoch: 1234567, Lease: 99}
	st.Members = []cluster.Member{
		{Name: "c", Role: cluster.RoleReplica, State: cluster.StateCannotFollow, Reason: "timeline diverged; run rewind",
			LagBytes: -1, APIURL: "http://c:8008", ConnHost: "c", ConnPort: 5432, Upstream: "b",
			Position: cluster.Position{LSN: 0x100, Timeline: 1}},
		{Name: "a", Role: cluster.RoleReplica, State: cluster.StateRunning, LagBytes: 0, Streaming: true, Upstream: "b",
			APIURL: "http://a:8008", ConnHost: "a", ConnPort: 5433, Tags: cluster.Tags{Priority: 1},
			Position: cluster.Position{LSN: 0x2_00000010, Timeline: 3}, UpdatedAt: t0},
		{Name: "b", Role: cluster.RolePrimary, State: cluster.StateRunning, APIURL: "http://b:8008", ConnHost: "b", ConnPort: 5432,
			Position: cluster.Position{LSN: 0x2_00000010, Timeline: 3}},
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
	keys := []string{"name", "role", "state", "reason", "api_url", "host", "port", "timeline", "lsn", "lag",
		"streaming", "upstream", "tags", "updated_at"}
	for _, m := range got.Members {
		var have []string
		for k := range m {
			have = append(have, k)
		}
		slices.Sort(have)
		want := slices.Sorted(slices.Values(keys))
		if !slices.Equal(have, want) {
			t.Errorf("member %v keys %v, want %v", m["name"], have, want)
		}
	}
	a, c := got.Members[0], got.Members[2]
	if a["lsn"] != "2/10" || a["timeline"] != 3.0 || a["lag"] != 0.0 || a["streaming"] != true || a["port"] != 5433.0 ||
		a["host"] != "a" || a["api_url"] != "http://a:8008" || a["upstream"] != "b" || a["updated_at"] != "2026-03-04T05:06:07Z" {
		t.Errorf("member a: %v", a)
	}
	if c["lag"] != nil || c["state"] != "cannot_follow" || c["reason"] != "timeline diverged; run rewind" || c["updated_at"] != nil {
		t.Errorf("member c: %v", c)
	}
	if strings.Contains(rec.Body.String(), "lease") || strings.Contains(rec.Body.String(), "99") {
		t.Errorf("lease id leaked: %s", rec.Body)
	}

	// No leader and no members: null leader and epoch, empty list.
	rec = do(t, newTestHandler(State{Cluster: "x"}), http.MethodGet, "/cluster")
	if s := rec.Body.String(); s != `{"cluster":"x","leader":null,"epoch":null,"paused":false,"synchronous_mode":"off","synchronous_standbys":[],"durability_at_risk":false,"members":[]}`+"\n" {
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
		want := 1
		if path == "/liveness" {
			want = 0
		}
		if calls != want {
			t.Errorf("%s: %d calls to State, want %d", path, calls, want)
		}
	}
	calls = 0
	do(t, h, http.MethodGet, "/replica?lag=bad")
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
	if rec := do(t, h, http.MethodGet, "/liveness"); rec.Code != 200 {
		t.Errorf("liveness with a broken source: %d", rec.Code)
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
// the current epoch, and when durability is at risk.
func TestClusterSyncFields(t *testing.T) {
	leader := &cluster.Leader{Name: "b", Epoch: 9}
	for _, c := range []struct {
		mode     cluster.SyncMode
		sync     *cluster.SyncState
		standbys string
		atRisk   bool
	}{
		{cluster.SyncOn, &cluster.SyncState{Leader: "b", Epoch: 9, Members: []string{"a"}}, "a", false},
		{cluster.SyncOn, &cluster.SyncState{Leader: "b", Epoch: 9, Members: []string{}}, "", true},
		{cluster.SyncOn, &cluster.SyncState{Leader: "x", Epoch: 3, Members: []string{"b"}}, "", true},
		{cluster.SyncStrict, nil, "", false},
	} {
		h := newTestHandler(State{Cluster: "main", Leader: leader, SyncMode: c.mode, Sync: c.sync})
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
