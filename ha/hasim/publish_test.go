package hasim

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// A bootstrap publishes the first leader (it is no promotion), and a
// restarted agent that takes its own key back under a new epoch publishes
// again: publishing is level-triggered, not tied to the promotion.
func TestPublishOnBootstrapAndAgentRestart(t *testing.T) {
	w := New(three())
	run(t, w, 10*time.Second)
	l := w.Leader()
	if l == nil || !slices.Contains(w.Publications, fmt.Sprintf("%s@%d", l.Name, l.Epoch)) {
		t.Fatalf("after the bootstrap: publications %v, want the leader %v's\n%s", w.Publications, l, w.Summary())
	}
	run(t, w, 2*time.Second, Fault{Kind: KillAgent, Member: l.Name})
	run(t, w, 20*time.Second, Fault{Kind: StartAgent, Member: l.Name})
	l2 := w.Leader()
	want := fmt.Sprintf("%s@%d", l.Name, l2.Epoch)
	if l2.Name != l.Name || l2.Epoch == l.Epoch || w.Publications[len(w.Publications)-1] != want {
		t.Fatalf("after the agent's restart: leader %s@%d, publications %v, want the last %s\n%s",
			l2.Name, l2.Epoch, w.Publications, want, strings.Join(w.Log(), "\n"))
	}
}

// A publisher that keeps failing neither holds up nor undoes a failover:
// the promotion is recorded complete, its history entry marks the
// publisher's step failed, the new primary reports publish_failed, and
// once the publisher works again it is published without any new round
// of the promotion and the problem clears.
func TestFailingPublisherDoesNotBlockFailover(t *testing.T) {
	w := New(fencing(cluster.SyncOff))
	run(t, w, 10*time.Second)
	run(t, w, 30*time.Second, Fault{Kind: FailCall, Member: "n2", Call: CallPublish, N: 1000},
		Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	l := w.Leader()
	if l.Promotion == nil || !l.Promotion.Complete() {
		t.Fatalf("promotion %v, want complete despite the failing publisher\n%s", l.Promotion, w.Summary())
	}
	h := failoverHistory(w)
	if len(h) != 1 {
		t.Fatalf("failover history %+v, want one entry", h)
	}
	i := slices.IndexFunc(h[0].Steps, func(s cluster.Step) bool { return s.Name == "publish:sim" })
	if i < 0 || !strings.Contains(h[0].Steps[i].Failed, "injected failure of publish") {
		t.Fatalf("history steps %+v, want publish:sim failed", h[0].Steps)
	}
	st := w.Status("n2")
	if st.Problem != cluster.ProblemPublishFailed || !strings.Contains(st.Reason, "publisher sim") {
		t.Fatalf("n2: problem %q reason %q, want %s naming the publisher", st.Problem, st.Reason, cluster.ProblemPublishFailed)
	}
	w.node("n2").failCalls[CallPublish] = 0
	run(t, w, 2*time.Minute) // the back-off is at most a minute
	want := fmt.Sprintf("n2@%d", l.Epoch)
	if w.Publications[len(w.Publications)-1] != want {
		t.Fatalf("publications %v, want the last %s once the publisher works", w.Publications, want)
	}
	if st := w.Status("n2"); st.Problem != cluster.ProblemNone {
		t.Fatalf("n2: problem %q after the publisher recovered, want none", st.Problem)
	}
}

// A failing pre_promote hook (policy block) holds the promotion at its
// promote step, before the database is promoted (simPrePromoter checks
// it), and the promotion completes once the hook succeeds; the hook is
// told the old primary.
func TestPrePromoteBlocksUntilItSucceeds(t *testing.T) {
	w := New(fencing(cluster.SyncOff))
	run(t, w, 10*time.Second)
	run(t, w, 30*time.Second, Fault{Kind: FailCall, Member: "n2", Call: CallPrePromote, N: 3},
		Fault{Kind: KillNode, Member: "n1"})
	expectCompletePromotion(t, w, "n2", 1)
	if n := w.node("n2"); n.failCalls[CallPrePromote] != 0 {
		t.Fatalf("%d injected pre_promote failures left", n.failCalls[CallPrePromote])
	}
	want := fmt.Sprintf("n2@%d over n1", w.Leader().Epoch)
	if len(w.PrePromotes) != 1 || w.PrePromotes[0] != want {
		t.Fatalf("pre_promote runs %v, want one success %s", w.PrePromotes, want)
	}
}
