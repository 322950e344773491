package cluster

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Limits of the dynamic configuration. DynamicConfig.Validate is the one
// place that enforces them; the agent's config file (package config), the
// store's writers and hamgrctl all call it, so the rules cannot drift. The
// four timing keys are whole seconds: etcd leases count whole seconds, and
// one unit for all four keeps "ttl > loop_wait + retry_timeout" comparing
// like with like (a typed 1500 or 1ns is refused instead of surprising).
const (
	// MinTTL: ttl must exceed loop_wait + retry_timeout, both at least 1s,
	// so 3s is the smallest ttl that can be valid; it is also above etcd's
	// own minimum lease (about 2s with etcd's default election timeout).
	MinTTL = 3 * time.Second
	// MaxTTL: ttl is how long a crashed primary goes unreplaced. Ten
	// minutes of write outage after a node crash is already more than
	// anyone chooses on purpose; larger values (ttl: 10h for 10s) silently
	// disable failover.
	MaxTTL = 10 * time.Minute
	// MinLoopWait: every round reads the cluster from etcd and publishes
	// the member record (and the leader renews its lease at this pace).
	// Below one second an agent busy-loops etcd (loop_wait=1ns made an
	// agent use 15 times the CPU and write etcd 67 times a second); 1s is
	// the fast profile. Events (leader key changes, a dying postmaster)
	// wake the loop at once anyway.
	MinLoopWait = time.Second
	// MaxLoopWait: a failed action is retried after loop_wait and each
	// election candidate waits 2*loop_wait+1s for the better ones, so
	// beyond a minute failover and repairs become minutes slow, and ttl
	// (at most MaxTTL) must exceed it anyway.
	MaxLoopWait = time.Minute
	// MinRetryTimeout: each etcd call of the agent gets retry_timeout/2,
	// so 1s leaves 500ms per call; less, and an etcd leader election or a
	// slow fsync on an etcd member demotes a healthy primary.
	MinRetryTimeout = time.Second
	// MaxRetryTimeout: a leader cut off from etcd keeps taking writes,
	// unsupervised, for up to loop_wait + retry_timeout before it fences
	// itself, and ttl must exceed that; more than five minutes of that is
	// a mistake, and leaves little room below MaxTTL.
	MaxRetryTimeout = 5 * time.Minute
	// MaxPrimaryStartTimeout: while a crashed primary runs crash recovery
	// the cluster has no writable primary and no automatic failover. An
	// hour covers the recovery of large databases; beyond that, waiting
	// should be an operator's decision (pause), not a setting. 0 is
	// allowed: release the leader key as soon as the primary is seen down.
	MaxPrimaryStartTimeout = time.Hour
	// MaxMaximumLagOnFailover: 1TB is a thousand times the WAL the
	// replication slots keep (1GB by default); anything larger
	// is a unit typo. To promote a replica whatever it lacks, an operator
	// runs a manual failover instead. 0 allows only replicas that had
	// everything the primary last published.
	MaxMaximumLagOnFailover int64 = 1 << 40
	// MaxFailoverBackoff: a day. Past that the window outlasts any
	// operator's reaction and only delays recovery from the next failure.
	MaxFailoverBackoff = 24 * time.Hour
	// MaxSynchronousNodeCount: every listed standby must confirm each
	// commit, so commits wait for the slowest of them; no real cluster
	// runs more than 16 synchronous standbys. 0 in the store means unset
	// (1).
	MaxSynchronousNodeCount = 16
)

// ConfigError is one rule of the dynamic configuration that a value
// breaks. Its message names the key, the value, what is allowed, why, and
// how to fix it.
type ConfigError struct {
	// Key is the dynamic config key as in etcd and hamgrctl ("ttl"); the
	// agent's config file has it under timing.
	Key string
	// Value is the offending value as text ("100000h").
	Value string
	// Problem is what is wrong: the allowed range, why, and what to do.
	Problem string
}

// Error returns "KEY VALUE: PROBLEM".
func (e *ConfigError) Error() string { return e.Key + " " + e.Value + ": " + e.Problem }

// Validate checks c against the rules of the dynamic configuration and
// returns nil, or every broken rule as *ConfigError values joined with
// errors.Join (see Problems).
func (c DynamicConfig) Validate() error {
	p := c.Problems()
	errs := make([]error, len(p))
	for i, e := range p {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// Problems returns every rule c breaks, in key order, at most one per key;
// nil when c is valid. The rules:
//
//   - ttl: whole seconds, MinTTL..MaxTTL, and greater than loop_wait +
//     retry_timeout, so that a leader whose renewals fail fences itself
//     (at last renewal + loop_wait + retry_timeout) before etcd can expire
//     its lease and let another member lead;
//   - loop_wait: whole seconds, MinLoopWait..MaxLoopWait;
//   - retry_timeout: whole seconds, MinRetryTimeout..MaxRetryTimeout;
//   - primary_start_timeout: whole seconds, 0..MaxPrimaryStartTimeout;
//   - maximum_lag_on_failover: 0..MaxMaximumLagOnFailover bytes;
//   - synchronous_mode: off (or empty), on or strict;
//   - synchronous_node_count: 0 (unset, meaning 1) or 1..MaxSynchronousNodeCount;
//   - failover_backoff: whole seconds, 0 (off)..MaxFailoverBackoff;
//   - fencing: off (or empty), require or best-effort.
//
// The limits' comments say why each is where it is.
func (c DynamicConfig) Problems() []*ConfigError {
	var out []*ConfigError
	add := func(e *ConfigError) {
		if e != nil {
			out = append(out, e)
		}
	}
	ttl, lw, rt := time.Duration(c.TTL), time.Duration(c.LoopWait), time.Duration(c.RetryTimeout)
	ttlErr := checkSeconds("ttl", ttl, MinTTL, MaxTTL,
		"a shorter lease cannot outlast loop_wait + retry_timeout, each at least 1s",
		"a longer ttl delays failover after a node crash by that long; typical values are 5s to 30s")
	lwErr := checkSeconds("loop_wait", lw, MinLoopWait, MaxLoopWait,
		"a shorter loop_wait makes every agent query and write etcd continuously",
		"failed actions are retried and election candidates wait in multiples of loop_wait; typical values are 1s to 10s")
	rtErr := checkSeconds("retry_timeout", rt, MinRetryTimeout, MaxRetryTimeout,
		"each etcd call gets half of it, and a shorter one lets an etcd leader election demote a healthy primary",
		"a leader cut off from etcd keeps taking writes unsupervised that long before it fences itself; typical values are 3s to 30s")
	if ttlErr == nil && lwErr == nil && rtErr == nil && ttl <= lw+rt {
		ttlErr = &ConfigError{Key: "ttl", Value: FormatDuration(ttl), Problem: fmt.Sprintf(
			"must be greater than loop_wait + retry_timeout (%s + %s = %s): a leader must notice it cannot renew and demote itself before its lease runs out; raise ttl to %s or more, or lower loop_wait or retry_timeout",
			FormatDuration(lw), FormatDuration(rt), FormatDuration(lw+rt), FormatDuration(lw+rt+time.Second))}
	}
	add(ttlErr)
	add(lwErr)
	add(rtErr)
	add(checkSeconds("primary_start_timeout", time.Duration(c.PrimaryStartTimeout), 0, MaxPrimaryStartTimeout,
		"0 releases the leader key as soon as a crashed primary is seen down",
		"for that long a crashed primary keeps the cluster without a writable primary and without failover; pause the cluster to wait longer"))
	add(checkLag(c.MaximumLagOnFailover))
	if m := c.SynchronousMode; m != "" && m != SyncOff && !m.Enabled() {
		add(&ConfigError{Key: "synchronous_mode", Value: strconv.Quote(string(m)), Problem: "must be off, on or strict"})
	}
	if n := c.SynchronousNodeCount; n < 0 || n > MaxSynchronousNodeCount {
		add(&ConfigError{Key: "synchronous_node_count", Value: strconv.Itoa(n), Problem: fmt.Sprintf(
			"must be from 1 to %d (every listed standby must confirm each commit, so commits wait for the slowest of them)", MaxSynchronousNodeCount)})
	}
	add(checkSeconds("failover_backoff", time.Duration(c.FailoverBackoff), 0, MaxFailoverBackoff,
		"0 turns anti-flapping off",
		"a longer window leaves every failover after the first of the day to an operator"))
	if f := c.Fencing; f != "" && f != FencingOff && !f.Enabled() {
		add(&ConfigError{Key: "fencing", Value: strconv.Quote(string(f)), Problem: "must be off, require or best-effort (each member's fencing section of its config file says how to power the others off)"})
	}
	return out
}

// checkSeconds checks one timing key: whole seconds within lo..hi. low and
// high say why the bound is there.
func checkSeconds(key string, d, lo, hi time.Duration, low, high string) *ConfigError {
	e := &ConfigError{Key: key, Value: FormatDuration(d)}
	switch {
	case d < lo:
		e.Problem = fmt.Sprintf("must be at least %s (%s%s)", FormatDuration(lo), low, unitTypoHint(d, lo, hi))
	case d > hi:
		e.Problem = fmt.Sprintf("must be at most %s (%s%s)", FormatDuration(hi), high, unitTypoHint(d, lo, hi))
	case d%time.Second != 0:
		up := d.Truncate(time.Second) + time.Second
		e.Problem = fmt.Sprintf("must be a whole number of seconds, from %s to %s (etcd leases count whole seconds, and every timing key uses the same unit): use %s",
			FormatDuration(lo), FormatDuration(hi), FormatDuration(min(up, hi)))
	default:
		return nil
	}
	return e
}

// unitTypoHint suggests seconds when d, too large, is a whole number of
// hours or minutes that would be a valid number of seconds: ttl 10h gives
// "; did you mean 10s?".
func unitTypoHint(d, lo, hi time.Duration) string {
	for _, u := range []time.Duration{time.Hour, time.Minute} {
		if d > hi && d%u == 0 {
			if n := d / u; n < 1<<20 && n*time.Second >= lo && n*time.Second <= hi {
				return fmt.Sprintf("; did you mean %ds?", n)
			}
			return ""
		}
	}
	return ""
}

func checkLag(n int64) *ConfigError {
	if n >= 0 && n <= MaxMaximumLagOnFailover {
		return nil
	}
	v := strconv.FormatInt(n, 10)
	if h := FormatBytes(n); n > 0 && h != v+"B" {
		v += " (" + h + ")"
	}
	return &ConfigError{Key: "maximum_lag_on_failover", Value: v, Problem: fmt.Sprintf(
		"must be from 0 to %s (a replica lagging more than this is not promoted automatically; more than %s is a unit typo: to promote a replica whatever it lacks, run a manual failover)",
		FormatBytes(MaxMaximumLagOnFailover), FormatBytes(MaxMaximumLagOnFailover))}
}

// FormatDuration writes d like time.Duration.String without zero tails:
// "10m" rather than "10m0s", "100000h" rather than "100000h0m0s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// FormatBytes writes n with the largest unit of 1024 that divides it
// exactly ("1MB", "1536kB", "100B").
func FormatBytes(n int64) string {
	for _, u := range []struct {
		name string
		size int64
	}{{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"kB", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ConfigGate is the agent's filter for the dynamic configuration it reads
// from the store each round: a valid config is applied, an invalid one
// (written by an older hamgr, or by hand) is not, and the agent keeps the
// config it had. Admit reports each invalid config once, not every round.
// The zero value is ready; it is not safe for concurrent use.
type ConfigGate struct {
	rejected *DynamicConfig
}

// Admit validates c. It returns nil when c may be applied. Otherwise it
// returns the validation error (c must not be applied) and whether this is
// the first time this exact config was refused since the last valid one,
// i.e. whether the caller should log it.
func (g *ConfigGate) Admit(c DynamicConfig) (report bool, err error) {
	if err := c.Validate(); err != nil {
		first := g.rejected == nil || *g.rejected != c
		g.rejected = &c
		return first, err
	}
	g.rejected = nil
	return false, nil
}
