package ha

import (
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
	"github.com/hamgr/hamgr/detector"
	"github.com/hamgr/hamgr/lagmon"
)

// Tracker is what an agent remembers between rounds to build its View:
// since when its database has been down and how many starts failed, the
// leader-loss clock and the last leader seen, the epochs it gave up or
// cannot follow, since when its replica has not streamed, when the election
// opened, when the pending switchover handoff was first seen, and its last
// rewind. Package agent and the simulator ha/hasim both keep one, so the
// simulator observes exactly as the agent does. Times are the caller's
// clock; a Tracker reads none. The zero value, with Self set, is ready.
type Tracker struct {
	// Self is this member's name.
	Self string
	// DownSince, FailedStarts, LeaderLostAt, ReleasedEpoch,
	// CannotFollowEpoch, RefusedEpoch, ElectionOpenAt, HandoffSeenAt,
	// RejoinEpoch and RejoinError are the View fields of the same names.
	DownSince         time.Time
	FailedStarts      int
	LeaderLostAt      time.Time
	ReleasedEpoch     cluster.Epoch
	CannotFollowEpoch cluster.Epoch
	RefusedEpoch      cluster.Epoch
	ElectionOpenAt    time.Time
	HandoffSeenAt     time.Time
	RejoinEpoch       cluster.Epoch
	RejoinError       string
	// FailedClones counts clone and re-clone failures in a row; it paces
	// their retries (BackOff).
	FailedClones int
	// FenceEpoch is the leader epoch whose fence step failed
	// FenceFailures times in this run, last with FenceError (the View
	// fields of those names while this member holds that epoch's key).
	FenceEpoch    cluster.Epoch
	FenceFailures int
	FenceError    string
	// AckOffFrom is AckReport.OffFrom for this member's record (nil while
	// unknown); ackOffSeen says the last probe found it not acknowledging
	// (observeAck).
	AckOffFrom *cluster.Position
	ackOffSeen bool
	// LastLeader is the leader's member record as last seen (nil: none).
	LastLeader *cluster.Member
	// Stream is what this agent observed of its replica's WAL stream
	// (ObserveDB; published in the member record by Record).
	Stream StreamObservation
	// LeaderSeenAt is when this agent last saw the leader's agent alive:
	// a read in which the leader's member record differed from the one
	// before (a live agent republishes it every loop_wait).
	LeaderSeenAt time.Time
	// StreamLossSince and lossMark: see ObserveStreamLoss.
	StreamLossSince time.Time
	lossMark        streamLossMark
	// LeaseLostAt, Peers and LastLeaderFreshAt are the View fields of the
	// same names (LeaseLost, ObserveLeader).
	LeaseLostAt       time.Time
	Peers             []string
	LastLeaderFreshAt time.Time
	// StoreLostAt is when this agent's current run of rounds without the
	// store began (zero: it reached the store in its last round). See
	// StoreUnreachable.
	StoreLostAt time.Time

	handoffKey string
}

// StreamObservation is what an agent saw of its replica's WAL stream from
// one sender, on its own clock. It outlives the connection (and restarts
// of the local database): the silence of a sender that stopped answering
// stays on record until a message arrives again.
type StreamObservation struct {
	Host string
	Port int
	// Connected is the latest probe's: the receiver streams from Host:Port.
	Connected bool
	// HeardAt is when the last message from the sender arrived (zero: none
	// seen since this agent started, or since the sender changed).
	HeardAt time.Time
	// SilenceSeen: since HeardAt, a probe found the connection up and the
	// last message older than the ping interval plus silenceSlack.
	SilenceSeen bool
	// Timeout is the receiver's timeout as last reported.
	Timeout time.Duration

	// The previous probe: when, and the last message's age then (-1: not
	// connected, or unknown).
	prevAt  time.Time
	prevAge time.Duration
}

// silenceConfirmGap bounds the time between the two probes that confirm a
// silence: the agent must have been running all along (a witness whose own
// machine was frozen sees a stale age once, before its receiver catches up).
const silenceConfirmGap = 5 * time.Second

// silenceSlack is how far past its ping interval (half the receiver
// timeout) a connected receiver's last message must be for the silence to
// count as seen: a live sender answers a ping at once (within a round
// trip and a scheduling delay), so half a second more is a generous
// allowance for a loaded machine. It was a second before 2026-12-06; a
// silence seen too early is never a failover by itself (the liveness rule
// also needs StreamSilenceBound; the fence's take-over an agent that does
// not answer and a lease unrenewed for loop_wait + 1s).
const silenceSlack = 500 * time.Millisecond

// observe updates the observation from probe st taken at now.
func (o *StreamObservation) observe(now time.Time, st db.Status) {
	if !st.Accepting || st.Role != cluster.RoleReplica {
		o.Connected = false
		return
	}
	if st.UpstreamHost != "" && (st.UpstreamHost != o.Host || st.UpstreamPort != o.Port) {
		*o = StreamObservation{Host: st.UpstreamHost, Port: st.UpstreamPort}
	}
	o.Connected = st.Streaming && st.UpstreamHost != ""
	if st.ReceiverTimeout > 0 {
		o.Timeout = st.ReceiverTimeout
	}
	prevAt, prevAge := o.prevAt, o.prevAge
	o.prevAt, o.prevAge = now, -1
	if !o.Connected || st.LastMessageAge < 0 {
		return
	}
	o.prevAge = st.LastMessageAge
	if at := now.Add(-st.LastMessageAge); at.After(o.HeardAt) {
		if !o.HeardAt.IsZero() && at.Sub(o.HeardAt) > 100*time.Millisecond {
			o.SilenceSeen = false // a new message since the silence
		}
		o.HeardAt = at
	}
	// The silence counts as seen when two probes, with this agent running
	// in between, both found the connection up and the last message older
	// than the ping interval plus the slack, the second as much older as
	// the time between them: nothing arrived in between.
	threshold := o.Timeout/2 + silenceSlack
	gap := now.Sub(prevAt)
	if o.Timeout > 0 && st.LastMessageAge > threshold && prevAge > threshold &&
		gap > 0 && gap <= silenceConfirmGap && st.LastMessageAge >= prevAge+gap-100*time.Millisecond {
		o.SilenceSeen = true
	}
}

// Record renders the observation for the member record at now (nil when
// there is no stream to speak of).
func (o StreamObservation) Record(now time.Time) *cluster.WALStream {
	if o.Host == "" {
		return nil
	}
	w := &cluster.WALStream{Host: o.Host, Port: o.Port, Connected: o.Connected, Heard: !o.HeardAt.IsZero(),
		SilenceSeen: o.SilenceSeen, Timeout: cluster.Duration(o.Timeout)}
	if w.Heard {
		w.Silent = cluster.Duration(now.Sub(o.HeardAt))
	}
	return w
}

// SilenceSoon is how soon the agent should probe again so that a silence
// on a live connection is seen before the receiver drops it: at once when
// the last message is older than the ping interval (0: no hurry).
func (o StreamObservation) SilenceSoon(st db.Status) time.Duration {
	if o.Connected && o.Timeout > 0 && st.LastMessageAge > o.Timeout/2 && !o.SilenceSeen {
		return electionTick
	}
	return 0
}

// LostEpoch is the epoch of the last leader in s: the leadership whose
// loss an election without a leader key is about (0: none).
func LostEpoch(s cluster.Snapshot) cluster.Epoch {
	if s.LastLeader == nil {
		return 0
	}
	return s.LastLeader.Epoch
}

// Record builds this member's record at now from a probe st, in the
// cluster as last read (prev). From base it takes what a probe cannot tell: Name,
// Tags, APIURL, ConnHost, ConnPort, UpdatedAt, and the State and Reason of
// the last decision. A position probed while the leader key is known to be
// absent is marked as measured after the loss of prev's last leader.
func (t *Tracker) Record(now time.Time, base cluster.Member, prev cluster.Snapshot, st db.Status) cluster.Member {
	m := cluster.Member{
		Name: base.Name, Role: st.Role, State: base.State, Reason: base.Reason, Problem: base.Problem,
		Position: st.Position, Received: st.Received, Replayed: st.Replayed,
		Streaming: st.Streaming, APIURL: base.APIURL, ConnHost: base.ConnHost, ConnPort: base.ConnPort,
		Tags: base.Tags, LagBytes: -1, LagSeconds: -1, UpdatedAt: base.UpdatedAt, Diverged: st.Diverged != "",
		Coordinates: st.Coordinates,
	}
	if st.Role == cluster.RoleReplica {
		m.LagSeconds = st.ReplayLagSeconds
	} else if st.Role == cluster.RolePrimary {
		m.LagSeconds = 0
	}
	if m.State == "" {
		// No decision yet (the agent just started): say what was measured.
		m.State = cluster.StateUnknown
		if st.Accepting {
			m.State = cluster.StateRunning
		}
	}
	if !st.Running {
		m.Role = cluster.RoleUnknown
	}
	if l := prev.Leader; l != nil {
		if lm := prev.Member(l.Name); lm != nil {
			if st.Streaming && lm.ConnPort == st.UpstreamPort && lm.ConnHost == st.UpstreamHost {
				m.Upstream = lm.Name
			}
			m.LagBytes = lagmon.Lag(lm.Position, st.Position)
			if l.Name == m.Name {
				m.LagBytes = 0
			}
		}
	}
	if m.WAL = t.Stream.Record(now); m.WAL != nil && !t.LeaderSeenAt.IsZero() {
		m.WAL.LeaderSeen, m.WAL.SinceLeader = true, cluster.Duration(now.Sub(t.LeaderSeenAt))
	}
	if st.Ack != cluster.AckUnknown {
		// st was probed after every action decided on prev, and every
		// later action is decided on prev or a newer snapshot.
		m.Ack = &cluster.AckReport{State: st.Ack}
		if st.Ack == cluster.AckOff && t.AckOffFrom != nil {
			p := *t.AckOffFrom
			m.Ack.OffFrom = &p
		}
		if prev.Sync != nil {
			m.Ack.Epoch, m.Ack.Gen = prev.Sync.Epoch, prev.Sync.Gen
		}
	}
	if prev.Leader == nil && !t.LeaderLostAt.IsZero() {
		// st was probed after this agent saw the leader key gone.
		m.MeasuredAfterLossOf = LostEpoch(prev)
	}
	return m
}

// NeedsFreshRecord reports whether this member's record in s lacks a
// position measured after the current leader loss; the agent then probes
// and publishes again before deciding, so the election compares fresh
// positions.
func (t *Tracker) NeedsFreshRecord(s cluster.Snapshot) bool {
	m := s.Member(t.Self)
	return m == nil || m.MeasuredAfterLossOf != LostEpoch(s)
}

// ObserveLeader maintains the leader-loss clock, the last leader seen and
// when the current switchover handoff was first seen, from a snapshot read
// at now. It reports whether this is the first sight of the leader key
// absent in the current loss.
func (t *Tracker) ObserveLeader(now time.Time, s cluster.Snapshot) (lost bool) {
	if r := s.Request; r != nil && r.Handoff != nil {
		key := fmt.Sprintf("%d/%s/%s", r.Handoff.Epoch, r.Handoff.Target, r.Handoff.Final)
		if key != t.handoffKey {
			t.handoffKey, t.HandoffSeenAt = key, now
		}
	} else {
		t.handoffKey, t.HandoffSeenAt = "", time.Time{}
	}
	if s.Leader == nil {
		if ll := s.LastLeader; ll != nil && t.LastLeaderFreshAt.IsZero() {
			if m := s.Member(ll.Name); m != nil && m.MeasuredAfterLossOf == ll.Epoch {
				t.LastLeaderFreshAt = now
			}
		}
		if t.LeaderLostAt.IsZero() {
			t.LeaderLostAt = now
			return true
		}
		return false
	}
	t.LeaderLostAt, t.ElectionOpenAt, t.LastLeaderFreshAt = time.Time{}, time.Time{}, time.Time{}
	t.Peers = t.Peers[:0]
	for _, m := range s.Members {
		t.Peers = append(t.Peers, m.Name)
	}
	if m := s.Member(s.Leader.Name); m != nil {
		if old := t.LastLeader; old == nil || old.Name != m.Name || !old.UpdatedAt.Equal(m.UpdatedAt) {
			t.LeaderSeenAt = now
		}
		c := *m
		t.LastLeader = &c
	}
	return false
}

// LeaseLost records that this agent found its own session lease gone at
// now.
func (t *Tracker) LeaseLost(now time.Time) { t.LeaseLostAt = now }

// ObserveDB maintains since when the database has been down and since
// when a replica of another leader has not streamed, from probe st and
// snapshot s taken at now.
func (t *Tracker) ObserveDB(now time.Time, st db.Status, s cluster.Snapshot) {
	if st.Accepting && st.Stalled == "" || !st.HasData {
		t.DownSince, t.FailedStarts = time.Time{}, 0
	} else if t.DownSince.IsZero() {
		t.DownSince = now
	}
	t.Stream.observe(now, st)
	t.observeAck(st)
}

// observeAck keeps AckOffFrom: the position of the first probe that found
// the database not acknowledging when the probe before it had found so
// too (nothing it acknowledged can come after it), until a probe finds it
// acknowledging again (or cannot tell).
func (t *Tracker) observeAck(st db.Status) {
	switch {
	case st.Ack != cluster.AckOff:
		t.ackOffSeen, t.AckOffFrom = false, nil
	case !t.ackOffSeen:
		t.ackOffSeen = true
	case t.AckOffFrom == nil:
		p := st.Position
		t.AckOffFrom = &p
	}
}

// StoreUnreachable records a round at now in which the store could not be
// reached. Without the store the agent starts no database (it decides
// nothing but fencing), so the time until the store is back does not
// count against primary_start_timeout: see StoreReachable.
func (t *Tracker) StoreUnreachable(now time.Time) {
	if t.StoreLostAt.IsZero() {
		t.StoreLostAt = now
	}
}

// StoreReachable records a round at now in which the store was reached.
// After rounds without it, the database's down clock (DownSince) resumes
// where it stood when the store was lost, or starts now if the database
// went down meanwhile: a leader whose database its fence stopped during an
// etcd outage, and whose lease etcd kept, restarts it in place rather than
// release the key as if it would not come back.
func (t *Tracker) StoreReachable(now time.Time) {
	if t.StoreLostAt.IsZero() {
		return
	}
	switch {
	case t.DownSince.IsZero():
	case t.DownSince.Before(t.StoreLostAt):
		t.DownSince = t.DownSince.Add(now.Sub(t.StoreLostAt))
	default:
		t.DownSince = now
	}
	t.StoreLostAt = time.Time{}
}

// View returns v with the tracked fields filled in (DBDownSince,
// FailedStarts, LeaderLostAt, LastLeaderPosition, ReleasedEpoch,
// CannotFollowEpoch, RefusedEpoch, HandoffSeenAt, RejoinEpoch, RejoinError, LeaseLostAt,
// Peers, LastLeaderFreshAt). ElectionOpenAt is filled by ObserveOldPrimary.
func (t *Tracker) View(v View) View {
	v.DBDownSince, v.FailedStarts, v.LeaderLostAt = t.DownSince, t.FailedStarts, t.LeaderLostAt
	v.ReleasedEpoch, v.CannotFollowEpoch, v.RefusedEpoch = t.ReleasedEpoch, t.CannotFollowEpoch, t.RefusedEpoch
	v.HandoffSeenAt = t.HandoffSeenAt
	v.RejoinEpoch, v.RejoinError = t.RejoinEpoch, t.RejoinError
	v.LeaseLostAt, v.LastLeaderFreshAt = t.LeaseLostAt, t.LastLeaderFreshAt
	v.Peers = append([]string(nil), t.Peers...)
	if l := v.Snap.Leader; l != nil && l.Epoch == t.FenceEpoch {
		v.FenceFailures, v.FenceError = t.FenceFailures, t.FenceError
	}
	if t.LastLeader != nil {
		v.LastLeaderPosition = t.LastLeader.Position
	}
	if k, ok := streamLossKey(v.Self, v.Snap); ok && k == t.lossMark {
		v.StreamLossSince = t.StreamLossSince
	}
	return v
}

// WantsOldPrimaryProbe reports whether the agent should probe the old
// primary's database for v (rule 3): it runs a replica and a fresh
// snapshot shows no leader.
func WantsOldPrimaryProbe(v View) bool {
	return v.StoreOK && v.Snap.Leader == nil && v.DB.Accepting && v.DB.Role == cluster.RoleReplica
}

// ObserveOldPrimary records the old primary's probe in v and opens the
// election the first time, in the current leader loss, that the old
// primary is proven dead (OldPrimaryLiveness), or, with fencing on, that
// it can be fenced in its place (fenceSubstitutes).
func (t *Tracker) ObserveOldPrimary(v *View, p OldPrimaryProbe) {
	v.OldPrimary = p
	if live, _ := OldPrimaryLiveness(*v); (live == detector.Dead || fenceSubstitutes(*v, live)) && t.ElectionOpenAt.IsZero() {
		t.ElectionOpenAt = v.Now
	}
	v.ElectionOpenAt = t.ElectionOpenAt
}
