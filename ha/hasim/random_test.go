package hasim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
)

const (
	randomSeeds = 200
	randomSteps = 600
)

// randomFault picks a fault for one of the members.
func randomFault(r *rand.Rand, names []string) Fault {
	kinds := []FaultKind{KillNode, StartNode, KillAgent, StartAgent, CrashDB, Partition, Heal, Pause, Resume, FailStarts, Switchover}
	f := Fault{Kind: kinds[r.IntN(len(kinds))], Member: names[r.IntN(len(names))]}
	switch f.Kind {
	case FailStarts:
		f.N = 1 + r.IntN(3)
	case Switchover:
		// To a random member (maybe the leader itself, maybe one that
		// cannot take over) or to the best replica, now or a little later.
		if r.IntN(3) == 0 {
			f.Member = ""
		}
		if r.IntN(3) == 0 {
			f.After = time.Duration(1+r.IntN(5)) * time.Second
		}
	}
	return f
}

// randomWorld runs one seed: random faults and repairs for randomSteps
// steps, with invariants checked after each, then everything healed and
// liveness checked. It returns the faults injected and any failure.
func randomWorld(seed uint64) (*World, []string, error) {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	var specs []MemberSpec
	n := 3 + r.IntN(3)
	for i := range n {
		s := MemberSpec{Name: fmt.Sprintf("n%d", i+1), Lag: []cluster.LSN{0, 0x100, 0x800}[r.IntN(3)]}
		s.Tags.Priority = r.IntN(2)
		if i > 0 && r.IntN(8) == 0 {
			s.Tags.NoFailover = true
		}
		specs = append(specs, s)
	}
	cfg := Config{Members: specs, Fresh: r.IntN(4) == 0}
	w := New(cfg)
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	var injected []string
	for range randomSteps {
		var fs []Fault
		if r.IntN(20) == 0 {
			fs = append(fs, randomFault(r, names))
			if r.IntN(4) == 0 {
				fs = append(fs, randomFault(r, names)) // double fault
			}
		}
		for _, f := range fs {
			injected = append(injected, fmt.Sprintf("+%s %s", w.Now().Add(w.cfg.Tick).Sub(Origin), f))
		}
		if err := w.Step(fs...); err != nil {
			return w, injected, err
		}
	}
	injected = append(injected, fmt.Sprintf("+%s heal-all", w.Now().Add(w.cfg.Tick).Sub(Origin)))
	if err := w.Step(Fault{Kind: HealAll}); err != nil {
		return w, injected, err
	}
	// Long enough for leases to expire, cannot-follow detection (15s) and
	// a full election.
	if err := w.Run(60 * time.Second); err != nil {
		return w, injected, err
	}
	ps := w.Primaries()
	if len(ps) != 1 {
		return w, injected, fmt.Errorf("liveness: %d primaries after healing everything: %v", len(ps), ps)
	}
	if st := w.Status(ps[0]); !st.HoldsLeader {
		return w, injected, fmt.Errorf("liveness: primary %s does not hold the leader key (%v)", ps[0], w.Leader())
	}
	return w, injected, nil
}

// TestRandomFaults is the fuzzy test: fixed seeds, random faults, invariants
// after every step, liveness at the end.
func TestRandomFaults(t *testing.T) {
	seeds := randomSeeds
	if testing.Short() {
		seeds = 20
	}
	promotions, switchovers, faults, failures := 0, 0, 0, 0
	for seed := range uint64(seeds) {
		w, injected, err := randomWorld(seed)
		promotions += len(w.Promotions)
		switchovers += len(w.Switchovers)
		faults += len(injected)
		if err == nil {
			continue
		}
		var inv *InvariantError
		if errors.As(err, &inv) {
			t.Errorf("seed %d: invariant violated at step %d (+%s): %s\nfaults:\n  %s\n%s\nlog:\n%s", seed, inv.Step, inv.At,
				strings.Join(inv.Violations, "; "), strings.Join(injected, "\n  "), w.Summary(), tail(inv.Log, 150))
		} else {
			t.Errorf("seed %d: %v\nfaults:\n  %s\n%s\nlog:\n%s", seed, err, strings.Join(injected, "\n  "), w.Summary(), tail(w.Log(), 150))
		}
		if failures++; failures >= 3 {
			return
		}
	}
	t.Logf("%d seeds: %d faults injected, %d promotions, %d switchovers", seeds, faults, promotions, switchovers)
	if promotions < seeds/4 {
		t.Errorf("only %d promotions in %d seeds: the faults do not exercise failover", promotions, seeds)
	}
}

func tail(lines []string, n int) string {
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
