package history

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Path is how a write reached the server that acknowledged it.
type Path int

// Paths, from 1 so that the zero value is invalid.
const (
	// PathMultiHost: a connection over every member with
	// target_session_attrs=read-write, as applications connect.
	PathMultiHost Path = 1 + iota
	// PathDirect: a connection to one member only, whatever its role: the
	// client that would see an old primary still taking writes.
	PathDirect
)

// String returns "multi-host" or "direct".
func (p Path) String() string {
	switch p {
	case PathMultiHost:
		return "multi-host"
	case PathDirect:
		return "direct"
	}
	return fmt.Sprintf("Path(%d)", int(p))
}

// Ack is one acknowledged write.
type Ack struct {
	// ID identifies the write; unique within a history.
	ID int64
	// Node is the member that acknowledged it and Timeline the timeline it
	// was writing when it committed the write.
	Node     string
	Timeline int64
	// Path is how the client reached Node.
	Path Path
	// Sent is when the client sent the write, At when the acknowledgement
	// arrived (Sent <= At, both from one clock).
	Sent, At time.Time
}

// Fault is one injected fault: from Start (injected) to End (healed). A
// fault that is never healed has End equal to the end of the history.
type Fault struct {
	Name       string
	Start, End time.Time
}

// byAt returns acks sorted by acknowledgement time (a copy).
func byAt(acks []Ack) []Ack {
	s := slices.Clone(acks)
	sort.SliceStable(s, func(i, j int) bool { return s[i].At.Before(s[j].At) })
	return s
}

// SplitBrain returns, in acknowledgement order, every acknowledgement on a
// timeline received after the first acknowledgement on a higher timeline:
// the old primary was still committing writes when the new one had already
// committed one, and those writes are not in the new primary's history.
func SplitBrain(acks []Ack) []Ack {
	var bad []Ack
	var maxTL int64
	for _, a := range byAt(acks) {
		if a.Timeline < maxTL {
			bad = append(bad, a)
		}
		maxTL = max(maxTL, a.Timeline)
	}
	return bad
}

// Lost returns the ids of acknowledged writes not in present (the ids the
// final primary holds), in acknowledgement order.
func Lost(acks []Ack, present map[int64]bool) []int64 {
	var lost []int64
	for _, a := range byAt(acks) {
		if !present[a.ID] {
			lost = append(lost, a.ID)
		}
	}
	return lost
}

// Outage is an interval without any acknowledgement.
type Outage struct {
	// From is the last acknowledgement at or before the fault, To the first
	// after it.
	From, To time.Time
	// Duration is To - From.
	Duration time.Duration
}

// ErrNoAck is returned by Unavailability when there is no acknowledgement
// before the fault or none after it: the outage cannot be measured.
var ErrNoAck = errors.New("history: no acknowledgement on one side of the fault")

// Unavailability returns the longest interval without an acknowledgement
// that overlaps the fault (ends after its Start and begins before its
// End): the outage the fault caused, from the last acknowledgement before
// writes stopped to the first after they resumed. Acknowledgements in
// flight when the fault hit (received just after Start) do not hide it.
// Only acknowledgements by a timeline that is (or becomes) the newest
// count: an old primary's split-brain acknowledgements do not end an
// outage.
func Unavailability(acks []Ack, f Fault) (Outage, error) {
	var counted []Ack
	var maxTL int64
	for _, a := range byAt(acks) {
		if a.Timeline < maxTL {
			continue // split-brain: does not count as availability
		}
		maxTL = a.Timeline
		counted = append(counted, a)
	}
	if len(counted) == 0 || !counted[0].At.Before(f.Start) {
		return Outage{}, fmt.Errorf("%w %q: none before it", ErrNoAck, f.Name)
	}
	if !counted[len(counted)-1].At.After(f.Start) {
		return Outage{}, fmt.Errorf("%w %q: none after it", ErrNoAck, f.Name)
	}
	var worst Outage
	for i := 1; i < len(counted); i++ {
		from, to := counted[i-1].At, counted[i].At
		if !to.After(f.Start) || !from.Before(f.End) {
			continue
		}
		if d := to.Sub(from); d > worst.Duration {
			worst = Outage{From: from, To: to, Duration: d}
		}
	}
	return worst, nil
}

// Failover is a timeline change seen by the clients: the first
// acknowledgement on a timeline higher than every earlier one.
type Failover struct {
	// At is that first acknowledgement's time; Node and Timeline are the
	// new primary's.
	At       time.Time
	Node     string
	Timeline int64
}

// Failovers returns the timeline changes in the history, in time order.
// The first timeline seen is the starting state, not a failover.
func Failovers(acks []Ack) []Failover {
	var fs []Failover
	var maxTL int64
	for i, a := range byAt(acks) {
		if a.Timeline > maxTL {
			if i > 0 {
				fs = append(fs, Failover{At: a.At, Node: a.Node, Timeline: a.Timeline})
			}
			maxTL = a.Timeline
		}
	}
	return fs
}

// FalseFailovers returns the failovers (timeline changes) whose first
// acknowledgement falls outside every fault's window: from its Start to
// its End plus grace (the writes of a failover a heal set off arrive after
// the heal). grace should be the longest a failover can take to show.
func FalseFailovers(acks []Ack, faults []Fault, grace time.Duration) []Failover {
	var bad []Failover
	for _, f := range Failovers(acks) {
		explained := false
		for _, ft := range faults {
			if !f.At.Before(ft.Start) && !f.At.After(ft.End.Add(grace)) {
				explained = true
				break
			}
		}
		if !explained {
			bad = append(bad, f)
		}
	}
	return bad
}

// Sample is the cluster's state seen at one moment.
type Sample struct {
	At time.Time
	// Converged is true when one member is primary and every other member
	// streams from it.
	Converged bool
}

// ErrNotConverged is returned by ConvergeTime when the samples after the
// heal do not end converged.
var ErrNotConverged = errors.New("history: not converged after the heal")

// ConvergeTime returns the time from heal to the first sample at or after
// it from which every later sample is converged (a cluster that converges
// and then splits again has not converged). The last sample must be
// converged; otherwise it returns ErrNotConverged.
func ConvergeTime(heal time.Time, samples []Sample) (time.Duration, error) {
	s := slices.Clone(samples)
	sort.SliceStable(s, func(i, j int) bool { return s[i].At.Before(s[j].At) })
	var since time.Time
	for _, x := range s {
		if x.At.Before(heal) {
			continue
		}
		switch {
		case !x.Converged:
			since = time.Time{}
		case since.IsZero():
			since = x.At
		}
	}
	if since.IsZero() {
		return 0, fmt.Errorf("%w (%d samples after it)", ErrNotConverged, countAfter(s, heal))
	}
	return since.Sub(heal), nil
}

func countAfter(s []Sample, t time.Time) int {
	n := 0
	for _, x := range s {
		if !x.At.Before(t) {
			n++
		}
	}
	return n
}
