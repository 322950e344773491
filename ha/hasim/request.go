package hasim

import (
	"fmt"

	"github.com/hamgr/hamgr/cluster"
)

// shutdownCheckpointSize is how many WAL bytes a fast shutdown's checkpoint
// record takes.
const shutdownCheckpointSize = 0x68

// shutdownCheckpoint models a fast stop of a writable primary: sessions end,
// a shutdown checkpoint is written at the end of the WAL, and the WAL
// senders ship everything up to the end of that record to the replicas
// streaming from it before they exit (whatever their usual lag). The stopped
// server then reports the checkpoint's location, as pg_controldata does.
func (w *World) shutdownCheckpoint(n *node) {
	d := &n.db
	ckpt := d.lsn
	d.lsn += shutdownCheckpointSize
	for _, r := range w.nodes {
		rd := &r.db
		if r == n || !r.alive || !rd.running || !rd.accepting || !rd.standby || !rd.streaming || rd.upstream != n.spec.Name {
			continue
		}
		if rd.timeline == d.timeline && rd.lsn < d.lsn {
			rd.lsn = d.lsn
		}
	}
	w.logf("%s: shutdown checkpoint at %s, WAL ends at %s", n.spec.Name, ckpt, d.lsn)
	d.stop(false)
	d.stopPos = ckpt // until the next start or crash
}

// checkSwitchover: a switchover loses no WAL. The member promoting for
// the handoff of r must have everything the old primary wrote before it
// stopped.
func (w *World) checkSwitchover(n *node, r cluster.Request, epoch cluster.Epoch) {
	if r.From == "" {
		w.violate("%s promoted for a switchover from no one", n.spec.Name)
		return
	}
	old := w.node(r.From)
	at := n.promotedLSN
	if old.db.timeline == n.db.timeline-1 && old.db.lsn > at {
		w.violate("switchover from %s to %s lost WAL: %s ended at %s, %s was promoted at %s",
			r.From, n.spec.Name, r.From, old.db.lsn, n.spec.Name, at)
	}
	if _, final, _ := r.Handoff.Final.PostgreSQL(); at <= final {
		w.violate("switchover from %s to %s: promoted at %s, not past the final position %s",
			r.From, n.spec.Name, at, final)
	}
	w.Switchovers = append(w.Switchovers, fmt.Sprintf("%s->%s@%d", r.From, n.spec.Name, epoch))
}

func requestString(r *cluster.Request) string {
	s := string(r.Kind)
	if r.From != "" {
		s += " from " + r.From
	}
	if r.To != "" {
		s += " to " + r.To
	}
	if r.Handoff != nil {
		s += fmt.Sprintf(" (handoff to %s at %s)", r.Handoff.Target, r.Handoff.Final)
	}
	return s
}

// operatorRequest writes a request as hamgrctl would, without its checks
// (Decide must refuse bad requests itself); it is a no-op when one is
// pending.
func (w *World) operatorRequest(f Fault) {
	s := w.store.Snapshot()
	if s.Request != nil {
		w.logf("operator: %s refused: request pending (%s)", f, requestString(s.Request))
		return
	}
	r := cluster.Request{RequestedAt: w.now, RequestedBy: "hasim operator", To: f.Member}
	switch f.Kind {
	case Switchover:
		// Like package operator: From is the current leader; with none
		// there is nothing to switch over from.
		if s.Leader == nil {
			w.logf("operator: %s refused: no leader", f)
			return
		}
		r.Kind = cluster.KindSwitchover
		r.From = s.Leader.Name
		if f.After > 0 {
			r.At = w.now.Add(f.After)
		}
	case Failover:
		r.Kind, r.ConfirmedDown = cluster.KindFailover, f.ConfirmDown
	}
	if err := w.store.PutRequest(r); err != nil {
		w.logf("operator: %s refused: %v", f, err)
		return
	}
	w.logf("operator: wrote request: %s", requestString(&r))
}

// Request is the pending operator request, or nil.
func (w *World) Request() *cluster.Request { return w.store.Snapshot().Request }

// History is the failover history recorded so far.
func (w *World) History() []cluster.HistoryEntry { return w.store.HistoryEntries() }
