package main

import (
	"os"
	"runtime"
	"runtime/debug"
	"strings"
)

// agentGCPercent is the agent's garbage-collection target when GOGC is not
// set. An idle agent's live heap is small and steady (a few MiB); collecting
// when it has grown by half instead of Go's default doubling keeps the
// resident set about 2 MiB lower for no CPU that integration/cmd/footprint
// can tell apart (0.10–0.14 s per idle minute either way on this project's
// 2-core test machine, under load).
const agentGCPercent = 50

// tuneGC applies agentGCPercent unless the operator set GOGC, which wins.
func tuneGC() {
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(agentGCPercent)
	}
}

// agentMaxProcs is how many threads may run the agent's Go code at once,
// unless the operator set GOMAXPROCS. An agent's goroutines mostly wait on
// the network and timers; the work of a round (a few etcd and database
// requests, some JSON) is milliseconds a second. With one P the runtime
// does not start a second thread spinning for work each time a goroutine
// becomes ready (every etcd reply hands over between gRPC's reader, its
// writer and the caller), which integration/cmd/footprint measured at about
// a sixth of an idle agent's CPU; and setting it stops the runtime from
// re-reading the cgroup's CPU limit every second. Nothing the agent does
// needs two cores: the fence timer and the renewer still preempt a busy
// round within the runtime's 10 ms time slice.
const agentMaxProcs = 1

// tuneMaxProcs applies agentMaxProcs unless GOMAXPROCS is set, which wins.
func tuneMaxProcs() {
	if _, set := os.LookupEnv("GOMAXPROCS"); !set {
		runtime.GOMAXPROCS(agentMaxProcs)
	}
}

// stopHeapSampling turns off the runtime's heap profile: the agent serves
// no profiles, and the sampling (a stack walk every 512 KiB allocated, and
// a record per distinct stack kept for ever in a table of its own that
// starts at 1.4 MiB of address space) would otherwise grow its memory
// slowly with each new allocation site it meets. GODEBUG=memprofilerate=N
// in the environment keeps it on.
func stopHeapSampling() {
	if !strings.Contains(os.Getenv("GODEBUG"), "memprofilerate=") {
		runtime.MemProfileRate = 0
	}
}
