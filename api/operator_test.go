package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/operator"
)

const testToken = "s3cret-token"

// call is one call the fake operator received.
type call struct {
	method string
	to     string
	at     time.Time
	who    string
}

// fakeOperator records calls and answers with err (and req for Switchover
// and Cancel).
type fakeOperator struct {
	mu    sync.Mutex
	calls []call
	err   error
	req   cluster.Request
}

func (f *fakeOperator) record(ctx context.Context, method, to string, at time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, call{method, to, at, Requester(ctx)})
}

func (f *fakeOperator) Switchover(ctx context.Context, to string, at time.Time) (cluster.Request, error) {
	f.record(ctx, "switchover", to, at)
	if f.err != nil {
		return cluster.Request{}, f.err
	}
	r := f.req
	r.Kind, r.To, r.At, r.RequestedBy = cluster.KindSwitchover, to, at, Requester(ctx)
	if r.To == "" {
		r.To = "best"
	}
	return r, nil
}

func (f *fakeOperator) Cancel(ctx context.Context) (cluster.Request, error) {
	f.record(ctx, "cancel", "", time.Time{})
	return f.req, f.err
}

func (f *fakeOperator) Failover(ctx context.Context, to, confirmedDown string) error {
	f.record(ctx, "failover", to+confirmSuffix(confirmedDown), time.Time{})
	return f.err
}

func confirmSuffix(down string) string {
	if down == "" {
		return ""
	}
	return " confirm_down=" + down
}

func (f *fakeOperator) Pause(ctx context.Context) error {
	f.record(ctx, "pause", "", time.Time{})
	return f.err
}

func (f *fakeOperator) Resume(ctx context.Context) error {
	f.record(ctx, "resume", "", time.Time{})
	return f.err
}

func (f *fakeOperator) Calls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}

// opHandler returns a handler for a replica whose leader is pg2, with op
// and token.
func opHandler(op Operator, token string) http.Handler {
	return NewHandler(fakeSource{selfState(cluster.RoleReplica, true, false, true, 0)}, Options{
		Logger: quietLogger(), Now: func() time.Time { return t0 }, Operator: op, Token: token,
	})
}

// send sends method target with body and the Authorization header auth
// (none when empty).
func send(h http.Handler, method, target, body, auth string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// errorOf returns the "error" field of a JSON error body.
func errorOf(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b struct{ Error string }
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	return b.Error
}

// mutating lists every mutating request with a valid body and its success
// status.
var mutating = []struct {
	method, path, body string
	ok                 int
}{
	{"POST", "/switchover", `{"to":"pg3"}`, 202},
	{"DELETE", "/switchover", "", 200},
	{"POST", "/failover", `{"to":"pg3"}`, 202},
	{"POST", "/pause", "", 202},
	{"POST", "/resume", "{}", 202},
}

func TestOperatorAuthMatrix(t *testing.T) {
	for _, m := range mutating {
		for _, c := range []struct {
			name, auth string
			want       int
		}{
			{"none", "", 401},
			{"basic scheme", "Basic " + testToken, 401},
			{"empty bearer", "Bearer ", 401},
			{"wrong", "Bearer not-the-token", 403},
			{"prefix of the token", "Bearer " + testToken[:4], 403},
			{"token plus suffix", "Bearer " + testToken + "x", 403},
			{"right", "Bearer " + testToken, m.ok},
			{"right, lower-case scheme", "bearer " + testToken, m.ok},
		} {
			t.Run(m.method+m.path+"/"+c.name, func(t *testing.T) {
				op := &fakeOperator{req: cluster.Request{Kind: cluster.KindSwitchover, From: "pg2", To: "pg3"}}
				rec := send(opHandler(op, testToken), m.method, m.path, m.body, c.auth)
				if rec.Code != c.want {
					t.Fatalf("status %d, want %d; body %s", rec.Code, c.want, rec.Body)
				}
				if got := len(op.Calls()); (c.want == m.ok) != (got == 1) {
					t.Errorf("operator called %d times", got)
				}
				if c.want == 401 && !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without WWW-Authenticate: Bearer (got %q)", rec.Header().Get("WWW-Authenticate"))
				}
				if strings.Contains(rec.Body.String(), testToken) {
					t.Errorf("the answer contains the token: %s", rec.Body)
				}
			})
		}
	}
}

func TestOperatorDisabledWithoutToken(t *testing.T) {
	for _, m := range mutating {
		for _, auth := range []string{"", "Bearer " + testToken, "Bearer "} {
			op := &fakeOperator{}
			rec := send(opHandler(op, ""), m.method, m.path, m.body, auth)
			if rec.Code != 403 || errorOf(t, rec) != "operator endpoints are disabled: set api.token_file" {
				t.Errorf("%s %s auth %q: %d %s", m.method, m.path, auth, rec.Code, rec.Body)
			}
			if len(op.Calls()) != 0 {
				t.Errorf("%s %s: operator called", m.method, m.path)
			}
		}
	}
}

func TestReadEndpointsStayOpen(t *testing.T) {
	h := opHandler(&fakeOperator{}, testToken)
	for _, path := range []string{"/status", "/patroni", "/cluster", "/liveness", "/health", "/replica", "/read-only", "/readiness"} {
		if rec := send(h, "GET", path, "", ""); rec.Code != 200 {
			t.Errorf("GET %s without a token: %d", path, rec.Code)
		}
	}
	for _, path := range []string{"/", "/primary"} {
		if rec := send(h, "GET", path, "", ""); rec.Code != 503 {
			t.Errorf("GET %s of a replica: %d", path, rec.Code)
		}
	}
	if rec := send(h, "POST", "/primary", "", "Bearer "+testToken); rec.Code != 405 {
		t.Errorf("POST /primary: %d", rec.Code)
	}
}

func TestOperatorMethods(t *testing.T) {
	h := opHandler(&fakeOperator{}, testToken)
	for _, c := range []struct{ method, path, allow string }{
		{"GET", "/switchover", "POST, DELETE, OPTIONS"},
		{"PUT", "/switchover", "POST, DELETE, OPTIONS"},
		{"GET", "/failover", "POST, OPTIONS"},
		{"DELETE", "/failover", "POST, OPTIONS"},
		{"GET", "/pause", "POST, OPTIONS"},
		{"DELETE", "/resume", "POST, OPTIONS"},
	} {
		rec := send(h, c.method, c.path, "", "Bearer "+testToken)
		if rec.Code != 405 || rec.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d, Allow %q", c.method, c.path, rec.Code, rec.Header().Get("Allow"))
		}
	}
	rec := send(h, "OPTIONS", "/switchover/", "", "")
	if rec.Code != 204 || rec.Header().Get("Allow") != "POST, DELETE, OPTIONS" {
		t.Errorf("OPTIONS /switchover/: %d, Allow %q", rec.Code, rec.Header().Get("Allow"))
	}
}

func TestSwitchoverBody(t *testing.T) {
	at := time.Date(2026, 3, 4, 6, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		name, body string
		want       int
		to         string
		at         time.Time
		errHas     []string
	}{
		{name: "empty body", body: "", want: 202},
		{name: "empty object", body: " {} \n", want: 202},
		{name: "to", body: `{"to":"pg3"}`, want: 202, to: "pg3"},
		{name: "patroni fields", body: `{"leader":"pg2","candidate":"pg3","scheduled_at":"2026-03-04T07:00:00+01:00"}`, want: 202, to: "pg3", at: at},
		{name: "patroni fields with fraction", body: `{"leader":"pg2","candidate":"pg3","scheduled_at":"2026-03-04T06:00:00.000000+00:00"}`, want: 202, to: "pg3", at: at},
		{name: "to and candidate agree", body: `{"to":"pg3","candidate":"pg3"}`, want: 202, to: "pg3"},
		{name: "leader only", body: `{"leader":"pg2"}`, want: 202},
		{name: "to and candidate differ", body: `{"to":"pg3","candidate":"pg4"}`, want: 400, errHas: []string{"to", "candidate", "pg3", "pg4"}},
		{name: "bad time", body: `{"to":"pg3","scheduled_at":"tomorrow"}`, want: 400, errHas: []string{"scheduled_at", "tomorrow", "RFC 3339"}},
		{name: "time without zone", body: `{"scheduled_at":"2026-03-04T06:00:00"}`, want: 400, errHas: []string{"scheduled_at"}},
		{name: "unknown field", body: `{"target":"pg3"}`, want: 400, errHas: []string{`"target"`, "to, candidate, leader, scheduled_at"}},
		{name: "wrong type", body: `{"to":3}`, want: 400, errHas: []string{"field to", "string", "number"}},
		{name: "wrong time type", body: `{"scheduled_at":1234}`, want: 400, errHas: []string{"field scheduled_at"}},
		{name: "array", body: `["pg3"]`, want: 400, errHas: []string{"JSON object"}},
		{name: "truncated", body: `{"to":"pg3"`, want: 400, errHas: []string{"malformed"}},
		{name: "syntax", body: `{to: pg3}`, want: 400, errHas: []string{"malformed JSON"}},
		{name: "trailing object", body: `{"to":"pg3"} {"to":"pg4"}`, want: 400, errHas: []string{"trailing"}},
		{name: "trailing garbage", body: `{"to":"pg3"} x`, want: 400},
		{name: "wrong leader", body: `{"leader":"pg1","candidate":"pg3"}`, want: 409, errHas: []string{"pg1", "pg2", "epoch 42"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			op := &fakeOperator{req: cluster.Request{From: "pg2", RequestedAt: t0}}
			rec := send(opHandler(op, testToken), "POST", "/switchover", c.body, "Bearer "+testToken)
			if rec.Code != c.want {
				t.Fatalf("status %d, want %d; body %s", rec.Code, c.want, rec.Body)
			}
			calls := op.Calls()
			if c.want != 202 {
				if len(calls) != 0 {
					t.Errorf("operator called on a bad request: %+v", calls)
				}
				msg := errorOf(t, rec)
				for _, s := range c.errHas {
					if !strings.Contains(msg, s) {
						t.Errorf("error %q does not mention %q", msg, s)
					}
				}
				return
			}
			if len(calls) != 1 || calls[0].method != "switchover" || calls[0].to != c.to || !calls[0].at.Equal(c.at) {
				t.Fatalf("calls %+v, want switchover to %q at %v", calls, c.to, c.at)
			}
			if calls[0].who != "api from 192.0.2.1:1234" {
				t.Errorf("requester %q", calls[0].who)
			}
			var v map[string]any
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
				t.Fatal(err)
			}
			if v["kind"] != "switchover" || v["from"] != "pg2" || v["requested_by"] != "api from 192.0.2.1:1234" || v["message"] == "" {
				t.Errorf("body %s", rec.Body)
			}
			if _, ok := v["scheduled_at"]; ok != !c.at.IsZero() {
				t.Errorf("scheduled_at in %s", rec.Body)
			}
		})
	}
}

func TestSwitchoverWithoutLeaderNamed(t *testing.T) {
	st := selfState(cluster.RoleReplica, true, false, true, 0)
	st.Leader = nil
	op := &fakeOperator{}
	h := NewHandler(fakeSource{st}, Options{Logger: quietLogger(), Operator: op, Token: testToken})
	rec := send(h, "POST", "/switchover", `{"leader":"pg2","candidate":"pg1"}`, "Bearer "+testToken)
	if rec.Code != 409 || !strings.Contains(errorOf(t, rec), "no one holds the leader key") {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	// A failover naming the vanished leader is fine.
	rec = send(h, "POST", "/failover", `{"leader":"pg2","candidate":"pg1"}`, "Bearer "+testToken)
	if rec.Code != 202 || len(op.Calls()) != 1 || op.Calls()[0].to != "pg1" {
		t.Errorf("failover: %d %s; calls %+v", rec.Code, rec.Body, op.Calls())
	}
}

func TestFailoverBody(t *testing.T) {
	for _, c := range []struct {
		body   string
		want   int
		to     string
		errHas string
	}{
		{`{"to":"pg3"}`, 202, "pg3", ""},
		{`{"candidate":"pg3"}`, 202, "pg3", ""},
		{`{"candidate":"pg3","leader":"pg2"}`, 202, "pg3", ""},
		{`{"to":"pg3","confirm_down":"pg1"}`, 202, "pg3 confirm_down=pg1", ""},
		{``, 400, "", "field to"},
		{`{}`, 400, "", "candidate"},
		{`{"to":""}`, 400, "", "field to"},
		{`{"to":"pg3","scheduled_at":"2026-03-04T06:00:00Z"}`, 400, "", `unknown field "scheduled_at"`},
		{`{"to":["pg3"]}`, 400, "", "field to"},
		{`{"to":"pg3","candidate":"pg4"}`, 400, "", "different members"},
		{`{"candidate":"pg3","leader":"pg1"}`, 409, "", "the leader is pg2"},
	} {
		op := &fakeOperator{}
		rec := send(opHandler(op, testToken), "POST", "/failover", c.body, "Bearer "+testToken)
		if rec.Code != c.want {
			t.Errorf("%s: status %d, want %d; body %s", c.body, rec.Code, c.want, rec.Body)
			continue
		}
		if c.want != 202 {
			if msg := errorOf(t, rec); !strings.Contains(msg, c.errHas) {
				t.Errorf("%s: error %q does not mention %q", c.body, msg, c.errHas)
			}
			if len(op.Calls()) != 0 {
				t.Errorf("%s: operator called", c.body)
			}
			continue
		}
		if calls := op.Calls(); len(calls) != 1 || calls[0].method != "failover" || calls[0].to != c.to {
			t.Errorf("%s: calls %+v", c.body, calls)
		}
		if !strings.Contains(rec.Body.String(), `"kind":"failover"`) {
			t.Errorf("%s: body %s", c.body, rec.Body)
		}
	}
}

func TestPauseResumeBodies(t *testing.T) {
	for _, c := range []struct {
		path, body string
		want       int
		paused     bool
	}{
		{"/pause", "", 202, true},
		{"/pause", "{}", 202, true},
		{"/resume", "", 202, false},
		{"/pause", `{"paused":true}`, 400, false},
		{"/resume", `null`, 400, false},
		{"/resume", `"yes"`, 400, false},
	} {
		op := &fakeOperator{}
		rec := send(opHandler(op, testToken), "POST", c.path, c.body, "Bearer "+testToken)
		if rec.Code != c.want {
			t.Errorf("%s %q: %d, want %d: %s", c.path, c.body, rec.Code, c.want, rec.Body)
			continue
		}
		if c.want != 202 {
			continue
		}
		want := fmt.Sprintf(`"paused":%t`, c.paused)
		if !strings.Contains(rec.Body.String(), want) || len(op.Calls()) != 1 || op.Calls()[0].method != strings.TrimPrefix(c.path, "/") {
			t.Errorf("%s: body %s, calls %+v", c.path, rec.Body, op.Calls())
		}
	}
}

// TestNonObjectBodies: a body that is JSON but not an object answers 400
// on every mutating endpoint and changes nothing; decoded as is, null would
// have left the request empty and started a switchover to anyone.
func TestNonObjectBodies(t *testing.T) {
	for _, m := range mutating {
		for _, c := range []struct{ body, kind string }{
			{"null", "not null"}, {" null\n", "not null"}, {"[]", "not an array"}, {`[{"to":"pg3"}]`, "not an array"},
			{`"x"`, "not a string"}, {"1", "not a number"}, {"-1", "not a number"}, {"true", "not a boolean"},
			{"false", "not a boolean"}, {`"{}"`, "not a string"},
		} {
			op := &fakeOperator{req: cluster.Request{From: "pg2"}}
			rec := send(opHandler(op, testToken), m.method, m.path, c.body, "Bearer "+testToken)
			if rec.Code != http.StatusBadRequest {
				t.Errorf("%s %s %s: %d %s, want 400", m.method, m.path, c.body, rec.Code, rec.Body)
				continue
			}
			if msg := errorOf(t, rec); !strings.Contains(msg, "must be a JSON object") || !strings.Contains(msg, c.kind) {
				t.Errorf("%s %s %s: error %q does not say the body must be an object, %s", m.method, m.path, c.body, msg, c.kind)
			}
			if calls := op.Calls(); len(calls) != 0 {
				t.Errorf("%s %s %s: operator called: %+v", m.method, m.path, c.body, calls)
			}
		}
	}
}

func TestCancelAnswersTheCancelledRequest(t *testing.T) {
	op := &fakeOperator{req: cluster.Request{Kind: cluster.KindSwitchover, From: "pg2", To: "pg3", RequestedAt: t0, RequestedBy: "hamgrctl on h"}}
	rec := send(opHandler(op, testToken), "DELETE", "/switchover", "", "Bearer "+testToken)
	var v requestView
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || rec.Code != 200 {
		t.Fatalf("%d %s %v", rec.Code, rec.Body, err)
	}
	if v.Kind != cluster.KindSwitchover || v.To != "pg3" || v.RequestedBy != "hamgrctl on h" || v.ScheduledAt != nil || !strings.Contains(v.Message, "cancelled") {
		t.Errorf("%+v", v)
	}
	if rec := send(opHandler(op, testToken), "DELETE", "/switchover", `{"to":"pg3"}`, "Bearer "+testToken); rec.Code != 400 {
		t.Errorf("DELETE with a field: %d", rec.Code)
	}
}

func TestBodyTooLarge(t *testing.T) {
	op := &fakeOperator{}
	body := `{"to":"` + strings.Repeat("x", maxBodyBytes) + `"}`
	rec := send(opHandler(op, testToken), "POST", "/switchover", body, "Bearer "+testToken)
	if rec.Code != http.StatusRequestEntityTooLarge || len(op.Calls()) != 0 {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
}

func TestOperatorStatusMapping(t *testing.T) {
	refused := fmt.Errorf("%w: pg3 is not a running replica", operator.ErrRefused)
	for _, c := range []struct {
		name   string
		err    error
		want   int
		errHas string
	}{
		{"refused", refused, 409, "pg3 is not a running replica"},
		{"refused, wrapped again", fmt.Errorf("outer: %w", refused), 409, "outer"},
		{"store error", errors.New("read the cluster: etcdserver: request timed out"), 503, "request timed out"},
		{"deadline", fmt.Errorf("read the cluster: %w", context.DeadlineExceeded), 503, "deadline"},
		{"refused-looking text without the sentinel", errors.New("refused: by the network"), 503, "by the network"},
	} {
		for _, m := range mutating {
			op := &fakeOperator{err: c.err}
			rec := send(opHandler(op, testToken), m.method, m.path, m.body, "Bearer "+testToken)
			if rec.Code != c.want || !strings.Contains(errorOf(t, rec), c.errHas) {
				t.Errorf("%s, %s %s: %d %s", c.name, m.method, m.path, rec.Code, rec.Body)
			}
		}
	}
}

func TestNoOperatorConfigured(t *testing.T) {
	h := NewHandler(fakeSource{selfState(cluster.RolePrimary, true, true, false, 0)}, Options{Logger: quietLogger(), Token: testToken})
	if rec := send(h, "POST", "/pause", "", "Bearer "+testToken); rec.Code != 503 {
		t.Errorf("%d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "POST", "/pause", "", ""); rec.Code != 401 {
		t.Errorf("unauthenticated: %d", rec.Code)
	}
}

func TestMetricsEndpoint(t *testing.T) {
	st := selfState(cluster.RolePrimary, true, true, false, 0)
	h := NewHandler(fakeSource{st}, Options{Logger: quietLogger(), Token: testToken})
	if rec := send(h, "GET", "/metrics", "", ""); rec.Code != 404 {
		t.Errorf("without metrics: %d", rec.Code)
	}
	mh := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "hamgr_is_leader 1")
	})
	h = NewHandler(fakeSource{st}, Options{Logger: quietLogger(), Token: testToken, Metrics: mh})
	rec := send(h, "GET", "/metrics", "", "")
	if rec.Code != 200 || rec.Body.String() != "hamgr_is_leader 1\n" {
		t.Errorf("GET /metrics: %d %q", rec.Code, rec.Body)
	}
	if rec := send(h, "POST", "/metrics", "", "Bearer "+testToken); rec.Code != 405 {
		t.Errorf("POST /metrics: %d", rec.Code)
	}
}

// memStore is an in-memory operator.Store.
type memStore struct {
	mu   sync.Mutex
	snap cluster.Snapshot
	// racing makes CreateRequest fail as if another request had just been
	// written.
	racing bool
}

func (s *memStore) Load(context.Context) (cluster.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.snap, nil
}

func (s *memStore) CreateRequest(_ context.Context, r cluster.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.Request != nil || s.racing {
		return dcs.ErrRequestPending
	}
	s.snap.Request = &r
	return nil
}

func (s *memStore) UpdateRequest(_ context.Context, r cluster.Request) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Request = &r
	return nil
}

func (s *memStore) ClearRequest(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Request = nil
	return nil
}

func (s *memStore) Initialize(context.Context, string, cluster.DynamicConfig) (string, error) {
	return "", errors.New("not used")
}
func (s *memStore) ResetBootstrap(context.Context, string) (string, error) {
	return "", errors.New("not used")
}

func (s *memStore) SetConfig(_ context.Context, c cluster.DynamicConfig) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap.Config = &c
	return nil
}

func (s *memStore) UpdateConfig(_ context.Context, fn func(cluster.DynamicConfig) (cluster.DynamicConfig, error)) (cluster.DynamicConfig, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.snap.Config == nil {
		return cluster.DynamicConfig{}, dcs.ErrNoConfig
	}
	next, err := fn(*s.snap.Config)
	if err != nil {
		return *s.snap.Config, err
	}
	s.snap.Config = &next
	return next, nil
}

// TestWithRealOperator runs the endpoints against package operator over
// an in-memory store: the request names its HTTP requester, and the
// operator's refusals answer 409.
func TestWithRealOperator(t *testing.T) {
	cfg := cluster.DynamicConfig{TTL: cluster.Duration(30 * time.Second), LoopWait: cluster.Duration(10 * time.Second), RetryTimeout: cluster.Duration(10 * time.Second)}
	store := &memStore{snap: cluster.Snapshot{
		Leader: &cluster.Leader{Name: "pg1", Epoch: 7},
		Members: []cluster.Member{
			{Name: "pg1", Role: cluster.RolePrimary, State: cluster.StateRunning, Position: cluster.PGPosition(1, 100)},
			{Name: "pg2", Role: cluster.RoleReplica, State: cluster.StateRunning, Streaming: true, Upstream: "pg1", Position: cluster.PGPosition(1, 100)},
		},
		Config: &cfg,
	}}
	h := NewHandler(fakeSource{selfState(cluster.RolePrimary, true, true, false, 0)},
		Options{Logger: quietLogger(), Operator: NewOperator(store), Token: testToken})
	auth := "Bearer " + testToken

	rec := send(h, "POST", "/failover", `{"to":"pg2"}`, auth)
	if rec.Code != 409 || !strings.Contains(errorOf(t, rec), "healthy primary") {
		t.Errorf("failover with a healthy primary: %d %s", rec.Code, rec.Body)
	}
	rec = send(h, "POST", "/switchover", `{"candidate":"pg2"}`, auth)
	if rec.Code != 202 {
		t.Fatalf("switchover: %d %s", rec.Code, rec.Body)
	}
	if r := store.snap.Request; r == nil || r.To != "pg2" || r.From != "pg1" || r.RequestedBy != "api from 192.0.2.1:1234" {
		t.Errorf("stored request %+v", r)
	}
	if rec := send(h, "POST", "/switchover", `{"to":"pg2"}`, auth); rec.Code != 409 || !strings.Contains(errorOf(t, rec), "already pending") {
		t.Errorf("second switchover: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "DELETE", "/switchover", "", auth); rec.Code != 200 || store.snap.Request != nil {
		t.Errorf("cancel: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "DELETE", "/switchover", "", auth); rec.Code != 409 {
		t.Errorf("cancel with nothing pending: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "POST", "/pause", "", auth); rec.Code != 202 || !store.snap.Config.Paused {
		t.Errorf("pause: %d %s", rec.Code, rec.Body)
	}
	if rec := send(h, "POST", "/resume", "", auth); rec.Code != 202 || store.snap.Config.Paused {
		t.Errorf("resume: %d %s", rec.Code, rec.Body)
	}
}

// TestRefusalsNameAPIFields drives each refusal of package operator through
// the API: the 409 names the API's requests and JSON fields, never
// hamgrctl's flags.
func TestRefusalsNameAPIFields(t *testing.T) {
	cfg := cluster.DynamicConfig{TTL: cluster.Duration(30 * time.Second), LoopWait: cluster.Duration(10 * time.Second), RetryTimeout: cluster.Duration(10 * time.Second)}
	healthy := func() cluster.Snapshot {
		return cluster.Snapshot{
			Leader: &cluster.Leader{Name: "pg2", Epoch: 42},
			Members: []cluster.Member{
				{Name: "pg1", Role: cluster.RoleReplica, State: cluster.StateRunning, Streaming: true, Upstream: "pg2", Position: cluster.PGPosition(1, 100)},
				{Name: "pg2", Role: cluster.RolePrimary, State: cluster.StateRunning, Position: cluster.PGPosition(1, 100)},
			},
			Config: &cfg,
		}
	}
	pending := func() cluster.Snapshot {
		s := healthy()
		s.Request = &cluster.Request{Kind: cluster.KindSwitchover, From: "pg2", To: "pg1", RequestedAt: t0, RequestedBy: "hamgrctl on h"}
		return s
	}
	noLeader := func() cluster.Snapshot { s := healthy(); s.Leader = nil; return s }
	past := time.Now().Add(-2 * time.Hour).UTC().Format(time.RFC3339)
	for _, c := range []struct {
		name         string
		snap         cluster.Snapshot
		racing       bool
		method, path string
		body         string
		has          string
	}{
		{"switchover without a leader", noLeader(), false, "POST", "/switchover", `{}`, `POST /failover with {"to": MEMBER}`},
		{"switchover while one is pending", pending(), false, "POST", "/switchover", `{}`, "DELETE /switchover"},
		{"switchover scheduled in the past", healthy(), false, "POST", "/switchover", `{"scheduled_at":"` + past + `"}`, "scheduled_at " + past + " is in the past"},
		{"switchover racing another request", healthy(), true, "POST", "/switchover", `{}`, "hamgrctl list shows it"},
		{"switchover to the primary", healthy(), false, "POST", "/switchover", `{"to":"pg2"}`, "pg2 is already the primary"},
		{"failover with a healthy primary", healthy(), false, "POST", "/failover", `{"to":"pg1"}`, `use POST /switchover with {"to": "pg1"} for a planned change`},
		{"failover while one is pending", func() cluster.Snapshot { s := pending(); s.Leader = nil; return s }(), false, "POST", "/failover", `{"to":"pg1"}`, "DELETE /switchover"},
		{"cancel with nothing pending", healthy(), false, "DELETE", "/switchover", "", "no switchover or failover is pending"},
	} {
		t.Run(c.name, func(t *testing.T) {
			store := &memStore{snap: c.snap, racing: c.racing}
			st := selfState(cluster.RoleReplica, true, false, true, 0)
			h := NewHandler(fakeSource{st}, Options{Logger: quietLogger(), Operator: NewOperator(store), Token: testToken})
			rec := send(h, c.method, c.path, c.body, "Bearer "+testToken)
			msg := errorOf(t, rec)
			if rec.Code != http.StatusConflict || !strings.Contains(msg, c.has) {
				t.Errorf("%d %q, want 409 saying %q", rec.Code, msg, c.has)
			}
			if strings.Contains(msg, "--") {
				t.Errorf("error %q names a hamgrctl flag", msg)
			}
		})
	}
}

// TestInAPIWords pins the rewriting of each hamgrctl phrase.
func TestInAPIWords(t *testing.T) {
	for in, want := range map[string]string{
		"refused: --at 2026-03-04T05:06:07Z is in the past":                                "refused: scheduled_at 2026-03-04T05:06:07Z is in the past",
		"if the primary is down use failover --to MEMBER":                                  `if the primary is down use POST /failover with {"to": MEMBER}`,
		"failover needs --to MEMBER: the member to promote":                                "failover needs field to: the member to promote",
		"cancel it first with switchover --cancel":                                         "cancel it first with DELETE /switchover",
		"pg1 is a healthy primary (epoch 3); use switchover --to pg2 for a planned change": `pg1 is a healthy primary (epoch 3); use POST /switchover with {"to": "pg2"} for a planned change`,
		"another request was written just now; run list to see it":                         "another request was written just now; hamgrctl list shows it",
		"pg3 is not a running replica (role unknown, state stopped)":                       "pg3 is not a running replica (role unknown, state stopped)",
	} {
		if got := inAPIWords(in); got != want {
			t.Errorf("inAPIWords(%q) = %q, want %q", in, got, want)
		}
	}
}
