package ha

import (
	"fmt"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/election"
)

// Failover before the ttl: the take-over on proof of death.
//
// Without it a primary whose agent and database died together costs the
// whole ttl: the replicas wait for the leader key to expire before the
// election. The take-over shortens that only on proof, while the key is
// still held by the dead leader's lease:
//
//   - every replica's record says its WAL stream is lost (not streaming, no
//     connected receiver), this member's own database and record too: its
//     WAL senders are gone, and every replica's position is final, so the
//     ranking on those records is the election's;
//   - this member is the best candidate of that ranking (the same rule as
//     the election: position, priority, name; synchronous standbys only in
//     synchronous mode);
//   - this agent's checks (LeaderGoneProbe) found the leader's database
//     port and its agent's API port both refusing connections
//     (ECONNREFUSED, not a timeout) TakeOverChecks times in a row over at
//     least TakeOverCheckSpan, all of them made after the snapshot whose
//     key and member record the take-over is conditioned on was read;
//   - the leader's agent is silent: either it left every replica's report
//     of the stream loss unanswered for AgentAnswerTimeout
//     (StreamLossUnanswered: the leader's member record kept the revision
//     it had when this agent first read all those reports, each written
//     after it; a live agent answers each at once by writing its record
//     again, agent.AnswerStreamLoss), or the store, asked after the last
//     check, says its lease has gone unrenewed for at least
//     TakeOverUnrenewed (loop_wait + 1s): longer than a live agent
//     connected to the store lets it go.
//
// The key is then taken by dcs.LeaderLease.TakeOverLeader: deleted only
// while it is still the same epoch on the same lease and the old leader's
// member record has not been written since that snapshot, and created at
// once for this member under a new epoch (the ordinary create-if-absent,
// conditioned on last_leader still being the lost epoch); then the old
// lease is revoked.
//
// Why this cannot leave two writable primaries. A database runs as a
// primary only while its agent holds the key on its current lease (rule
// 1). A refusal on the database port means no postmaster listens there:
// the server is gone, and the backends of a dead postmaster exit at their
// next wait (the liveness rule's refused). A refusal on the API port means
// no agent serves there: the agent serves its API for its whole life (it
// exits when its listener fails), so the agent process is gone. Nothing
// else starts the database as a primary on that node: only its agent,
// once back, and a restarted agent (a new process, a new lease) must
// first take the key on its new lease — which gives the key a new create
// revision — and it publishes its member record in every round, before
// any decision of that round is executed, so before it could start its
// database as a primary. Either write makes the take-over's guard fail,
// and the take-over changes nothing. The guard's snapshot is read before
// the first check: a restart anywhere between the first check and the
// guard is caught by the guard, a restart before the first check answers
// the checks on the API port (or has already rewritten the record). The
// repeated checks (TakeOverChecks over TakeOverCheckSpan) only add margin
// against a listener caught between close and reopen; the guard is what
// the argument rests on. After the take-over, the old lease is revoked at
// once: etcd cannot revoke in a transaction, but revoking right after is
// enough, since the old agent is gone (a new one has a new lease and finds
// another leader, rule 1) and, were it somehow alive, its renewals fail
// from then on, so its fence timer stops its database within
// loop_wait + retry_timeout of its last renewal, as for any lost lease,
// while its rounds see the new leader and stop it at once (rule 1). Until
// the revocation the old member record stays: it only keeps candidates from
// counting the old leader's record as gone, which nothing here relies on.
//
// The refusals alone are forged by a firewall that rejects (a TCP reset
// or an ICMP port-unreachable) the replicas' connections to a primary
// that lives: its replicas lose their streams, both ports "refuse", and
// yet its agent renews its lease and its database takes writes from
// clients that still reach it. That is what the silence condition is
// for: such an agent renews every loop_wait, so its lease never goes
// unrenewed for loop_wait + 1s; and it answers the replicas' reports. The
// candidate's AgentAnswerTimeout runs from its own read of a snapshot that
// already held reports written after the leader's record, so each was in
// the store, and on the leader's watch, at least that long before the
// guard is checked: a live agent's answer within it moves the revision the
// guard is conditioned on, and the take-over fails; the key then expires
// like any other failover's (where the agent, had it lost the store too,
// has fenced itself). What neither test tells apart is an agent that lives
// but is silent for another reason — cut off from the store, its watch
// broken, or too starved of CPU to answer within half a second — behind
// such a firewall at the same time: then its database runs on until its
// fence deadline (last renewal sent + loop_wait + retry_timeout) or its
// next round, whichever comes first. Fencing policy require closes that
// too: the old primary is powered off before the promotion.
//
// A timeout on either port proves nothing (a frozen machine, a firewall
// that drops): the take-over on proof of death does not happen and the
// leader key's expiry, with the liveness rule, decides as before — unless
// fencing require gives the second proof (proofFence): every replica's
// stream lost or silent, the leader's agent giving no answer on its API
// within AgentAnswerTimeout, and the same lease condition. The key is then
// taken by the same guarded TakeOverLeader with evidence fence, and the
// promotion's fence step has the BMC confirm the power-off before the
// database is promoted. Why that cannot leave two writable primaries: the
// old primary is confirmed off before the new one takes a write, whatever
// its agent was doing; the take-over itself only moves the key and
// revokes a lease that a live agent answers by fencing itself. A restarted
// old agent is caught by the guard as above. Fencing policy require still
// fences before promoting (the fence step follows the key as for any
// promotion); evidence refused-early is recorded in the promotion record
// and the history entry.

// TakeOverChecks and TakeOverCheckSpan are the proof of death's checks of
// the leader's ports: that many in a row, both ports refusing, spread over
// at least the span (first to last). Each check connects once to each
// port with a short timeout (a connection refused comes back within a
// round trip). 300 ms is a tenth of the smallest loop_wait and a small
// part of the 1 s target; three checks make one stray listener caught
// between close and reopen (a server restarting in place by its own
// agent, which then also answers on its API port) fail the proof, not
// pass it.
const (
	TakeOverChecks    = 3
	TakeOverCheckSpan = 300 * time.Millisecond
)

// LeaderGoneProbe is this agent's check of whether the leader's database
// port and its agent's API port refuse connections, made while another
// member holds the leader key and every replica reports its stream from it
// lost (WantsLeaderGoneProbe).
type LeaderGoneProbe struct {
	// Leader is the key the checks were made under; MemberRev the revision
	// of the leader's member record in the snapshot read before the first
	// check (0: it had none). The take-over is conditioned on both.
	Leader    cluster.Leader
	MemberRev int64
	// DB and API are the addresses checked (host:port).
	DB, API string
	// Refused counts the checks in a row in which both refused; Over is
	// the time from the first check to the last.
	Refused int
	Over    time.Duration
	// Answer describes the first check in which either port did not
	// refuse ("" when every check found both refusing).
	Answer string
	// Unrenewed is a lower bound on how long the leader's lease had gone
	// without a renewal, from the store's answer read after the last
	// check (dcs.LeaseTTL.UnrenewedFor; 0 when it was not read).
	Unrenewed time.Duration
	// Unreached, when the ports did not both refuse and WantsFenceProbe,
	// says how the leader's agent failed to answer a request on its API
	// within AgentAnswerTimeout ("": it answered, or was not asked).
	Unreached string
	// Done is when the probe ended, on the caller's clock (zero: unknown).
	Done time.Time
}

// AgentAnswerTimeout bounds the request to the leader's agent API of a
// fence's take-over: a live agent answers at once; one that does not
// within half a second, with its lease unrenewed for a second, is fenced.
// The lease condition, not this timeout, is what keeps a live agent that
// still reaches the store from being fenced; a live agent that no longer
// reaches it fences itself anyway.
const AgentAnswerTimeout = 500 * time.Millisecond

// TakeOverRenewSlack is how late a live agent's renewal may reach the
// store before its lease counts as no longer renewed: an agent renews
// every loop_wait (agent.Renew), and a second covers its scheduling and
// the request's way to the store. etcd reports a lease's time left in
// whole seconds, so a bound under a second would only be rounded up to
// the next one.
const TakeOverRenewSlack = time.Second

// streamLossMark is the leadership, and the revision of the leader's
// member record, under which a stream loss was seen (ObserveStreamLoss).
type streamLossMark struct {
	epoch cluster.Epoch
	lease int64
	rev   int64
}

// streamLossKey is the mark of snapshot s, read by member self, when it
// shows another member leading as a primary and every replica's record
// (this member's too) reporting its stream lost (ReportsStreamLoss), each
// written after the leader's own record; false otherwise.
func streamLossKey(self string, s cluster.Snapshot) (streamLossMark, bool) {
	l := s.Leader
	if l == nil || l.Name == self {
		return streamLossMark{}, false
	}
	lm := s.Member(l.Name)
	if lm == nil || lm.Role != cluster.RolePrimary {
		return streamLossMark{}, false
	}
	n := 0
	for _, m := range s.Members {
		if m.Name == l.Name || m.Role != cluster.RoleReplica && m.Name != self {
			continue
		}
		if !m.ReportsStreamLoss() || m.Revision <= lm.Revision {
			return streamLossMark{}, false
		}
		n++
	}
	return streamLossMark{epoch: l.Epoch, lease: l.Lease, rev: lm.Revision}, n > 0
}

// ObserveStreamLoss records snapshot s, read before now: StreamLossSince
// becomes now the first time s shows every replica's stream loss
// reported after the leader's member record was last written
// (streamLossKey), stays while later reads show the same leader record,
// and is cleared otherwise. now must be taken after the read, so that
// every record in s was written before it.
func (t *Tracker) ObserveStreamLoss(now time.Time, s cluster.Snapshot) {
	k, ok := streamLossKey(t.Self, s)
	switch {
	case !ok:
		t.lossMark, t.StreamLossSince = streamLossMark{}, time.Time{}
	case k != t.lossMark || t.StreamLossSince.IsZero():
		t.lossMark, t.StreamLossSince = k, now
	}
}

// StreamLossUnanswered reports whether, at v.Now, the leader's agent has
// left the replicas' stream loss unanswered for AgentAnswerTimeout: its
// member record, as in v.Snap, was already the one read when every
// replica's report of the loss was first seen after it that long ago.
func StreamLossUnanswered(v View) bool {
	return !v.StreamLossSince.IsZero() && v.Now.Sub(v.StreamLossSince) >= AgentAnswerTimeout
}

// TakeOverUnrenewed is how long the leader's lease must have gone without
// a renewal, as the store saw it, before the take-over: a live agent
// connected to the store would have renewed within it.
func TakeOverUnrenewed(cfg cluster.DynamicConfig) time.Duration {
	return time.Duration(cfg.LoopWait) + TakeOverRenewSlack
}

// unreached reports whether p found the agent of leader l, whose member
// record is at revision rev, not answering on its API.
func (p LeaderGoneProbe) unreached(l cluster.Leader, rev int64) bool {
	return p.About(l, rev) && p.Unreached != ""
}

// About reports whether p was made under leader l (same epoch and lease)
// with its member record at revision rev.
func (p LeaderGoneProbe) About(l cluster.Leader, rev int64) bool {
	return p.Leader.Epoch == l.Epoch && p.Leader.Lease == l.Lease && p.MemberRev == rev
}

// refused reports whether p found both ports of leader l whose member
// record is at revision rev refusing, as many times and over as long as
// the proof of death asks.
func (p LeaderGoneProbe) refused(l cluster.Leader, rev int64) bool {
	return p.About(l, rev) && p.Answer == "" && p.Refused >= TakeOverChecks && p.Over >= TakeOverCheckSpan
}

// silentAgent says which test found the leader's agent silent for the
// take-over's evidence: the lease read unrenewed for need, or the
// replicas' reports left unanswered (StreamLossUnanswered).
func silentAgent(v View, g LeaderGoneProbe, need time.Duration) string {
	if g.Unrenewed >= need {
		return fmt.Sprintf("its lease went unrenewed for at least %s", g.Unrenewed.Round(10*time.Millisecond))
	}
	return fmt.Sprintf("its agent left the replicas' reports of the stream loss unanswered for %s", v.Now.Sub(v.StreamLossSince).Round(10*time.Millisecond))
}

// streamLossTick is the shortest wait for the round that finds the
// leader's answer to the stream loss overdue (StreamLossUnanswered).
const streamLossTick = 20 * time.Millisecond

// takeOverTick is how soon a replica re-runs its round while a take-over's
// proof is pending after the leader link dropped (proofPending): the WAL
// receivers notice a dead sender within a round trip, and each round
// publishes this member's record.
const takeOverTick = 100 * time.Millisecond

// proofTick is how soon a replica re-runs its round while the proof of
// death may be on its way (proofPending): each of these rounds can hold up
// the take-over, by the time between two, until the last replica's report
// is in.
const proofTick = 50 * time.Millisecond

// proofPending reports whether this member should re-run its round soon
// because the proof of death may be on its way: the link to the leader's
// agent dropped less than a ttl ago, this member runs a replica, and
// either its own stream is not yet seen lost or another replica's report
// is pending. The ttl bounds it: an agent that only restarted (its link
// back, its stream never lost) costs a few rounds more, and nothing polls
// while nothing happens.
func proofPending(v View, pending string) bool {
	l := v.Snap.Leader
	if v.LeaderLinkLost.IsZero() || v.Now.Sub(v.LeaderLinkLost) >= time.Duration(v.Config.TTL) || l == nil || l.Name == v.Self {
		return false
	}
	if pending != "" {
		return true
	}
	return v.DB.Running && v.DB.Accepting && v.DB.Role == cluster.RoleReplica && v.DB.Streaming
}

// WantsLeaderGoneProbe reports whether the agent should check the leader's
// ports this round: it would take the key over on proof of death, or on a
// fence (WantsFenceProbe).
func WantsLeaderGoneProbe(v View) bool {
	ok, _ := takeOverCandidate(v, proofRefused)
	return ok || WantsFenceProbe(v)
}

// WantsFenceProbe reports whether the agent should, when the leader's
// ports do not both refuse, read the leader's lease and ask its agent's
// API (LeaderGoneProbe.Unreached): it would take the key over to fence
// the leader.
func WantsFenceProbe(v View) bool {
	ok, _ := takeOverCandidate(v, proofFence)
	return ok
}

// proofKind is which proof a take-over rests on.
type proofKind int

const (
	// proofRefused: both ports refuse (the proof of death).
	proofRefused proofKind = iota
	// proofFence: the lease went unrenewed and the agent gives no answer;
	// the power-off, confirmed before the promotion, is the proof.
	proofFence
)

// streamLost reports whether a member's record says it streams from
// nobody.
func streamLost(m cluster.Member) bool { return m.StreamLost() }

// streamGone is streamLost, or, for a fence's take-over, a stream whose
// sender stopped answering the receiver's ping (WALStream.SilenceSeen): a
// frozen or powered-off primary's connections stay up until the
// receiver's timeout, while its positions no longer move.
func streamGone(m cluster.Member, k proofKind) bool {
	return streamLost(m) || k == proofFence && m.WAL != nil && m.WAL.SilenceSeen
}

// takeOverCandidate reports whether this member would take the key over
// on proof k, or, when not, why it waits for the replicas' reports ("" when
// it is no take-over candidate at all). A fence's take-over needs fencing
// require and a fencer for the leader here.
func takeOverCandidate(v View, k proofKind) (bool, string) {
	l := v.Snap.Leader
	if !v.StoreOK || l == nil || l.Name == v.Self || v.Config.Paused || v.Tags.NoFailover || v.Snap.Request != nil || v.Busy != "" {
		return false, ""
	}
	if k == proofFence && (fencingPolicy(v) != cluster.FencingRequire || !v.canFence(l.Name)) {
		return false, ""
	}
	self := v.Snap.Member(v.Self)
	if !v.DB.Running || !v.DB.Accepting || v.DB.Role != cluster.RoleReplica || v.CannotFollowEpoch == l.Epoch ||
		v.DB.Streaming && (k == proofRefused || self == nil || !streamGone(*self, k)) {
		return false, ""
	}
	if lm := v.Snap.Member(l.Name); lm == nil || lm.Role != cluster.RolePrimary {
		// Only a leader that ran its database as a primary is taken over
		// (not one still promoting or starting: its agent answers anyway).
		return false, ""
	}
	var pending []string
	for _, m := range v.Snap.Members {
		if m.Name != l.Name && (m.Role == cluster.RoleReplica || m.Name == v.Self) && !streamGone(m, k) {
			pending = append(pending, m.Name)
		}
	}
	if len(pending) > 0 {
		return false, fmt.Sprintf("%s lost? waiting for %s to report its stream lost", l.Name, strings.Join(pending, ", "))
	}
	if _, ok := failsafeElection(v, l.Epoch); ok {
		return false, ""
	}
	res, ok := takeOverRank(v, *l)
	return ok && res.Index(v.Self) == 0, ""
}

// takeOverRank ranks the candidates to take the key over from leader l,
// as an election would (false: synchronous mode allows none).
func takeOverRank(v View, l cluster.Leader) (election.Result, bool) {
	members, maxLag, why, _ := syncCandidates(v, l.Epoch)
	if why != "" {
		return election.Result{}, false
	}
	return election.Rank(members, election.Options{OldPrimary: l.Name, MaximumLag: maxLag, Reference: oldPrimaryPosition(v, l.Name)}), true
}

// takeOver turns the follower's plan p into the take-over of the leader
// key on proof of death or to fence the leader, or, while a proof is
// pending, asks for the next round soon. It returns p unchanged otherwise.
func takeOver(v View, p Plan) Plan {
	refused, pending := takeOverCandidate(v, proofRefused)
	fence, fencePending := takeOverCandidate(v, proofFence)
	if !refused && !fence {
		// A fence's take-over is pending when this member's own stream
		// went silent and another replica's report is not in yet: they
		// publish it within a round of seeing it.
		switch {
		case proofPending(v, pending):
			p.Soon = proofTick
		case fencePending != "":
			p.Soon = takeOverTick
		}
		return p
	}
	l := *v.Snap.Leader
	rev := v.Snap.Member(l.Name).Revision // takeOverCandidate: the record exists
	g := v.LeaderGone
	need := TakeOverUnrenewed(v.Config)
	var ev *cluster.Evidence
	switch {
	case refused && g.refused(l, rev) && (g.Unrenewed >= need || StreamLossUnanswered(v)):
		ev = &cluster.Evidence{Kind: cluster.EvidenceRefusedEarly, Detail: fmt.Sprintf(
			"%s's database %s and agent API %s refused connections %d times in a row over %s, %s, and every replica lost its stream, while its key (epoch %d) was still held",
			l.Name, g.DB, g.API, g.Refused, g.Over.Round(10*time.Millisecond), silentAgent(v, g, need), l.Epoch)}
	case fence && g.unreached(l, rev) && (g.Unrenewed >= need || StreamLossUnanswered(v)):
		ev = &cluster.Evidence{Kind: cluster.EvidenceFence, Detail: fmt.Sprintf(
			"%s: %s, its agent API did not answer (%s), and every replica's stream from it is lost or silent, while its key (epoch %d) was still held; fencing require: promoting only once its power-off is confirmed",
			l.Name, silentAgent(v, g, need), g.Unreached, l.Epoch)}
	case g.refused(l, rev) || g.unreached(l, rev):
		// The ports refuse or the agent gives no answer, but the lease
		// was renewed too recently to rule out a live agent (behind a
		// firewall that rejects, or only slow to answer): look again
		// once it could have gone unrenewed long enough. The store
		// answers in whole seconds, so the bound read (a lower bound)
		// may step up at any moment within the next second: from a
		// second before it could reach need, look every takeOverTick.
		p.Soon = min(max(takeOverTick, need-g.Unrenewed-time.Second-TakeOverCheckSpan), time.Duration(v.Config.LoopWait))
		what := "ports refuse connections"
		if !g.refused(l, rev) {
			what = "agent does not answer"
		}
		p.Reason = fmt.Sprintf("%s's %s; taking over once its lease has gone unrenewed for %s", l.Name, what, need)
		if !v.StreamLossSince.IsZero() {
			// The answer to the stream loss may be overdue first: look
			// again then (the wait runs from about the probe's end).
			from := v.Now
			if g.Done.After(from) {
				from = g.Done
			}
			p.Soon = min(p.Soon, max(streamLossTick, v.StreamLossSince.Add(AgentAnswerTimeout).Sub(from)))
			p.Reason += fmt.Sprintf(", or its agent leaves the replicas' reports of the stream loss unanswered for %s", AgentAnswerTimeout)
		}
		return p
	default:
		return p
	}
	target, tev := owedFence(v, l.Name, ev)
	if why, problem := fencingBlocks(v, target, tev); why != "" {
		p.Reason, p.Problem = why, problem
		return p
	}
	if why := flapping(v, v.Snap.LastLeader); why != "" {
		return p
	}
	rec := newPromotion(v, cluster.HistoryFailover, l.Epoch, l.Name, ev)
	res, _ := takeOverRank(v, l)
	rec.Errant = res.Errant
	acts := promotionPlan(v, rec)
	acts[0] = AcquireLeader{Evidence: ev, Promotion: &rec, Over: &TakeOver{Leader: l, MemberRev: rev}}
	why := "its agent and database are gone"
	if ev.Kind == cluster.EvidenceFence {
		why = "its lease is not renewed and its agent does not answer; fencing it before promoting"
	}
	return Plan{Actions: acts, State: cluster.StateStarting,
		Reason: withDivergence(fmt.Sprintf("taking over from %s before its key expires: %s (%s)", l.Name, why, ev.Kind), res)}
}
