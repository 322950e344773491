package history

import (
	"errors"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

// ack builds an acknowledgement received at ms (sent 1 ms earlier).
func ack(id int64, node string, tl int64, ms int) Ack {
	return Ack{ID: id, Node: node, Timeline: tl, Path: PathMultiHost, Sent: at(ms - 1), At: at(ms)}
}

func ids(acks []Ack) []int64 {
	var s []int64
	for _, a := range acks {
		s = append(s, a.ID)
	}
	return s
}

// clean: n1 on timeline 1 until 1000 ms, nothing until n2's timeline 2 at
// 4000 ms.
func clean() []Ack {
	return []Ack{ack(1, "n1", 1, 100), ack(2, "n1", 1, 1000), ack(3, "n2", 2, 4000), ack(4, "n2", 2, 4100)}
}

func TestSplitBrainNoneInACleanFailover(t *testing.T) {
	if got := SplitBrain(clean()); len(got) != 0 {
		t.Fatalf("split-brain writes in a clean failover: %v", got)
	}
}

func TestSplitBrainFindsOldPrimaryAcksAfterTheNewOnes(t *testing.T) {
	h := append(clean(), Ack{ID: 5, Node: "n1", Timeline: 1, Path: PathDirect, Sent: at(3900), At: at(4050)},
		ack(6, "n1", 1, 5000))
	if got := ids(SplitBrain(h)); !slices.Equal(got, []int64{5, 6}) {
		t.Fatalf("split-brain = %v, want [5 6]", got)
	}
	// An old-timeline ack received before the new primary's first is not one,
	// whatever order the log holds them in.
	h = []Ack{ack(3, "n2", 2, 4000), ack(2, "n1", 1, 3999)}
	if got := SplitBrain(h); len(got) != 0 {
		t.Fatalf("split-brain = %v, want none", got)
	}
}

func TestLost(t *testing.T) {
	present := map[int64]bool{1: true, 2: true, 3: true, 4: true}
	if got := Lost(clean(), present); len(got) != 0 {
		t.Fatalf("lost = %v with every write present", got)
	}
	delete(present, 2)
	if got := Lost(clean(), present); !slices.Equal(got, []int64{2}) {
		t.Fatalf("lost = %v, want [2]", got)
	}
}

func TestUnavailability(t *testing.T) {
	kill := Fault{Name: "kill n1", Start: at(1000), End: at(2000)}
	// The ack at 1010 was in flight when the fault hit: the outage is the
	// gap after it, 1010 -> 4000.
	h := append(clean(), ack(5, "n1", 1, 1010))
	o, err := Unavailability(h, kill)
	if err != nil {
		t.Fatal(err)
	}
	if o.Duration != 2990*time.Millisecond || !o.From.Equal(at(1010)) || !o.To.Equal(at(4000)) {
		t.Fatalf("outage = %+v, want 1010 ms -> 4000 ms", o)
	}
	// A split-brain ack by an old primary does not end an outage: n2 (timeline
	// 2) fails at 4200, n1 (timeline 1) acks at 4300, n3 takes over at 6000.
	h = append(clean(), ack(9, "n1", 1, 4300), ack(10, "n3", 3, 6000))
	o, err = Unavailability(h, Fault{Name: "kill n2", Start: at(4200), End: at(4500)})
	if err != nil || o.Duration != 1900*time.Millisecond || !o.From.Equal(at(4100)) {
		t.Fatalf("outage = %+v, %v; want 4100 ms -> 6000 ms", o, err)
	}
	if _, err := Unavailability(clean(), Fault{Name: "late", Start: at(5000), End: at(6000)}); !errors.Is(err, ErrNoAck) {
		t.Fatalf("no ack after the fault: err = %v, want ErrNoAck", err)
	}
	if _, err := Unavailability(clean(), Fault{Name: "early", Start: at(50), End: at(60)}); !errors.Is(err, ErrNoAck) {
		t.Fatalf("no ack before the fault: err = %v, want ErrNoAck", err)
	}
}

func TestFalseFailovers(t *testing.T) {
	faults := []Fault{{Name: "kill n1", Start: at(1500), End: at(2000)}}
	if fs := Failovers(clean()); len(fs) != 1 || fs[0].Node != "n2" || fs[0].Timeline != 2 || !fs[0].At.Equal(at(4000)) {
		t.Fatalf("failovers = %+v, want n2 timeline 2 at 4000 ms", fs)
	}
	if got := FalseFailovers(clean(), faults, 5*time.Second); len(got) != 0 {
		t.Fatalf("false failovers = %+v; the kill explains the failover", got)
	}
	// Outside the window (grace too short), and with no fault at all.
	if got := FalseFailovers(clean(), faults, time.Second); len(got) != 1 {
		t.Fatalf("false failovers = %+v, want the one at 4000 ms", got)
	}
	if got := FalseFailovers(clean(), nil, time.Minute); len(got) != 1 || got[0].Timeline != 2 {
		t.Fatalf("false failovers without a fault = %+v, want one", got)
	}
}

func TestConvergeTime(t *testing.T) {
	heal := at(1000)
	ok := []Sample{{at(500), false}, {at(1100), false}, {at(3000), true}, {at(3500), true}}
	d, err := ConvergeTime(heal, ok)
	if err != nil || d != 2*time.Second {
		t.Fatalf("converge = %v, %v; want 2s", d, err)
	}
	// Converged, split again, converged later: the later time counts.
	flap := []Sample{{at(1100), true}, {at(2000), false}, {at(9000), true}}
	if d, err := ConvergeTime(heal, flap); err != nil || d != 8*time.Second {
		t.Fatalf("converge after a flap = %v, %v; want 8s", d, err)
	}
	never := []Sample{{at(1100), true}, {at(2000), false}}
	if _, err := ConvergeTime(heal, never); !errors.Is(err, ErrNotConverged) {
		t.Fatalf("not converged at the end: err = %v, want ErrNotConverged", err)
	}
	// Samples before the heal do not count.
	if _, err := ConvergeTime(heal, []Sample{{at(500), true}}); !errors.Is(err, ErrNotConverged) {
		t.Fatalf("only samples before the heal: err = %v, want ErrNotConverged", err)
	}
}
