package consul

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/discovery/consul/consultest"
)

// roleAPI is a stand-in for a hamgr agent's API: /primary and /replica
// answer 200 or 503 by its role, as the real one does (the health check
// is Consul's, the answer ours).
type roleAPI struct {
	role atomic.Int32
	srv  *httptest.Server
}

func newRoleAPI(t *testing.T, r cluster.Role) *roleAPI {
	a := &roleAPI{}
	a.role.Store(int32(r))
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		want := map[string]cluster.Role{"/primary": cluster.RolePrimary, "/replica": cluster.RoleReplica}[req.URL.Path]
		if cluster.Role(a.role.Load()) != want || want == cluster.RoleUnknown {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(a.srv.Close)
	return a
}

// healthyPrimaries asks Consul's health API which instances of service
// tagged primary pass their checks, by member.
func healthyPrimaries(ctx context.Context, httpAddr, service string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet,
		"http://"+httpAddr+"/v1/health/service/"+service+"?tag=primary&passing=true", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var entries []struct {
		Service struct{ Meta map[string]string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		return nil, err
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Service.Meta["member"])
	}
	slices.Sort(out)
	return out, nil
}

// dnsPrimaries asks Consul's DNS interface for primary.SERVICE.service.consul.
func dnsPrimaries(dnsAddr, service string) ([]string, error) {
	m := new(dns.Msg)
	m.SetQuestion("primary."+service+".service.consul.", dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, dnsAddr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// waitFor polls cond every 100ms until it returns "" or d passes; it
// fails the test with cond's last answer.
func waitFor(t *testing.T, d time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		got := cond()
		if got == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %s", what, d, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Against a real Consul agent (dev mode, loopback): n1 is published as
// the primary, n2 as a replica; n1's agent dies (its API stops answering)
// and n2 is published as the primary of the next epoch. Consul's own
// health API and its DNS interface then serve n2 as the primary and no
// longer n1, whose check went critical without anyone deregistering it.
func TestFailoverWithRealConsul(t *testing.T) {
	agent := consultest.Start(t, consultest.Binary(t))
	httpAddr, dnsAddr := agent.HTTPAddr, agent.DNSAddr
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	api1, api2 := newRoleAPI(t, cluster.RolePrimary), newRoleAPI(t, cluster.RoleReplica)
	mk := func(api *roleAPI) *Publisher {
		return newTestPublisher(t, httpAddr, func(o *Options) {
			o.Token, o.APIURL, o.CheckInterval = "", api.srv.URL, time.Second
		})
	}
	p1, p2 := mk(api1), mk(api2)
	n1 := discovery.Self{Cluster: "c1", Name: "n1", Role: cluster.RolePrimary, Epoch: 1, Leader: "n1", Host: "127.0.0.11", Port: 5432}
	n2 := discovery.Self{Cluster: "c1", Name: "n2", Role: cluster.RoleReplica, Epoch: 1, Leader: "n1", Host: "127.0.0.12", Port: 5432}
	for _, c := range []struct {
		p *Publisher
		s discovery.Self
	}{{p1, n1}, {p2, n2}} {
		if err := c.p.PublishSelf(ctx, c.s); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(members, addrs string) func() string {
		return func() string {
			h, herr := healthyPrimaries(ctx, httpAddr, "pg")
			d, derr := dnsPrimaries(dnsAddr, "pg")
			if fmt.Sprint(h) == members && fmt.Sprint(d) == addrs {
				return ""
			}
			return fmt.Sprintf("health API %v (%v), DNS %v (%v); want %s and %s", h, herr, d, derr, members, addrs)
		}
	}
	waitFor(t, 30*time.Second, "n1 served as the primary", expect("[n1]", "[127.0.0.11]"))

	start := time.Now()
	api1.srv.Close() // n1's machine dies: its agent answers no more
	api2.role.Store(int32(cluster.RolePrimary))
	n2.Role, n2.Epoch, n2.Leader = cluster.RolePrimary, 2, "n2"
	if err := p2.PublishSelf(ctx, n2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "n2 served as the primary, n1 not", expect("[n2]", "[127.0.0.12]"))
	t.Logf("Consul served the new primary alone %s after the old one died", time.Since(start).Round(time.Millisecond))

	var v KVValue
	resp, err := http.Get("http://" + httpAddr + "/v1/kv/hamgr/pg/primary?raw")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(bufio.NewReader(resp.Body)).Decode(&v); err != nil || v.Member != "n2" || v.Epoch != 2 {
		t.Fatalf("KV key: %+v (%v), want n2 at epoch 2", v, err)
	}
	if err := p2.Withdraw(ctx, n2); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "n2 withdrawn", expect("[]", "[]"))
}
