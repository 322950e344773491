package localcluster

import (
	"context"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

// Timeline is what an observer outside the agents saw of one failover,
// each time measured from the fault.
type Timeline struct {
	Fault time.Time
	// Old and New are the old and new leaders; Epoch is the new epoch.
	Old, New string
	Epoch    cluster.Epoch
	// Detected: the leader key was seen absent (or released).
	Detected time.Duration
	// Elected: a new leader key was seen.
	Elected time.Duration
	// Promoted: the new leader's /primary answered 200.
	Promoted time.Duration
	// Following: every other running replica streams from the new leader.
	Following time.Duration
}

// ObserveFailover polls the store and the agents every 25 ms after a fault
// at t0 that took down old, until a new primary serves and the surviving
// replicas follow it, or ctx ends.
func (c *Cluster) ObserveFailover(ctx context.Context, old string, t0 time.Time) (Timeline, error) {
	return c.observe(ctx, old, t0, true)
}

// ObservePromotion is ObserveFailover without waiting for the other
// replicas to follow.
func (c *Cluster) ObservePromotion(ctx context.Context, old string, t0 time.Time) (Timeline, error) {
	return c.observe(ctx, old, t0, false)
}

func (c *Cluster) observe(ctx context.Context, old string, t0 time.Time, followers bool) (Timeline, error) {
	tl := Timeline{Fault: t0, Old: old}
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for {
		now := time.Since(t0)
		if s, err := c.Snapshot(ctx); err == nil {
			if tl.Detected == 0 && (s.Leader == nil || s.Leader.Name != old) {
				tl.Detected = now
			}
			if s.Leader != nil && s.Leader.Name != old {
				if tl.Elected == 0 {
					tl.Elected, tl.New, tl.Epoch = now, s.Leader.Name, s.Leader.Epoch
				}
				if tl.Promoted == 0 {
					if code, _ := c.Node(s.Leader.Name).Check(ctx, "/primary"); code == 200 {
						tl.Promoted = time.Since(t0)
						if !followers {
							return tl, nil
						}
					}
				}
				if tl.Promoted != 0 && tl.Following == 0 && c.followersStream(s, old) {
					tl.Following = time.Since(t0)
					return tl, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return tl, fmt.Errorf("observe failover away from %s: %w (seen so far: %+v)", old, ctx.Err(), tl)
		case <-t.C:
		}
	}
}

// followersStream reports whether every member other than the leader and
// old, whose agent runs, streams from the leader.
func (c *Cluster) followersStream(s cluster.Snapshot, old string) bool {
	for _, n := range c.Nodes {
		if n.Name == old || n.Name == s.Leader.Name || !n.AgentRunning() {
			continue
		}
		m := s.Member(n.Name)
		if m == nil || !m.Streaming || m.Upstream != s.Leader.Name {
			return false
		}
	}
	return true
}
