// Package etcdembed runs etcd inside the process, for `hamgr demo`, agents
// configured with etcd.embedded, and tests.
//
// Start runs a single-member server. Its ports default to random free
// ports on 127.0.0.1; Endpoints reports the client URLs actually bound.
// StartCluster runs a cluster of several members on fixed ports (tests of
// etcd quorum loss), whose members can be stopped, as if they crashed, and
// restarted on their data directories. It uses
// go.etcd.io/etcd/server/v3/embed; the servers log only fatal errors.
package etcdembed
