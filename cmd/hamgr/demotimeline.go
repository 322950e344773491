//go:build !agentonly

package main

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// killWindow is how long after the demo starts the kill an acknowledgement
// may still land and the write outage the kill caused begin later: the
// write in flight when the signal is sent can still commit. KillNode
// signals at once and returns when the postmaster is gone, far sooner.
const killWindow = 2 * time.Second

// outageKind says whether the kill caused a write outage and whether it
// ended.
type outageKind int

const (
	// outageNone: acknowledgements never paused around the kill.
	outageNone outageKind = 1 + iota
	// outageEnded: writes stopped and were acknowledged again.
	outageEnded
	// outageOpen: writes had not resumed when the write client stopped.
	outageOpen
)

// writeOutage is the write outage the kill caused, as the write client saw
// it, each time measured from the moment the demo started the kill.
type writeOutage struct {
	Kind outageKind
	// LastAck is the last acknowledgement before the outage: negative when
	// it came before the kill, positive when it landed just after it.
	LastAck time.Duration
	// FirstAck is the first acknowledgement after the outage (outageEnded),
	// or when the write client stopped without one (outageOpen).
	FirstAck time.Duration
	// Port is the PostgreSQL port of the server that acknowledged the
	// first write after the outage (0 unless outageEnded).
	Port int
}

// Unavailable is how long no write was acknowledged: from the last
// acknowledgement before the outage to the first after it (for an open
// outage, to when the client stopped: a lower bound).
func (o writeOutage) Unavailable() time.Duration { return o.FirstAck - o.LastAck }

// outageAfterKill picks, among the write client's gaps between
// acknowledgements (in time order, as writeclient.Result.Gaps), the outage
// that a kill started at kill caused: the first gap that ends after the
// kill and begins no later than killWindow after it. That covers both a
// last acknowledgement before the kill (the gap contains the kill) and one
// that landed just after it (the gap begins after the kill). Gaps that
// ended before the kill, or began well after it, are hiccups of a busy
// machine, not the failover.
func outageAfterKill(gaps []writeclient.Gap, kill time.Time) writeOutage {
	for _, g := range gaps {
		if !g.End.After(kill) || g.Start.Sub(kill) > killWindow {
			continue
		}
		o := writeOutage{Kind: outageEnded, LastAck: g.Start.Sub(kill), FirstAck: g.End.Sub(kill), Port: g.ToPort}
		if g.Open {
			o.Kind, o.Port = outageOpen, 0
		}
		return o
	}
	return writeOutage{Kind: outageNone}
}

// failoverReport is everything the demo prints about the failover it
// caused, gathered first so that printing is a function of it alone.
type failoverReport struct {
	// Timeline is what the observer saw; Timeline.Old is the killed member.
	Timeline localcluster.Timeline
	// Writes is the write outage; Members names members by PostgreSQL port.
	Writes  writeOutage
	Members map[int]string
	// Acked is the number of acknowledged writes; Missing how many of them
	// the new primary lacks, unless VerifyErr says it could not tell.
	Acked     int
	Missing   int
	VerifyErr error
	// History is the cluster's latest history entry, nil when none was read.
	History *cluster.HistoryEntry
}

// lossCause says how the old leader's key was lost: taken over on proof
// of death before it expired (evidence refused-early), or expired.
func lossCause(r failoverReport) string {
	if h := r.History; h != nil && h.Evidence != nil && h.Evidence.Kind == cluster.EvidenceRefusedEarly {
		return fmt.Sprintf("%s's ports refused: its leader key taken over before it expired", r.Timeline.Old)
	}
	return fmt.Sprintf("leader key of %s expired", r.Timeline.Old)
}

// writeFailoverReport prints the failover timeline, the write count and
// the history entry.
func writeFailoverReport(out io.Writer, r failoverReport) error {
	tl := r.Timeline
	fmt.Fprintf(out, "\nFailover timeline (from the kill of %s):\n", tl.Old)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  leader loss detected\t+%s\t(%s)\n", round(tl.Detected), lossCause(r))
	fmt.Fprintf(tw, "  new leader elected\t+%s\t(%s took the leader key, epoch %d)\n", round(tl.Elected), tl.New, tl.Epoch)
	fmt.Fprintf(tw, "  promoted\t+%s\t(%s answers /primary 200)\n", round(tl.Promoted), tl.New)
	fmt.Fprintf(tw, "  replica following\t+%s\t(the other replica streams from %s)\n", round(tl.Following), tl.New)
	fmt.Fprintf(tw, "  first write accepted\t%s\n", firstWriteCells(r.Writes, r.Members))
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("print the failover timeline: %w", err)
	}
	if r.VerifyErr != nil {
		fmt.Fprintf(out, "\n%d writes acknowledged; could not verify them: %v\n", r.Acked, r.VerifyErr)
	} else {
		fmt.Fprintf(out, "\n%d writes acknowledged, %d of them lost (asynchronous replication loses at most what had not reached a replica)\n",
			r.Acked, r.Missing)
	}
	if h := r.History; h != nil {
		fmt.Fprintf(out, "history: epoch %d %s %s -> %s: %s; steps:", h.Epoch, h.Kind, h.OldPrimary, h.NewPrimary, h.Reason)
		for _, s := range h.Steps {
			fmt.Fprintf(out, " %s %s", s.Name, round(time.Duration(s.Duration)))
		}
		fmt.Fprintln(out)
		if h.Evidence != nil {
			fmt.Fprintf(out, "evidence that %s took no more writes: %s\n", h.OldPrimary, h.Evidence)
		}
	}
	_, err := fmt.Fprintln(out)
	return err
}

// firstWriteCells is the time and explanation columns of the timeline's
// "first write accepted" row.
func firstWriteCells(o writeOutage, members map[int]string) string {
	switch o.Kind {
	case outageEnded:
		on := members[o.Port]
		if on == "" {
			on = fmt.Sprintf("port %d", o.Port)
		}
		return fmt.Sprintf("+%s\t(on %s; write unavailability %s, from the last acknowledgement at %s)",
			round(o.FirstAck), on, round(o.Unavailable()), signed(o.LastAck))
	case outageOpen:
		return fmt.Sprintf("none\t(writes had not resumed at +%s, when the demo stopped waiting; no write acknowledged for %s, since %s)",
			round(o.FirstAck), round(o.Unavailable()), signed(o.LastAck))
	default:
		return "-\t(no write outage: acknowledgements never paused around the kill)"
	}
}

// round rounds d to 10 ms, the precision the demo prints.
func round(d time.Duration) time.Duration { return d.Round(10 * time.Millisecond) }

// signed prints d rounded, with its sign: +20ms, -1.2s, +0s.
func signed(d time.Duration) string {
	if d = round(d); d < 0 {
		return d.String()
	}
	return "+" + d.String()
}
