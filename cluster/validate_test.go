package cluster

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// defaults is hamgr's default timing (config.Default, localcluster.DefaultTiming).
func defaults() DynamicConfig {
	return DynamicConfig{
		TTL: Duration(10 * time.Second), LoopWait: Duration(2 * time.Second), RetryTimeout: Duration(5 * time.Second),
		PrimaryStartTimeout: Duration(30 * time.Second), MaximumLagOnFailover: 1 << 20,
	}
}

func TestValidateAccepts(t *testing.T) {
	s := func(n int) Duration { return Duration(time.Duration(n) * time.Second) }
	tests := []struct {
		name string
		edit func(*DynamicConfig)
	}{
		{"defaults", func(*DynamicConfig) {}},
		{"fast profile", func(c *DynamicConfig) {
			c.TTL, c.LoopWait, c.RetryTimeout, c.PrimaryStartTimeout = s(5), s(1), s(3), s(10)
		}},
		{"smallest timing", func(c *DynamicConfig) { c.TTL, c.LoopWait, c.RetryTimeout = s(3), s(1), s(1) }},
		{"largest ttl", func(c *DynamicConfig) { c.TTL = Duration(10 * time.Minute) }},
		{"largest loop_wait", func(c *DynamicConfig) { c.TTL, c.LoopWait = s(70), Duration(time.Minute) }},
		{"largest retry_timeout", func(c *DynamicConfig) { c.TTL, c.RetryTimeout = Duration(6*time.Minute), Duration(5*time.Minute) }},
		{"largest everything", func(c *DynamicConfig) {
			c.TTL, c.LoopWait, c.RetryTimeout = Duration(10*time.Minute), Duration(time.Minute), Duration(5*time.Minute)
		}},
		{"primary_start_timeout 0", func(c *DynamicConfig) { c.PrimaryStartTimeout = 0 }},
		{"primary_start_timeout 1h", func(c *DynamicConfig) { c.PrimaryStartTimeout = Duration(time.Hour) }},
		{"lag 0", func(c *DynamicConfig) { c.MaximumLagOnFailover = 0 }},
		{"lag 1TB", func(c *DynamicConfig) { c.MaximumLagOnFailover = 1 << 40 }},
		{"sync unset", func(c *DynamicConfig) { c.SynchronousMode, c.SynchronousNodeCount = "", 0 }},
		{"sync on 1", func(c *DynamicConfig) { c.SynchronousMode, c.SynchronousNodeCount = SyncOn, 1 }},
		{"sync strict 16", func(c *DynamicConfig) { c.SynchronousMode, c.SynchronousNodeCount = SyncStrict, 16 }},
		{"sync off", func(c *DynamicConfig) { c.SynchronousMode = SyncOff }},
		{"paused", func(c *DynamicConfig) { c.Paused = true }},
	}
	for _, tt := range tests {
		c := defaults()
		tt.edit(&c)
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %+v: %v", tt.name, c, err)
		}
	}
}

func TestValidateRefuses(t *testing.T) {
	s := func(n int) Duration { return Duration(time.Duration(n) * time.Second) }
	tests := []struct {
		name string
		edit func(*DynamicConfig)
		key  string // the only key named
		want string // the whole message of that key
	}{
		{"loop_wait 1ns", func(c *DynamicConfig) { c.LoopWait = 1 }, "loop_wait",
			"loop_wait 1ns: must be at least 1s (a shorter loop_wait makes every agent query and write etcd continuously)"},
		{"loop_wait 0", func(c *DynamicConfig) { c.LoopWait = 0 }, "loop_wait", "loop_wait 0s: must be at least 1s ("},
		{"loop_wait 999ms", func(c *DynamicConfig) { c.LoopWait = Duration(999 * time.Millisecond) }, "loop_wait", "loop_wait 999ms: must be at least 1s"},
		{"loop_wait 1.5s", func(c *DynamicConfig) { c.LoopWait = Duration(1500 * time.Millisecond) }, "loop_wait",
			"loop_wait 1.5s: must be a whole number of seconds, from 1s to 1m (etcd leases count whole seconds, and every timing key uses the same unit): use 2s"},
		{"loop_wait 61s", func(c *DynamicConfig) { c.TTL, c.LoopWait = s(600), s(61) }, "loop_wait", "loop_wait 1m1s: must be at most 1m ("},
		{"loop_wait 2m", func(c *DynamicConfig) { c.TTL, c.LoopWait = s(600), Duration(2*time.Minute) }, "loop_wait",
			"loop_wait 2m: must be at most 1m (failed actions are retried and election candidates wait in multiples of loop_wait; typical values are 1s to 10s; did you mean 2s?)"},
		{"ttl 2s", func(c *DynamicConfig) { c.TTL, c.LoopWait, c.RetryTimeout = s(2), s(1), s(1) }, "ttl", "ttl 2s: must be at least 3s ("},
		{"ttl fraction", func(c *DynamicConfig) { c.TTL = Duration(10500 * time.Millisecond) }, "ttl", "ttl 10.5s: must be a whole number of seconds, from 3s to 10m (etcd leases count whole seconds, and every timing key uses the same unit): use 11s"},
		{"ttl 10m1s", func(c *DynamicConfig) { c.TTL = Duration(10*time.Minute + time.Second) }, "ttl", "ttl 10m1s: must be at most 10m ("},
		{"ttl 10h", func(c *DynamicConfig) { c.TTL = Duration(10 * time.Hour) }, "ttl",
			"ttl 10h: must be at most 10m (a longer ttl delays failover after a node crash by that long; typical values are 5s to 30s; did you mean 10s?)"},
		{"ttl 100000h", func(c *DynamicConfig) { c.TTL = Duration(100000 * time.Hour) }, "ttl",
			"ttl 100000h: must be at most 10m (a longer ttl delays failover after a node crash by that long; typical values are 5s to 30s)"},
		{"ttl 1000000h", func(c *DynamicConfig) { c.TTL = Duration(1000000 * time.Hour) }, "ttl", "ttl 1000000h: must be at most 10m"},
		{"ttl equal to sum", func(c *DynamicConfig) { c.TTL = s(7) }, "ttl",
			"ttl 7s: must be greater than loop_wait + retry_timeout (2s + 5s = 7s): a leader must notice it cannot renew and demote itself before its lease runs out; raise ttl to 8s or more, or lower loop_wait or retry_timeout"},
		{"ttl below sum", func(c *DynamicConfig) { c.TTL = s(6) }, "ttl", "ttl 6s: must be greater than loop_wait + retry_timeout (2s + 5s = 7s)"},
		{"retry_timeout 0", func(c *DynamicConfig) { c.RetryTimeout = 0 }, "retry_timeout", "retry_timeout 0s: must be at least 1s (each etcd call gets half of it"},
		{"retry_timeout 500ms", func(c *DynamicConfig) { c.RetryTimeout = Duration(500 * time.Millisecond) }, "retry_timeout", "retry_timeout 500ms: must be at least 1s"},
		{"retry_timeout 5m1s", func(c *DynamicConfig) {
			c.TTL, c.RetryTimeout = Duration(10*time.Minute), Duration(5*time.Minute+time.Second)
		}, "retry_timeout", "retry_timeout 5m1s: must be at most 5m ("},
		{"retry_timeout fraction", func(c *DynamicConfig) { c.RetryTimeout = Duration(2500 * time.Millisecond) }, "retry_timeout", "retry_timeout 2.5s: must be a whole number of seconds"},
		{"primary_start_timeout negative", func(c *DynamicConfig) { c.PrimaryStartTimeout = Duration(-time.Second) }, "primary_start_timeout",
			"primary_start_timeout -1s: must be at least 0s (0 releases the leader key as soon as a crashed primary is seen down)"},
		{"primary_start_timeout 1h1s", func(c *DynamicConfig) { c.PrimaryStartTimeout = Duration(time.Hour + time.Second) }, "primary_start_timeout",
			"primary_start_timeout 1h0m1s: must be at most 1h (for that long a crashed primary keeps the cluster without a writable primary and without failover; pause the cluster to wait longer)"},
		{"primary_start_timeout fraction", func(c *DynamicConfig) { c.PrimaryStartTimeout = Duration(100 * time.Millisecond) }, "primary_start_timeout",
			"primary_start_timeout 100ms: must be a whole number of seconds, from 0s to 1h (etcd leases count whole seconds, and every timing key uses the same unit): use 1s"},
		{"lag negative", func(c *DynamicConfig) { c.MaximumLagOnFailover = -1 }, "maximum_lag_on_failover", "maximum_lag_on_failover -1: must be from 0 to 1TB ("},
		{"lag 1TB+1", func(c *DynamicConfig) { c.MaximumLagOnFailover = 1<<40 + 1 }, "maximum_lag_on_failover", "maximum_lag_on_failover 1099511627777: must be from 0 to 1TB ("},
		{"lag 2TB", func(c *DynamicConfig) { c.MaximumLagOnFailover = 2 << 40 }, "maximum_lag_on_failover",
			"maximum_lag_on_failover 2199023255552 (2TB): must be from 0 to 1TB (a replica lagging more than this is not promoted automatically; more than 1TB is a unit typo: to promote a replica whatever it lacks, run a manual failover)"},
		{"sync mode", func(c *DynamicConfig) { c.SynchronousMode = "maybe" }, "synchronous_mode", `synchronous_mode "maybe": must be off, on or strict`},
		{"sync count 17", func(c *DynamicConfig) { c.SynchronousNodeCount = 17 }, "synchronous_node_count", "synchronous_node_count 17: must be from 1 to 16 ("},
		{"sync count -1", func(c *DynamicConfig) { c.SynchronousNodeCount = -1 }, "synchronous_node_count", "synchronous_node_count -1: must be from 1 to 16"},
	}
	keys := []string{"ttl", "loop_wait", "retry_timeout", "primary_start_timeout", "maximum_lag_on_failover", "synchronous_mode", "synchronous_node_count"}
	for _, tt := range tests {
		c := defaults()
		tt.edit(&c)
		err := c.Validate()
		if err == nil {
			t.Errorf("%s: %+v accepted", tt.name, c)
			continue
		}
		if !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%s:\n got %q\nwant %q...", tt.name, err, tt.want)
		}
		var ce *ConfigError
		if !errors.As(err, &ce) || ce.Key != tt.key {
			t.Errorf("%s: error %v is not a *ConfigError of %s", tt.name, err, tt.key)
		}
		for _, k := range keys {
			if k != tt.key && strings.HasPrefix(err.Error(), k+" ") {
				t.Errorf("%s: names %s too: %v", tt.name, k, err)
			}
		}
		if n := len(c.Problems()); n != 1 {
			t.Errorf("%s: %d problems, want 1: %v", tt.name, n, err)
		}
	}
}

// Every broken key is reported, one line each; the ttl sum rule waits for
// its three keys to be valid on their own.
func TestValidateReportsEveryKey(t *testing.T) {
	c := DynamicConfig{TTL: Duration(100000 * time.Hour), LoopWait: 1, RetryTimeout: 0, PrimaryStartTimeout: -1,
		MaximumLagOnFailover: -1, SynchronousMode: "x", SynchronousNodeCount: 99}
	var got []string
	for _, p := range c.Problems() {
		got = append(got, p.Key)
	}
	want := "ttl loop_wait retry_timeout primary_start_timeout maximum_lag_on_failover synchronous_mode synchronous_node_count"
	if strings.Join(got, " ") != want {
		t.Errorf("problem keys %v, want %s", got, want)
	}
	if err := c.Validate(); strings.Count(err.Error(), "\n") != 6 {
		t.Errorf("want 7 lines:\n%v", err)
	}
	c = defaults()
	c.LoopWait, c.TTL = Duration(2*time.Minute), Duration(5*time.Second)
	if p := c.Problems(); len(p) != 1 || p[0].Key != "loop_wait" {
		t.Errorf("loop_wait out of range with a short ttl: %v", c.Validate())
	}
}

func TestFormat(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Minute: "10m", 100000 * time.Hour: "100000h", 90 * time.Minute: "1h30m", 90 * time.Second: "1m30s",
		time.Hour + time.Second: "1h0m1s", 0: "0s", 1: "1ns", 1500 * time.Millisecond: "1.5s", 10 * time.Second: "10s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%d) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0B", 1 << 20: "1MB", 1536 << 10: "1536kB", 100: "100B", 1 << 40: "1TB"} {
		if got := FormatBytes(n); got != want {
			t.Errorf("FormatBytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// The agent's gate: valid configs pass silently, an invalid one is
// refused every time but reported once, a different invalid one is
// reported again, and after a valid one the first invalid one is news.
func TestConfigGate(t *testing.T) {
	var g ConfigGate
	good, bad, worse := defaults(), defaults(), defaults()
	bad.LoopWait = 1
	worse.TTL = Duration(10 * time.Hour)
	steps := []struct {
		c              DynamicConfig
		report, refuse bool
		key            string
	}{
		{good, false, false, ""},
		{bad, true, true, "loop_wait"},
		{bad, false, true, "loop_wait"},
		{bad, false, true, "loop_wait"},
		{worse, true, true, "ttl"},
		{bad, true, true, "loop_wait"},
		{good, false, false, ""},
		{bad, true, true, "loop_wait"},
	}
	for i, s := range steps {
		report, err := g.Admit(s.c)
		if report != s.report || (err != nil) != s.refuse {
			t.Errorf("step %d: report %v err %v, want report %v refused %v", i, report, err, s.report, s.refuse)
		}
		if err != nil && !strings.HasPrefix(err.Error(), s.key+" ") {
			t.Errorf("step %d: %v does not name %s", i, err, s.key)
		}
	}
}
