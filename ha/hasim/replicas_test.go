package hasim

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// lastReplicaSet is the last replica set published, "" when none was.
func lastReplicaSet(w *World) string {
	if len(w.ReplicaSets) == 0 {
		return ""
	}
	return w.ReplicaSets[len(w.ReplicaSets)-1]
}

// The primary publishes the set of replicas streaming from it, and again
// whenever it changes: a replica's node dies (it leaves the set), comes
// back (it returns), and after a failover the new primary publishes its
// own set under its epoch; a set is published at most once while it stays
// the same.
func TestPrimaryPublishesReplicaSet(t *testing.T) {
	w := New(Config{Members: []MemberSpec{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}}})
	run(t, w, 10*time.Second)
	epoch := w.Leader().Epoch
	want := func(s string) {
		t.Helper()
		if got := lastReplicaSet(w); !strings.HasPrefix(got, s) {
			t.Fatalf("last replica set published = %q, want %q (all: %v)\n%s", got, s, w.ReplicaSets, w.Summary())
		}
	}
	want("n1@" + strconv.FormatInt(int64(epoch), 10) + ":[n2 n3]")
	published := len(w.ReplicaSets)
	run(t, w, 10*time.Second)
	if len(w.ReplicaSets) != published {
		t.Errorf("an unchanged set was published again: %v", w.ReplicaSets[published:])
	}
	run(t, w, 15*time.Second, Fault{Kind: KillNode, Member: "n3"})
	want("n1@" + strconv.FormatInt(int64(epoch), 10) + ":[n2]")
	run(t, w, 30*time.Second, Fault{Kind: StartNode, Member: "n3"})
	want("n1@" + strconv.FormatInt(int64(epoch), 10) + ":[n2 n3]")
	run(t, w, 20*time.Second, Fault{Kind: KillNode, Member: "n1"})
	l := w.Leader()
	if l == nil || l.Name == "n1" {
		t.Fatalf("no failover: leader %v\n%s", l, w.Summary())
	}
	other := "n3"
	if l.Name == "n3" {
		other = "n2"
	}
	want(l.Name + "@" + strconv.FormatInt(int64(l.Epoch), 10) + ":[" + other + "]")
}
