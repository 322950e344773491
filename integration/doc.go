// Package integration holds hamgr's failover tests and drills against real
// PostgreSQL 15 servers, a real (embedded) etcd and real hamgr agent
// processes started by package localcluster. The tests need PostgreSQL's
// server binaries (HAMGR_PG_BIN, default /usr/lib/postgresql/15/bin) and
// skip, saying so, when they are absent.
package integration
