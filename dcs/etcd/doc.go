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
//
// # Errors that name the endpoint
//
// The etcd client fails a request it could not send with a bare "context
// deadline exceeded": gRPC waits for a connection until the deadline and the
// client drops gRPC's reason. The store therefore dials for gRPC itself and
// records how the last connection attempt to each endpoint ended (and, for
// an all-https endpoint list, each TLS handshake). A request that gets no
// answer is reported with every endpoint and why it could not be used:
// connection refused, no such host, a dial timeout, a TLS handshake error,
// or connected but silent. This costs no extra network round trip and never
// delays the caller. Store.CheckEndpoints dials every endpoint once, on
// demand (the agent does at start). With HTTPS_PROXY set, gRPC's own dialer
// (which honours the proxy) is kept and requests say less.
package etcd
