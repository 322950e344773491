package detector

import (
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

func TestLeader(t *testing.T) {
	tests := []struct {
		name   string
		leader *cluster.Leader
		self   string
		lease  int64
		want   LeaderState
	}{
		{"no key", nil, "n1", 7, NoLeader},
		{"no key and no lease", nil, "n1", 0, NoLeader},
		{"other member", &cluster.Leader{Name: "n2", Epoch: 4, Lease: 7}, "n1", 7, OtherLeader},
		{"self on current lease", &cluster.Leader{Name: "n1", Epoch: 4, Lease: 7}, "n1", 7, SelfLeader},
		{"self on an old lease", &cluster.Leader{Name: "n1", Epoch: 4, Lease: 6}, "n1", 7, StaleSelf},
		{"self while holding no lease", &cluster.Leader{Name: "n1", Epoch: 4, Lease: 7}, "n1", 0, StaleSelf},
		{"self key with lease 0 and agent without lease", &cluster.Leader{Name: "n1", Epoch: 4}, "n1", 0, StaleSelf},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Leader(tt.leader, tt.self, tt.lease); got != tt.want {
				t.Errorf("Leader = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLocal(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	const timeout = 30 * time.Second
	healthy := db.Status{Running: true, Accepting: true, Role: cluster.RolePrimary, HasData: true}
	starting := db.Status{Running: true, HasData: true}
	down := db.Status{HasData: true}
	tests := []struct {
		name         string
		st           db.Status
		now          time.Time
		downSince    time.Time
		failedStarts int
		want         Health
	}{
		{"empty data directory", db.Status{}, t0, time.Time{}, 0, Empty},
		{"empty but a process runs (clone in progress) is starting", db.Status{Running: true}, t0, time.Time{}, 0, Starting},
		{"answering", healthy, t0, time.Time{}, 0, Healthy},
		{"answering beats failed starts", healthy, t0, t0.Add(-time.Hour), 5, Healthy},
		{"answering replica", db.Status{Running: true, Accepting: true, Role: cluster.RoleReplica, HasData: true}, t0, time.Time{}, 0, Healthy},
		{"process without answers is starting", starting, t0, t0.Add(-time.Second), 0, Starting},
		{"starting just before the timeout", starting, t0.Add(timeout - time.Nanosecond), t0, 0, Starting},
		{"starting at the timeout is unrecoverable", starting, t0.Add(timeout), t0, 0, Unrecoverable},
		{"no process", down, t0, t0, 0, Down},
		{"no process, never seen down", down, t0, time.Time{}, 0, Down},
		{"down just before the timeout", down, t0.Add(timeout - time.Nanosecond), t0, 1, Down},
		{"down at the timeout", down, t0.Add(timeout), t0, 0, Unrecoverable},
		{"one failed start is still down", down, t0, t0, MaxFailedStarts - 1, Down},
		{"max failed starts is unrecoverable", down, t0, t0, MaxFailedStarts, Unrecoverable},
		{"max failed starts while starting", starting, t0, t0, MaxFailedStarts, Unrecoverable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Local(tt.st, tt.now, tt.downSince, timeout, tt.failedStarts); got != tt.want {
				t.Errorf("Local = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestLocalZeroTimeout(t *testing.T) {
	// primary_start_timeout 0: the first round that sees it down gives up.
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if got := Local(db.Status{HasData: true}, t0, t0, 0, 0); got != Unrecoverable {
		t.Errorf("Local = %s, want unrecoverable", got)
	}
}

func TestFenceDeadline(t *testing.T) {
	t0 := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		ttl, lw, rt time.Duration
		want        time.Duration
	}{
		{30 * time.Second, 10 * time.Second, 10 * time.Second, 20 * time.Second},
		{3 * time.Second, time.Second, time.Second, 2 * time.Second},
		{10 * time.Second, 2 * time.Second, 5 * time.Second, 7 * time.Second},
	}
	for _, tt := range tests {
		cfg := cluster.DynamicConfig{TTL: cluster.Duration(tt.ttl), LoopWait: cluster.Duration(tt.lw), RetryTimeout: cluster.Duration(tt.rt)}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("config %+v: %v", cfg, err)
		}
		got := FenceDeadline(t0, cfg)
		if got.Sub(t0) != tt.want {
			t.Errorf("FenceDeadline(ttl %s, loop %s, retry %s) = +%s, want +%s", tt.ttl, tt.lw, tt.rt, got.Sub(t0), tt.want)
		}
		// The point of the deadline: a valid config leaves time to stop
		// before the store can expire the lease (sent + ttl).
		if !got.Before(t0.Add(tt.ttl)) {
			t.Errorf("deadline +%s is not before lease expiry +%s", got.Sub(t0), tt.ttl)
		}
	}
}

func TestStrings(t *testing.T) {
	for s, want := range map[LeaderState]string{NoLeader: "no-leader", SelfLeader: "self", StaleSelf: "stale-self", OtherLeader: "other", 0: "unknown"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
	for h, want := range map[Health]string{Healthy: "healthy", Starting: "starting", Down: "down", Unrecoverable: "unrecoverable", Empty: "empty", 0: "unknown"} {
		if h.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(h), h.String(), want)
		}
	}
}
