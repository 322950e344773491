package dns

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/hamgr/hamgr/cluster"
)

// errPrereq is an update refused because a prerequisite failed: the epoch
// record is no longer what was read.
var errPrereq = errors.New("the epoch record changed since it was read (prerequisite failed)")

// state is what the server holds: the epoch record and the primary name's
// address and alias records.
type state struct {
	epochRRs []mdns.RR
	epoch    cluster.Epoch
	member   string
	epochOK  bool
	primary  []mdns.RR
}

// matches reports whether the primary name holds exactly target.
func (s state) matches(target mdns.RR) bool { return sameSet(s.primary, []mdns.RR{target}) }

func (s state) epochText() string {
	switch {
	case s.epochOK:
		return strconv.FormatInt(int64(s.epoch), 10)
	case len(s.epochRRs) == 0:
		return "none"
	default:
		return "unreadable"
	}
}

// readState reads the epoch record and the primary name's A, AAAA and
// CNAME records from the server.
func (p *Publisher) readState(ctx context.Context) (state, error) {
	var st state
	txt, err := p.lookup(ctx, p.epochN, mdns.TypeTXT)
	if err != nil {
		return st, err
	}
	st.epochRRs = txt
	if len(txt) > 0 {
		st.epoch, st.member, st.epochOK = parseEpoch(txt)
		if !st.epochOK {
			return st, fmt.Errorf("dns: the epoch record %s holds %q, not \"epoch=N\" \"member=NAME\": delete it (nsupdate: update delete %s TXT) if nothing else owns it",
				p.epochN, rrText(txt[0]), p.epochN)
		}
	}
	st.primary, err = p.lookup(ctx, p.name, mdns.TypeA, mdns.TypeAAAA, mdns.TypeCNAME)
	return st, err
}

func parseEpoch(rrs []mdns.RR) (cluster.Epoch, string, bool) {
	if len(rrs) != 1 {
		return 0, "", false
	}
	t, ok := rrs[0].(*mdns.TXT)
	if !ok {
		return 0, "", false
	}
	var e cluster.Epoch
	var member string
	found := false
	for _, s := range t.Txt {
		switch {
		case strings.HasPrefix(s, "epoch="):
			n, err := strconv.ParseInt(strings.TrimPrefix(s, "epoch="), 10, 64)
			if err != nil {
				return 0, "", false
			}
			e, found = cluster.Epoch(n), true
		case strings.HasPrefix(s, "member="):
			member = strings.TrimPrefix(s, "member=")
		}
	}
	return e, member, found
}

// lookup asks the server for name's records of the given types, over TCP
// without recursion, and returns those it holds (owner name and type
// matching; a CNAME answered for an A query is not an A record). The
// answer must be authoritative: the publisher reads what it wrote, not a
// cache.
func (p *Publisher) lookup(ctx context.Context, name string, types ...uint16) ([]mdns.RR, error) {
	var out []mdns.RR
	for _, t := range types {
		q := new(mdns.Msg)
		q.SetQuestion(name, t)
		q.RecursionDesired = false
		r, _, err := p.client().ExchangeContext(ctx, q, p.opts.Server)
		if err != nil {
			return nil, fmt.Errorf("dns: query %s %s at %s: %w", name, mdns.TypeToString[t], p.opts.Server, ctxErr(ctx, err))
		}
		switch {
		case r.Rcode != mdns.RcodeSuccess && r.Rcode != mdns.RcodeNameError:
			return nil, fmt.Errorf("dns: query %s %s at %s: the server answered %s", name, mdns.TypeToString[t], p.opts.Server, mdns.RcodeToString[r.Rcode])
		case !r.Authoritative:
			return nil, fmt.Errorf("dns: query %s %s at %s: the answer is not authoritative: the server must be a primary for zone %s", name, mdns.TypeToString[t], p.opts.Server, p.zone)
		}
		for _, rr := range r.Answer {
			h := rr.Header()
			if h.Rrtype == t && strings.EqualFold(h.Name, name) {
				out = append(out, rr)
			}
		}
	}
	return out, nil
}

func (p *Publisher) client() *mdns.Client {
	return &mdns.Client{Net: "tcp", Timeout: p.opts.Timeout,
		TsigSecret: map[string]string{p.opts.Key.fqdn(): p.opts.Key.secret}}
}

// send signs and sends an update and interprets the answer. Errors name the
// key, never its secret.
func (p *Publisher) send(ctx context.Context, m *mdns.Msg) error {
	k := p.opts.Key
	m.SetTsig(k.fqdn(), k.algorithm.fqdn(), tsigFudge, p.opts.Now().Unix())
	r, _, err := p.client().ExchangeContext(ctx, m, p.opts.Server)
	switch {
	case r != nil && r.Rcode == mdns.RcodeNotAuth,
		err != nil && (errors.Is(err, mdns.ErrAuth) || errors.Is(err, mdns.ErrSig) || errors.Is(err, mdns.ErrKeyAlg) || errors.Is(err, mdns.ErrTime)):
		return fmt.Errorf("the server %s rejected %s: %s: check that the server knows this key with this secret and algorithm, and that the clocks agree within %ds",
			p.opts.Server, k, tsigProblem(r, err), tsigFudge)
	case err != nil:
		return fmt.Errorf("update zone %s at %s: %w", p.zone, p.opts.Server, ctxErr(ctx, err))
	}
	switch r.Rcode {
	case mdns.RcodeSuccess:
		return nil
	case mdns.RcodeYXRrset, mdns.RcodeNXRrset:
		return errPrereq
	case mdns.RcodeRefused:
		return fmt.Errorf("the server %s refused the update of zone %s signed with %s: let the key update the zone (BIND: allow-update { key \"%s\"; }; or an update-policy)",
			p.opts.Server, p.zone, k, k.name)
	case mdns.RcodeNotZone:
		return fmt.Errorf("the server %s is not authoritative for zone %s (%s)", p.opts.Server, p.zone, mdns.RcodeToString[r.Rcode])
	default:
		return fmt.Errorf("the server %s answered the update of zone %s with %s", p.opts.Server, p.zone, mdns.RcodeToString[r.Rcode])
	}
}

// tsigProblem says what the server found wrong with the signature.
func tsigProblem(r *mdns.Msg, err error) string {
	if r != nil {
		if t := r.IsTsig(); t != nil && t.Error != 0 {
			return "TSIG error " + mdns.RcodeToString[int(t.Error)]
		}
		if r.Rcode != mdns.RcodeSuccess {
			s := mdns.RcodeToString[r.Rcode]
			if err != nil {
				s += ", " + err.Error()
			}
			return s
		}
	}
	return err.Error()
}

// ctxErr says that the deadline passed when it did, rather than the bare
// i/o timeout the client reports.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

// readBack polls the server until the primary name holds exactly target
// and the epoch record holds epoch.
func (p *Publisher) readBack(ctx context.Context, target mdns.RR, epoch cluster.Epoch) error {
	return p.poll(ctx, p.name+" "+rrText(target), func() (bool, error) {
		st, err := p.readState(ctx)
		if err != nil {
			return false, err
		}
		return st.epochOK && st.epoch == epoch && st.matches(target), nil
	})
}

// poll runs check until it reports done, every PollInterval, until ctx
// ends; the last error or mismatch is reported then.
func (p *Publisher) poll(ctx context.Context, what string, check func() (bool, error)) error {
	var last error
	for {
		done, err := check()
		if done {
			return nil
		}
		last = err
		t := time.NewTimer(p.opts.PollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			if last == nil {
				last = errors.New("the server still answers the old records")
			}
			return fmt.Errorf("dns: read back %s at %s: %w: %w", what, p.opts.Server, ctx.Err(), last)
		case <-t.C:
		}
	}
}

// sameSet reports whether a and b hold the same records (names, types and
// data; TTLs aside), in any order.
func sameSet(a, b []mdns.RR) bool {
	if len(a) != len(b) {
		return false
	}
	used := make([]bool, len(b))
	for _, x := range a {
		found := false
		for i, y := range b {
			if !used[i] && mdns.IsDuplicate(x, y) {
				used[i], found = true, true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
