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
	// stops without a checkpoint. Nothing answers at its address any more
	// (connections time out; open ones stay silent until the receivers'
	// timeout), as a power loss looks from outside.
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
	// Freeze stops the whole machine (a paused VM, SIGSTOP of every
	// process): see node.frozen. Thaw resumes it; its agent runs in the
	// same step, before anything is checked.
	Freeze
	Thaw
	// Hang makes the member's postmaster hang: no new connection gets in
	// (probes time out, receivers cannot reconnect), while its backends
	// keep taking writes and its WAL senders keep streaming. Unhang ends
	// it.
	Hang
	Unhang
	// Overload makes connections to the member's database time out while
	// it keeps working, as on a machine whose cores are saturated; Relieve
	// ends it.
	Overload
	Relieve
	// StoreOutage makes the store unreachable for every agent (etcd
	// quorum lost); StoreReturn brings it back with every lease revoked at
	// once, as etcd came back in the outage reported in issue 7.
	StoreOutage
	StoreReturn
	// RevokeLeases revokes every lease at once, the store staying up.
	RevokeLeases
	// CrashNode kills every process of the node (agent and database) on a
	// machine that stays up: connections to it are refused at once (what
	// localcluster's KillNode does on one host). StartNode starts its
	// agent again.
	CrashNode
	// StoreReturnRenewing ends a StoreOutage as a real etcd cluster does
	// when its quorum returns: every lease gets its full TTL again (the
	// new etcd leader extends them all), so the leader key outlives an
	// outage of any length unless its agent lets its lease run out.
	StoreReturnRenewing
	// FailCall makes the member agent's next N calls of Call fail.
	FailCall
	// DieOnCall kills the member's agent process in its next call of
	// Call: the call does not happen, and the agent makes no other.
	DieOnCall
	// CutAPI makes the member's agent API unreachable, from it and to it
	// (failsafe requests fail); RestoreAPI ends it.
	CutAPI
	RestoreAPI
	// Reject puts a firewall on the member's machine that rejects (a TCP
	// reset) every connection from the other members: their connects to
	// its database and agent API are refused and their WAL streams from
	// it cut, while its own agent, the store and the clients still reach
	// it. A live primary then looks dead by its ports alone. Unreject
	// removes the firewall.
	Reject
	Unreject
)

var faultNames = map[FaultKind]string{
	KillNode: "kill-node", StartNode: "start-node", KillAgent: "kill-agent", StartAgent: "start-agent",
	CrashDB: "crash-db", Partition: "partition", Heal: "heal", Pause: "pause", Resume: "resume",
	FailStarts: "fail-starts", HealAll: "heal-all", Switchover: "switchover", Failover: "failover",
	CancelRequest: "cancel-request", Freeze: "freeze", Thaw: "thaw", Hang: "hang", Unhang: "unhang",
	Overload: "overload", Relieve: "relieve", StoreOutage: "store-outage", StoreReturn: "store-return",
	RevokeLeases: "revoke-leases", CrashNode: "crash-node", StoreReturnRenewing: "store-return-renewing",
	FailCall: "fail-call", DieOnCall: "die-on-call", CutAPI: "cut-api", RestoreAPI: "restore-api",
	Reject: "reject", Unreject: "unreject",
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
	// ConfirmDown is a Failover's confirmation that the old primary is
	// down (cluster.Request.ConfirmedDown).
	ConfirmDown string
	// Call is the call a FailCall or DieOnCall targets.
	Call Call
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
	if f.Call != "" {
		s += " call=" + string(f.Call)
	}
	return s
}

// insideMachine are the faults that act on a machine's processes.
var insideMachine = map[FaultKind]bool{
	KillAgent: true, StartAgent: true, CrashDB: true, Pause: true, Resume: true, FailStarts: true,
	Hang: true, Unhang: true, CrashNode: true, StartNode: true,
}

// inject applies f to the world. Faults that do not apply (killing a dead
// node) are no-ops.
func (w *World) inject(f Fault) {
	if f.Kind == HealAll {
		w.logf("fault: %s", f)
		w.storeDown = false
		for _, n := range w.nodes {
			if n.frozen {
				n.thawedAt = w.now
			}
			n.paused, n.db.failStarts, n.frozen, n.db.hung, n.overloaded = false, 0, false, false, false
			n.failCalls, n.dieOn, n.apiCut, n.rejecting = nil, "", false, false
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
	case StoreOutage, StoreReturn, StoreReturnRenewing:
		w.logf("fault: %s", f)
		w.storeDown = f.Kind == StoreOutage
		switch f.Kind {
		case StoreReturn:
			w.revokeAll()
		case StoreReturnRenewing:
			w.store.RenewAll()
		}
		for _, n := range w.nodes {
			n.client.SetReachable(!n.partitioned && !w.storeDown)
		}
		return
	case RevokeLeases:
		w.logf("fault: %s", f)
		w.revokeAll()
		return
	}
	n := w.node(f.Member)
	w.logf("fault: %s", f)
	if n.frozen && insideMachine[f.Kind] {
		// A frozen machine is a paused VM: nothing on it can be killed,
		// paused or started until it is thawed (or powered off).
		w.logf("%s is frozen: %s ignored", n.spec.Name, f.Kind)
		return
	}
	switch f.Kind {
	case FailCall:
		if n.failCalls == nil {
			n.failCalls = map[Call]int{}
		}
		n.failCalls[f.Call] += max(f.N, 1)
	case DieOnCall:
		n.dieOn = f.Call
	case KillNode:
		if !n.alive {
			return
		}
		n.alive = false
		n.db.stop(true)
	case CrashNode:
		if !n.alive {
			return
		}
		n.agentDown = true
		n.db.stop(true)
	case StartNode:
		if n.alive && !n.agentDown {
			return
		}
		w.restartAgent(n, true)
	case KillAgent:
		if !n.agentDown && !n.paused {
			n.agentGoneAt = w.now
		}
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
		if !n.agentDown && !n.paused {
			n.agentGoneAt = w.now
		}
		n.paused = true
	case Resume:
		if n.paused {
			n.paused = false
			n.nextRound = w.now
		}
	case FailStarts:
		n.db.failStarts = f.N
	case Freeze:
		if !n.agentDown && !n.paused || w.now.Sub(n.agentGoneAt) > 3*time.Duration(w.cfg.Dynamic.LoopWait) {
			n.frozen = n.alive
		} else {
			// The residual the liveness rule cannot see (detector.OldPrimary):
			// an agent gone less than two loop_waits before its machine
			// froze. Only fencing closes it; it is not simulated.
			w.logf("%s: freeze ignored: its agent stopped %s ago", n.spec.Name, w.now.Sub(n.agentGoneAt))
		}
	case Thaw:
		if n.frozen {
			n.frozen, n.thawedAt = false, w.now
			n.nextRound = w.now
		}
	case Hang:
		n.db.hung = n.db.running
	case Unhang:
		n.db.hung = false
	case CutAPI:
		n.apiCut = true
	case RestoreAPI:
		n.apiCut = false
	case Reject:
		n.rejecting = true
	case Unreject:
		n.rejecting = false
	case Overload:
		n.overloaded = true
	case Relieve:
		n.overloaded = false
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
	n.client.SetReachable(!cut && !w.storeDown)
}

// stop stops the server; immediate (or a crash) leaves crash recovery for
// the next start.
func (d *simDB) stop(immediate bool) {
	if !d.running {
		return
	}
	d.running, d.accepting, d.streaming, d.hung, d.suspended = false, false, false, false, false
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

// revokeAll revokes every lease at once and remembers them: the store broke
// its promise (no lease ends before its TTL) that self-fencing relies on.
func (w *World) revokeAll() {
	for _, id := range w.store.RevokeAll() {
		w.revoked[id] = true
	}
}
