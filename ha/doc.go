// Package ha is hamgr's whole high-availability policy as one pure function:
// Decide turns what an agent observed (its database, the cluster snapshot,
// its lease, the clock) into a Plan of typed actions. It does no I/O, reads
// no clock and starts no goroutines, so every corner of failover is a table
// or scenario test; package agent executes the plans.
//
// Safety rules, each argued where it is applied in Decide:
//
//  1. A database runs as a writable primary only while its agent holds the
//     leader key on its current lease; otherwise it is stopped at once.
//  2. A leader that cannot renew its lease stops its database before the lease
//     can expire on the store (detector.FenceDeadline).
//  3. A replica promotes only after taking the leader key, which succeeds only
//     if the key is absent, and only if the old primary no longer answers as a
//     writable primary (until STONITH exists, that is the fence evidence).
//  4. A member that sees a newer epoch than its own never starts as a primary.
package ha
