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

// TestStopHeapSampling: the agent keeps no heap profile unless GODEBUG
// asks for one.
func TestStopHeapSampling(t *testing.T) {
	before := runtime.MemProfileRate
	defer func() { runtime.MemProfileRate = before }()

	t.Setenv("GODEBUG", "memprofilerate=4096")
	runtime.MemProfileRate = 4096
	stopHeapSampling()
	if runtime.MemProfileRate != 4096 {
		t.Errorf("with GODEBUG=memprofilerate=4096, MemProfileRate became %d", runtime.MemProfileRate)
	}
	t.Setenv("GODEBUG", "")
	runtime.MemProfileRate = 512 * 1024
	stopHeapSampling()
	if runtime.MemProfileRate != 0 {
		t.Errorf("MemProfileRate after stopHeapSampling = %d, want 0", runtime.MemProfileRate)
	}
}
