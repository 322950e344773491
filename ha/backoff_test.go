package ha

import (
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/detector"
)

// TestBackOff: failed actions wait loop_wait; the last failed primary
// start does not wait (the key is released next); clones that keep
// failing wait twice as long each time, up to five minutes.
func TestBackOff(t *testing.T) {
	cfg := cluster.DynamicConfig{LoopWait: cluster.Duration(10 * time.Second)}
	paused := cfg
	paused.Paused = true
	cases := []struct {
		name         string
		act          ActionKind
		failedStarts int
		failedClones int
		cfg          cluster.DynamicConfig
		want         time.Duration
	}{
		{"failed follow", Follow, 0, 0, cfg, 10 * time.Second},
		{"first failed primary start", StartPrimary, 1, 0, cfg, 10 * time.Second},
		{"last failed primary start", StartPrimary, detector.MaxFailedStarts, 0, cfg, 0},
		{"last failed primary start, paused", StartPrimary, detector.MaxFailedStarts, 0, paused, 10 * time.Second},
		{"first failed clone", Clone, 0, 1, cfg, 10 * time.Second},
		{"second failed clone", Clone, 0, 2, cfg, 20 * time.Second},
		{"fourth failed re-clone", Reclone, 0, 4, cfg, 80 * time.Second},
		{"many failed clones", Clone, 0, 40, cfg, 5 * time.Minute},
	}
	for _, c := range cases {
		tr := Tracker{Self: "a", FailedStarts: c.failedStarts, FailedClones: c.failedClones}
		if got := tr.BackOff(Action{Kind: c.act}, c.cfg); got != c.want {
			t.Errorf("%s: BackOff = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFailedClonesCount: clone failures count up and a success resets.
func TestFailedClonesCount(t *testing.T) {
	tr := Tracker{Self: "a"}
	fail := errTest("copy failed")
	tr.ActionDone(Plan{}, Action{Kind: Reclone}, fail)
	tr.ActionDone(Plan{}, Action{Kind: Clone}, fail)
	if tr.FailedClones != 2 {
		t.Fatalf("FailedClones = %d after two failures, want 2", tr.FailedClones)
	}
	tr.ActionDone(Plan{}, Action{Kind: Clone}, nil)
	if tr.FailedClones != 0 {
		t.Fatalf("FailedClones = %d after a success, want 0", tr.FailedClones)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
