package etcd_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/hamgr/hamgr/cluster"
)

// leaderEvent is what a client watching the leader key learns from one
// event: the primary's name and epoch, or that there is none.
type leaderEvent struct {
	name  string
	epoch int64
}

// A client that is not hamgr (only an etcd client, as docs/design.md
// "Watching the leader" tells users to write one) learns the primary and
// its epoch by watching <prefix>/<cluster>/leader: the value's "name" and
// the key's create revision. It sees each leader as it takes the key, and
// the key's deletion when it is released.
func TestClientWatchesTheLeaderKey(t *testing.T) {
	name := newCluster()
	s1, s2 := newStore(t, name), newStore(t, name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	cli := rawClient(t)
	events := make(chan leaderEvent, 10)
	wctx, stop := context.WithCancel(ctx)
	defer stop()
	wch := cli.Watch(wctx, "/hamgr/"+name+"/leader")
	go func() {
		for resp := range wch {
			for _, ev := range resp.Events {
				if ev.Type == clientv3.EventTypeDelete {
					events <- leaderEvent{}
					continue
				}
				var v struct {
					Name string `json:"name"`
				}
				if err := json.Unmarshal(ev.Kv.Value, &v); err != nil {
					t.Errorf("leader value %q: %v", ev.Kv.Value, err)
					continue
				}
				events <- leaderEvent{name: v.Name, epoch: ev.Kv.CreateRevision}
			}
		}
	}()
	next := func() leaderEvent {
		t.Helper()
		select {
		case e := <-events:
			return e
		case <-ctx.Done():
			t.Fatal("no event on the leader key")
			return leaderEvent{}
		}
	}

	for _, s := range []interface {
		Grant(context.Context, time.Duration) error
	}{s1, s2} {
		if err := s.Grant(ctx, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	l1, ok, err := s1.AcquireLeader(ctx, cluster.LastLeader{Name: "n1"}, 0, nil)
	if err != nil || !ok {
		t.Fatalf("n1 acquire: %v %v", ok, err)
	}
	if e := next(); e.name != "n1" || e.epoch != int64(l1.Epoch) {
		t.Fatalf("watcher saw %+v, want n1 at epoch %d", e, l1.Epoch)
	}
	if err := s1.ReleaseLeader(ctx, l1); err != nil {
		t.Fatal(err)
	}
	if e := next(); e != (leaderEvent{}) {
		t.Fatalf("watcher saw %+v, want the key deleted", e)
	}
	l2, ok, err := s2.AcquireLeader(ctx, cluster.LastLeader{Name: "n2"}, l1.Epoch, nil)
	if err != nil || !ok {
		t.Fatalf("n2 acquire: %v %v", ok, err)
	}
	if e := next(); e.name != "n2" || e.epoch != int64(l2.Epoch) || e.epoch <= int64(l1.Epoch) {
		t.Fatalf("watcher saw %+v, want n2 at epoch %d (above %d)", e, l2.Epoch, l1.Epoch)
	}
}
