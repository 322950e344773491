package election

import (
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
)

// TestSwitchoverTarget: a switchover goes to a running replica streaming
// from the leader, within the lag bound; a named target that is not one is
// refused with the reason.
func TestSwitchoverTarget(t *testing.T) {
	streaming := func(name string, lsn cluster.LSN, prio int) cluster.Member {
		return cluster.Member{Name: name, Role: cluster.RoleReplica, State: cluster.StateRunning,
			Position: cluster.PGPosition(1, lsn), Tags: cluster.Tags{Priority: prio},
			Streaming: true, Upstream: "n1"}
	}
	primary := cluster.Member{Name: "n1", Role: cluster.RolePrimary, State: cluster.StateRunning,
		Position: cluster.PGPosition(1, 1000)}
	snap := func(ms ...cluster.Member) cluster.Snapshot {
		return cluster.Snapshot{Members: append([]cluster.Member{primary}, ms...)}
	}
	tests := []struct {
		name   string
		snap   cluster.Snapshot
		to     string
		maxLag int64
		want   string
		why    string // substring of the refusal
	}{
		{name: "best replica", snap: snap(streaming("n2", 900, 0), streaming("n3", 1000, 0)), want: "n3"},
		{name: "named replica", snap: snap(streaming("n2", 900, 0), streaming("n3", 1000, 0)), to: "n2", want: "n2"},
		{name: "best skips a replica not streaming from the leader",
			snap: snap(streaming("n2", 900, 0), with(streaming("n3", 1000, 0), func(m *cluster.Member) { m.Upstream = "n2" })), want: "n2"},
		{name: "named replica not streaming from the leader",
			snap: snap(with(streaming("n2", 900, 0), func(m *cluster.Member) { m.Streaming = false })), to: "n2",
			why: "n2 does not stream from n1"},
		{name: "named replica too far behind", snap: snap(streaming("n2", 100, 0)), to: "n2", maxLag: 500,
			why: "n2 is not a candidate: 900 bytes behind"},
		{name: "named replica tagged nofailover",
			snap: snap(with(streaming("n2", 900, 0), func(m *cluster.Member) { m.Tags.NoFailover = true })), to: "n2",
			why: "n2 is not a candidate: tagged nofailover"},
		{name: "named member absent", snap: snap(streaming("n2", 900, 0)), to: "n9", why: "no member called n9 is alive"},
		{name: "named leader itself", snap: snap(streaming("n2", 900, 0)), to: "n1", why: "n1 is not a candidate"},
		{name: "no replica", snap: snap(), why: "no replica is streaming and caught up enough"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, why := SwitchoverTarget(tt.snap, "n1", tt.to, tt.maxLag, cluster.PGPosition(1, 1000))
			if got != tt.want || (tt.why == "") != (why == "") || !strings.Contains(why, tt.why) {
				t.Errorf("SwitchoverTarget = %q, %q; want %q, reason containing %q", got, why, tt.want, tt.why)
			}
		})
	}
}
