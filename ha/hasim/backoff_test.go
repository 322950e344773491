package hasim

import (
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// backoffConfig: three members with equal positions and failover_backoff
// set to window.
func backoffConfig(window time.Duration) Config {
	cfg := Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}}
	cfg.defaults()
	cfg.Dynamic.FailoverBackoff = cluster.Duration(window)
	return cfg
}

// historyOf returns the kinds of w's history entries, in order.
func historyOf(w *World) string {
	var kinds []string
	for _, e := range w.History() {
		kinds = append(kinds, string(e.Kind)+":"+e.NewPrimary)
	}
	return strings.Join(kinds, ",")
}

// Anti-flapping: the first automatic failover happens; the new primary's
// node dies within failover_backoff of it: nobody is promoted, the best
// candidate records the refusal once, every candidate names the problem,
// and an operator's manual failover then promotes.
func TestFailoverBackoffRefusesASecondFailover(t *testing.T) {
	w := New(backoffConfig(10 * time.Minute))
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	if ll := w.store.Snapshot().LastLeader; ll == nil || ll.FailoverAt.IsZero() {
		t.Fatalf("last_leader after an automatic failover carries no failover time: %+v", ll)
	}
	run(t, w, 30*time.Second, Fault{Kind: KillNode, Member: "n2"})
	if ps := w.Primaries(); len(ps) != 0 {
		t.Fatalf("primaries = %v within failover_backoff, want none\n%s\n%s", ps, w.Summary(), strings.Join(w.Log(), "\n"))
	}
	st := w.Status("n3")
	if st.Problem != cluster.ProblemFailoverBackoff || !strings.Contains(st.Reason, "failover_backoff 10m") {
		t.Errorf("n3: problem %q reason %q, want %s naming the window", st.Problem, st.Reason, cluster.ProblemFailoverBackoff)
	}
	if got := historyOf(w); got != "failover:n2,failover refused:" {
		t.Errorf("history = %s, want the failover then one refusal", got)
	}
	run(t, w, 15*time.Second, Fault{Kind: Failover, Member: "n3"})
	expectLeader(t, w, "n3")
	if got := historyOf(w); got != "failover:n2,failover refused:,manual failover:n3" {
		t.Errorf("history = %s, want the manual failover last", got)
	}
}

// Outside the window, and with failover_backoff off, a second failover
// goes ahead as always.
func TestFailoverBackoffOutsideTheWindow(t *testing.T) {
	for _, window := range []time.Duration{0, 20 * time.Second} {
		w := New(backoffConfig(window))
		run(t, w, 10*time.Second)
		run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
		expectLeader(t, w, "n2")
		run(t, w, 30*time.Second) // past a 20s window
		run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n2"})
		expectLeader(t, w, "n3")
		if got := historyOf(w); got != "failover:n2,failover:n3" {
			t.Errorf("failover_backoff %v: history = %s, want two failovers", window, got)
		}
	}
}

// A switchover does not reset the window: the failover time is carried by
// every leader after it.
func TestFailoverBackoffCarriedThroughSwitchover(t *testing.T) {
	w := New(backoffConfig(10 * time.Minute))
	run(t, w, 10*time.Second)
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n1"})
	expectLeader(t, w, "n2")
	run(t, w, 15*time.Second, Fault{Kind: Switchover, Member: "n3"})
	expectLeader(t, w, "n3")
	run(t, w, 30*time.Second, Fault{Kind: KillNode, Member: "n3"})
	if ps := w.Primaries(); len(ps) != 0 {
		t.Fatalf("primaries = %v within failover_backoff after a switchover, want none\n%s", ps, w.Summary())
	}
}
