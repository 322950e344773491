// Package etcd implements dcs.Store on etcd v3 with go.etcd.io/etcd/client/v3.
//
// Keys follow the layout documented in package dcs, under
// <Prefix>/<Cluster>/. Every value is JSON.
//
// # Epochs
//
// The leader's epoch (fencing token) is the create revision of the leader
// key. AcquireLeader writes the leader key and last_leader in one
// transaction, so both writes carry the transaction's revision: the leader
// key's CreateRevision and last_leader's ModRevision are the same number.
// The epoch cannot be stored inside last_leader's value because it is not
// known before the transaction commits; readers therefore take
// LastLeader.Epoch from last_leader's own ModRevision. Nothing else ever
// writes last_leader, which keeps that equality true.
//
// # Leases
//
// The session lease is renewed only by explicit KeepAlive calls
// (KeepAliveOnce); the client's background keep-alive loop is never
// started, so the agent times every renewal itself and can fence itself
// when renewals fail.
package etcd
