// Package hasim is a deterministic multi-agent simulator for package ha.
//
// A World holds N members, each a simulated database (role, running, WAL
// position, timeline history, streaming replication from an upstream with a
// configurable lag) and a simulated agent that mirrors what package agent
// tracks between rounds (lease, last renewal sent, leader lost at, down
// since, failed starts, released and cannot-follow epochs, when the
// election opened, when a switchover handoff was first seen, and the
// old-primary probe made at last_leader's address). The agents share one
// simulated store with leases that expire on the simulated clock, a leader
// key created only if absent whose epoch is the store revision, a persistent
// last_leader written with the leader's address, member records bound to
// leases and the operator's pending request (faults Switchover, Failover and
// CancelRequest write and delete it). A fast stop of a primary writes a
// shutdown checkpoint that reaches the replicas streaming from it.
//
// A member rejoins the leader as the agent does: a clone into an empty data
// directory, pg_rewind of its stopped database (MemberSpec.UseRewind) and a
// re-clone, data deleted then copied (MemberSpec.AllowReclone). A rewind or
// clone needs the upstream's database to accept connections. As pg_rewind
// does, a rewind keeps the data ("no rewind required") when it is on the
// upstream's timeline id or its WAL ends before the upstream's history
// left its timeline, and otherwise makes it a copy of the upstream's
// history at the upstream's position. The tracker records each rewind's epoch and error exactly as
// agent.do does. A stopped data directory without standby.signal is probed
// as WasPrimary.
//
// Nothing here does I/O, starts goroutines or reads the wall clock: the
// clock advances only in Step, by a fixed tick. Each step:
//
//  1. advances the clock by one tick and applies the injected faults;
//  2. advances every database (crash recovery finishing, writes on a
//     primary, replicas catching up with their upstream);
//  3. runs each live, unpaused agent's lease renewer and fence timer (the
//     real agent runs both on their own goroutines, independent of rounds);
//  4. lets the store expire leases whose TTL ran out;
//  5. runs the round (observe, ha.Decide, execute) of every live, unpaused
//     agent that is due, in member order rotated by the step number;
//  6. checks the invariants.
//
// Invariants (a violation is returned by Step as an *InvariantError carrying
// the step log):
//
//   - at most one database is a running, writable primary;
//   - epochs only grow;
//   - no database is promoted unless its agent holds the leader key on its
//     current, live lease at that moment;
//   - a switchover loses no WAL: the member promoted for it has everything
//     the old primary wrote, past the handoff's final position;
//   - a member whose data was rewound, re-cloned or cloned from another is
//     promoted only under a leader key acquired after that;
//   - when the store expires a lease, the database of the agent that owns
//     it is not a writable primary (the agent fenced first). A paused
//     (SIGSTOPped) agent cannot fence: that case is exempt and covered by
//     the first invariant (replicas see the old primary alive and wait).
//
// The simulator is for tests only; it models PostgreSQL and etcd just
// enough to exercise the HA policy and is never used in production.
package hasim
