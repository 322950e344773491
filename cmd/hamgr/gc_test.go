package main

import (
	"os"
	"runtime"
	"testing"
)

// TestTuneMaxProcs: the agent runs on one P unless GOMAXPROCS is set.
func TestTuneMaxProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)

	t.Setenv("GOMAXPROCS", "")
	runtime.GOMAXPROCS(3)
	tuneMaxProcs()
	if got := runtime.GOMAXPROCS(0); got != 3 {
		t.Errorf("with GOMAXPROCS set, tuneMaxProcs changed GOMAXPROCS from 3 to %d; the operator's setting must win", got)
	}

	t.Setenv("GOMAXPROCS", "")
	if err := os.Unsetenv("GOMAXPROCS"); err != nil {
		t.Fatal(err)
	}
	tuneMaxProcs()
	if got := runtime.GOMAXPROCS(0); got != agentMaxProcs {
		t.Errorf("GOMAXPROCS after tuneMaxProcs = %d, want %d", got, agentMaxProcs)
	}
}
