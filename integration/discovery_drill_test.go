package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hamgr/hamgr/discovery/consul/consultest"
	"github.com/hamgr/hamgr/discovery/dns/bindtest"
	"github.com/hamgr/hamgr/localcluster"
)

// drillRounds is how many failovers TestDiscoveryDrill measures
// (HAMGR_DRILL_ROUNDS, default 3).
func drillRounds() int {
	if n, err := strconv.Atoi(os.Getenv("HAMGR_DRILL_ROUNDS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// The drill row of issue 11: a real cluster behind HAProxy (Patroni's
// config), publishing in a real BIND 9 and a real Consul agent (when one
// is found; otherwise that column says why it is missing). In each round
// the primary's node is killed; the drill measures the time from the kill
// until HAProxy sends writes to the new primary only, until BIND answers
// the new primary's address only, and until Consul's DNS interface answers
// primary.pg.service.consul with the new primary's address only; then the
// old node's agent is restarted and rejoins. It prints median, min and max
// per target, and fails if a target never points at the new primary.
func TestDiscoveryDrill(t *testing.T) {
	requireHAProxy(t)
	const zone, name = "db.test", "primary.db.test."
	srv := bindtest.Start(t, zone, "primary IN A "+dnsAddr("n1"))
	var consulAgent *consultest.Agent
	if bin := consultest.Find(); bin != "" {
		consulAgent = consultest.Start(t, bin)
	} else {
		t.Log("Consul column skipped: " + consultest.Missing)
	}
	c := startCluster(t, localcluster.Options{Prepare: func(n *localcluster.Node) error {
		if err := addDNSConfig(n, srv, zone); err != nil {
			return err
		}
		return addConsulConfig(n, consulAgent)
	}})
	// HAProxy with the check timing hamgr recommends (examples/haproxy.cfg).
	h := startHAProxyChecking(t, c, exampleCheck(t))
	targets := []string{"haproxy", "dns"}
	if consulAgent != nil {
		targets = append(targets, "consul")
	}
	took := map[string][]time.Duration{}
	for round := range drillRounds() {
		old, _ := leader(t, c)
		h.waitPools(t, old.Name, time.Minute)
		dnsW := watchName(t, srv.Addr, "tcp", name)
		var consulW *aWatch
		if consulAgent != nil {
			consulW = watchName(t, consulAgent.DNSAddr, "udp", "primary.pg.service.consul.")
		}
		pools := h.watchPools()
		defer pools()
		t0 := time.Now()
		old.KillNode()
		ttl := time.Duration(localcluster.FastTiming.TTL)
		tl, err := c.ObservePromotion(ctxFor(t, ttl+60*time.Second), old.Name, t0)
		if err != nil {
			t.Fatal(err)
		}
		newAddr := dnsAddr(tl.New)
		d := map[string]time.Duration{"dns": dnsW.waitFor(t, newAddr, time.Minute).Sub(t0)}
		if consulW != nil {
			d["consul"] = consulW.waitFor(t, newAddr, time.Minute).Sub(t0)
		}
		d["haproxy"] = firstOnlyPrimary(t, pools, h, tl.New, old.Name).Sub(t0)
		dnsW.stop()
		if consulW != nil {
			consulW.stop()
		}
		var line []string
		for _, k := range targets {
			took[k] = append(took[k], d[k])
			line = append(line, fmt.Sprintf("%s %v", k, d[k].Round(time.Millisecond)))
		}
		t.Logf("round %d: %s killed, %s promoted %v after; %s", round+1, old.Name, tl.New,
			tl.Promoted.Round(time.Millisecond), strings.Join(line, ", "))
		if err := old.StartAgent(); err != nil {
			t.Fatal(err)
		}
		if err := c.WaitHealthy(ctxFor(t, 2*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if consulAgent != nil {
		checkConsulWithdraw(t, c, consulAgent)
	}
	t.Logf("drill: time from the old primary's death until each points at the new primary only, %d rounds:", drillRounds())
	t.Logf("%-8s %10s %10s %10s", "target", "median", "min", "max")
	for _, k := range targets {
		ds := slices.Clone(took[k])
		slices.Sort(ds)
		t.Logf("%-8s %10v %10v %10v", k, ds[len(ds)/2].Round(time.Millisecond),
			ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
}

// checkConsulWithdraw stops a replica's agent cleanly (SIGTERM) and waits
// until its instance is gone from Consul's catalog (deregistered on a
// clean stop).
func checkConsulWithdraw(t *testing.T, c *localcluster.Cluster, a *consultest.Agent) {
	t.Helper()
	lead, _ := leader(t, c)
	var n *localcluster.Node
	for _, m := range c.Nodes {
		if m != lead {
			n = m
			break
		}
	}
	if err := n.KillAgent(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var last string
	err := localcluster.WaitFor(ctxFor(t, time.Minute), func() bool {
		resp, err := http.Get("http://" + a.HTTPAddr + "/v1/catalog/service/pg")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		last = string(b)
		return resp.StatusCode == 200 && !strings.Contains(last, `"ServiceID":"pg-`+n.Name+`"`)
	})
	if err != nil {
		t.Fatalf("%s's instance still in Consul's catalog after its agent stopped cleanly: %v\n%s", n.Name, err, last)
	}
	t.Logf("%s stopped cleanly: its Consul instance pg-%s was deregistered", n.Name, n.Name)
}

// addConsulConfig adds the Consul publisher's section (none without an
// agent): service pg, a fast check so the drill measures hamgr rather
// than Consul's default timing.
func addConsulConfig(n *localcluster.Node, a *consultest.Agent) error {
	if a == nil {
		return nil
	}
	f, err := os.OpenFile(n.Config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "  consul:\n    address: %s\n    service: pg\n    check_interval: 500ms\n    check_timeout: 400ms\n", a.HTTPAddr)
	return err
}

// firstOnlyPrimary waits (up to a minute) until HAProxy's pool samples
// (every 200ms) show it sending writes to newName and not to old, and
// returns when they first did; it stops the watch.
func firstOnlyPrimary(t *testing.T, stop func() []statusSample, h *haproxy, newName, old string) time.Time {
	t.Helper()
	newSrv, oldSrv := h.server(newName), h.server(old)
	only := func(ps poolStatus) bool { return ps.up("batman", newSrv) && !ps.up("batman", oldSrv) }
	if err := localcluster.WaitFor(ctxFor(t, time.Minute), func() bool {
		ps, err := h.stats(context.Background())
		return err == nil && only(ps)
	}); err != nil {
		t.Fatalf("haproxy never sent writes to %s only: %v", newName, err)
	}
	seen := time.Now()
	for _, s := range stop() {
		if only(s.ps) {
			return s.at
		}
	}
	return seen // the watch had not sampled it yet
}

// watchName queries the DNS server at addr (over netw) for name's A
// records every 20ms, without asking for recursion (the server's own
// answer, never a cache's), recording each answer.
func watchName(t *testing.T, addr, netw, name string) *aWatch {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	w := &aWatch{cancel: cancel, done: make(chan struct{})}
	t.Cleanup(func() { w.stop() }) // stop may run twice
	go func() {
		defer close(w.done)
		c := &mdns.Client{Net: netw, Timeout: time.Second}
		for ctx.Err() == nil {
			q := new(mdns.Msg)
			q.SetQuestion(name, mdns.TypeA)
			q.RecursionDesired = false
			if r, _, err := c.ExchangeContext(ctx, q, addr); err == nil {
				var as []string
				for _, rr := range r.Answer {
					if a, ok := rr.(*mdns.A); ok {
						as = append(as, a.A.String())
					}
				}
				slices.Sort(as)
				w.mu.Lock()
				w.seen = append(w.seen, answer{at: time.Now(), answer: as})
				w.mu.Unlock()
			}
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	return w
}
