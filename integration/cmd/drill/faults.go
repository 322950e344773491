package main

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hamgr/hamgr/integration/writeclient"
	"github.com/hamgr/hamgr/localcluster"
)

// fault describes one kind of drill row: how the fault is injected into the
// current primary, what hamgr is expected to do about it, how write
// unavailability is measured and how the shared cluster is brought back to
// full strength before the next run.
//
// To add a row (a switchover, or a fault on a cluster in synchronous mode),
// add an entry to faults: Configure adjusts the cluster the row's runs
// share, Inject applies the fault.
type fault struct {
	// Name is the name used in -faults and in the report.
	Name string
	// Describe is a one-line description for the report.
	Describe string
	// Configure, if set, adjusts the options of the cluster that all runs
	// of this fault (within one profile) share, e.g. to enable synchronous
	// replication. It is called after the drill filled in Dir, HamgrBin,
	// BinDir, Timing and Logger.
	Configure func(*localcluster.Options)
	// ExpectFailover is true if the leader must move to another member
	// (the observer timeline is then recorded and a new epoch is required)
	// and false if the same member must keep the leader key and its epoch.
	ExpectFailover bool
	// Inject applies the fault to primary, the current leader. The drill
	// takes the fault time t0 immediately before calling it.
	Inject func(ctx context.Context, c *localcluster.Cluster, primary *localcluster.Node) error
	// Outage computes the write unavailability of a run from the write
	// client's result and the fault time; it also returns the gap it used
	// (nil if none).
	Outage func(res writeclient.Result, t0 time.Time) (time.Duration, *writeclient.Gap)
	// OutageMethod says in words how Outage measures, for the report.
	OutageMethod string
	// Restore, if set, brings the cluster back to all members healthy after
	// a run; old is the member the fault hit. An error makes the drill
	// replace the cluster before the next run.
	Restore func(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node) error
}

// faults maps the names accepted by -faults to their definitions.
var faults = map[string]fault{
	"node-crash": {
		Name:           "node-crash",
		Describe:       "SIGKILL to the primary's agent and every postgres process at once (Node.KillNode)",
		ExpectFailover: true,
		Inject: func(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
			p.KillNode()
			return nil
		},
		Outage:       outageAround,
		OutageMethod: "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore:      recloneOld,
	},
	"postmaster-crash": {
		Name:           "postmaster-crash",
		Describe:       "SIGKILL to the primary's postmaster and all its children, agent alive (Node.CrashPostgres)",
		ExpectFailover: false,
		Inject: func(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
			return p.CrashPostgres()
		},
		Outage:       longestGap,
		OutageMethod: "the longest interval between consecutive acknowledged writes of the run (Result.LongestGap; one fault per short run)",
	},
}

// faultNames returns the known fault names, sorted.
func faultNames() []string {
	var names []string
	for n := range faults {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// gapAround returns the reported gap that contains t, or else the first one
// starting no more than 2 s after t: the same gap Result.OutageAround
// measures.
func gapAround(res writeclient.Result, t time.Time) *writeclient.Gap {
	for i, g := range res.Gaps {
		if !t.Before(g.Start) && !t.After(g.End) {
			return &res.Gaps[i]
		}
	}
	for i, g := range res.Gaps {
		if g.Start.After(t) && g.Start.Sub(t) <= 2*time.Second {
			return &res.Gaps[i]
		}
	}
	return nil
}

// outageAround measures a run by Result.OutageAround(t0).
func outageAround(res writeclient.Result, t0 time.Time) (time.Duration, *writeclient.Gap) {
	return res.OutageAround(t0), gapAround(res, t0)
}

// longestGap measures a run by Result.LongestGap. Unlike OutageAround it
// also sees an interruption shorter than the write client's gap threshold
// (5×interval+100ms). The gap returned is the reported gap of that length,
// nil if the longest interval was below the threshold.
func longestGap(res writeclient.Result, _ time.Time) (time.Duration, *writeclient.Gap) {
	for i, g := range res.Gaps {
		if g.Duration == res.LongestGap {
			return res.LongestGap, &res.Gaps[i]
		}
	}
	return res.LongestGap, nil
}

// recloneOld restores a crashed member: its data directory is wiped and its
// agent started again, so that it clones a fresh copy from the new leader
// (under asynchronous load the old primary's timeline usually diverged), and
// the cluster is waited for until every member is healthy.
func recloneOld(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node) error {
	if old.AgentRunning() {
		old.KillNode()
	}
	if err := old.WipeData(); err != nil {
		return fmt.Errorf("wipe %s: %w", old.Name, err)
	}
	if err := old.StartAgent(); err != nil {
		return err
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return fmt.Errorf("%s did not rejoin: %w", old.Name, err)
	}
	return nil
}
