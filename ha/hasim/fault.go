package hasim

import (
	"fmt"
	"time"
)

// FaultKind names a fault (or its repair).
type FaultKind int

// Faults.
const (
	_ FaultKind = iota
	// KillNode powers the node off: the agent dies and the database
	// stops without a checkpoint.
	KillNode
	// StartNode powers a killed node on: a fresh agent (no lease, no
	// memory) starts; the database stays stopped until the agent starts it.
	StartNode
	// KillAgent kills only the agent process; the database keeps running.
	KillAgent
	// StartAgent starts a fresh agent on a node whose agent was killed.
	StartAgent
	// CrashDB kills the database server (postmaster crash); the agent is
	// woken at once, as by db.Controller.Exited.
	CrashDB
	// Partition cuts the agent off from the store (reads, writes and lease
	// renewals fail); replication between databases is unaffected.
	Partition
	// Heal ends the member's partition.
	Heal
	// Pause stops the agent process (SIGSTOP): it does nothing, not even
	// fence, while its database keeps running.
	Pause
	// Resume continues a paused agent (SIGCONT).
	Resume
	// FailStarts makes the member's next N database starts fail.
	FailStarts
	// HealAll repairs everything: starts every node and agent, resumes,
	// heals partitions and clears start failures. A pending operator
	// request stays.
	HealAll
	// Switchover is the operator asking for a switchover away from the
	// current leader to Member ("" for the best replica), After from now
	// (0: at once). It is written unchecked, unless a request is pending.
	Switchover
	// Failover is the operator asking for a manual failover to Member.
	Failover
	// CancelRequest is the operator deleting the pending request.
	CancelRequest
)

var faultNames = map[FaultKind]string{
	KillNode: "kill-node", StartNode: "start-node", KillAgent: "kill-agent", StartAgent: "start-agent",
	CrashDB: "crash-db", Partition: "partition", Heal: "heal", Pause: "pause", Resume: "resume",
	FailStarts: "fail-starts", HealAll: "heal-all", Switchover: "switchover", Failover: "failover",
	CancelRequest: "cancel-request",
}

// String names the kind.
func (k FaultKind) String() string {
	if s, ok := faultNames[k]; ok {
		return s
	}
	return fmt.Sprintf("fault(%d)", int(k))
}

// Fault is one injected fault.
type Fault struct {
	Kind   FaultKind
	Member string
	// N is the count for FailStarts.
	N int
	// After schedules a Switchover.
	After time.Duration
}

// String renders the fault for logs.
func (f Fault) String() string {
	s := f.Kind.String()
	if f.Member != "" {
		s += " " + f.Member
	}
	if f.N != 0 {
		s += fmt.Sprintf(" n=%d", f.N)
	}
	if f.After != 0 {
		s += " after=" + f.After.String()
	}
	return s
}

// inject applies f to the world. Faults that do not apply (killing a dead
// node) are no-ops.
func (w *World) inject(f Fault) {
	if f.Kind == HealAll {
		w.logf("fault: %s", f)
		for _, n := range w.nodes {
			n.paused, n.db.failStarts = false, 0
			w.setPartitioned(n, false)
			if !n.alive || n.agentDown {
				w.restartAgent(n, true)
			}
			n.nextRound = w.now
		}
		return
	}
	switch f.Kind {
	case Switchover, Failover:
		w.logf("fault: %s", f)
		w.operatorRequest(f)
		return
	case CancelRequest:
		w.logf("fault: %s", f)
		w.store.DeleteRequest()
		return
	}
	n := w.node(f.Member)
	w.logf("fault: %s", f)
	switch f.Kind {
	case KillNode:
		if !n.alive {
			return
		}
		n.alive = false
		n.db.stop(true)
	case StartNode:
		if n.alive {
			return
		}
		w.restartAgent(n, true)
	case KillAgent:
		n.agentDown = true
	case StartAgent:
		if n.alive && n.agentDown {
			w.restartAgent(n, false)
		}
	case CrashDB:
		if n.alive && n.db.running {
			n.db.stop(true)
			n.nextRound = w.now // db.Controller.Exited wakes the agent
		}
	case Partition:
		w.setPartitioned(n, true)
	case Heal:
		w.setPartitioned(n, false)
	case Pause:
		n.paused = true
	case Resume:
		if n.paused {
			n.paused = false
			n.nextRound = w.now
		}
	case FailStarts:
		n.db.failStarts = f.N
	}
}

// restartAgent starts a fresh agent on n (and powers the node on).
func (w *World) restartAgent(n *node, power bool) {
	if power {
		n.alive = true
	}
	n.agentDown, n.paused = false, false
	w.startAgent(n)
}

// setPartitioned cuts n's agent off from the store, or heals it.
func (w *World) setPartitioned(n *node, cut bool) {
	n.partitioned = cut
	n.client.SetReachable(!cut)
}

// stop stops the server; immediate (or a crash) leaves crash recovery for
// the next start.
func (d *simDB) stop(immediate bool) {
	if !d.running {
		return
	}
	d.running, d.accepting, d.streaming = false, false, false
	d.stopPos = 0
	if immediate {
		d.crashed = true
	}
}

func (d *simDB) start(now time.Time, cfg Config) error {
	if d.failStarts > 0 {
		d.failStarts--
		return fmt.Errorf("database start failed (injected)")
	}
	d.running, d.accepting, d.stopPos = true, false, 0
	d.readyAt = now.Add(cfg.StartTime)
	if d.crashed {
		d.readyAt = now.Add(cfg.RecoveryTime)
	}
	return nil
}
