package integration

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/discovery/dns/bindtest"
	"github.com/hamgr/hamgr/localcluster"
)

// dnsAddr is member nN's own loopback address, 127.0.0.N: PostgreSQL also
// listens there and it is the member's connect_host, so that the DNS
// record names one member (every member listens on 127.0.0.1 too, where
// the harness reaches it).
func dnsAddr(name string) string { return "127.0.0." + strings.TrimPrefix(name, "n") }

// A real cluster publishing through a real BIND 9: the primary's node
// crashes, the new primary's agent moves the name, and from the moment
// the server first answers the new primary it never answers the old one
// again; the epoch record names the new epoch and member.
func TestDNSFollowsFailover(t *testing.T) {
	const zone, name = "db.test", "primary.db.test."
	srv := bindtest.Start(t, zone, "primary IN A "+dnsAddr("n1"))
	c := startCluster(t, localcluster.Options{Prepare: func(n *localcluster.Node) error {
		return addDNSConfig(n, srv, zone)
	}})
	old, lead := leader(t, c)
	t.Logf("before the crash: leader %s (epoch %d); dig %s A = %v, epoch record %v", old.Name, lead.Epoch, name,
		srv.Dig(t, name, "A"), srv.Dig(t, "_hamgr-epoch."+name, "TXT"))

	// The primary publishes the replicas streaming from it under the
	// replicas name, one A record each.
	const replicasName = "replicas.db.test."
	var wantReplicas []string
	for _, n := range others(c, old.Name) {
		wantReplicas = append(wantReplicas, dnsAddr(n.Name))
	}
	slices.Sort(wantReplicas)
	waitDig(t, srv, replicasName, wantReplicas, 30*time.Second)

	obs := watchA(t, srv, name)
	t0 := time.Now()
	old.KillNode()
	ttl := time.Duration(localcluster.FastTiming.TTL)
	tl, err := c.ObserveFailover(ctxFor(t, ttl+60*time.Second), old.Name, t0)
	if err != nil {
		t.Fatal(err)
	}
	newAddr, oldAddr := dnsAddr(tl.New), dnsAddr(old.Name)
	t.Logf("failover: %s promoted (epoch %d) %v after the crash", tl.New, tl.Epoch, tl.Promoted)
	first := obs.waitFor(t, newAddr, 60*time.Second)
	t.Logf("the server first answered the new primary %s %v after the crash", newAddr, first.Sub(t0).Round(time.Millisecond))
	if got := srv.Dig(t, name, "A"); !slices.Equal(got, []string{newAddr}) {
		t.Fatalf("dig %s A = %v, want the new primary %s", name, got, newAddr)
	}
	want := fmt.Sprintf(`"epoch=%d" "member=%s"`, tl.Epoch, tl.New)
	if got := srv.Dig(t, "_hamgr-epoch."+name, "TXT"); !slices.Equal(got, []string{want}) {
		t.Errorf("epoch record = %v, want %s", got, want)
	}
	// The new primary's set: the one replica left (the old node is down).
	var left []string
	for _, n := range others(c, old.Name) {
		if n.Name != tl.New {
			left = append(left, dnsAddr(n.Name))
		}
	}
	waitDig(t, srv, replicasName, left, 30*time.Second)
	// Keep watching a while (a retried publish step, the old primary's
	// record): the name must not go back.
	end := time.Now().Add(3 * time.Duration(localcluster.FastTiming.LoopWait))
	for time.Now().Before(end) {
		if ans := obs.last(); !slices.Equal(ans, []string{newAddr}) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	seen := obs.stop()
	after := false
	for _, o := range seen {
		after = after || slices.Equal(o.answer, []string{newAddr})
		if after && slices.Contains(o.answer, oldAddr) {
			t.Fatalf("the server answered the old primary %s at %v, after the new one", oldAddr, o.at.Sub(t0))
		}
		if after && !slices.Equal(o.answer, []string{newAddr}) {
			t.Fatalf("the server answered %v at %v, after the new primary %s", o.answer, o.at.Sub(t0), newAddr)
		}
	}
	t.Logf("%d answers observed", len(seen))
}

// addDNSConfig gives member n its own loopback address and the DNS
// publisher's configuration.
func addDNSConfig(n *localcluster.Node, srv *bindtest.Server, zone string) error {
	b, err := os.ReadFile(n.Config)
	if err != nil {
		return err
	}
	cfg := string(b)
	listen := "  listen_host: 127.0.0.1\n"
	if !strings.Contains(cfg, listen) {
		return fmt.Errorf("%s has no %q", n.Config, listen)
	}
	if a := dnsAddr(n.Name); a != "127.0.0.1" {
		cfg = strings.Replace(cfg, listen, "  listen_host: 127.0.0.1,"+a+"\n  connect_host: "+a+"\n", 1)
	}
	cfg += fmt.Sprintf("discovery:\n  dns:\n    server: %s\n    zone: %s\n    name: primary.%s\n    replicas_name: replicas.%s\n    ttl: 5s\n    key_name: %s\n    key_file: %s\n",
		srv.Addr, zone, zone, zone, bindtest.KeyName, srv.KeyFile)
	return os.WriteFile(n.Config, []byte(cfg), 0o600)
}

// aWatch queries the server for a name's A records every 20ms, recording
// each answer.
type aWatch struct {
	mu     sync.Mutex
	seen   []answer
	cancel context.CancelFunc
	done   chan struct{}
}

type answer struct {
	at     time.Time
	answer []string
}

// watchA watches name's A records on the BIND server srv (see watchName).
func watchA(t *testing.T, srv *bindtest.Server, name string) *aWatch {
	return watchName(t, srv.Addr, "tcp", name)
}

func (w *aWatch) last() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.seen) == 0 {
		return nil
	}
	return w.seen[len(w.seen)-1].answer
}

// waitFor waits until the server answers exactly addr and returns when it
// first did.
func (w *aWatch) waitFor(t *testing.T, addr string, d time.Duration) time.Time {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		w.mu.Lock()
		for _, o := range w.seen {
			if slices.Equal(o.answer, []string{addr}) {
				w.mu.Unlock()
				return o.at
			}
		}
		w.mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the server did not answer %s within %v; last answer %v", addr, d, w.last())
	return time.Time{}
}

func (w *aWatch) stop() []answer {
	w.cancel()
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen)
}

// waitDig waits until dig answers name's A records with exactly want.
func waitDig(t *testing.T, srv *bindtest.Server, name string, want []string, d time.Duration) {
	t.Helper()
	var got []string
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		got = srv.Dig(t, name, "A")
		slices.Sort(got)
		return slices.Equal(got, want)
	})
	if err != nil {
		t.Fatalf("dig %s A = %v after %v, want %v", name, got, d, want)
	}
	t.Logf("dig %s A = %v", name, got)
}
