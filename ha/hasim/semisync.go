package hasim

import "github.com/hamgr/hamgr/cluster"

// acknowledge: a SemiSync primary whose server waits for an
// acknowledgement has acknowledged every commit up to the furthest
// position an acknowledging replica streaming from it received. While the
// leader's record of its epoch promises it (not Async), that is promised:
// a failover must keep it. A record turned Async withdraws the promise
// (durability at risk).
func (w *World) acknowledge(n *node) {
	d := &n.db
	if !w.cfg.SemiSync {
		return
	}
	s := w.store.Snapshot()
	l, rec := s.Leader, s.Sync
	if l == nil || rec == nil || l.Name != n.spec.Name || rec.Epoch != l.Epoch || !d.running || d.standby {
		return
	}
	if rec.Async {
		// A primary running asynchronously (synchronous_mode on with no
		// replica acknowledging) promises nothing from here on, and a
		// failover from it may lose anything not at the promoted replica,
		// including commits acknowledged in earlier epochs on any
		// timeline (it held them when it was promoted: checkPromised).
		clear(w.promised)
		return
	}
	if !d.syncAny {
		return
	}
	for _, r := range w.nodes {
		if r == n || !r.alive || !r.db.streaming || r.db.streamingFrom != n.spec.Name || !r.db.ack {
			continue
		}
		if a := min(r.db.lsn, d.lsn); a > w.promised[d.timeline] {
			w.promised[d.timeline] = a
			w.Acknowledged++
		}
	}
}

// checkPromised: a replica promoted in a SemiSync world holds every commit
// promised on its timeline, unless an operator chose it (a manual
// failover).
func (w *World) checkPromised(n *node) {
	d := &n.db
	p, ok := w.promised[d.timeline]
	if !w.cfg.SemiSync || !ok || d.lsn >= p {
		return
	}
	if l := w.store.Snapshot().Leader; l != nil && l.Promotion != nil && l.Promotion.Kind == cluster.HistoryManualFailover {
		return
	}
	w.violate("%s promoted at %s on timeline %d, but %s was acknowledged there under a synchronous record (lost)",
		n.spec.Name, d.lsn, d.timeline, p)
}
