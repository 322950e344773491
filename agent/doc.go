// Package agent runs one member's HA loop: observe (probe the database, renew
// the lease, read the cluster), decide (ha.Decide) and execute the plan. It
// owns the goroutines, the clock, the logger and the two safety timers that
// must not wait for a slow loop round: the lease renewer and the fencer that
// stops a leader's database before its lease can expire.
package agent
