package integration

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/operator"
)

func newOperator(c *localcluster.Cluster) *operator.Operator {
	return &operator.Operator{Store: c.Store, Who: "integration test"}
}

// switchover asks for a switchover to `to` and waits until to leads and
// the old primary streams from it; it returns the write outage.
func doSwitchover(t *testing.T, c *localcluster.Cluster, to string) {
	t.Helper()
	old, lead := leader(t, c)
	if _, err := newOperator(c).Switchover(context.Background(), to, time.Time{}); err != nil {
		t.Fatalf("switchover %s -> %s: %v", old.Name, to, err)
	}
	n, l := leaderNot(t, c, old.Name)
	if to != "" && n.Name != to {
		t.Fatalf("switchover went to %s, want %s", n.Name, to)
	}
	if l.Epoch <= lead.Epoch {
		t.Fatalf("epoch %d after switchover, want above %d", l.Epoch, lead.Epoch)
	}
	if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatalf("after switchover to %s: %v", n.Name, err)
	}
	s, _ := c.Snapshot(context.Background())
	if s.Request != nil {
		t.Errorf("request still pending after the switchover: %+v", s.Request)
	}
}

// Switchover under a steady write load, both directions, three times in a
// row: no acknowledged write lost, and the old primary follows the new one.
func TestSwitchoverUnderLoadLosesNothing(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	monitorPrimaries(t, c)
	w, o := writer(t, c, "switchover_load")
	logFrom := map[string]int64{} // agent logs before the switchovers
	for _, n := range c.Nodes {
		if fi, err := os.Stat(n.AgentLog); err == nil {
			logFrom[n.Name] = fi.Size()
		}
	}
	for i, to := range []string{"n2", "n1", "n2"} {
		t0 := time.Now()
		doSwitchover(t, c, to)
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+50); err != nil {
			t.Fatalf("writes did not resume after switchover %d: %v", i+1, err)
		}
		t.Logf("switchover %d to %s done in %v", i+1, to, time.Since(t0))
	}
	res := w.Stop()
	for _, g := range res.Gaps {
		t.Logf("write gap %v (%d -> %d)", g.Duration, g.FromPort, g.ToPort)
	}
	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Fatalf("%d acknowledged writes lost across switchovers: %v", len(missing), missing)
	}
	hist, err := c.Store.History(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	switchovers := 0
	for _, h := range hist {
		if h.Kind == "switchover" {
			switchovers++
			if h.DataLossBytes != 0 {
				t.Errorf("switchover at epoch %d records %d bytes lost", h.Epoch, h.DataLossBytes)
			}
		}
	}
	if switchovers != 3 {
		t.Errorf("history has %d switchovers, want 3: %+v", switchovers, hist)
	}
	// Each old primary rejoined as it was: its WAL ended with the shutdown
	// checkpoint the target received, so no pg_rewind ran.
	rejoined := 0
	for _, n := range c.Nodes {
		b, err := os.ReadFile(n.AgentLog)
		if err != nil {
			t.Fatal(err)
		}
		b = b[min(logFrom[n.Name], int64(len(b))):]
		if k := strings.Count(string(b), "running pg_rewind"); k > 0 {
			t.Errorf("%s ran pg_rewind %d times after clean switchovers", n.Name, k)
		}
		rejoined += strings.Count(string(b), "rejoining without pg_rewind")
	}
	if rejoined != 3 {
		t.Errorf("%d rejoins without pg_rewind in the agent logs, want 3 (one per switchover)", rejoined)
	}
}

// A scheduled switchover fires at its time; a cancelled one never does.
func TestScheduledSwitchoverAndCancel(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	op := newOperator(c)
	old, lead := leader(t, c)
	at := time.Now().Add(3 * time.Second)
	if _, err := op.Switchover(context.Background(), "n3", at); err != nil {
		t.Fatal(err)
	}
	n, _ := leaderNot(t, c, old.Name)
	if fired := time.Now(); fired.Before(at) {
		t.Errorf("scheduled switchover fired at %v, before %v", fired, at)
	}
	if n.Name != "n3" {
		t.Errorf("scheduled switchover went to %s, want n3", n.Name)
	}
	if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	_, lead = leader(t, c)
	if _, err := op.Switchover(context.Background(), "n2", time.Now().Add(2*time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := op.Cancel(context.Background()); err != nil {
		t.Fatalf("cancel: %v", err)
	}
	// Wait until the leader has published a record well after the time the
	// cancelled switchover was due: it had every chance to act, and must not.
	due := time.Now().Add(2 * time.Second)
	err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		s, err := c.Snapshot(context.Background())
		if err != nil || s.Leader == nil {
			return false
		}
		m := s.Member(s.Leader.Name)
		return m != nil && m.UpdatedAt.After(due.Add(2*time.Duration(localcluster.FastTiming.LoopWait)))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, l := leader(t, c)
	if l.Epoch != lead.Epoch {
		t.Errorf("leader epoch changed from %d to %d after the switchover was cancelled", lead.Epoch, l.Epoch)
	}
}

// Refused switchovers leave the cluster untouched; failover --to works only
// without a healthy primary; pause blocks automatic failover.
func TestOperatorRefusalsPauseAndManualFailover(t *testing.T) {
	c := startCluster(t, localcluster.Options{Tags: map[string]cluster.Tags{"n3": {NoFailover: true}}})
	monitorPrimaries(t, c)
	op := newOperator(c)
	old, lead := leader(t, c)
	// Each refusal must be for the stated reason, not for another one.
	refusals := []struct{ to, why string }{
		{"n3", "nofailover"},
		{"nosuch", "no member called nosuch"},
		{old.Name, "already the primary"},
	}
	for _, r := range refusals {
		_, err := op.Switchover(context.Background(), r.to, time.Time{})
		if !errors.Is(err, operator.ErrRefused) || !strings.Contains(err.Error(), r.why) {
			t.Errorf("switchover to %s: err %v, want a refusal saying %q", r.to, err, r.why)
		} else {
			t.Logf("switchover to %s refused: %v", r.to, err)
		}
	}
	if err := op.Failover(context.Background(), "n2", ""); !errors.Is(err, operator.ErrRefused) || !strings.Contains(err.Error(), "use switchover") {
		t.Errorf("failover with a healthy primary: err %v, want a refusal pointing to switchover", err)
	}
	if _, err := op.SetConfig(context.Background(), "ttl", "1s"); !errors.Is(err, operator.ErrRefused) || !strings.Contains(err.Error(), "ttl") {
		t.Errorf("config set ttl=1s: err %v, want a refusal naming ttl", err)
	}
	if s, _ := c.Snapshot(context.Background()); s.Request != nil || s.Leader == nil || s.Leader.Epoch != lead.Epoch {
		t.Fatalf("refused requests changed the cluster: %+v", s)
	}

	// Pause, then kill the primary: no automatic failover.
	if err := op.Pause(context.Background()); err != nil {
		t.Fatal(err)
	}
	old.KillNode()
	waitReason(t, c, "n2", "paused", 30*time.Second)
	if s, _ := c.Snapshot(context.Background()); s.Leader != nil {
		t.Fatalf("leader %s elected while paused", s.Leader.Name)
	}
	// Manual failover to the nofailover member is refused, to n2 works.
	if err := op.Failover(context.Background(), "n3", ""); !errors.Is(err, operator.ErrRefused) || !strings.Contains(err.Error(), "nofailover") {
		t.Errorf("failover to a nofailover member: err %v, want a refusal", err)
	}
	if err := op.Failover(context.Background(), "n2", ""); err != nil {
		t.Fatal(err)
	}
	n, _ := leaderNot(t, c, old.Name)
	if n.Name != "n2" {
		t.Fatalf("manual failover went to %s", n.Name)
	}
	if err := op.Resume(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Resumed: an automatic failover happens again... n3 is nofailover,
	// so bring n1 back first as a candidate.
	if err := c.Node(old.Name).WipeData(); err != nil {
		t.Fatal(err)
	}
	if err := c.Node(old.Name).StartAgent(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	n.KillNode()
	tl, err := c.ObservePromotion(ctxFor(t, time.Minute), n.Name, t0)
	if err != nil {
		t.Fatalf("no automatic failover after resume: %v", err)
	}
	if tl.New != old.Name {
		t.Errorf("after resume %s was elected, want %s", tl.New, old.Name)
	}
}
