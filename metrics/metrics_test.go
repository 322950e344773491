package metrics_test

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/metrics"
)

// The agent's hook interface is what this package provides.
var _ agent.Metrics = (*metrics.Metrics)(nil)

// scrape GETs h's metrics in the text format and returns the body.
func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("scrape: %d %s\n%s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	return string(body)
}

// series is the text format's name{labels} of a series of member pg1 of
// cluster main with the extra label pairs kv: labels sorted by name,
// except a bucket's le, which comes last.
func series(name string, kv ...string) string {
	labels := map[string]string{"cluster": "main", "member": "pg1"}
	for i := 0; i+1 < len(kv); i += 2 {
		labels[kv[i]] = kv[i+1]
	}
	keys := slices.Sorted(maps.Keys(labels))
	if _, ok := labels["le"]; ok { // a histogram's bucket bound comes last
		keys = append(slices.DeleteFunc(keys, func(k string) bool { return k == "le" }), "le")
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, labels[k]))
	}
	return name + "{" + strings.Join(parts, ",") + "}"
}

// wantLines checks that every line of want appears in body.
func wantLines(t *testing.T, body string, want ...string) {
	t.Helper()
	lines := map[string]bool{}
	for _, l := range strings.Split(body, "\n") {
		lines[l] = true
	}
	for _, w := range want {
		if !lines[w] {
			t.Errorf("missing line %q", w)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", grepHamgr(body))
	}
}

func grepHamgr(body string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "hamgr_") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestInitialScrape(t *testing.T) {
	m := metrics.New("main", "pg1")
	body := scrape(t, m.Handler())
	wantLines(t, body,
		series("hamgr_role", "role", "unknown")+" 1",
		series("hamgr_role", "role", "primary")+" 0",
		series("hamgr_role", "role", "replica")+" 0",
		series("hamgr_is_leader")+" 0",
		series("hamgr_lag_bytes")+" NaN",
		series("hamgr_replay_lag_seconds")+" NaN",
		series("hamgr_failovers_total", "kind", "failover")+" 0",
		series("hamgr_failovers_total", "kind", "switchover")+" 0",
		series("hamgr_failovers_total", "kind", "manual failover")+" 0",
		series("hamgr_switchovers_total")+" 0",
		series("hamgr_etcd_errors_total", "op", "keepalive")+" 0",
		series("hamgr_db_probe_errors_total")+" 0",
		series("hamgr_self_fences_total")+" 0",
		series("hamgr_loop_duration_seconds_count")+" 0",
		series("hamgr_last_loop_timestamp_seconds")+" 0",
		"# TYPE hamgr_loop_duration_seconds histogram",
		"# TYPE hamgr_failovers_total counter",
	)
	if strings.Contains(body, "hamgr_last_failover_step_seconds{") {
		t.Error("step durations before any failover")
	}
	if !strings.Contains(body, "\ngo_goroutines ") {
		t.Error("no Go runtime metrics")
	}
}

func TestScrapeAfterObservations(t *testing.T) {
	m := metrics.New("main", "pg1")
	before := time.Now()
	m.ObserveMember(cluster.RoleReplica, cluster.PGPosition(2, 0x3000060), 4096, 0.25, 42, false, true)
	m.ObserveLoop(30 * time.Millisecond)
	m.ObserveLoop(3 * time.Second)
	m.StoreError("load")
	m.StoreError("load")
	m.StoreError("watch") // not pre-declared
	m.ProbeError()
	m.SelfFence()
	m.Fence(cluster.FenceFailed)
	m.Fence(cluster.FenceFailed)
	m.Fence(cluster.FenceConfirmed)
	m.Failover("failover", []cluster.Step{{Name: "elect", Duration: cluster.Duration(1500 * time.Millisecond)}, {Name: "promote", Duration: cluster.Duration(250 * time.Millisecond)}})
	m.Failover("switchover", []cluster.Step{{Name: "promote", Duration: cluster.Duration(2 * time.Second)}})
	// A later promotion replaces the steps of the previous one: the
	// elect step of the failover must be gone.
	body := scrape(t, m.Handler())
	wantLines(t, body,
		series("hamgr_role", "role", "replica")+" 1",
		series("hamgr_role", "role", "unknown")+" 0",
		series("hamgr_role", "role", "primary")+" 0",
		series("hamgr_is_leader")+" 0",
		series("hamgr_wal_position_bytes")+" 5.0331744e+07",
		series("hamgr_timeline")+" 2",
		series("hamgr_lag_bytes")+" 4096",
		series("hamgr_replay_lag_seconds")+" 0.25",
		series("hamgr_epoch")+" 42",
		series("hamgr_paused")+" 1",
		series("hamgr_fences_total", "result", "failed")+" 2",
		series("hamgr_fences_total", "result", "confirmed")+" 1",
		series("hamgr_loop_duration_seconds_count")+" 2",
		series("hamgr_loop_duration_seconds_sum")+" 3.03",
		series("hamgr_loop_duration_seconds_bucket", "le", "0.05")+" 1",
		series("hamgr_loop_duration_seconds_bucket", "le", "2.5")+" 1",
		series("hamgr_loop_duration_seconds_bucket", "le", "5")+" 2",
		series("hamgr_loop_duration_seconds_bucket", "le", "+Inf")+" 2",
		series("hamgr_etcd_errors_total", "op", "load")+" 2",
		series("hamgr_etcd_errors_total", "op", "watch")+" 1",
		series("hamgr_etcd_errors_total", "op", "grant")+" 0",
		series("hamgr_db_probe_errors_total")+" 1",
		series("hamgr_self_fences_total")+" 1",
		series("hamgr_failovers_total", "kind", "failover")+" 1",
		series("hamgr_failovers_total", "kind", "switchover")+" 1",
		series("hamgr_failovers_total", "kind", "manual failover")+" 0",
		series("hamgr_switchovers_total")+" 1",
		series("hamgr_last_failover_step_seconds", "step", "promote")+" 2",
	)
	if strings.Contains(body, `step="elect"`) {
		t.Errorf("stale step of an earlier failover:\n%s", grepHamgr(body))
	}
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, series("hamgr_last_loop_timestamp_seconds")+" "); ok {
			var f float64
			if _, err := fmtSscan(v, &f); err != nil || f < float64(before.Unix()) {
				t.Errorf("last loop timestamp %q before %v", v, before)
			}
		}
	}

	// Becoming the leader; lag and replay delay unknown.
	m.ObserveMember(cluster.RolePrimary, cluster.PGPosition(3, 0x4000000), -1, math.NaN(), 57, true, false)
	m.Failover("manual failover", nil)
	body = scrape(t, m.Handler())
	wantLines(t, body,
		series("hamgr_role", "role", "primary")+" 1",
		series("hamgr_role", "role", "replica")+" 0",
		series("hamgr_is_leader")+" 1",
		series("hamgr_timeline")+" 3",
		series("hamgr_lag_bytes")+" NaN",
		series("hamgr_replay_lag_seconds")+" NaN",
		series("hamgr_epoch")+" 57",
		series("hamgr_paused")+" 0",
		series("hamgr_failovers_total", "kind", "manual failover")+" 1",
		series("hamgr_switchovers_total")+" 1",
	)
	if strings.Contains(body, "hamgr_last_failover_step_seconds{") {
		t.Error("steps of an earlier promotion kept after one without steps")
	}
}

// TestOwnRegistry checks that two agents in one process do not collide and
// that nothing is registered globally.
func TestOwnRegistry(t *testing.T) {
	a, b := metrics.New("main", "pg1"), metrics.New("main", "pg2")
	a.ProbeError()
	if strings.Contains(scrape(t, b.Handler()), `hamgr_db_probe_errors_total{cluster="main",member="pg2"} 1`) {
		t.Error("pg2 counted pg1's probe error")
	}
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "hamgr_") {
			t.Errorf("%s registered in the global registry", mf.GetName())
		}
	}
}

func TestNilMetricsIsANoOp(t *testing.T) {
	var m *metrics.Metrics
	m.ObserveMember(cluster.RolePrimary, cluster.Position{}, 0, 0, 1, true, false)
	m.ObserveLoop(time.Second)
	m.StoreError("load")
	m.ProbeError()
	m.Failover("failover", nil)
	m.SelfFence()
	m.ObserveSync(1)
	m.ObserveProblem(cluster.ProblemDurabilityAtRisk)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("nil handler: %d", rec.Code)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := metrics.New("main", "pg1")
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				m.ObserveMember(cluster.RoleReplica, cluster.PGPosition(0, cluster.LSN(j)), int64(j), 0, cluster.Epoch(i), i%2 == 0, false)
				m.ObserveLoop(time.Millisecond)
				m.StoreError("keepalive")
				m.Failover("failover", []cluster.Step{{Name: "promote"}})
			}
		}()
	}
	wg.Wait()
	wantLines(t, scrape(t, m.Handler()),
		series("hamgr_etcd_errors_total", "op", "keepalive")+" 1600",
		series("hamgr_failovers_total", "kind", "failover")+" 1600",
		series("hamgr_loop_duration_seconds_count")+" 1600",
	)
}

// fmtSscan parses a float as the text format prints it.
func fmtSscan(s string, f *float64) (int, error) { return fmt.Sscan(s, f) }

// TestProblem: hamgr_problem has a series per code of cluster.ProblemTable
// from the start, 1 for the code observed last; hamgr_durability_at_risk
// follows the durability_at_risk code.
func TestProblem(t *testing.T) {
	m := metrics.New("main", "pg1")
	var zeros []string
	for _, i := range cluster.ProblemTable() {
		zeros = append(zeros, series("hamgr_problem", "code", string(i.Code))+" 0")
	}
	wantLines(t, scrape(t, m.Handler()), append(zeros, series("hamgr_durability_at_risk")+" 0")...)

	m.ObserveSync(0)
	m.ObserveProblem(cluster.ProblemDurabilityAtRisk)
	wantLines(t, scrape(t, m.Handler()),
		series("hamgr_problem", "code", "durability_at_risk")+" 1",
		series("hamgr_problem", "code", "no_failover_candidate")+" 0",
		series("hamgr_durability_at_risk")+" 1",
		series("hamgr_synchronous_standbys")+" 0",
	)

	m.ObserveProblem(cluster.ProblemStoreUnreachable)
	wantLines(t, scrape(t, m.Handler()),
		series("hamgr_problem", "code", "durability_at_risk")+" 0",
		series("hamgr_problem", "code", "store_unreachable")+" 1",
		series("hamgr_durability_at_risk")+" 0",
	)

	m.ObserveProblem(cluster.ProblemNone)
	wantLines(t, scrape(t, m.Handler()), append(zeros, series("hamgr_durability_at_risk")+" 0")...)
}

// Each publisher's attempts are counted by result; hamgr_publish_failing
// follows its last attempt.
func TestPublish(t *testing.T) {
	m := metrics.New("main", "pg1")
	m.Publish("consul", errors.New("connection refused"), 1500*time.Millisecond)
	m.Publish("dns", nil, 20*time.Millisecond)
	wantLines(t, scrape(t, m.Handler()),
		series("hamgr_publish_total", "publisher", "consul", "result", "error")+" 1",
		series("hamgr_publish_failing", "publisher", "consul")+" 1",
		series("hamgr_publish_seconds", "publisher", "consul")+" 1.5",
		series("hamgr_publish_total", "publisher", "dns", "result", "ok")+" 1",
		series("hamgr_publish_failing", "publisher", "dns")+" 0",
	)
	m.Publish("consul", nil, time.Second)
	wantLines(t, scrape(t, m.Handler()),
		series("hamgr_publish_total", "publisher", "consul", "result", "error")+" 1",
		series("hamgr_publish_total", "publisher", "consul", "result", "ok")+" 1",
		series("hamgr_publish_failing", "publisher", "consul")+" 0",
	)
}

// hamgr_fenced_members counts the operators' fences in the store;
// hamgr_fence_owed is 1 while a promotion owes a fence.
func TestFences(t *testing.T) {
	m := metrics.New("main", "pg1")
	wantLines(t, scrape(t, m.Handler()), series("hamgr_fenced_members")+" 0", series("hamgr_fence_owed")+" 0")
	m.ObserveFences(2, "n1")
	wantLines(t, scrape(t, m.Handler()), series("hamgr_fenced_members")+" 2", series("hamgr_fence_owed")+" 1")
	m.ObserveFences(0, "")
	wantLines(t, scrape(t, m.Handler()), series("hamgr_fenced_members")+" 0", series("hamgr_fence_owed")+" 0")
}
