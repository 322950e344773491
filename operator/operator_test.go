package operator

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
)

// configStore is an in-memory Store holding only a dynamic config; it
// counts writes so a test can tell a refusal wrote nothing.
type configStore struct {
	cfg    *cluster.DynamicConfig
	writes int
}

func (s *configStore) Load(context.Context) (cluster.Snapshot, error) {
	return cluster.Snapshot{Config: s.cfg}, nil
}
func (s *configStore) CreateRequest(context.Context, cluster.Request) error { return nil }
func (s *configStore) UpdateRequest(context.Context, cluster.Request) error { return nil }
func (s *configStore) ClearRequest(context.Context) error                   { return nil }
func (s *configStore) Initialize(context.Context, string, cluster.DynamicConfig) (string, error) {
	return "", errors.New("not used")
}
func (s *configStore) ResetBootstrap(context.Context, string) (string, error) {
	return "", errors.New("not used")
}
func (s *configStore) SetConfig(_ context.Context, c cluster.DynamicConfig) error {
	s.cfg = &c
	s.writes++
	return nil
}
func (s *configStore) UpdateConfig(_ context.Context, fn func(cluster.DynamicConfig) (cluster.DynamicConfig, error)) (cluster.DynamicConfig, error) {
	if s.cfg == nil {
		return cluster.DynamicConfig{}, dcs.ErrNoConfig
	}
	next, err := fn(*s.cfg)
	if err != nil {
		return *s.cfg, err
	}
	return next, s.SetConfig(context.Background(), next)
}

func defaultConfig() cluster.DynamicConfig {
	return cluster.DynamicConfig{
		TTL: cluster.Duration(10 * time.Second), LoopWait: cluster.Duration(2 * time.Second),
		RetryTimeout: cluster.Duration(5 * time.Second), PrimaryStartTimeout: cluster.Duration(30 * time.Second),
		MaximumLagOnFailover: 1 << 20,
	}
}

// SetConfig writes what the rules allow, and refuses the rest before
// writing, naming the key, the value and the range.
func TestSetConfig(t *testing.T) {
	ctx := context.Background()
	accepted := []struct {
		key, value string
		check      func(cluster.DynamicConfig) bool
	}{
		{"ttl", "20s", func(c cluster.DynamicConfig) bool { return c.TTL == cluster.Duration(20*time.Second) }},
		{"ttl", "600", func(c cluster.DynamicConfig) bool { return c.TTL == cluster.Duration(10*time.Minute) }},
		{"ttl", "10m", func(c cluster.DynamicConfig) bool { return c.TTL == cluster.Duration(10*time.Minute) }},
		{"loop_wait", "1s", func(c cluster.DynamicConfig) bool { return c.LoopWait == cluster.Duration(time.Second) }},
		{"retry_timeout", "1", func(c cluster.DynamicConfig) bool { return c.RetryTimeout == cluster.Duration(time.Second) }},
		{"primary_start_timeout", "0", func(c cluster.DynamicConfig) bool { return c.PrimaryStartTimeout == 0 }},
		{"primary_start_timeout", "1h", func(c cluster.DynamicConfig) bool { return c.PrimaryStartTimeout == cluster.Duration(time.Hour) }},
		{"maximum_lag_on_failover", "1TB", func(c cluster.DynamicConfig) bool { return c.MaximumLagOnFailover == 1<<40 }},
		{"maximum_lag_on_failover", "0", func(c cluster.DynamicConfig) bool { return c.MaximumLagOnFailover == 0 }},
		{"synchronous_mode", "ON", func(c cluster.DynamicConfig) bool { return c.SynchronousMode == cluster.SyncOn }},
		{"synchronous_node_count", "16", func(c cluster.DynamicConfig) bool { return c.SynchronousNodeCount == 16 }},
		{"paused", "true", func(c cluster.DynamicConfig) bool { return c.Paused }},
	}
	for _, tt := range accepted {
		cfg := defaultConfig()
		st := &configStore{cfg: &cfg}
		got, err := (&Operator{Store: st}).SetConfig(ctx, tt.key, tt.value)
		if err != nil || st.writes != 1 || !tt.check(got) || *st.cfg != got {
			t.Errorf("%s=%s: %+v, %v (%d writes)", tt.key, tt.value, got, err, st.writes)
		}
	}
	refused := []struct{ key, value, want string }{
		{"loop_wait", "1ns", "loop_wait=1ns: loop_wait 1ns: must be at least 1s ("},
		{"loop_wait", "0", "loop_wait=0: loop_wait 0s: must be at least 1s"},
		{"loop_wait", "2m", "loop_wait=2m: loop_wait 2m: must be at most 1m"},
		{"ttl", "1.5s", "ttl=1.5s: ttl 1.5s: must be at least 3s"},
		{"ttl", "10.5s", "ttl=10.5s: ttl 10.5s: must be a whole number of seconds, from 3s to 10m"},
		{"ttl", "1000000h", "ttl=1000000h: ttl 1000000h: must be at most 10m"},
		{"ttl", "10h", "ttl=10h: ttl 10h: must be at most 10m (a longer ttl delays failover after a node crash by that long; typical values are 5s to 30s; did you mean 10s?)"},
		{"ttl", "7s", "ttl=7s: ttl 7s: must be greater than loop_wait + retry_timeout (2s + 5s = 7s)"},
		{"ttl", "99999999999999", `ttl="99999999999999": too large a duration`},
		{"ttl", "-5s", "ttl=-5s: ttl -5s: must be at least 3s"},
		{"retry_timeout", "500ms", "retry_timeout=500ms: retry_timeout 500ms: must be at least 1s"},
		{"primary_start_timeout", "2h", "primary_start_timeout=2h: primary_start_timeout 2h: must be at most 1h"},
		{"primary_start_timeout", "ten", `primary_start_timeout="ten": not a duration`},
		{"maximum_lag_on_failover", "2TB", "maximum_lag_on_failover=2TB: maximum_lag_on_failover 2199023255552 (2TB): must be from 0 to 1TB"},
		{"synchronous_mode", "maybe", `synchronous_mode=maybe: synchronous_mode "maybe": must be off, on or strict`},
		{"synchronous_node_count", "17", "synchronous_node_count=17: synchronous_node_count 17: must be from 1 to 16"},
		{"synchronous_node_count", "0", `synchronous_node_count="0": want a whole number from 1 to 16`},
		{"paused", "maybe", `paused="maybe": want true or false`},
		{"tll", "10s", `unknown config key "tll"`},
	}
	for _, tt := range refused {
		cfg := defaultConfig()
		st := &configStore{cfg: &cfg}
		_, err := (&Operator{Store: st}).SetConfig(ctx, tt.key, tt.value)
		if !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), "refused: "+tt.want) {
			t.Errorf("%s=%s:\n got %v\nwant refused: %s...", tt.key, tt.value, err, tt.want)
		}
		if st.writes != 0 || *st.cfg != defaultConfig() {
			t.Errorf("%s=%s: refused but wrote %+v", tt.key, tt.value, *st.cfg)
		}
	}
	if _, err := (&Operator{Store: &configStore{}}).SetConfig(ctx, "ttl", "10s"); !errors.Is(err, ErrRefused) || !errors.Is(err, dcs.ErrNoConfig) {
		t.Errorf("no config: %v", err)
	}
}

// A config written by an older hamgr that breaks today's rules: pause is
// refused (agents ignore that config, so the pause would not happen) with
// the stored problem named apart; fixing it in the same change works.
func TestCheckStoredInvalid(t *testing.T) {
	old := defaultConfig()
	old.LoopWait = cluster.Duration(500 * time.Millisecond)
	st := &configStore{cfg: &old}
	err := (&Operator{Store: st}).Pause(context.Background())
	want := "refused: paused=true: the config in etcd already breaks these rules (written by an older hamgr or by hand; agents ignore it and keep their previous config until it is fixed): loop_wait 500ms: must be at least 1s"
	if !errors.Is(err, ErrRefused) || !strings.HasPrefix(err.Error(), want) || st.writes != 0 {
		t.Fatalf("pause on an invalid stored config:\n got %v\nwant %s...", err, want)
	}

	next := old
	next.TTL = cluster.Duration(10 * time.Hour)
	err = Check(old, next, "ttl=10h")
	if err == nil || !strings.HasPrefix(err.Error(), "refused: ttl=10h: ttl 10h: must be at most 10m") ||
		!strings.Contains(err.Error(), "; besides, the config in etcd already breaks these rules") || !strings.Contains(err.Error(), "loop_wait 500ms") {
		t.Errorf("new and stored problems: %v", err)
	}
	next = old
	next.LoopWait, next.Paused = cluster.Duration(time.Second), true
	if err := Check(old, next, "loop_wait=1s paused=true"); err != nil {
		t.Errorf("fixing the stored problem: %v", err)
	}
	// A stored key changed to another bad value is the change's problem.
	next = old
	next.LoopWait = cluster.Duration(700 * time.Millisecond)
	if err := Check(old, next, "loop_wait=700ms"); err == nil || strings.Contains(err.Error(), "already breaks") {
		t.Errorf("changed bad key: %v", err)
	}
}
