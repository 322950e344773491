package ha

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// TestPublishFailedProblem: a failing publisher is a named problem
// (cluster.ProblemPublishFailed) with its reason, changes no action, and
// gives way to a problem of the decision's own.
func TestPublishFailedProblem(t *testing.T) {
	v := syncView(cluster.SyncOff)
	base := Decide(v)
	v.PublishFailed = "publisher consul: connection refused"
	p := Decide(v)
	if p.Problem != cluster.ProblemPublishFailed || !strings.HasSuffix(p.Reason, "publisher consul: connection refused") {
		t.Errorf("failing publisher: %s, want problem %s with its reason", p, cluster.ProblemPublishFailed)
	}
	if (Plan{Actions: p.Actions, State: p.State}).String() != (Plan{Actions: base.Actions, State: base.State}).String() {
		t.Errorf("failing publisher changed the plan: %s, without it %s", p, base)
	}
	v.DB.Stalled = "a new connection did not complete in 3s: timeout"
	v.DBDownSince = v.Now.Add(-5 * time.Second)
	if p := Decide(v); p.Problem != cluster.ProblemDatabaseStalled || strings.Contains(p.Reason, "consul") {
		t.Errorf("stalled with a failing publisher: %s, want problem %s alone", p, cluster.ProblemDatabaseStalled)
	}
}
