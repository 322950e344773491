package dns_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/discovery/dns"
	"github.com/hamgr/hamgr/discovery/dns/bindtest"
)

const zone = "db.test"

// newPublisher builds a publisher for srv's zone with the key in its key
// file, with the given options changed by mod.
func newPublisher(t *testing.T, srv *bindtest.Server, mod func(*dns.Options)) *dns.Publisher {
	t.Helper()
	data, err := os.ReadFile(srv.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := dns.ParseKeyFile(data, bindtest.KeyName, "")
	if err != nil {
		t.Fatal(err)
	}
	opts := dns.Options{Server: srv.Addr, Zone: zone, Name: "primary." + zone, ReplicasName: "replicas." + zone,
		TTL: 5 * time.Second, Key: key, Timeout: 10 * time.Second}
	if mod != nil {
		mod(&opts)
	}
	p, err := dns.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// lookupA asks the server directly with miekg/dns.
func lookupA(t *testing.T, srv *bindtest.Server, name string) []string {
	t.Helper()
	q := new(mdns.Msg)
	q.SetQuestion(mdns.Fqdn(name), mdns.TypeA)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, _, err := (&mdns.Client{Net: "tcp"}).ExchangeContext(ctx, q, srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

func publish(t *testing.T, p *dns.Publisher, epoch uint64, member, host string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	return p.Publish(ctx, discovery.Primary{Cluster: "c", Name: member, Epoch: epochOf(epoch), Host: host, Port: 5432})
}

func TestPublishMovesThePrimaryAndGuardsTheEpoch(t *testing.T) {
	srv := bindtest.Start(t, zone, "primary IN A 127.0.0.1")
	p := newPublisher(t, srv, nil)
	name := "primary." + zone + "."
	if got := srv.Dig(t, name, "A"); !slices.Equal(got, []string{"127.0.0.1"}) {
		t.Fatalf("before: dig %s A = %v, want the zone file's 127.0.0.1", name, got)
	}

	if err := publish(t, p, 3, "n2", "127.0.0.2"); err != nil {
		t.Fatalf("publish epoch 3: %v", err)
	}
	if got := srv.Dig(t, name, "A"); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Fatalf("dig %s A = %v, want [127.0.0.2]", name, got)
	}
	if got := lookupA(t, srv, name); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Fatalf("miekg/dns query %s A = %v, want [127.0.0.2]", name, got)
	}
	if got := srv.Dig(t, p.EpochName(), "TXT"); !slices.Equal(got, []string{`"epoch=3" "member=n2"`}) {
		t.Fatalf("dig %s TXT = %v", p.EpochName(), got)
	}
	serial := srv.Dig(t, zone+".", "SOA")

	// Idempotent: the same epoch again succeeds and changes nothing (the
	// SOA serial, bumped by every update, stays).
	if err := publish(t, p, 3, "n2", "127.0.0.2"); err != nil {
		t.Fatalf("publish epoch 3 again: %v", err)
	}
	if got := srv.Dig(t, zone+".", "SOA"); !slices.Equal(got, serial) {
		t.Fatalf("a repeated publish updated the zone: SOA %v, was %v", got, serial)
	}

	// A newer epoch moves it; an older one is refused and changes nothing.
	if err := publish(t, p, 4, "n3", "127.0.0.3"); err != nil {
		t.Fatalf("publish epoch 4: %v", err)
	}
	err := publish(t, p, 3, "n2", "127.0.0.2")
	var stale *dns.StaleEpochError
	if !errors.As(err, &stale) || stale.Published != 4 {
		t.Fatalf("publish of the older epoch 3 after 4: err = %v, want a StaleEpochError naming epoch 4", err)
	}
	t.Logf("older epoch refused: %v", err)
	if got := srv.Dig(t, name, "A"); !slices.Equal(got, []string{"127.0.0.3"}) {
		t.Fatalf("after the refused publish: dig %s A = %v, want [127.0.0.3]", name, got)
	}

	// A host name becomes a CNAME; an IPv6 address an AAAA.
	if err := publish(t, p, 5, "n1", "db1.example.net"); err != nil {
		t.Fatalf("publish a host name: %v", err)
	}
	if got := srv.Dig(t, name, "CNAME"); !slices.Equal(got, []string{"db1.example.net."}) {
		t.Fatalf("dig %s CNAME = %v", name, got)
	}
	if got := lookupA(t, srv, name); len(got) != 0 {
		t.Fatalf("A records left beside the CNAME: %v", got)
	}
	if err := publish(t, p, 6, "n2", "::1"); err != nil {
		t.Fatalf("publish an IPv6 address: %v", err)
	}
	if got := srv.Dig(t, name, "AAAA"); !slices.Equal(got, []string{"::1"}) {
		t.Fatalf("dig %s AAAA = %v", name, got)
	}
	if got := srv.Dig(t, name, "CNAME"); len(got) != 0 {
		t.Fatalf("CNAME left beside the AAAA: %v", got)
	}
}

func TestPublishReplicas(t *testing.T) {
	srv := bindtest.Start(t, zone)
	p := newPublisher(t, srv, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.PublishReplicas(ctx, 1, []string{"127.0.0.2"}); err == nil {
		t.Fatal("replicas published before any primary: want an error")
	}
	if err := publish(t, p, 7, "n1", "127.0.0.1"); err != nil {
		t.Fatal(err)
	}
	if err := p.PublishReplicas(ctx, 7, []string{"127.0.0.3", "127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if got := lookupA(t, srv, "replicas."+zone); !slices.Equal(got, []string{"127.0.0.2", "127.0.0.3"}) {
		t.Fatalf("replicas = %v", got)
	}
	if err := p.PublishReplicas(ctx, 6, []string{"127.0.0.9"}); err == nil || !strings.Contains(err.Error(), "epoch 7") {
		t.Fatalf("replicas with a stale epoch: err = %v, want a refusal naming epoch 7", err)
	}
	if err := p.PublishReplicas(ctx, 7, []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	if got := srv.Dig(t, "replicas."+zone+".", "A"); !slices.Equal(got, []string{"127.0.0.2"}) {
		t.Fatalf("dig replicas = %v", got)
	}
}

func TestWrongKeyNamesTheKeyNotTheSecret(t *testing.T) {
	srv := bindtest.Start(t, zone, "primary IN A 127.0.0.1")
	const wrongSecret = "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldC13cm9uZyE="
	cases := []struct {
		name, keyName, secret string
	}{
		{"wrong secret", bindtest.KeyName, wrongSecret},
		{"unknown key name", "other-key", srv.Secret},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key, err := dns.NewKey(c.keyName, dns.HMACSHA256, c.secret)
			if err != nil {
				t.Fatal(err)
			}
			p := newPublisher(t, srv, func(o *dns.Options) { o.Key = key })
			start := time.Now()
			err = publish(t, p, 2, "n2", "127.0.0.2")
			if err == nil {
				t.Fatal("publish with a wrong key succeeded")
			}
			t.Logf("error after %v: %v", time.Since(start).Round(time.Millisecond), err)
			msg := err.Error()
			if !strings.Contains(msg, `"`+c.keyName+`"`) {
				t.Errorf("the error does not name the key %q: %v", c.keyName, err)
			}
			for _, s := range []string{c.secret, srv.Secret, wrongSecret} {
				if strings.Contains(msg, s) {
					t.Errorf("the error contains a secret: %v", err)
				}
			}
			if got := srv.Dig(t, "primary."+zone+".", "A"); !slices.Equal(got, []string{"127.0.0.1"}) {
				t.Errorf("a rejected update changed the record: %v", got)
			}
		})
	}
}

func TestUnreachableServerFailsWithinTheDeadline(t *testing.T) {
	// A TCP listener that accepts and never answers: the publisher must
	// give up at its deadline, not hang.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for range 100 {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	// A closed port: refused at once.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := closed.Addr().String()
	closed.Close()

	key, err := dns.NewKey(bindtest.KeyName, "", "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=")
	if err != nil {
		t.Fatal(err)
	}
	for _, addr := range []string{l.Addr().String(), closedAddr} {
		const timeout = 2 * time.Second
		p, err := dns.New(dns.Options{Server: addr, Zone: zone, Name: "primary." + zone, Key: key, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		err = p.Publish(context.Background(), discovery.Primary{Name: "n1", Epoch: 1, Host: "127.0.0.2"})
		took := time.Since(start)
		if err == nil {
			t.Fatalf("%s: publish succeeded", addr)
		}
		if took > timeout+time.Second {
			t.Fatalf("%s: publish took %v, past its %v deadline", addr, took, timeout)
		}
		if !strings.Contains(err.Error(), addr) {
			t.Errorf("%s: the error does not name the server: %v", addr, err)
		}
		t.Logf("%s: error after %v: %v", addr, took.Round(time.Millisecond), err)
	}
}

func TestKeyNeverPrintsItsSecret(t *testing.T) {
	const secret = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I="
	k, err := dns.NewKey("k1", dns.HMACSHA512, secret)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{k.String(), k.GoString(), fmtAll(k)} {
		if strings.Contains(s, secret) {
			t.Fatalf("the key printed its secret: %s", s)
		}
	}
	if _, err := dns.NewKey("k1", "", "not base64!"); err == nil || strings.Contains(err.Error(), "not base64!") {
		t.Fatalf("bad secret: err = %v", err)
	}
	file := `key "k1" { algorithm hmac-sha512; secret "` + secret + `"; };`
	if _, err := dns.ParseKeyFile([]byte(file), "k2", ""); err == nil || !strings.Contains(err.Error(), `"k1"`) || strings.Contains(err.Error(), secret) {
		t.Fatalf("key file of another key: err = %v", err)
	}
	if _, err := dns.ParseKeyFile([]byte(file), "k1", dns.HMACSHA256); err == nil {
		t.Fatal("key file of another algorithm accepted")
	}
	got, err := dns.ParseKeyFile([]byte(file), "k1", "")
	if err != nil || got.Algorithm() != dns.HMACSHA512 || got.Name() != "k1" {
		t.Fatalf("ParseKeyFile = %v, %v", got, err)
	}
}

func epochOf(n uint64) cluster.Epoch { return cluster.Epoch(n) }

func fmtAll(k dns.Key) string { return fmt.Sprintf("%v %+v %#v %s", k, k, k, k) }

// Publishers of many epochs racing: whatever the interleaving, the name
// ends at the newest epoch's target (the compare-and-swap never lets an
// older epoch overwrite a newer one). A publish that gives up because the
// record kept changing under it is tried again, as the agent's publish
// loop does after any failure (a bounded number of times here).
func TestConcurrentEpochsNewestWins(t *testing.T) {
	srv := bindtest.Start(t, zone)
	const n, tries = 8, 20
	errs := make(chan error, n)
	for i := 1; i <= n; i++ {
		p := newPublisher(t, srv, nil)
		go func() {
			var err error
			for range tries {
				err = publish(t, p, uint64(i), fmt.Sprintf("n%d", i), fmt.Sprintf("127.0.1.%d", i))
				if err == nil || !strings.Contains(err.Error(), "kept changing") {
					break
				}
			}
			errs <- err
		}()
	}
	var refused int
	for range n {
		err := <-errs
		var stale *dns.StaleEpochError
		switch {
		case errors.As(err, &stale):
			refused++
		case err != nil:
			t.Errorf("publish (after up to %d tries): %v", tries, err)
		}
	}
	if got := lookupA(t, srv, "primary."+zone); !slices.Equal(got, []string{fmt.Sprintf("127.0.1.%d", n)}) {
		t.Fatalf("after the race: A = %v, want the newest epoch's 127.0.1.%d", got, n)
	}
	t.Logf("%d of %d older publishes refused as stale", refused, n)
}
