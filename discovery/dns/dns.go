// Package dns publishes the primary in DNS: an RFC 2136 dynamic update,
// signed with a TSIG key (RFC 8945), points a name at the new primary on
// an authoritative server (BIND 9, Knot, PowerDNS...), and the publisher
// reads the change back from that server before it reports success.
//
// # Records
//
// The primary name holds one record: an A or AAAA record when the
// primary's host is an IP address, a CNAME when it is a host name. An
// update deletes the name's A, AAAA and CNAME RRsets and adds the new
// record in one message, which the server applies atomically: a resolver
// sees the old record or the new one, never none. Its TTL is the
// configured one, kept low so that resolvers follow a failover quickly.
//
// An optional replicas name holds one A or AAAA record per healthy replica
// ([Publisher.PublishReplicas]).
//
// # The epoch guard
//
// Beside the primary name the publisher keeps a TXT record at
// "_hamgr-epoch.NAME" holding "epoch=N" and "member=MEMBER": the epoch
// (the fencing token of package cluster) of the primary the name points
// at. An older primary must never overwrite a newer one: an agent that was
// partitioned during its own promotion may retry its publish step after a
// newer promotion has published. DNS updates have no "greater than"
// prerequisite, so the guard is a compare-and-swap built on RFC 2136's
// value-dependent prerequisite ("RRset exists with exactly these
// records", section 2.4.2) and its "RRset does not exist" (2.4.3):
//
//  1. read the epoch TXT record from the server;
//  2. if it holds an epoch newer than ours, refuse ([StaleEpochError]);
//  3. send the update with the prerequisite that the TXT RRset is still
//     exactly what step 1 read (or still absent), replacing it with our
//     epoch and replacing the primary record;
//  4. if the prerequisite failed (YXRRSET, NXRRSET: someone published in
//     between), start again from step 1, a bounded number of times.
//
// The server evaluates prerequisites and applies the update atomically, so
// the epoch on the server only ever moves from a value some publisher
// read to a value not older than it: once epoch N is published, no
// publisher holding an older epoch can change the name, whatever the
// interleaving. The same epoch is the same promotion and so the same
// target, which is why publishing it again is harmless (and is skipped
// when the server already holds it: the publisher is idempotent).
//
// # Reading back
//
// After the update the publisher queries the same server directly (TCP,
// no recursion, so no cache stands between) until the primary name and the
// epoch record answer exactly what was written, or the deadline passes.
//
// # Secrets
//
// The TSIG secret lives only in the [Key]; every error and log line names
// the key (its name and algorithm), never the secret.
package dns

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

// Defaults of Options.
const (
	DefaultTTL          = 30 * time.Second
	DefaultTimeout      = 10 * time.Second
	DefaultPollInterval = 100 * time.Millisecond
	// maxCASRounds bounds the compare-and-swap rounds of one publish: each
	// lost round means another publisher changed the epoch in between.
	maxCASRounds = 5
	// tsigFudge is the TSIG time window (RFC 8945 "fudge"), in seconds.
	tsigFudge = 300
	// epochLabel prefixes the primary name to make the epoch record's name.
	epochLabel = "_hamgr-epoch."
)

// Options configure a Publisher.
type Options struct {
	// Server is the authoritative server's "host:port" (port 53 usually).
	Server string
	// Zone is the zone the names belong to, such as "db.example.com".
	Zone string
	// Name is the primary's name, inside Zone, such as
	// "primary.db.example.com".
	Name string
	// ReplicasName, optional, is the name PublishReplicas sets.
	ReplicasName string
	// TTL of the records. Default DefaultTTL; whole seconds.
	TTL time.Duration
	// Key signs every update.
	Key Key
	// Timeout bounds one Publish when its context has no earlier
	// deadline. Default DefaultTimeout.
	Timeout time.Duration
	// PollInterval is the pause between two read-back queries. Default
	// DefaultPollInterval.
	PollInterval time.Duration
	// Now is the clock of the TSIG signatures. Default time.Now.
	Now func() time.Time
	// Logger, default discard.
	Logger *slog.Logger
}

// Publisher publishes the primary in DNS. It implements
// discovery.Publisher.
type Publisher struct {
	opts                         Options
	zone, name, replicas, epochN string
	ttl                          uint32
	log                          *slog.Logger
}

var _ discovery.Publisher = (*Publisher)(nil)

// New checks opts and returns a Publisher; it does not contact the server.
func New(opts Options) (*Publisher, error) {
	if _, _, err := net.SplitHostPort(opts.Server); err != nil {
		return nil, fmt.Errorf("dns publisher: server %q is not host:port", opts.Server)
	}
	if opts.Key.name == "" {
		return nil, errors.New("dns publisher: no TSIG key: build one with NewKey or ParseKeyFile")
	}
	zone, err := fqdn("zone", opts.Zone)
	if err != nil {
		return nil, err
	}
	p := &Publisher{opts: opts, zone: zone, log: opts.Logger}
	if p.name, err = nameInZone("name", opts.Name, zone); err != nil {
		return nil, err
	}
	if opts.ReplicasName != "" {
		if p.replicas, err = nameInZone("replicas name", opts.ReplicasName, zone); err != nil {
			return nil, err
		}
		if p.replicas == p.name {
			return nil, fmt.Errorf("dns publisher: the replicas name %s is the primary name: give it its own name", p.replicas)
		}
	}
	p.epochN = epochLabel + p.name
	if opts.TTL == 0 {
		opts.TTL = DefaultTTL
	}
	if opts.TTL < time.Second || opts.TTL%time.Second != 0 || opts.TTL > 24*time.Hour {
		return nil, fmt.Errorf("dns publisher: TTL %v: want whole seconds from 1s to 24h", opts.TTL)
	}
	p.ttl = uint32(opts.TTL / time.Second)
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	p.opts = opts
	return p, nil
}

func fqdn(what, s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if s == "" {
		return "", fmt.Errorf("dns publisher: the %s is empty", what)
	}
	if _, ok := mdns.IsDomainName(s); !ok {
		return "", fmt.Errorf("dns publisher: %s %q is not a domain name", what, s)
	}
	return mdns.Fqdn(s), nil
}

func nameInZone(what, s, zone string) (string, error) {
	n, err := fqdn(what, s)
	if err != nil {
		return "", err
	}
	if !mdns.IsSubDomain(zone, n) {
		return "", fmt.Errorf("dns publisher: %s %s is not inside zone %s", what, n, zone)
	}
	return n, nil
}

// Name is "dns".
func (p *Publisher) Name() string { return "dns" }

// PublishesReplicas reports whether a replicas name is configured.
func (p *Publisher) PublishesReplicas() bool { return p.replicas != "" }

// PrimaryName is the fully qualified primary name.
func (p *Publisher) PrimaryName() string { return p.name }

// EpochName is the fully qualified name of the epoch TXT record.
func (p *Publisher) EpochName() string { return p.epochN }

// StaleEpochError is returned when the server already publishes a newer
// epoch than the one being published: the caller is not the current
// primary, and the name was left alone.
type StaleEpochError struct {
	Name                 string
	Published, Refused   cluster.Epoch
	PublishedFor, Member string
}

func (e *StaleEpochError) Error() string {
	return fmt.Sprintf("%s already publishes epoch %d (member %s), newer than epoch %d of %s: not overwriting it with a stale primary "+
		"(if the cluster was created anew and its epochs started over, delete the TXT record %s%s)",
		e.Name, e.Published, e.PublishedFor, e.Refused, e.Member, epochLabel, e.Name)
}

// Publish points the primary name at pr.Host, guarded by pr.Epoch (see
// the package documentation), and returns once the server answers the new
// record. It is idempotent, and bounded by ctx and Options.Timeout.
func (p *Publisher) Publish(ctx context.Context, pr discovery.Primary) error {
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	target, err := p.record(p.name, pr.Host)
	if err != nil {
		return err
	}
	txt := p.epochRecord(pr.Epoch, pr.Name)
	for round := 1; ; round++ {
		st, err := p.readState(ctx)
		if err != nil {
			return err
		}
		if st.epochOK && st.epoch > pr.Epoch {
			return &StaleEpochError{Name: p.name, Published: st.epoch, PublishedFor: st.member, Refused: pr.Epoch, Member: pr.Name}
		}
		if st.epochOK && st.epoch == pr.Epoch && st.matches(target) {
			p.log.Debug("dns: the primary is already published", "name", p.name, "epoch", pr.Epoch)
			return nil
		}
		err = p.send(ctx, p.primaryUpdate(st, target, txt))
		if errors.Is(err, errPrereq) && round < maxCASRounds {
			p.log.Info("dns: the epoch record changed while publishing; reading it again", "name", p.name, "epoch", pr.Epoch)
			continue
		}
		if errors.Is(err, errPrereq) {
			return fmt.Errorf("dns: publish %s: the epoch record %s kept changing in %d rounds: %w", p.name, p.epochN, maxCASRounds, err)
		}
		if err != nil {
			return fmt.Errorf("dns: publish %s (epoch %d): %w", p.name, pr.Epoch, err)
		}
		break
	}
	if err := p.readBack(ctx, target, pr.Epoch); err != nil {
		return err
	}
	p.log.Info("dns: published the primary", "name", p.name, "record", rrText(target), "epoch", pr.Epoch, "server", p.opts.Server, "key", p.opts.Key.name)
	return nil
}

// primaryUpdate is the compare-and-swap update of the primary name: the
// epoch TXT RRset must still be what st read.
func (p *Publisher) primaryUpdate(st state, target, txt mdns.RR) *mdns.Msg {
	m := new(mdns.Msg)
	m.SetUpdate(p.zone)
	if len(st.epochRRs) == 0 {
		m.RRsetNotUsed([]mdns.RR{blank(p.epochN, mdns.TypeTXT)})
	} else {
		m.Used(st.epochRRs)
	}
	m.RemoveRRset([]mdns.RR{blank(p.epochN, mdns.TypeTXT)})
	m.RemoveRRset([]mdns.RR{blank(p.name, mdns.TypeA), blank(p.name, mdns.TypeAAAA), blank(p.name, mdns.TypeCNAME)})
	m.Insert([]mdns.RR{mdns.Copy(target), mdns.Copy(txt)})
	return m
}

// PublishReplicas makes the replicas name hold one A or AAAA record per
// host (IP addresses: a name cannot hold several CNAMEs); no hosts
// removes them all. It is refused unless the server publishes epoch as
// the primary's epoch (the caller must be the current primary), by the
// same compare-and-swap as Publish, and it returns once the server
// answers the new set. The primary's agent calls it (as a
// discovery.ReplicaPublisher) whenever the set of streaming replicas
// changes.
func (p *Publisher) PublishReplicas(ctx context.Context, epoch cluster.Epoch, hosts []string) error {
	if p.replicas == "" {
		return errors.New("dns: publish replicas: no replicas name configured")
	}
	ctx, cancel := context.WithTimeout(ctx, p.opts.Timeout)
	defer cancel()
	want := make([]mdns.RR, 0, len(hosts))
	for _, h := range hosts {
		if net.ParseIP(h) == nil {
			return fmt.Errorf("dns: publish replicas: %q is not an IP address: the replicas name %s can hold addresses only", h, p.replicas)
		}
		rr, err := p.record(p.replicas, h)
		if err != nil {
			return err
		}
		want = append(want, rr)
	}
	st, err := p.readState(ctx)
	if err != nil {
		return err
	}
	if !st.epochOK || st.epoch != epoch {
		return fmt.Errorf("dns: publish replicas %s: the server publishes epoch %s, not %d: only the current primary sets the replicas", p.replicas, st.epochText(), epoch)
	}
	m := new(mdns.Msg)
	m.SetUpdate(p.zone)
	m.Used(st.epochRRs)
	m.RemoveRRset([]mdns.RR{blank(p.replicas, mdns.TypeA), blank(p.replicas, mdns.TypeAAAA)})
	if len(want) > 0 {
		ins := make([]mdns.RR, len(want))
		for i, rr := range want {
			ins[i] = mdns.Copy(rr)
		}
		m.Insert(ins)
	}
	if err := p.send(ctx, m); err != nil {
		return fmt.Errorf("dns: publish replicas %s (epoch %d): %w", p.replicas, epoch, err)
	}
	return p.poll(ctx, "replicas "+p.replicas, func() (bool, error) {
		got, err := p.lookup(ctx, p.replicas, mdns.TypeA, mdns.TypeAAAA)
		return err == nil && sameSet(got, want), err
	})
}

// record is the record pointing name at host: A or AAAA for an address,
// CNAME for a host name.
func (p *Publisher) record(name, host string) (mdns.RR, error) {
	hdr := mdns.RR_Header{Name: name, Class: mdns.ClassINET, Ttl: p.ttl}
	if ip := net.ParseIP(host); ip != nil {
		if v4 := ip.To4(); v4 != nil {
			hdr.Rrtype = mdns.TypeA
			return &mdns.A{Hdr: hdr, A: v4}, nil
		}
		hdr.Rrtype = mdns.TypeAAAA
		return &mdns.AAAA{Hdr: hdr, AAAA: ip}, nil
	}
	target, err := fqdn("primary host", host)
	if err != nil {
		return nil, err
	}
	hdr.Rrtype = mdns.TypeCNAME
	return &mdns.CNAME{Hdr: hdr, Target: target}, nil
}

func (p *Publisher) epochRecord(e cluster.Epoch, member string) mdns.RR {
	return &mdns.TXT{
		Hdr: mdns.RR_Header{Name: p.epochN, Rrtype: mdns.TypeTXT, Class: mdns.ClassINET, Ttl: p.ttl},
		Txt: []string{fmt.Sprintf("epoch=%d", e), "member=" + member},
	}
}

// blank is a record with only a name and a type, for prerequisites and
// RRset deletions.
func blank(name string, t uint16) mdns.RR {
	return &mdns.ANY{Hdr: mdns.RR_Header{Name: name, Rrtype: t, Class: mdns.ClassINET}}
}

func rrText(rr mdns.RR) string {
	return strings.ReplaceAll(rr.String(), "\t", " ")
}
