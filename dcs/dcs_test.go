package dcs

import (
	"testing"
	"time"
)

// UnrenewedFor bounds the time since the last renewal from below: etcd
// rounds the time left down, so the true time left can be up to a second
// more than it says, and the bound a second less than granted-remaining.
func TestUnrenewedFor(t *testing.T) {
	for _, c := range []struct {
		remaining, granted, want time.Duration
	}{
		{10 * time.Second, 10 * time.Second, 0},
		{9 * time.Second, 10 * time.Second, 0},
		{8 * time.Second, 10 * time.Second, time.Second},
		{6 * time.Second, 10 * time.Second, 3 * time.Second},
		{0, 10 * time.Second, 9 * time.Second},
		{12 * time.Second, 10 * time.Second, 0},
	} {
		if got := (LeaseTTL{Remaining: c.remaining, Granted: c.granted}).UnrenewedFor(); got != c.want {
			t.Errorf("remaining %s of %s: unrenewed for %s, want %s", c.remaining, c.granted, got, c.want)
		}
	}
}
