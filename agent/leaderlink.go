package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/ha"
)

// The failover before the ttl (ha/takeover.go) needs two things from the
// agent: an event when the leader's agent dies, and the check of the
// leader's ports.
//
// The event is the leader link: while another member leads, Run holds one
// idle GET /alive to the leader agent's API (it answers at once and then
// sends nothing). The leader's kernel closes the connection the moment
// the agent process dies, and the loop is woken at once; the drop's time
// goes into the View (LeaderLinkLost), and for a ttl after it a candidate
// whose own stream is lost re-runs its round every electionTick while the
// other replicas' reports are pending. A failed connect is no event (the
// link is retried at the next round, at most once per round), and a held
// link costs no CPU: no polling faster than loop_wait while nothing
// happens.

// Reacher checks whether addresses refuse connections: the take-over's
// proof of death (ha.LeaderGoneProbe).
type Reacher interface {
	// Refusals checks every address in addrs n times, spread evenly over
	// span, and returns how many checks in a row (from the first) found
	// every address refusing the connection (ECONNREFUSED), the time from
	// the first check to the last, and a description of the first answer
	// that was not a refusal ("" when there was none). It stops at the
	// first such answer.
	Refusals(ctx context.Context, addrs []string, n int, span time.Duration) (int, time.Duration, string)
	// AgentAnswers asks the agent API at apiURL for an answer (GET
	// /alive) within timeout, and returns "" when it answered, or how it
	// did not.
	AgentAnswers(ctx context.Context, apiURL string, timeout time.Duration) string
}

// tcpReacher is the Reacher of real networks: one TCP connect per address
// and check, and the leader link's request for an agent's answer.
type tcpReacher struct {
	link LeaderLinker
}

// AgentAnswers implements Reacher with the leader link's GET /alive: the
// agent answered once the link connects.
func (r tcpReacher) AgentAnswers(ctx context.Context, apiURL string, timeout time.Duration) string {
	if r.link == nil {
		return "" // nothing to ask with: count it as an answer (no fence's take-over)
	}
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	answered := false
	err := r.link.Hold(cctx, apiURL, func() { answered = true; cancel() })
	switch {
	case answered:
		return ""
	case err != nil:
		return err.Error()
	}
	return fmt.Sprintf("no answer from %s within %s", apiURL, timeout)
}

// reachTimeout bounds one connect: a refusal comes back within a round
// trip; anything slower is no refusal.
const reachTimeout = 200 * time.Millisecond

// Refusals implements Reacher with TCP connects.
func (tcpReacher) Refusals(ctx context.Context, addrs []string, n int, span time.Duration) (int, time.Duration, string) {
	start := time.Now()
	gap := time.Duration(0)
	if n > 1 {
		gap = span / time.Duration(n-1)
	}
	d := net.Dialer{Timeout: reachTimeout}
	for i := 0; i < n; i++ {
		if i > 0 {
			t := time.NewTimer(time.Until(start.Add(time.Duration(i) * gap)))
			select {
			case <-ctx.Done():
				t.Stop()
				return i, time.Since(start), "check interrupted: " + ctx.Err().Error()
			case <-t.C:
			}
		}
		for _, addr := range addrs {
			c, err := d.DialContext(ctx, "tcp", addr)
			if err == nil {
				c.Close()
				return i, time.Since(start), addr + " accepted a connection"
			}
			if !errors.Is(err, syscall.ECONNREFUSED) {
				return i, time.Since(start), fmt.Sprintf("%s: %v (not a refusal)", addr, err)
			}
		}
	}
	return n, time.Since(start), ""
}

// probeLeaderGone checks the ports of the leader in v's snapshot: its
// database at its member record's address and its agent's API at its
// record's URL. The record's revision, read with the snapshot before the
// checks, is the take-over's guard.
func (a *Agent) probeLeaderGone(ctx context.Context, v ha.View) ha.LeaderGoneProbe {
	l := *v.Snap.Leader
	p := ha.LeaderGoneProbe{Leader: l}
	m := v.Snap.Member(l.Name)
	if m == nil || m.APIURL == "" || m.ConnHost == "" || m.ConnPort == 0 {
		p.Answer = "the leader's member record gives no database address or API URL"
		return p
	}
	p.MemberRev = m.Revision
	p.DB = net.JoinHostPort(m.ConnHost, fmt.Sprint(m.ConnPort))
	api, err := apiHostPort(m.APIURL)
	if err != nil {
		p.Answer = err.Error()
		return p
	}
	p.API = api
	if q, ok := a.stillRefused(ctx, v, p); ok {
		return q
	}
	r := a.reacher()
	p.Refused, p.Over, p.Answer = r.Refusals(ctx, []string{p.DB, p.API}, ha.TakeOverChecks, ha.TakeOverCheckSpan)
	if p.Answer != "" && ha.WantsFenceProbe(v) {
		p.Unreached = r.AgentAnswers(ctx, m.APIURL, ha.AgentAnswerTimeout)
	}
	var leaseErr error
	if p.Answer == "" || p.Unreached != "" {
		// Read after the last check: the later, the more a renewal by a
		// live agent (behind a rejecting firewall, or slow to answer) is
		// seen.
		p.Unrenewed, leaseErr = a.leaseUnrenewed(ctx, l.Lease, time.Duration(v.Config.RetryTimeout)/2)
	}
	if p.Answer == "" && leaseErr == nil {
		a.lastRefused, a.lastRefusedAt = p, a.clk.Now()
	}
	key := fmt.Sprintf("%d/%d/%s/%v/%v/%v", l.Epoch, p.Refused, p.Answer, p.Unreached != "", p.Unrenewed >= ha.TakeOverUnrenewed(v.Config), leaseErr)
	if key != a.lastGoneLog {
		a.lastGoneLog = key
		a.log.Info("checked the leader's ports, agent and lease for the take-over", "leader", l.Name, "epoch", l.Epoch,
			"database", p.DB, "api", p.API, "refused", p.Refused, "over", p.Over.Round(time.Millisecond), "answer", p.Answer,
			"agent_unreached", p.Unreached, "lease_unrenewed_at_least", p.Unrenewed, "lease_err", leaseErr)
	}
	return p
}

// reacher is Options.Reach, or TCP connects and the leader link when none
// was given.
func (a *Agent) reacher() Reacher {
	if a.opts.Reach != nil {
		return a.opts.Reach
	}
	return tcpReacher{link: a.opts.Link}
}

// refusedRecheck is how long the port checks of a leader-gone probe that
// were all refused stand in for new ones while only the lease is read
// (stillRefused).
const refusedRecheck = time.Second

// stillRefused: while the leader's ports were all refused less than
// refusedRecheck ago (the same leader key, lease and member record), a
// round reads the lease first, not the ports again (0.3 s of checks).
// While the lease has not gone unrenewed long enough, nor the leader's
// answer to the stream loss become overdue (ha.StreamLossUnanswered),
// that read is all: the probe of then, with the lease read now. Once
// either holds, the round checks both ports once more and reads the lease
// again after that check; if the ports still refuse, the probe is the
// earlier checks and this one, with the lease read last. It reports false,
// and the caller checks the ports afresh, when none of this applies or the
// new check is not a refusal. A take-over (ha.takeOver: refused, and the
// lease unrenewed at least TakeOverUnrenewed or the answer overdue)
// therefore always rests on a port check made in its own round, as the
// proof requires, without waiting another TakeOverCheckSpan once the
// lease or the overdue answer allows it.
func (a *Agent) stillRefused(ctx context.Context, v ha.View, p ha.LeaderGoneProbe) (ha.LeaderGoneProbe, bool) {
	prev, at := a.lastRefused, a.lastRefusedAt
	if at.IsZero() || a.clk.Now().Sub(at) >= refusedRecheck ||
		!prev.About(p.Leader, p.MemberRev) || prev.DB != p.DB || prev.API != p.API {
		return p, false
	}
	timeout := time.Duration(v.Config.RetryTimeout) / 2
	need := ha.TakeOverUnrenewed(v.Config)
	u, err := a.leaseUnrenewed(ctx, p.Leader.Lease, timeout)
	if err != nil {
		return p, false
	}
	if u < need && !ha.StreamLossUnanswered(v) {
		prev.Unrenewed = u
		return prev, true
	}
	if n, _, answer := a.reacher().Refusals(ctx, []string{p.DB, p.API}, 1, 0); n != 1 || answer != "" {
		return p, false
	}
	if u, err = a.leaseUnrenewed(ctx, p.Leader.Lease, timeout); err != nil {
		return p, false
	}
	prev.Refused++
	prev.Over += a.clk.Now().Sub(at)
	prev.Unrenewed = u
	a.lastRefused, a.lastRefusedAt = prev, a.clk.Now()
	return prev, true
}

// leaseUnrenewed reads from the store a lower bound on how long lease id
// has gone without a renewal (0 and the error when it cannot be read; a
// lease already gone leaves the next round to the ordinary election).
func (a *Agent) leaseUnrenewed(ctx context.Context, id int64, timeout time.Duration) (time.Duration, error) {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ttl, err := a.opts.Store.LeaseTimeToLive(rctx, id)
	if err != nil {
		return 0, fmt.Errorf("reading the leader's lease: %w", err)
	}
	return ttl.UnrenewedFor(), nil
}

// apiHostPort is the host:port of an API base URL.
func apiHostPort(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("the leader's API URL %q has no host", raw)
	}
	if u.Port() != "" {
		return u.Host, nil
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port), nil
}

// linkTargetOf is the API URL of the leader this agent should hold a link
// to: another member leads and has published its API URL ("" otherwise).
func linkTargetOf(self string, s cluster.Snapshot) string {
	if s.Leader == nil || s.Leader.Name == self {
		return ""
	}
	if m := s.Member(s.Leader.Name); m != nil {
		return m.APIURL
	}
	return ""
}

// setLinkTarget tells the leader link which URL to hold, after a round;
// a held link to another URL is dropped (without counting as a loss).
func (a *Agent) setLinkTarget(target string) {
	a.mu.Lock()
	if target != a.linkTarget {
		a.linkTarget = target
		if a.linkCancel != nil {
			a.linkCancel()
		}
	}
	a.mu.Unlock()
	signal(a.linkWake)
}

// LeaderLinker holds the leader link (package api implements it with
// GET /alive).
type LeaderLinker interface {
	// Hold connects to the agent API at apiURL and, once connected, calls
	// connected and blocks until the connection drops (then it returns
	// nil) or ctx ends. It returns an error when it could not connect.
	Hold(ctx context.Context, apiURL string, connected func()) error
}

// runLink holds the leader link until ctx ends: after each round it
// (re)connects if it holds none to the current target. Without
// Options.Link there is no link (and no event: the take-over then starts
// at the rounds).
func (a *Agent) runLink(ctx context.Context) {
	if a.opts.Link == nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.linkWake:
		}
		a.mu.Lock()
		target := a.linkTarget
		a.mu.Unlock()
		if target != "" {
			a.holdLink(ctx, target)
		}
	}
}

// holdLink holds the link to target until it drops or the target
// changes. A drop of a held link is the event: its time is noted for the
// View and the loop is woken.
func (a *Agent) holdLink(ctx context.Context, target string) {
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	a.mu.Lock()
	if a.linkTarget != target {
		a.mu.Unlock()
		return
	}
	a.linkCancel = cancel
	a.mu.Unlock()
	held := false
	err := a.opts.Link.Hold(lctx, target, func() {
		held = true
		a.mu.Lock()
		a.linkLostAt = time.Time{}
		a.mu.Unlock()
	})
	if err != nil || !held || lctx.Err() != nil {
		return // no link made (retried after the next round), or not a loss
	}
	a.mu.Lock()
	a.linkLostAt = a.clk.Now()
	a.mu.Unlock()
	a.log.Info("connection to the leader's agent dropped", "leader_api", target)
	a.poke()
}
