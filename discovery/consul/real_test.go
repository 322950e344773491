package consul

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

// CacheBinary is where .ci/consul-build.sh leaves the Consul agent it
// builds, in a cache that outlives the clone (see .ci/run).
const CacheBinary = "/var/cache/hamgr-ci/consul/consul"

// consulBinary finds a Consul agent: $HAMGR_CONSUL, else consul on PATH,
// else the CI cache; it skips the test, saying why, when there is none.
func consulBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("HAMGR_CONSUL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	if _, err := os.Stat(CacheBinary); err == nil {
		return CacheBinary
	}
	t.Skip("no Consul agent: Debian has no consul package and none is on PATH, in $HAMGR_CONSUL or in " + CacheBinary +
		" (.ci/consul-build.sh builds v1.16.6 from the Go module proxy into it, which takes long on a small machine);" +
		" the publisher is tested against a fake of Consul's documented HTTP API instead")
	return ""
}

// freePorts returns n distinct free loopback TCP ports (also free for UDP
// at the moment of asking, for the DNS port).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// startConsul runs `consul agent -dev` on loopback ports and returns its
// HTTP and DNS addresses once its API answers with a leader.
func startConsul(t *testing.T, bin string) (httpAddr, dnsAddr string) {
	t.Helper()
	p := freePorts(t, 5)
	dir := t.TempDir()
	cmd := exec.Command(bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1", "-data-dir="+dir,
		"-http-port="+strconv.Itoa(p[0]), "-dns-port="+strconv.Itoa(p[1]), "-server-port="+strconv.Itoa(p[2]),
		"-serf-lan-port="+strconv.Itoa(p[3]), "-serf-wan-port="+strconv.Itoa(p[4]), "-grpc-port=-1", "-grpc-tls-port=-1",
		"-hcl=dns_config { allow_stale = false }")
	logf, err := os.Create(filepath.Join(dir, "consul.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			t.Logf("consul log:\n%s", b)
		}
	})
	httpAddr = fmt.Sprintf("127.0.0.1:%d", p[0])
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/v1/status/leader")
		if err == nil {
			var leader string
			_ = json.NewDecoder(resp.Body).Decode(&leader)
			resp.Body.Close()
			if leader != "" {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("consul agent did not elect itself within 60s (last: %v)", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return httpAddr, fmt.Sprintf("127.0.0.1:%d", p[1])
}

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
	bin := consulBinary(t)
	httpAddr, dnsAddr := startConsul(t, bin)
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
