package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/ha"
)

// executor is the agent's ha.Executor: one method per action type, each
// running that action against the database, the store, the fencer or the
// publishers. The methods are grouped by what they act on: exec_db.go
// (the local database), exec_store.go (the store), promotion.go (a
// promotion's steps).
type executor struct{ a *Agent }

var _ ha.Executor = executor{}

// storeCtx bounds one store call of an action: half of retry_timeout.
func (x executor) storeCtx(ctx context.Context, s ha.Step) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, time.Duration(s.View.Config.RetryTimeout)/2)
}

// execute runs the plan's actions in order, stopping at the first failure;
// it returns the action that failed, and whether one did.
func (a *Agent) execute(ctx context.Context, v ha.View, p ha.Plan) (ha.Action, bool) {
	s := ha.Step{View: v, Plan: p}
	for _, act := range p.Actions {
		if act.Long() {
			// It copies or rewrites the database: minutes, during which
			// the loop must go on. It ends the plan; the rounds after it
			// decide what comes next.
			a.runInBackground(ctx, s, act)
			return nil, false
		}
		err := act.Execute(ctx, s, executor{a})
		a.mu.Lock()
		a.track.ActionDone(s, act, err)
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("action failed", "action", act.String(), "err", err)
			if errors.Is(err, dcs.ErrLeaseLost) {
				// The store dropped the session lease before the renewer
				// noticed (a revocation): forget it, so the next round,
				// at once, grants a new one and tries again.
				a.mu.Lock()
				a.leaseID, a.leaseLostInRound = 0, true
				a.track.LeaseLost(a.clk.Now())
				a.mu.Unlock()
			}
			return act, true
		}
	}
	return nil, false
}

// runInBackground runs a long action through Options.Background and
// records it as the agent's busy action until it ends; a failure backs off
// as a failed action of a round does.
func (a *Agent) runInBackground(ctx context.Context, s ha.Step, act ha.Action) {
	a.mu.Lock()
	a.busy = fmt.Sprintf("%s since %s", act, a.clk.Now().UTC().Format(time.RFC3339))
	a.mu.Unlock()
	a.opts.Background(func() {
		err := act.Execute(ctx, s, executor{a})
		a.mu.Lock()
		a.track.ActionDone(s, act, err)
		a.busy = ""
		if err != nil {
			a.notBefore = a.clk.Now().Add(a.track.BackOff(act, a.cfg))
		}
		a.mu.Unlock()
		if err != nil {
			a.log.Warn("action failed", "action", act.String(), "err", err)
		} else {
			a.log.Info("action done", "action", act.String())
		}
		a.poke()
	})
}
