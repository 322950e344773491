package ha

import (
	"fmt"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
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
		act          Action
		failedStarts int
		failedClones int
		cfg          cluster.DynamicConfig
		want         time.Duration
	}{
		{"failed follow", Follow{}, 0, 0, cfg, 10 * time.Second},
		{"first failed primary start", StartPrimary{}, 1, 0, cfg, 10 * time.Second},
		{"last failed primary start", StartPrimary{}, detector.MaxFailedStarts, 0, cfg, 0},
		{"last failed primary start, paused", StartPrimary{}, detector.MaxFailedStarts, 0, paused, 10 * time.Second},
		{"first failed clone", Clone{}, 0, 1, cfg, 10 * time.Second},
		{"second failed clone", Clone{}, 0, 2, cfg, 20 * time.Second},
		{"fourth failed re-clone", Reclone{}, 0, 4, cfg, 80 * time.Second},
		{"many failed clones", Clone{}, 0, 40, cfg, 5 * time.Minute},
	}
	for _, c := range cases {
		tr := Tracker{Self: "a", FailedStarts: c.failedStarts, FailedClones: c.failedClones}
		if got := tr.BackOff(c.act, c.cfg); got != c.want {
			t.Errorf("%s: BackOff = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestFailedClonesCount: clone failures count up and a success resets.
func TestFailedClonesCount(t *testing.T) {
	tr := Tracker{Self: "a"}
	fail := errTest("copy failed")
	tr.ActionDone(Step{}, Reclone{}, fail)
	tr.ActionDone(Step{}, Clone{}, fail)
	if tr.FailedClones != 2 {
		t.Fatalf("FailedClones = %d after two failures, want 2", tr.FailedClones)
	}
	tr.ActionDone(Step{}, Clone{}, nil)
	if tr.FailedClones != 0 {
		t.Fatalf("FailedClones = %d after a success, want 0", tr.FailedClones)
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }

// TestRecloneRecordedAsRejoin: a pg_rewind is recorded for the leader's
// epoch whatever its outcome, except when it could not reach its upstream
// (it did not run); a successful re-clone is recorded as a rejoin without
// error, so a later stop in that epoch does not re-clone again.
func TestRecloneRecordedAsRejoin(t *testing.T) {
	v := View{Snap: cluster.Snapshot{Leader: &cluster.Leader{Name: "b", Epoch: 9}}}
	tr := Tracker{Self: "a"}
	tr.ActionDone(Step{View: v}, Rewind{}, fmt.Errorf("CHECKPOINT on upstream b: %w: refused", db.ErrUpstreamUnavailable))
	if tr.RejoinEpoch != 0 {
		t.Fatalf("a rewind that could not reach its upstream was recorded for epoch %d", tr.RejoinEpoch)
	}
	tr.ActionDone(Step{View: v}, Rewind{}, errTest("no common ancestor"))
	if tr.RejoinEpoch != 9 || tr.RejoinError != "no common ancestor" {
		t.Fatalf("failed rewind recorded as epoch %d error %q", tr.RejoinEpoch, tr.RejoinError)
	}
	tr.ActionDone(Step{View: v}, Reclone{}, errTest("copy failed"))
	if tr.RejoinError != "no common ancestor" {
		t.Fatalf("a failed re-clone changed the rewind record to %q", tr.RejoinError)
	}
	tr.ActionDone(Step{View: v}, Reclone{}, nil)
	if tr.RejoinEpoch != 9 || tr.RejoinError != "" {
		t.Fatalf("successful re-clone recorded as epoch %d error %q, want 9 and none", tr.RejoinEpoch, tr.RejoinError)
	}
}
