// Package agent runs one member's HA loop: observe (probe the database, renew
// the lease, read the cluster), decide (ha.Decide) and execute the plan. It
// owns the goroutines, the clock, the logger and the two safety timers that
// must not wait for a slow loop round: the lease renewer and the fencer that
// stops a leader's database before its lease can expire.
//
// A plan's actions are typed (package ha); each runs through its own method
// of the agent's ha.Executor: execute.go runs a plan (a long action in the
// background), exec_db.go holds the executors of the actions on the local
// database, exec_store.go those on the store, and promotion.go a
// promotion's steps.
package agent
