package consul

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

func newTestPublisher(t *testing.T, addr string, mod func(*Options)) *Publisher {
	t.Helper()
	o := Options{Address: addr, Service: "pg", APIURL: "http://127.0.0.1:8008", Token: "s3cret",
		KVKey: "hamgr/pg/primary", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if mod != nil {
		mod(&o)
	}
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Each role registers the member's instance with its tag, metadata and
// the HTTP check of that role on the hamgr API; the token goes with every
// request; Withdraw removes the instance.
func TestPublishRolesAgainstFake(t *testing.T) {
	f, srv := newFakeConsul(t)
	f.token = "s3cret"
	p := newTestPublisher(t, srv.URL, nil)
	ctx := testCtx(t)
	cases := []struct {
		role      cluster.Role
		tags, url string
	}{
		{cluster.RoleReplica, "[replica]", "http://127.0.0.1:8008/replica"},
		{cluster.RolePrimary, "[primary]", "http://127.0.0.1:8008/primary"},
		{cluster.RoleUnknown, "[]", "http://127.0.0.1:8008/replica"},
	}
	for _, c := range cases {
		s := discovery.Self{Cluster: "c1", Name: "n1", Role: c.role, Epoch: 7, Leader: "n1", Host: "10.0.0.1", Port: 5432, LagBytes: 42}
		if err := p.PublishSelf(ctx, s); err != nil {
			t.Fatalf("%s: %v", c.role, err)
		}
		reg := f.service("pg-n1")
		check, _ := reg["Check"].(map[string]any)
		meta, _ := reg["Meta"].(map[string]any)
		if fmt.Sprint(reg["Tags"]) != c.tags && !(c.tags == "[]" && reg["Tags"] == nil) || check["HTTP"] != c.url ||
			meta["epoch"] != "7" || meta["member"] != "n1" || reg["Address"] != "10.0.0.1" {
			t.Errorf("%s: registered %v, want tags %s and check %s", c.role, reg, c.tags, c.url)
		}
	}
	if err := p.Withdraw(ctx, discovery.Self{Name: "n1"}); err != nil || f.service("pg-n1") != nil {
		t.Fatalf("withdraw: %v, service left: %v", err, f.service("pg-n1"))
	}
	f.token = "other"
	err := p.PublishSelf(ctx, discovery.Self{Name: "n1", Role: cluster.RoleReplica})
	if err == nil || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("wrong token: %v, want an error that does not show the token", err)
	}
}

// The primary's KV key holds its address and epoch; an older epoch never
// overwrites a newer one; the same publication again changes nothing.
func TestKVEpochGuardAgainstFake(t *testing.T) {
	f, srv := newFakeConsul(t)
	p := newTestPublisher(t, srv.URL, nil)
	ctx := testCtx(t)
	pub := func(name string, epoch cluster.Epoch) error {
		return p.Publish(ctx, discovery.Primary{Cluster: "c1", Name: name, Epoch: epoch, Host: name + ".db", Port: 5432})
	}
	if err := pub("n2", 9); err != nil {
		t.Fatal(err)
	}
	idx := f.index["hamgr/pg/primary"]
	if err := pub("n2", 9); err != nil || f.index["hamgr/pg/primary"] != idx {
		t.Fatalf("same epoch again: %v, index %d → %d, want no write", err, idx, f.index["hamgr/pg/primary"])
	}
	var stale *StaleEpochError
	if err := pub("n1", 8); !errors.As(err, &stale) || stale.Got != 9 {
		t.Fatalf("older epoch: %v, want a StaleEpochError naming epoch 9", err)
	}
	var v KVValue
	if err := json.Unmarshal(f.kv["hamgr/pg/primary"], &v); err != nil || v.Member != "n2" || v.Epoch != 9 || v.Host != "n2.db" {
		t.Fatalf("key holds %s (%v), want n2 at epoch 9", f.kv["hamgr/pg/primary"], err)
	}
	if err := pub("n3", 10); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(f.kv["hamgr/pg/primary"], &v); err != nil || v.Member != "n3" {
		t.Fatalf("newer epoch: key holds %s", f.kv["hamgr/pg/primary"])
	}
}

// A failing Consul agent is an error naming the service, within the
// context's deadline.
func TestPublishFailsAgainstFake(t *testing.T) {
	f, srv := newFakeConsul(t)
	f.fail = true
	p := newTestPublisher(t, srv.URL, nil)
	err := p.PublishSelf(testCtx(t), discovery.Self{Name: "n1", Role: cluster.RolePrimary, Epoch: 1})
	if err == nil || !strings.Contains(err.Error(), "register service pg-n1") {
		t.Fatalf("err = %v, want the registration's failure", err)
	}
}
