package ha

import (
	"fmt"
	"slices"
	"sort"

	"github.com/hamgr/hamgr/cluster"
)

// Synchronous replication.
//
// The store's sync record lists members that hold every acknowledged
// commit; failover in synchronous mode promotes only one of them. The
// leader keeps that true by ordering its writes, one step per round:
//
//  1. Removing a member: first from the record, then from the server's
//     synchronous standby setting. While the record is the smaller set,
//     every member it lists is still required by the server.
//  2. Adding a member: first to the server's setting (all listed
//     standbys are required, each of them confirming every commit), then to
//     the record, and only after the member confirmed a WAL position
//     measured once it was required (SyncConfirmed): WAL is sequential, so
//     it then holds every commit acknowledged before, and the server makes
//     it confirm every commit after.
//
// So at every instant record ⊆ required standbys ∩ holders of every
// acknowledged commit. A new leader starts with an empty record of its own
// epoch; before it promotes, it makes commits wait for any one standby
// (SyncAny), so nothing is acknowledged without a copy in between.

// syncMode is the synchronous mode in effect: synchronous_mode, or off
// on an engine without synchronous replication (db.Capabilities).
func syncMode(v View) cluster.SyncMode {
	if !v.Engine.Synchronous {
		return cluster.SyncOff
	}
	return v.Config.SynchronousMode
}

// decideSync: a healthy leader's synchronous standby management.
func decideSync(v View) Plan {
	if acksAny(v) {
		return decideSemiSync(v)
	}
	mode := syncMode(v)
	if !mode.Enabled() {
		if v.Repl != nil && (len(v.Repl.SyncNames) > 0 || v.Repl.SyncAny) {
			return Plan{Actions: []Action{SetSyncStandbys{}}, State: cluster.StateRunning,
				Reason: "synchronous_mode off: making replication asynchronous"}
		}
		if v.Snap.Sync != nil && len(v.Snap.Sync.Members) > 0 {
			return Plan{Actions: []Action{SetSyncRecord{}}, State: cluster.StateRunning}
		}
		if v.Config.SynchronousMode.Enabled() {
			return Plan{State: cluster.StateRunning, Problem: cluster.ProblemDurabilityAtRisk, Reason: fmt.Sprintf(
				"DURABILITY AT RISK: synchronous_mode %s, but hamgr has no synchronous replication for this database engine yet; running asynchronously",
				v.Config.SynchronousMode)}
		}
		return Plan{State: cluster.StateRunning}
	}
	if v.Repl == nil {
		return Plan{State: cluster.StateRunning, Reason: "synchronous mode: standbys not measured yet"}
	}
	l := v.Snap.Leader
	var recorded []string
	if s := v.Snap.Sync; s != nil && s.Epoch == l.Epoch {
		recorded = s.Members
	} else if s != nil && len(s.Members) > 0 {
		// A record of an earlier epoch: this leader starts its own, empty.
		return Plan{Actions: []Action{SetSyncRecord{}}, State: cluster.StateRunning,
			Reason: "synchronous mode: starting this epoch's synchronous standby record"}
	}
	desired := desiredSync(v, recorded)
	// Step 1: remove from the record first.
	if keep := intersect(recorded, desired); len(keep) < len(recorded) {
		return Plan{Actions: []Action{SetSyncRecord{Names: keep}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("synchronous mode: %v no longer synchronous", minus(recorded, keep))}
	}
	// Step 2: the server requires exactly the desired standbys. Right
	// after a promotion it requires any standby (SyncAny); in mode on it keeps
	// that while members are still on their way to follow it, rather than
	// acknowledge commits with no copy for those seconds.
	if len(desired) == 0 && mode == cluster.SyncOn && v.Repl.SyncAny {
		if coming := followersToCome(v); len(coming) > 0 {
			return Plan{State: cluster.StateRunning, Soon: electionTick,
				Reason: fmt.Sprintf("synchronous mode on: commits wait for any standby until %v follow", coming)}
		}
	}
	anyStandby := mode == cluster.SyncStrict && len(desired) == 0
	choice := SyncNamed
	if anyStandby {
		choice = SyncAny
	}
	if !sameSet(v.Repl.SyncNames, desired) || v.Repl.SyncAny != anyStandby {
		why, problem := syncReason(mode, desired)
		return Plan{Actions: []Action{SetSyncStandbys{Names: desired, Choice: choice}}, State: cluster.StateRunning,
			Reason: why, Problem: problem}
	}
	// Step 3: record the confirmed ones.
	if add := intersect(minus(desired, recorded), v.SyncConfirmed); len(add) > 0 {
		names := append(slices.Clone(recorded), add...)
		sort.Strings(names)
		return Plan{Actions: []Action{SetSyncRecord{Names: names}}, State: cluster.StateRunning,
			Reason: fmt.Sprintf("synchronous mode: %v confirmed; recording", add)}
	}
	if len(desired) == 0 {
		why, problem := syncReason(mode, desired)
		return Plan{State: cluster.StateRunning, Reason: why, Problem: problem}
	}
	return Plan{State: cluster.StateRunning}
}

// syncReason says what the server's synchronous standbys become, and the
// problem when there is none: in mode strict commits wait
// (ProblemWritesBlocked); in mode on they are acknowledged without a copy
// (ProblemDurabilityAtRisk, the one place that condition is derived).
func syncReason(mode cluster.SyncMode, desired []string) (string, cluster.Problem) {
	switch {
	case len(desired) > 0:
		return fmt.Sprintf("synchronous mode %s: standbys %v", mode, desired), cluster.ProblemNone
	case mode == cluster.SyncStrict:
		return "synchronous_mode strict: no healthy standby; commits wait until one returns", cluster.ProblemWritesBlocked
	default:
		return "DURABILITY AT RISK: synchronous_mode on but no healthy standby; running asynchronously", cluster.ProblemDurabilityAtRisk
	}
}

// desiredSync picks up to synchronous_node_count standbys: healthy
// replicas streaming from this leader that may be elected, keeping the
// recorded ones first (stability), then the least lagging.
func desiredSync(v View, recorded []string) []string {
	return pickStandbys(v, recorded, v.Config.NodeCount())
}

// pickStandbys picks up to n standbys as desiredSync does (n < 0: all).
func pickStandbys(v View, recorded []string, n int) []string {
	var cands []cluster.Member
	for _, m := range v.Snap.Members {
		if m.Name == v.Self || m.Tags.NoFailover || m.Role != cluster.RoleReplica ||
			m.State != cluster.StateRunning || !m.Streaming || m.Upstream != v.Self {
			continue
		}
		cands = append(cands, m)
	}
	var required []string
	if v.Repl != nil {
		required = v.Repl.SyncNames
	}
	sort.SliceStable(cands, func(i, j int) bool {
		ri, rj := slices.Contains(recorded, cands[i].Name), slices.Contains(recorded, cands[j].Name)
		if ri != rj {
			return ri
		}
		// Then the ones already required (about to be confirmed).
		qi, qj := slices.Contains(required, cands[i].Name), slices.Contains(required, cands[j].Name)
		if qi != qj {
			return qi
		}
		if cands[i].LagBytes != cands[j].LagBytes {
			return cands[i].LagBytes < cands[j].LagBytes
		}
		return cands[i].Name < cands[j].Name
	})
	var out []string
	for _, m := range cands {
		if len(out) == n {
			break
		}
		out = append(out, m.Name)
	}
	sort.Strings(out)
	return out
}

// syncCandidates restricts an election to the synchronous standbys
// recorded by the lost leader. In synchronous mode they hold every
// acknowledged commit, so the lag gate does not apply to them. An empty or
// stale record falls back to every member in mode on (durability at risk),
// and stops automatic failover in mode strict (ProblemNoFailoverCandidate).
// A non-empty reason says why this member may not be elected.
func syncCandidates(v View, lost cluster.Epoch) ([]cluster.Member, int64, string, cluster.Problem) {
	if acksAny(v) {
		return semiSyncCandidates(v, lost, v.Config.SynchronousMode)
	}
	mode := syncMode(v)
	if !mode.Enabled() {
		return v.Snap.Members, v.Config.MaximumLagOnFailover, "", cluster.ProblemNone
	}
	rec := v.Snap.Sync
	if rec == nil || rec.Epoch != lost || len(rec.Members) == 0 {
		if mode == cluster.SyncStrict {
			return nil, 0, fmt.Sprintf("NO FAILOVER CANDIDATE: synchronous_mode strict and no synchronous standby was recorded for epoch %d; an operator must choose (hamgrctl failover --to)", lost),
				cluster.ProblemNoFailoverCandidate
		}
		return v.Snap.Members, v.Config.MaximumLagOnFailover, "", cluster.ProblemNone
	}
	var out []cluster.Member
	for _, m := range v.Snap.Members {
		if rec.Has(m.Name) {
			out = append(out, m)
		}
	}
	if !rec.Has(v.Self) {
		return nil, 0, fmt.Sprintf("not a failover candidate: not a synchronous standby of epoch %d (those are %v)", lost, rec.Members), cluster.ProblemNone
	}
	return out, 0, "", cluster.ProblemNone
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		if slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func minus(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// followersToCome lists live members that may be elected and are not (yet)
// streaming from this leader, though they are not known to be unable to.
func followersToCome(v View) []string {
	var out []string
	for _, m := range v.Snap.Members {
		if m.Name == v.Self || m.Tags.NoFailover || m.Role == cluster.RolePrimary {
			continue
		}
		switch m.State {
		case cluster.StateRunning, cluster.StateStarting, cluster.StateUnknown, cluster.StateBootstrapping:
		default:
			continue
		}
		if !(m.Streaming && m.Upstream == v.Self) {
			out = append(out, m.Name)
		}
	}
	return out
}
