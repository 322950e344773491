package ha

import (
	"fmt"
	"slices"
	"sort"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Synchronous replication on an engine whose primary accepts a commit's
// acknowledgement from any replica that has acknowledging on
// (db.AcksAny: MariaDB and MySQL semi-synchronous replication).
//
// The primary waits for some acknowledgement, not for named standbys;
// hamgr chooses who can acknowledge by where acknowledging is on, which
// each replica's agent sets from the store's record (cluster.SyncState):
//
//   - Members may have acknowledged a commit of the epoch, a superset of
//     the members acknowledging at any instant. A member enters Members
//     before it is asked to acknowledge (Acking), and leaves it only after
//     it reported acknowledging off (cluster.AckReport) under the current
//     record, which no longer asks it to, and another member of Members
//     holds all it held then (it may have been the only one to
//     acknowledge a commit). So every acknowledged commit of the epoch is
//     held by some member of Members.
//   - Async is set before the primary stops waiting (commits are then
//     acknowledged without a copy: durability at risk) and cleared only
//     after it waits again, so while it is clear every acknowledged commit
//     is on a member of Members.
//   - An election while Async is clear must hear a final position (its
//     stream from the old primary lost) from every member of Members; the
//     most advanced of them holds every acknowledged commit: they all hold
//     prefixes of the one primary's history. With one acknowledger asked
//     (synchronous_node_count 1) that is the member itself.
//   - A new leader carries the members of the record it found over into a
//     record of its own epoch before it promotes (promotionSteps), since
//     the replicas with acknowledging on repoint to it with it on.
//
// In mode on, when no member asked to acknowledge does, or a member of
// Members cannot be heard (an election would wait for it), the primary
// stops waiting (durability at risk) rather than block commits or
// failover. In strict it always waits.

// acksAny reports whether the engine takes any replica's acknowledgement.
func acksAny(v View) bool { return v.Engine.Synchronous && v.Engine.Acks == db.AcksAny }

// decideSemiSync: a healthy leader's synchronous replication on an AcksAny
// engine, one step per round.
func decideSemiSync(v View) Plan {
	mode := v.Config.SynchronousMode
	l, rec := v.Snap.Leader, v.Snap.Sync
	if v.Repl == nil {
		return Plan{State: cluster.StateRunning, Reason: "synchronous mode: standbys not measured yet"}
	}
	if rec == nil || rec.Epoch != l.Epoch {
		if rec == nil && !mode.Enabled() {
			if v.Repl.SyncAny {
				return Plan{Actions: []Action{SetSyncStandbys{}}, State: cluster.StateRunning,
					Reason: "synchronous_mode off: making replication asynchronous"}
			}
			return Plan{State: cluster.StateRunning}
		}
		return Plan{Actions: []Action{carrySyncRecord(v, v.Repl.SyncAny)}, State: cluster.StateRunning,
			Reason: "synchronous mode: starting this epoch's record with the members that may acknowledge"}
	}
	var want []string
	switch mode {
	case cluster.SyncOn:
		want = desiredSync(v, rec.Acking)
	case cluster.SyncStrict:
		// Every streaming replica acknowledges: one that streamed
		// without acknowledging while commits waited could never
		// acknowledge them once asked (see the package comment).
		want = pickStandbys(v, rec.Acking, -1)
	}
	if mode.Enabled() {
		// Members asked that are on their way to follow stay asked:
		// their stream starts acknowledging (awaitsSyncRecord).
		for _, name := range intersect(rec.Acking, followersToCome(v)) {
			if !slices.Contains(want, name) {
				want = append(want, name)
			}
		}
		sort.Strings(want)
	}
	if add := minus(want, rec.Members); len(add) > 0 {
		names := append(slices.Clone(rec.Members), add...)
		sort.Strings(names)
		return Plan{Actions: []Action{SetSyncRecord{Names: names, Acking: rec.Acking, Async: rec.Async}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("synchronous mode: recording %v before asking them to acknowledge", add)}
	}
	if !sameSet(rec.Acking, want) {
		return Plan{Actions: []Action{SetSyncRecord{Names: rec.Members, Acking: want, Async: rec.Async}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("synchronous mode: asking %v to acknowledge (before: %v)", want, rec.Acking)}
	}
	if off := confirmedOff(v, *rec); len(off) > 0 {
		return Plan{Actions: []Action{SetSyncRecord{Names: minus(rec.Members, off), Acking: rec.Acking, Async: rec.Async}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("synchronous mode: %v stopped acknowledging", off)}
	}
	// Async is set before the server stops waiting and cleared after it
	// waits again: while it is clear, every acknowledged commit has a copy.
	wait, p := semiSyncWaiting(v, *rec, mode)
	switch {
	case !wait && !rec.Async:
		p.Actions = []Action{SetSyncRecord{Names: rec.Members, Acking: rec.Acking, Async: true}}
	case v.Repl.SyncAny != wait:
		choice := SyncNamed
		if wait {
			choice = SyncAny
		}
		p.Actions = []Action{SetSyncStandbys{Choice: choice}}
	case wait && rec.Async:
		p.Actions = []Action{SetSyncRecord{Names: rec.Members, Acking: rec.Acking}}
	}
	return p
}

// carrySyncRecord is a new leader's first record: every member the record
// it found lists, but itself (they may still acknowledge, now to it),
// asked to acknowledge as they were; asynchronous unless the record found
// was not and the server waits (or, before the promotion, will wait
// before it takes a write).
func carrySyncRecord(v View, waits bool) SetSyncRecord {
	act := SetSyncRecord{Names: []string{}, Async: true}
	if rec := v.Snap.Sync; rec != nil {
		act.Names = minus(rec.Members, []string{v.Self})
		act.Acking = minus(rec.Acking, []string{v.Self})
		act.Async = rec.Async || !waits
	}
	if act.Names == nil {
		act.Names = []string{}
	}
	return act
}

// carryBeforePromote is the synchronous pre-step's record on an AcksAny
// engine: the record carried over into the epoch of the key this member
// took (carrySyncRecord), unless it was written already.
func carryBeforePromote(v View) (SetSyncRecord, bool) {
	if !acksAny(v) {
		return SetSyncRecord{}, false
	}
	l, rec := v.Snap.Leader, v.Snap.Sync
	if rec != nil && l != nil && l.Name == v.Self && rec.Epoch == l.Epoch {
		return SetSyncRecord{}, false
	}
	c := carrySyncRecord(v, true)
	if v.Config.SynchronousMode == cluster.SyncStrict {
		// The server will wait from the first commit: every live replica
		// is asked to acknowledge before it follows (ackAction, and
		// followers wait for this record), so none receives a waiting
		// commit without acknowledging it.
		for _, m := range v.Snap.Members {
			if m.Name != v.Self && !m.Tags.NoFailover && m.Role == cluster.RoleReplica && m.State == cluster.StateRunning && !slices.Contains(c.Acking, m.Name) {
				c.Acking = append(c.Acking, m.Name)
			}
		}
		for _, name := range c.Acking {
			if !slices.Contains(c.Names, name) {
				c.Names = append(c.Names, name)
			}
		}
		sort.Strings(c.Names)
		sort.Strings(c.Acking)
	}
	if v.Config.SynchronousMode != cluster.SyncStrict && len(c.Acking) == 0 {
		c.Async = true // waitBeforePromote: the server will not wait
	}
	return c, true
}

// waitBeforePromote reports whether the synchronous pre-step makes the
// server wait for an acknowledgement before it promotes: always on an
// engine that waits for named standbys (db.AcksNamed) and in mode strict; in mode on only when the
// record (carried: carry, written this round when carried) asks a member
// to acknowledge. Without one, every member streams asynchronously from
// the new primary at first, and a commit waiting then would never be
// acknowledged by a replica that received it before it acknowledged
// (MariaDB acknowledges only what it receives while acknowledging), so
// the new primary starts asynchronous (the record says so) and waits once
// a member acknowledges.
func waitBeforePromote(v View, carry SetSyncRecord, carried bool) bool {
	if !acksAny(v) || v.Config.SynchronousMode == cluster.SyncStrict {
		return true
	}
	if carried {
		return len(carry.Acking) > 0
	}
	return len(v.Snap.Sync.Acking) > 0 // written in an earlier round of this promotion
}

// confirmedOff lists a member of rec that may leave it: not asked to
// acknowledge, its latest report, made under rec itself, says
// acknowledging is off, and — unless the record is asynchronous (no
// promise) — another member of rec, which an election will hear, holds
// everything it had received once it acknowledged nothing more
// (AckReport.OffFrom), so everything it ever acknowledged (the server
// waits for any one acknowledgement, so it may have been the only one).
func confirmedOff(v View, rec cluster.SyncState) []string {
	for _, name := range minus(rec.Members, rec.Acking) {
		m := v.Snap.Member(name)
		if m == nil || m.Ack == nil || m.Ack.State != cluster.AckOff || m.Ack.Epoch != rec.Epoch || m.Ack.Gen != rec.Gen {
			continue
		}
		if rec.Async || m.Ack.OffFrom != nil && coveredBy(v, rec, m.Name, *m.Ack.OffFrom) != "" {
			return []string{name}
		}
	}
	return nil
}

// coveredBy names a member of rec other than the one named whose
// published position holds pos ("" when none). Comparing with the
// position it had when it stopped acknowledging, not its current one,
// lets it leave while writes go on: it keeps streaming after it stopped
// acknowledging, and its current position may stay ahead of every
// published one.
func coveredBy(v View, rec cluster.SyncState, name string, pos cluster.Position) string {
	for _, n := range rec.Members {
		if o := v.Snap.Member(n); n != name && o != nil {
			if c := o.Position.Compare(pos); c == cluster.Ahead || c == cluster.Equal {
				return n
			}
		}
	}
	return ""
}

// semiSyncWaiting says whether the leader's server should wait for an
// acknowledgement, with the plan that says why (no actions yet).
func semiSyncWaiting(v View, rec cluster.SyncState, mode cluster.SyncMode) (bool, Plan) {
	p := Plan{State: cluster.StateRunning}
	if !mode.Enabled() {
		if v.Repl.SyncAny {
			p.Reason = "synchronous_mode off: making replication asynchronous"
		}
		return false, p
	}
	acking := acknowledgers(v, rec)
	if mode == cluster.SyncStrict {
		switch {
		case v.DB.AckOverdue != "":
			p.Reason, p.Problem = fmt.Sprintf(
				"synchronous_mode strict: %s (a replica that received those commits before it acknowledged never acknowledges them): writes stay blocked; set synchronous_mode on to release them", v.DB.AckOverdue),
				cluster.ProblemWritesBlocked
		case len(acking) == 0:
			p.Reason, p.Problem = "synchronous_mode strict: no replica acknowledges; commits wait until one does", cluster.ProblemWritesBlocked
		}
		return true, p
	}
	if unheard := unheardMembers(v, rec); len(unheard) > 0 {
		p.Reason, p.Problem = fmt.Sprintf(
			"DURABILITY AT RISK: %v may acknowledge (not confirmed off) but cannot be heard by an election; running asynchronously until they report", unheard),
			cluster.ProblemDurabilityAtRisk
		return false, p
	}
	if v.DB.AckOverdue != "" {
		p.Reason, p.Problem = fmt.Sprintf("DURABILITY AT RISK: %s; running asynchronously for a round to release it", v.DB.AckOverdue),
			cluster.ProblemDurabilityAtRisk
		return false, p
	}
	if len(acking) > 0 {
		return true, p
	}
	if coming := followersToCome(v); len(coming) > 0 && v.Repl.SyncAny {
		p.Reason, p.Soon = fmt.Sprintf("synchronous mode on: commits wait for an acknowledgement until %v follow", coming), electionTick
		return true, p
	}
	p.Reason, p.Problem = "DURABILITY AT RISK: synchronous_mode on but no replica acknowledges; running asynchronously", cluster.ProblemDurabilityAtRisk
	return false, p
}

// acknowledgers lists the members asked to acknowledge that report they
// do while streaming from this leader.
func acknowledgers(v View, rec cluster.SyncState) []string {
	var out []string
	for _, name := range rec.Acking {
		m := v.Snap.Member(name)
		if m != nil && m.Ack != nil && m.Ack.State == cluster.AckOn && m.Streaming && m.Upstream == v.Self {
			out = append(out, name)
		}
	}
	return out
}

// unheardMembers lists the members of rec an election could not hear now:
// no record, or a database that does not run.
func unheardMembers(v View, rec cluster.SyncState) []string {
	var out []string
	for _, name := range rec.Members {
		m := v.Snap.Member(name)
		if m == nil || m.Role == cluster.RoleUnknown {
			out = append(out, name)
		}
	}
	return out
}

// semiSyncCandidates restricts an election after the loss of epoch lost
// on an AcksAny engine: to the members of lost's record, once every one
// of them published a final position (its stream lost), unless the
// record says the leader ran asynchronously (mode on: every member;
// strict: none).
func semiSyncCandidates(v View, lost cluster.Epoch, mode cluster.SyncMode) ([]cluster.Member, int64, string, cluster.Problem) {
	rec := v.Snap.Sync
	if rec == nil || rec.Epoch != lost || rec.Async || len(rec.Members) == 0 {
		if mode == cluster.SyncStrict {
			return nil, 0, fmt.Sprintf("NO FAILOVER CANDIDATE: synchronous_mode strict and no acknowledging member was recorded for epoch %d; an operator must choose (hamgrctl failover --to)", lost),
				cluster.ProblemNoFailoverCandidate
		}
		return v.Snap.Members, v.Config.MaximumLagOnFailover, "", cluster.ProblemNone
	}
	var out []cluster.Member
	for _, name := range rec.Members {
		m := v.Snap.Member(name)
		if m == nil {
			return nil, 0, fmt.Sprintf("NO FAILOVER CANDIDATE: %s may hold commits acknowledged at epoch %d and cannot be heard; waiting for it, or an operator (hamgrctl failover --to)", name, lost),
				cluster.ProblemNoFailoverCandidate
		}
		if !streamLost(*m) {
			return nil, 0, fmt.Sprintf("election for epoch %d: waiting for %s, which may hold acknowledged commits, to report its stream lost (its final position)", lost, name), cluster.ProblemNone
		}
		out = append(out, *m)
	}
	if !rec.Has(v.Self) {
		return nil, 0, fmt.Sprintf("not a failover candidate: not a member that may acknowledge at epoch %d (those are %v)", lost, rec.Members), cluster.ProblemNone
	}
	return out, 0, "", cluster.ProblemNone
}

// awaitsSyncRecord reports whether a replica not yet streaming from leader
// l waits for l's record of its epoch before it follows: on an AcksAny
// engine in synchronous mode, so that it acknowledges from its first
// event when the record asks it to (a replica never acknowledges a commit
// it received before it did; with every replica streaming unacknowledged,
// a waiting commit would wait for ever).
func awaitsSyncRecord(v View, l *cluster.Leader) bool {
	rec := v.Snap.Sync
	return acksAny(v) && v.Config.SynchronousMode.Enabled() && (rec == nil || rec.Epoch != l.Epoch)
}

// ackAction is a replica's acknowledging step (nil: none): on while the
// leader's record of the current epoch asks it to, off otherwise. A record
// of an earlier epoch changes nothing: the new leader carries its members
// over (carrySyncRecord) and the replicas keep acknowledging through the
// hand-over.
func ackAction(v View) Action {
	if !acksAny(v) || v.DB.Ack == cluster.AckUnknown || v.DB.Role != cluster.RoleReplica {
		return nil
	}
	l, rec := v.Snap.Leader, v.Snap.Sync
	if l == nil || rec != nil && rec.Epoch != l.Epoch {
		return nil
	}
	want := cluster.AckOff
	if rec.Acks(v.Self) {
		want = cluster.AckOn
	}
	if v.DB.Ack == want {
		return nil
	}
	return SetAcknowledging{State: want}
}
