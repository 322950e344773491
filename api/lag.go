package api

import (
	"fmt"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/config"
)

// lagForms describes the accepted forms of the lag parameter, for errors.
const lagForms = "give a whole number of bytes optionally followed by a unit B, kB, MB, GB or TB (powers of 1024, as in the config file), e.g. lag=1048576 or lag=16MB"

// parseLag parses a lag bound such as "16MB" or "1048576" into bytes. It
// accepts exactly what the config file accepts for a byte size
// (config.ParseByteSize): units B, kB, MB, GB, TB and KiB..TiB, any case,
// optional spaces. Negative, fractional and overflowing values are errors.
func parseLag(s string) (int64, error) {
	n, err := config.ParseByteSize(s)
	if err != nil {
		return 0, fmt.Errorf("invalid value for parameter lag: %w; %s", err, lagForms)
	}
	return int64(n), nil
}

// lagMode says which of a replica's positions its lag is measured from.
type lagMode int

const (
	// lagApply measures from the replayed position: what a reader of the
	// replica sees (Patroni's /replica?lag and /readiness?mode=apply).
	lagApply lagMode = 1 + iota
	// lagWrite measures from the received position (/readiness?mode=write).
	lagWrite
)

// reference returns the position a replica's lag is measured
// against: the leader's published position, or, while no leader's record
// can be read (the leader key expired, a failover is under way), the last
// one this agent saw, as Patroni uses the last leader position it stored.
// A failed primary writes nothing more; one whose agent died but whose
// database runs may, and then a replica still streaming from it receives
// that WAL, so the last seen position is the best bound available. It
// reports false when neither is known.
func reference(st *State) (cluster.Position, bool) {
	if st.Leader != nil {
		for i := range st.Members {
			if st.Members[i].Name == st.Leader.Name {
				return st.Members[i].Position, true
			}
		}
	}
	if !st.LastLeaderPosition.IsZero() {
		return st.LastLeaderPosition, true
	}
	return cluster.Position{}, false
}

// replicaLag returns how many bytes of WAL the reference position holds
// that this member has not replayed (lagApply) or received (lagWrite); 0
// when it is level or ahead. It reports false when the reference is
// unknown. A position the probe did not report falls back to the member's
// furthest position.
func replicaLag(st *State, mode lagMode) (int64, bool) {
	ref, ok := reference(st)
	if !ok {
		return 0, false
	}
	m := &st.Self
	pos := m.Replayed
	if mode == lagWrite {
		pos = m.Received
	}
	if pos.IsZero() {
		pos = m.Position
	}
	lag, _ := pos.LagTo(ref)
	return lag, true
}
