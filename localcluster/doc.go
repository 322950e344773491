// Package localcluster runs a whole hamgr cluster on one machine: an
// embedded etcd, and per member a `hamgr agent` process managing its own
// PostgreSQL, each agent reaching etcd through its own fault proxy so that
// a test can cut it off. `hamgr demo`, the drills and the integration tests
// use it. Every process it starts it stops, by PID or process group.
package localcluster
