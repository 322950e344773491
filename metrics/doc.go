// Package metrics exposes an agent's measurements in the Prometheus text
// format, from a registry of its own (never the process-global default
// registry, so that several agents in one process — the demo, tests — do
// not collide).
//
// Every hamgr_ series carries the constant labels cluster and member:
//
//	hamgr_role{role}                     1 for this member's current database role
//	                                     (primary, replica, unknown), 0 for the others
//	hamgr_is_leader                      1 while this agent holds the leader key with a live lease
//	hamgr_wal_position_bytes             this member's WAL position (LSN as a byte offset)
//	hamgr_timeline                       this member's timeline
//	hamgr_lag_bytes                      bytes behind the leader's published position; NaN when unknown
//	hamgr_replay_lag_seconds             replay delay on a replica; NaN when unknown
//	hamgr_epoch                          epoch of the leader key as last read; 0 when no one holds it
//	hamgr_paused                         1 while automatic failover is paused
//	hamgr_failovers_total{kind}          leadership changes this member completed by promoting,
//	                                     by kind: failover, switchover, manual failover
//	hamgr_switchovers_total              the kind="switchover" part of the above, on its own
//	hamgr_last_failover_step_seconds{step}  duration of each step of this member's latest promotion
//	hamgr_loop_duration_seconds          histogram of HA loop round durations
//	hamgr_last_loop_timestamp_seconds    Unix time at which the last loop round ended
//	hamgr_etcd_errors_total{op}          failed store operations, by operation
//	hamgr_db_probe_errors_total          failed probes of the local database
//	hamgr_self_fences_total              times this agent stopped its database because it
//	                                     could not renew its lease in time
//	hamgr_synchronous_standbys           synchronous standbys recorded by this leader for its epoch
//	hamgr_problem{code}                  1 for the problem code of this member's last HA decision
//	                                     (cluster.ProblemTable), 0 for every other code
//	hamgr_durability_at_risk             1 when that code is durability_at_risk (kept for
//	                                     dashboards written before hamgr_problem)
//
// The Go runtime and process collectors are registered too (go_*, process_*),
// without the constant labels.
//
// All methods are safe for concurrent use and safe on a nil *Metrics, where
// they do nothing.
package metrics
