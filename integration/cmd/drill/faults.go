package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/operator"
	"github.com/hamgr/hamgr/writeclient"
)

// fault describes one kind of drill row: how the fault is injected into the
// current primary, what hamgr is expected to do about it, how write
// unavailability is measured and how the shared cluster is brought back to
// full strength before the next run.
//
// To add a row, add an entry to faults: Configure adjusts the options of the
// cluster the row's runs share, Setup changes the running cluster (e.g. its
// dynamic config), Ready waits before each run for the state the row needs,
// Inject applies the fault. A row with Latency set is a measurement without
// a fault (see runLatency).
type fault struct {
	// Name is the name used in -faults and in the report.
	Name string
	// Describe is a one-line description for the report.
	Describe string
	// Configure, if set, adjusts the options of the cluster that all runs
	// of this fault (within one profile) share. It is called after the
	// drill filled in Dir, HamgrBin, BinDir, Timing and Logger.
	Configure func(*localcluster.Options)
	// Setup, if set, is called once the shared cluster has started, e.g. to
	// switch synchronous mode on through the operator API. An error makes
	// the drill treat the cluster as failed to start.
	Setup func(ctx context.Context, c *localcluster.Cluster) error
	// Ready, if set, is called before every run, after the cluster was
	// found healthy; it waits for whatever else the row needs (e.g. a
	// synchronous standby recorded for the current epoch).
	Ready func(ctx context.Context, c *localcluster.Cluster) error
	// ExpectFailover is true if the leader must move to another member
	// (the observer timeline is then recorded and a new epoch is required)
	// and false if the same member must keep the leader key and its epoch.
	ExpectFailover bool
	// KeepLeader, with ExpectFailover false, asks only that the same
	// member lead after the fault: its epoch may change (an etcd that
	// comes back may have dropped its lease) and its database need not
	// have restarted.
	KeepLeader bool
	// ZeroLoss is true if losing an acknowledged write is an anomaly
	// (a restart in place, a switchover, any fault in synchronous mode).
	ZeroLoss bool
	// Sync is true for rows on a cluster in synchronous mode: the new
	// leader of a failover must be a member the sync record listed at the
	// fault, and ZeroLoss should be set.
	Sync bool
	// Inject applies the fault to primary, the current leader. The drill
	// takes the fault time t0 immediately before calling it.
	Inject func(ctx context.Context, c *localcluster.Cluster, primary *localcluster.Node) error
	// Outage computes the write unavailability of a run from the write
	// client's result and the fault time; it also returns the gap it used
	// (nil if none) and, if the method differs between runs, which one it
	// used.
	Outage func(res writeclient.Result, t0 time.Time) (time.Duration, *writeclient.Gap, string)
	// OutageMethod says in words how Outage measures, for the report.
	OutageMethod string
	// Restore, if set, brings the cluster back to all members healthy after
	// a run; old is the member the fault hit. It may note how in r. An
	// error makes the drill replace the cluster before the next run.
	Restore func(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error
	// Latency marks a commit latency measurement (runLatency) instead of
	// a fault: no Inject, no outage.
	Latency bool
	// ResumeAfterFailover, with ExpectFailover, counts the acknowledged
	// writes that mean "writes resumed" only from when the new primary
	// serves: for a fault after which the old primary goes on taking
	// writes for a while (its agent dead, its database alive), so that the
	// run covers the outage of the failover itself.
	ResumeAfterFailover bool
}

// faults maps the names accepted by -faults to their definitions.
var faults = map[string]fault{
	"node-crash": {
		Name:           "node-crash",
		Describe:       "SIGKILL to the primary's agent and every postgres process at once (Node.KillNode); asynchronous replication",
		ExpectFailover: true,
		Inject:         killNode,
		Outage:         outageAround,
		OutageMethod:   "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore:        rejoinOld,
	},
	"sync-node-crash": {
		Name:           "sync-node-crash",
		Describe:       "node-crash with synchronous_mode=on (set through the operator after the start; each run waits for a recorded synchronous standby)",
		Setup:          enableSync,
		Ready:          waitSyncRecord,
		ExpectFailover: true,
		ZeroLoss:       true,
		Sync:           true,
		Inject:         killNode,
		Outage:         outageAround,
		OutageMethod:   "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore:        rejoinOld,
	},
	"proof-of-death": {
		Name: "proof-of-death",
		Describe: "node-crash in synchronous mode, recording the promotion's evidence: agent and postgres of the primary SIGKILLed on a host " +
			"that stays up, so both its ports refuse and the key is taken over before the ttl (evidence refused-early)",
		Setup:          enableSync,
		Ready:          waitSyncRecord,
		ExpectFailover: true,
		ZeroLoss:       true,
		Sync:           true,
		Inject:         killNode,
		Outage:         outageAround,
		OutageMethod:   "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore:        withEvidence(rejoinOld),
	},
	"fenced-node-crash": {
		Name: "fenced-node-crash",
		Describe: "node-crash under fencing require with a simulated BMC per member (ipmi_sim, ipmi driver; power-off kills the member's " +
			"processes): the promotion waits for the confirmed power-off of the old primary; asynchronous replication",
		Configure:      configureFencing,
		Setup:          armPowerOff,
		ExpectFailover: true,
		Inject:         killNode,
		Outage:         outageAround,
		OutageMethod:   "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore:        withEvidence(rejoinOld),
	},
	"fenced-agent-dead": {
		Name: "fenced-agent-dead",
		Describe: "only the primary's agent SIGKILLed, its PostgreSQL alive, under fencing require (ipmi_sim BMCs): after the key " +
			"expires the fence stands in for the proof (evidence fence) and powers it off before the promotion; synchronous mode",
		Configure: configureFencing,
		Setup: func(ctx context.Context, c *localcluster.Cluster) error {
			return errors.Join(armPowerOff(ctx, c), enableSync(ctx, c))
		},
		Ready:               waitSyncRecord,
		ExpectFailover:      true,
		ResumeAfterFailover: true,
		ZeroLoss:            true,
		Sync:                true,
		Inject:              killAgent,
		Outage:              longestGap,
		OutageMethod:        "the longest interval between consecutive acknowledged writes of the run (Result.LongestGap: the old primary takes writes until its power-off, so no gap contains the fault)",
		Restore:             withEvidence(rejoinOld),
	},
	"node-vanish": {
		Name: "node-vanish",
		Describe: "every process of the primary's node stopped at once (SIGSTOP: as a power loss or a cut cable looks from " +
			"outside: connections go silent and time out, nothing refuses), killed after the failover; asynchronous replication",
		ExpectFailover: true,
		Inject: func(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
			return p.SignalNode(syscall.SIGSTOP)
		},
		Outage:       outageAround,
		OutageMethod: "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore: func(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error {
			// The machine is gone: every process of it, the stopped
			// backends too (a dead postmaster's backends that are stopped
			// would linger for ever); KillNode then reaps the agent so it
			// can be started again.
			_ = old.SignalNode(syscall.SIGKILL)
			old.KillNode()
			return rejoinOld(ctx, c, old, r)
		},
	},
	"fenced-node-vanish": {
		Name: "fenced-node-vanish",
		Describe: "node-vanish (every process of the primary's node SIGSTOPped) under fencing require with ipmi_sim BMCs: once every stream went silent, " +
			"its agent gives no answer and it leaves the replicas' reports unanswered for 0.5s (or its lease is unrenewed for loop_wait + 1s), the best replica takes the key " +
			"over before the ttl and promotes after the confirmed power-off (evidence fence); asynchronous replication",
		Configure:      configureFencing,
		Setup:          armPowerOff,
		ExpectFailover: true,
		Inject: func(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
			return p.SignalNode(syscall.SIGSTOP)
		},
		Outage:       outageAround,
		OutageMethod: "the gap between acknowledged writes that contains the fault (Result.OutageAround)",
		Restore: withEvidence(func(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error {
			// Powered off by the fence; anything left (a fence that did
			// not run) is killed as node-vanish does.
			_ = old.SignalNode(syscall.SIGKILL)
			old.KillNode()
			return rejoinOld(ctx, c, old, r)
		}),
	},
	"postmaster-crash": {
		Name:           "postmaster-crash",
		Describe:       "SIGKILL to the primary's postmaster and all its children, agent alive (Node.CrashPostgres)",
		ExpectFailover: false,
		ZeroLoss:       true,
		Inject: func(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
			return p.CrashPostgres()
		},
		Outage:       longestGap,
		OutageMethod: "the longest interval between consecutive acknowledged writes of the run (Result.LongestGap; one fault per short run)",
	},
	"switchover": {
		Name:           "switchover",
		Describe:       "operator switchover to the best replica (Operator.Switchover, to=\"\"), asynchronous replication",
		ExpectFailover: true,
		ZeroLoss:       true,
		Inject:         switchover,
		Outage:         switchoverOutage,
		OutageMethod: "the gap between acknowledged writes around the request (Result.OutageAround); if no gap above the write client's " +
			"threshold (150 ms) starts within 2 s of it, the longest interval between acknowledged writes (Result.LongestGap)",
		Restore: waitSwitchedOver,
	},
	"etcd-quorum-loss":          etcdOutageRow(quorumLoss, false),
	"etcd-full-outage":          etcdOutageRow(fullOutage, false),
	"failsafe-etcd-quorum-loss": etcdOutageRow(quorumLoss, true),
	"failsafe-etcd-full-outage": etcdOutageRow(fullOutage, true),
	"commit-latency-async": {
		Name:     "commit-latency-async",
		Describe: "per-commit latency of single-row autocommit INSERTs, one client connected to the primary, back to back; asynchronous replication",
		Latency:  true,
	},
	"commit-latency-sync": {
		Name:     "commit-latency-sync",
		Describe: "commit-latency-async with synchronous_mode=on (a recorded synchronous standby required before each run)",
		Setup:    enableSync,
		Ready:    waitSyncRecord,
		Sync:     true,
		Latency:  true,
	},
}

// faultAliases are -faults names that stand for several faults.
var faultAliases = map[string][]string{
	"commit-latency": {"commit-latency-async", "commit-latency-sync"},
}

// faultNames returns the known fault names and aliases, sorted.
func faultNames() []string {
	var names []string
	for n := range faults {
		names = append(names, n)
	}
	for n, fs := range faultAliases {
		names = append(names, n+" (= "+strings.Join(fs, ",")+")")
	}
	sort.Strings(names)
	return names
}

// killNode is a node crash: Node.KillNode on the primary.
func killNode(_ context.Context, _ *localcluster.Cluster, p *localcluster.Node) error {
	p.KillNode()
	return nil
}

// newOperator returns an operator on c's store.
func newOperator(c *localcluster.Cluster) *operator.Operator {
	return &operator.Operator{Store: c.Store, Who: "hamgr drill"}
}

// switchover asks the operator API for a switchover from p to the best
// replica, now.
func switchover(ctx context.Context, c *localcluster.Cluster, p *localcluster.Node) error {
	r, err := newOperator(c).Switchover(ctx, "", time.Time{})
	if err != nil {
		return err
	}
	if r.From != "" && r.From != p.Name {
		return fmt.Errorf("switchover request names %s as the primary, not %s", r.From, p.Name)
	}
	return nil
}

// enableSync sets synchronous_mode=on through the operator API.
func enableSync(ctx context.Context, c *localcluster.Cluster) error {
	if _, err := newOperator(c).SetConfig(ctx, "synchronous_mode", "on"); err != nil {
		return fmt.Errorf("set synchronous_mode=on: %w", err)
	}
	return nil
}

// syncTimeout bounds the wait for a synchronous standby record.
const syncTimeout = 60 * time.Second

// waitSyncRecord waits until the store's sync record is the current
// leader's, of its epoch, names at least one member and, on MariaDB, is
// not asynchronous (the server waits for an acknowledgement).
func waitSyncRecord(ctx context.Context, c *localcluster.Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	var last string
	err := localcluster.WaitFor(ctx, func() bool {
		s, err := c.Snapshot(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case s.Leader == nil:
			last = "no leader"
		case s.Config == nil || !s.Config.SynchronousMode.Enabled():
			last = "synchronous_mode not enabled in the dynamic config"
		case s.Sync == nil:
			last = "no sync record"
		case s.Sync.Leader != s.Leader.Name || s.Sync.Epoch != s.Leader.Epoch || len(s.Sync.Members) == 0 || s.Sync.Async:
			last = fmt.Sprintf("sync record %+v, leader %s epoch %d", *s.Sync, s.Leader.Name, s.Leader.Epoch)
		default:
			return true
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("no synchronous standby recorded for the current epoch within %v: %w (last seen: %s)", syncTimeout, err, last)
	}
	return nil
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
func outageAround(res writeclient.Result, t0 time.Time) (time.Duration, *writeclient.Gap, string) {
	return res.OutageAround(t0), gapAround(res, t0), ""
}

// longestGap measures a run by Result.LongestGap. Unlike OutageAround it
// also sees an interruption shorter than the write client's gap threshold
// (5×interval+100ms). The gap returned is the reported gap of that length,
// nil if the longest interval was below the threshold.
func longestGap(res writeclient.Result, _ time.Time) (time.Duration, *writeclient.Gap, string) {
	for i, g := range res.Gaps {
		if g.Duration == res.LongestGap {
			return res.LongestGap, &res.Gaps[i], ""
		}
	}
	return res.LongestGap, nil, ""
}

// switchoverOutage measures a switchover by OutageAround(t0) and falls back
// to LongestGap when no reported gap lies around the request (the
// interruption was shorter than the gap threshold, or began more than 2 s
// after the request). The third result says which was used.
func switchoverOutage(res writeclient.Result, t0 time.Time) (time.Duration, *writeclient.Gap, string) {
	if d := res.OutageAround(t0); d > 0 {
		return d, gapAround(res, t0), "OutageAround"
	}
	d, g, _ := longestGap(res, t0)
	return d, g, "LongestGap"
}

// Bounds of restoring a member after a node crash.
const (
	rejoinTimeout   = 60 * time.Second // agent restart until it streams
	recloneTimeout  = 90 * time.Second // wipe + agent restart until it streams
	switchedTimeout = 60 * time.Second // old primary streaming after a switchover
)

// rejoinOld restores a crashed member by restarting its agent: a diverged
// former primary rejoins by pg_rewind on its own. If it does not stream
// within rejoinTimeout, its data directory is wiped and the agent started
// again so it clones afresh; that fallback is recorded in r and logged.
func rejoinOld(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error {
	if old.AgentRunning() {
		old.KillNode()
	}
	logOffset := fileSize(old.AgentLog)
	start := time.Now()
	if err := old.StartAgent(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, rejoinTimeout)
	err := c.WaitHealthy(wctx)
	cancel()
	r.RejoinHow = rejoinHow(old.AgentLog, logOffset)
	if err == nil {
		r.Rejoin = secs(time.Since(start))
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.RejoinFallback = true
	r.RejoinError = err.Error()
	old.KillNode()
	if err := old.WipeData(); err != nil {
		return fmt.Errorf("wipe %s after a failed rejoin: %w", old.Name, err)
	}
	if err := old.StartAgent(); err != nil {
		return err
	}
	wctx, cancel = context.WithTimeout(ctx, recloneTimeout)
	defer cancel()
	if err := c.WaitHealthy(wctx); err != nil {
		return fmt.Errorf("%s did not rejoin after a re-clone either: %w", old.Name, err)
	}
	r.Rejoin = secs(time.Since(start))
	return nil
}

// rejoinHow summarizes, from the agent log written since offset, how the
// member came back: "no rewind" if its history was found to be a prefix of
// the new primary's (no pg_rewind ran), "rewind" if it planned a pg_rewind,
// "re-clone" if it planned a re-clone, "follow" otherwise; failures of
// either are added.
func rejoinHow(logFile string, offset int64) string {
	b, err := os.ReadFile(logFile)
	if err != nil || int64(len(b)) < offset {
		return "?"
	}
	s := string(b[offset:])
	var how []string
	switch {
	case strings.Contains(s, "rejoining without pg_rewind") && !strings.Contains(s, "running pg_rewind"):
		how = append(how, "no rewind")
	case strings.Contains(s, "rewinding from"):
		how = append(how, "rewind")
	case strings.Contains(s, "cloning") && strings.Contains(s, "again"):
		how = append(how, "re-clone")
	default:
		how = append(how, "follow")
	}
	if strings.Contains(s, "pg_rewind failed") {
		how = append(how, "pg_rewind failed")
	}
	return strings.Join(how, ", ")
}

// fileSize is the size of path (0 if it cannot be read).
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// waitSwitchedOver waits after a switchover until the old primary streams
// from the new one (every running member healthy) and the request is gone;
// r.Rejoin is set to the time from the request until then.
func waitSwitchedOver(ctx context.Context, c *localcluster.Cluster, old *localcluster.Node, r *runResult) error {
	ctx, cancel := context.WithTimeout(ctx, switchedTimeout)
	defer cancel()
	if !old.AgentRunning() {
		return fmt.Errorf("agent of the old primary %s is not running after the switchover", old.Name)
	}
	if err := c.WaitHealthy(ctx); err != nil {
		return fmt.Errorf("old primary %s does not stream after the switchover: %w", old.Name, err)
	}
	var pending string
	err := localcluster.WaitFor(ctx, func() bool {
		s, err := c.Snapshot(ctx)
		if err != nil || s.Request != nil {
			pending = fmt.Sprintf("err=%v request=%+v", err, s.Request)
			return false
		}
		return true
	})
	if err != nil {
		return fmt.Errorf("switchover request still pending: %w (%s)", err, pending)
	}
	r.Rejoin, r.RejoinHow = secs(time.Since(r.FaultAt)), "streams again"
	return nil
}
