package hasim

import (
	"context"
	"errors"
	"fmt"

	"github.com/hamgr/hamgr/cluster"
)

// simPeers is the twin of api.FailsafeClient: a leader's failsafe request
// reaches the named member's agent at once (the simulated clock does not
// move during a call), unless either API is cut (CutAPI) or the member's
// agent does not run (dead, paused, frozen): then the request fails, as
// one that times out.
type simPeers struct {
	w *World
	n *node
}

// AskFailsafe asks m's agent, as POST /failsafe would.
func (p simPeers) AskFailsafe(ctx context.Context, m cluster.FailsafeMember, req cluster.FailsafeRequest) (cluster.FailsafeAnswer, error) {
	if err := ctx.Err(); err != nil {
		return cluster.FailsafeAnswer{}, err
	}
	var to *node
	for _, n := range p.w.nodes {
		if n.spec.Name == m.Name {
			to = n
		}
	}
	switch {
	case to == nil:
		return cluster.FailsafeAnswer{}, fmt.Errorf("no member %s", m.Name)
	case p.n.apiCut || to.apiCut || !to.agentRuns():
		return cluster.FailsafeAnswer{}, errors.New("failsafe request to " + m.Name + ": timeout")
	}
	ans := to.a.ConfirmFailsafe(req)
	if ans.Confirmed {
		p.w.logf("failsafe: %s confirmed %s (epoch %d)", m.Name, req.Leader, req.Epoch)
	}
	return ans, nil
}

// failsafeCovers reports whether n's database may outlive its lease
// because of failsafe_mode: n's failsafe record is in the store, and every
// other member it names whose agent runs has promised n, until later than
// now, to take no leader key. The agents of the others are dead, paused or
// frozen and cannot take it (one that starts again waits a ttl,
// ha.FailsafeHold); members the record does not name are no candidates
// for n's epoch.
func (w *World) failsafeCovers(n *node) bool {
	rec := w.store.Snapshot().Failsafe
	if rec == nil || rec.Leader != n.spec.Name {
		return false
	}
	for _, o := range w.nodes {
		if o == n || !o.agentRuns() || !rec.Has(o.spec.Name) {
			continue
		}
		p := o.a.FailsafePromise()
		if p.Leader != n.spec.Name || !w.now.Before(p.Until) {
			return false
		}
	}
	w.logf("%s's lease expired while it is a writable primary: allowed, every running member promised it (failsafe)", n.spec.Name)
	return true
}
