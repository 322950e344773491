// Package etcdembed runs a single-member etcd server inside the process, for
// `hamgr demo`, agents configured with etcd.embedded, and tests.
//
// It uses go.etcd.io/etcd/server/v3/embed. Ports default to random free
// ports on 127.0.0.1; Endpoints reports the client URLs actually bound.
// The server logs only fatal errors.
package etcdembed
