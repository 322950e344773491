package agent

import (
	"context"
	"errors"
	"time"

	"github.com/hamgr/hamgr/dcs"
)

// AnswerStreamLoss is a leader's answer to a replica's record reporting
// its stream lost (dcs.Watcher.StreamLosses): it writes this member's
// record again at once, as last built, so that its store revision moves.
// A replica that found the leader's ports refusing takes the key over
// early only if the leader's record has not moved for
// ha.AgentAnswerTimeout after every replica reported the loss
// (ha.Tracker.ObserveStreamLoss): a live agent that reaches the store —
// behind a firewall that rejects the replicas, say — answers within it,
// and is not taken over. A member that does not hold the leader key, or
// has no lease, does nothing.
func (a *Agent) AnswerStreamLoss(ctx context.Context) {
	a.recordMu.Lock()
	defer a.recordMu.Unlock()
	a.mu.Lock()
	lease, leads, m, timeout := a.leaseID, a.holdsLeader != 0, a.self, a.cfg.RetryTimeout
	m.UpdatedAt = a.clk.Now().UTC()
	a.mu.Unlock()
	if !leads || lease == 0 || m.Name == "" {
		return
	}
	sctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)/2)
	defer cancel()
	err := a.opts.Store.PublishMember(sctx, m)
	switch {
	case errors.Is(err, dcs.ErrLeaseLost):
		a.poke() // the next round grants a new lease
	case err != nil:
		a.opts.Metrics.StoreError(opPublish)
		a.log.Warn("answering a replica's stream loss: publish member record failed", "err", err)
	default:
		a.log.Debug("answered a replica's stream loss by publishing this member's record again")
	}
}
