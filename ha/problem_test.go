package ha

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// TestEveryProblemDecided: each problem code of cluster.ProblemTable is
// what some scenario of this package's tests (testdata/*.txt, which print
// Plan.String, or a Go test that asserts the constant) expects Decide to
// report, so a code no decision produces any more is noticed. A Go test
// names the code by its constant (ProblemDurabilityAtRisk for
// durability_at_risk).
func TestEveryProblemDecided(t *testing.T) {
	var all strings.Builder
	for _, pattern := range []string{"testdata/*.txt", "*_test.go"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all.Write(b)
		}
	}
	src := all.String()
	for _, i := range cluster.ProblemTable() {
		name := "Problem"
		for _, w := range strings.Split(string(i.Code), "_") {
			name += strings.ToUpper(w[:1]) + w[1:]
		}
		if !strings.Contains(src, "problem="+string(i.Code)) && !strings.Contains(src, "cluster."+name) {
			t.Errorf("no test of package ha expects problem %s", i.Code)
		}
	}
}

// TestStalledPrimaryProblem: a leader whose database answers only on the
// agent's old connection says so with ProblemDatabaseStalled and waits;
// once the stall lasts primary_start_timeout it releases the key
// (ProblemPrimaryDown).
func TestStalledPrimaryProblem(t *testing.T) {
	v := syncView(cluster.SyncOff)
	v.DB.Stalled = "a new connection did not complete in 3s: timeout"
	v.DBDownSince = v.Now.Add(-5 * time.Second)
	p := Decide(v)
	if p.Problem != cluster.ProblemDatabaseStalled || len(p.Actions) != 0 || !strings.HasPrefix(p.Reason, "DATABASE STALLED") {
		t.Errorf("stalled 5s: %s, want no action and problem %s", p, cluster.ProblemDatabaseStalled)
	}
	v.DBDownSince = v.Now.Add(-time.Duration(v.Config.PrimaryStartTimeout))
	if p := Decide(v); p.Problem != cluster.ProblemPrimaryDown || len(p.Actions) != 2 || !is[ReleaseLeader](p.Actions[1]) {
		t.Errorf("stalled for primary_start_timeout: %s, want the key released with problem %s", p, cluster.ProblemPrimaryDown)
	}
}
