// Package localcluster runs a whole hamgr cluster on one machine: an
// embedded etcd (one server, or with Options.EtcdMembers a cluster of
// several members that a test may stop and restart), and per member a
// `hamgr agent` process managing its own PostgreSQL, each agent reaching
// every etcd member through a fault proxy of its own so that a test can cut
// it off. `hamgr demo`, the drills and the integration tests use it. Every
// process it starts it stops, by PID or process group.
package localcluster
