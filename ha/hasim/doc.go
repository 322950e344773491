// Package hasim is a deterministic multi-agent simulator of hamgr: it runs
// the real agent (package agent, which calls ha.Decide) against twins of
// the database and of the store, on a simulated clock.
//
// A World holds N members. Each is a simulated machine: a simulated
// database (role, running, WAL position, timeline history, streaming
// replication from an upstream with a configurable lag, replication slots,
// the synchronous standby setting) behind an engine that implements
// db.Database and db.Replication as db/postgres does, and a real
// *agent.Agent with a memstore client (package dcs/memstore, the in-memory
// twin of dcs/etcd: leases that expire on the simulated clock, a leader
// key created only if absent whose epoch is the store revision, a
// persistent last_leader written with the leader's address, member records
// bound to leases, the operator's pending request). Faults kill nodes and
// agent processes, crash databases, cut agents off from the store, pause
// agents (SIGSTOP), make starts fail, write operator requests, and fail
// (or kill the agent in) a call of a promotion's steps (FailCall,
// DieOnCall). Every agent has a publisher that records what it published;
// members with MemberSpec.Fencer have a fencer that powers the old
// primary's simulated machine off. A fast
// stop of a primary writes a shutdown checkpoint that reaches the replicas
// streaming from it.
//
// A member rejoins the leader as db/postgres does: a clone into an empty
// data directory (pg_basebackup), pg_rewind of its stopped database, and a
// re-clone (data deleted, then copied). A rewind or clone needs the
// upstream's database to accept connections. As pg_rewind does, a rewind
// keeps the data ("no rewind required") when it is on the upstream's
// timeline id or its WAL ends before the upstream's history left its
// timeline, and otherwise makes it a copy of the upstream's history at the
// upstream's position. A stopped data directory without standby.signal is
// probed as WasPrimary.
//
// Nothing here does I/O, starts goroutines or reads the wall clock: the
// clock advances only in Step, by a fixed tick, and the agents' step
// functions (Agent.Renew, Agent.Fence, Agent.Round) are called
// synchronously. Each step:
//
//  1. advances the clock by one tick and applies the injected faults;
//  2. advances every database (crash recovery finishing, writes on a
//     primary, replicas catching up with their upstream);
//  3. runs each live, unpaused agent's lease renewer (when due) and fence
//     timer (the real agent runs both on goroutines of their own,
//     independent of rounds);
//  4. lets the store expire leases whose TTL ran out;
//  5. runs the round of every live, unpaused agent that is due, in member
//     order rotated by the step number; a change that the store's watch
//     would wake agents for makes every agent due at once;
//  6. checks the invariants.
//
// Invariants (a violation is returned by Step as an *InvariantError carrying
// the step log):
//
//   - at most one database is a running, writable primary;
//   - epochs only grow;
//   - no database is promoted, or finishes starting as a primary, unless
//     its agent holds the leader key on its current, live lease at that
//     moment;
//   - a switchover loses no WAL: the member promoted for it has everything
//     the old primary wrote, past the handoff's final position;
//   - a member whose data was rewound, re-cloned or cloned from another is
//     promoted only under a leader key acquired after that;
//   - no database is promoted at epoch E before every earlier step of E's
//     promotion is done: the leader key carries a promotion record with
//     the key and fence steps done, and in synchronous mode the database
//     already requires a standby's confirmation (checkPromotionSteps);
//   - a leader key still held is taken over (the failover before the ttl
//     on proof of death) only while the old leader's agent process is
//     gone, its database does not run and its machine is up and not
//     frozen (checkTakeOver; simReach answers the agents' port checks
//     from the same state);
//   - when the store expires a lease, the database of the agent that owns
//     it is not a writable primary (the agent fenced first). A paused
//     (SIGSTOPped) agent cannot fence: that case is exempt and covered by
//     the first invariant (replicas see the old primary alive and wait).
//
// The simulator is for tests only; it models PostgreSQL and etcd just
// enough to exercise the HA policy and the agent, and is never used in
// production.
package hasim
