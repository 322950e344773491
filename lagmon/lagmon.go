// Package lagmon measures how far members are behind: a member's lag behind
// the leader's published position, and which of a primary's required
// synchronous standbys have confirmed every acknowledged commit. It is pure
// and keeps only the state it is given; the agent feeds it its probes and
// publishes the results in member records, the sync record and metrics.
package lagmon

import (
	"slices"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// Lag is how far a member at pos is behind the leader at leader, in the
// engine's lag unit (cluster.Engine.LagUnit); 0 when it is level or ahead
// (a replica can be ahead of the leader's last published position) or
// when the leader's position is not known.
func Lag(leader, pos cluster.Position) int64 {
	lag, _ := pos.LagTo(leader)
	return lag
}

// SyncTracker tells which of a primary's required synchronous standbys hold
// every acknowledged commit. A standby becomes required when the server's
// synchronous standby setting names it; from then on every commit waits for
// it. Commits acknowledged before that are covered once it confirms (flushes)
// a WAL position measured after it became required, because WAL is
// sequential. The zero value is ready to use; it is not safe for concurrent
// use.
type SyncTracker struct {
	since map[string]cluster.Position // required standby → primary's position when first seen required
}

// Observe takes one ReplicationStatus of the primary and returns the
// required standbys that have confirmed, sorted. A standby that stops being
// required (or disconnects) starts over.
func (t *SyncTracker) Observe(rs db.ReplicationStatus) []string {
	if t.since == nil {
		t.since = map[string]cluster.Position{}
	}
	var confirmed []string
	seen := map[string]bool{}
	for _, sb := range rs.Standbys {
		if sb.SyncState != "sync" || !slices.Contains(rs.SyncNames, sb.Name) {
			continue
		}
		seen[sb.Name] = true
		l0, ok := t.since[sb.Name]
		if !ok {
			t.since[sb.Name] = rs.Current
			continue
		}
		if o := sb.Flushed.Compare(l0); o == cluster.Ahead || o == cluster.Equal {
			confirmed = append(confirmed, sb.Name)
		}
	}
	for name := range t.since {
		if !seen[name] {
			delete(t.since, name)
		}
	}
	slices.Sort(confirmed)
	return confirmed
}
