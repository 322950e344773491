package election

import (
	"fmt"

	"github.com/hamgr/hamgr/cluster"
)

// SwitchoverTarget picks the member a switchover from leader should hand
// over to: to, if it is a running, streaming replica that is not tagged
// nofailover and lags at most maxLag behind the primary's position pos; or,
// when to is empty, the best such replica. It returns "" and the reason
// when there is none. The HA loop (package ha) decides
// with it, and hamgrctl and the API (package operator) use it to refuse
// bad requests before they are written, so both apply the same policy.
func SwitchoverTarget(s cluster.Snapshot, leader, to string, maxLag int64, pos cluster.Position) (string, string) {
	res := Rank(s.Members, Options{OldPrimary: leader, MaximumLag: maxLag, Reference: pos})
	for _, m := range res.Candidates {
		if to != "" && m.Name != to {
			continue
		}
		if !m.Streaming || m.Upstream != leader {
			if to != "" {
				return "", fmt.Sprintf("%s does not stream from %s", to, leader)
			}
			continue
		}
		return m.Name, ""
	}
	if to != "" {
		if s.Member(to) == nil {
			return "", fmt.Sprintf("no member called %s is alive", to)
		}
		for _, e := range res.Excluded {
			if e.Name == to {
				return "", fmt.Sprintf("%s is not a candidate: %s", to, e.Reason)
			}
		}
	}
	return "", "no replica is streaming and caught up enough to take over"
}
