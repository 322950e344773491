package ha

import (
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Failsafe mode (failsafe_mode; docs/design.md, "Failsafe mode"). A
// leader that cannot reach the store keeps its primary writable while
// every member named in its failsafe record confirms, over the API, that
// it knows this leader at this epoch as the latest; each confirmation is a
// promise to take part in no election for a ttl. This file holds the
// policy's side of it: the leader keeps the record, and a member that
// promised, or that the record does not name, is no candidate. The agent
// enforces the promise again where the key is taken (agent/failsafe.go).

// FailsafePromise is the last failsafe confirmation a member gave: to
// Leader at Epoch, binding until Until on the member's clock (the time it
// answered plus a ttl).
type FailsafePromise struct {
	Leader string
	Epoch  cluster.Epoch
	Until  time.Time
}

// decideFailsafeRecord: a healthy leader keeps the failsafe record equal
// to the member records it sees while failsafe_mode is on, and deletes
// its own record when the mode is off.
func decideFailsafeRecord(v View) (Plan, bool) {
	l := v.Snap.Leader
	have := v.Snap.Failsafe
	if have != nil && (have.Leader != l.Name || have.Epoch != l.Epoch) {
		have = nil // another epoch's: not this leader's to keep or delete
	}
	if !v.Config.FailsafeMode {
		if have == nil {
			return Plan{}, false
		}
		return Plan{Actions: []Action{SetFailsafeRecord{}}, State: cluster.StateRunning,
			Reason: "failsafe_mode is off: deleting the failsafe record"}, true
	}
	want := &cluster.FailsafeState{Leader: l.Name, Epoch: l.Epoch, Members: cluster.FailsafeMembers(v.Snap.Members), TTL: v.Config.TTL}
	if want.Equal(have) {
		return Plan{}, false
	}
	a := SetFailsafeRecord{Members: want.Members, TTL: want.TTL}
	return Plan{Actions: []Action{a}, State: cluster.StateRunning,
		Reason: "failsafe_mode: recording the members that must confirm this primary while the store is unreachable:" + a.String()[len("set-failsafe-record"):]}, true
}

// FailsafeHold is when this member may take part in an election over the
// lost epoch again, and why it may not before (zero time: it may). A
// promise holds whatever the record says; after a restart (a promise
// given before it is forgotten) a member the record of the lost epoch
// names waits a ttl (its own or the leader's, the longer) from its start — unless the lost leader is itself
// (taking its own key back supersedes nobody).
func FailsafeHold(v View, lost cluster.Epoch) (time.Time, string) {
	var until time.Time
	var why string
	if p := v.FailsafePromise; v.Now.Before(p.Until) {
		until = p.Until
		why = fmt.Sprintf("failsafe: confirmed to %s (epoch %d) that it may keep writing without the store", p.Leader, p.Epoch)
	}
	ll := v.Snap.LastLeader
	if f := v.Snap.Failsafe; f != nil && f.Epoch == lost && f.Has(v.Self) && !v.Started.IsZero() && ll != nil && ll.Name != v.Self {
		if end := v.Started.Add(max(time.Duration(v.Config.TTL), time.Duration(f.TTL))); v.Now.Before(end) && end.After(until) {
			until = end
			why = fmt.Sprintf("failsafe: %s (epoch %d) kept a failsafe record naming this member, whose agent started less than a ttl ago and may have confirmed it before", f.Leader, f.Epoch)
		}
	}
	return until, why
}

// failsafeElection: in an election over lost, a member the failsafe
// record of lost does not name is no candidate (the old leader never
// asked it, so it may still write), and one that promised (FailsafeHold)
// waits.
func failsafeElection(v View, lost cluster.Epoch) (Plan, bool) {
	if f := v.Snap.Failsafe; f != nil && f.Epoch == lost && !f.Has(v.Self) {
		return Plan{State: cluster.StateRunning, Soon: electionTick, Reason: fmt.Sprintf(
			"election for epoch %d: not a candidate: the failsafe record of %s does not name this member (it joined after the record was written), so %s may still be writing on the others' confirmations", lost, f.Leader, f.Leader)}, true
	}
	until, why := FailsafeHold(v, lost)
	if until.IsZero() {
		return Plan{}, false
	}
	return Plan{State: cluster.StateRunning, Soon: min(electionTick, until.Sub(v.Now)), Problem: cluster.ProblemFailsafeActive,
		Reason: fmt.Sprintf("election for epoch %d: %s; no election before %s", lost, why, until.UTC().Format(time.RFC3339Nano))}, true
}
