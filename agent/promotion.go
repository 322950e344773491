package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/ha"
	"github.com/hamgr/hamgr/stonith"
)

// The executors of a promotion's steps (see package ha, "Promotions are
// level-triggered"). Each step that cannot be observed afterwards marks
// itself done in the leader key's promotion record before the next one
// runs; the others are idempotent.

// AcquireLeader takes the leader key, with the promotion record the plan
// gave (completed with what this round measured: when the loss was seen,
// the positions and the data loss) in the key's value.
func (x executor) AcquireLeader(ctx context.Context, s ha.Step, act ha.AcquireLeader) error {
	a, v := x.a, s.View
	release, err := a.failsafeGate()
	if err != nil {
		return err
	}
	defer release()
	var rec *cluster.Promotion
	if act.Promotion != nil {
		p := a.measurePromotion(v, *act.Promotion)
		rec = &p
	}
	sctx, cancel := x.storeCtx(ctx, s)
	defer cancel()
	who := cluster.LastLeader{Name: a.opts.Name, ConnHost: a.opts.ConnHost, ConnPort: a.opts.ConnPort,
		FailoverAt: ha.FailoverAt(v.Snap.LastLeader, rec, a.clk.Now())}
	var l cluster.Leader
	var ok bool
	if act.Over != nil {
		l, ok, err = a.takeOver(sctx, who, *act.Over, rec)
	} else {
		l, ok, err = a.opts.Store.AcquireLeader(sctx, who, ha.LostEpoch(v.Snap), rec)
	}
	if err != nil {
		return fmt.Errorf("acquire leader key: %w", err)
	}
	if !ok {
		return fmt.Errorf("leader key is held by %s (epoch %d)", l.Name, l.Epoch)
	}
	a.mu.Lock()
	a.holdsLeader = l.Epoch
	a.pokeFence() // a new fence deadline to watch
	a.snap.Leader = &l
	a.mu.Unlock()
	switch {
	case act.Evidence != nil && act.Evidence.Kind != cluster.EvidenceNone:
		a.log.Info("acquired leader key to promote over the old primary", "epoch", l.Epoch, "evidence", act.Evidence.String())
	case rec != nil:
		a.log.Info("acquired leader key to promote", "epoch", l.Epoch, "promotion", rec.String())
	default:
		a.log.Info("acquired leader key", "epoch", l.Epoch)
	}
	if rec != nil {
		for _, e := range rec.Errant {
			a.log.Warn("the election's positions were not ordered: errant transactions, recorded in the history entry",
				"epoch", l.Epoch, "member", e.Member, "holds", e.Holds.String(), "that_lacks", e.Against)
		}
	}
	a.emit(fmt.Sprintf("acquired leader key (epoch %d)", l.Epoch))
	return nil
}

// takeOver takes the leader key over from a leader proven dead while its
// key is still held (ha/takeover.go), then revokes that leader's lease at
// once: from then on the old agent's renewals fail (were it alive, its
// fence timer would stop its database), and its member record is gone.
func (a *Agent) takeOver(ctx context.Context, who cluster.LastLeader, over ha.TakeOver, rec *cluster.Promotion) (cluster.Leader, bool, error) {
	l, ok, err := a.opts.Store.TakeOverLeader(ctx, who, over.Leader, over.MemberRev, rec)
	if err != nil || !ok {
		return l, ok, err
	}
	if err := a.opts.Store.RevokeLease(ctx, over.Leader.Lease); err != nil {
		// The key is ours either way; the old lease then runs out by itself.
		a.log.Warn("took the leader key over but could not revoke the old leader's lease; it expires by itself",
			"old_leader", over.Leader.Name, "lease", fmt.Sprintf("%x", over.Leader.Lease), "err", err)
	}
	a.log.Info("took the leader key over before its expiry", "old_leader", over.Leader.Name,
		"old_epoch", over.Leader.Epoch, "epoch", l.Epoch)
	return l, true, nil
}

// measurePromotion completes a new promotion record with what the view
// measured before the promotion: when the loss was seen and the key taken,
// both positions and the data loss. A record carried over from an earlier
// key (the agent restarted mid-promotion) keeps what it had.
func (a *Agent) measurePromotion(v ha.View, p cluster.Promotion) cluster.Promotion {
	if !p.ElectedAt.IsZero() {
		return p
	}
	p.ElectedAt, p.DetectedAt = a.clk.Now(), v.LeaderLostAt
	if p.DetectedAt.IsZero() && p.Evidence != nil && (p.Evidence.Kind == cluster.EvidenceRefusedEarly || p.Evidence.Kind == cluster.EvidenceFence) {
		// A take-over: the key was never lost. The leader link's drop is
		// the detection when there was one (a dead agent); a frozen or
		// vanished leader keeps it silent, and the round that found the
		// proof is the detection.
		p.DetectedAt = v.LeaderLinkLost
		if p.DetectedAt.IsZero() {
			p.DetectedAt = v.Now
		}
	}
	if p.Kind == "" {
		return p
	}
	p.OldPosition, p.NewPosition = v.LastLeaderPosition, v.DB.Position
	if r := v.Snap.Request; r != nil && r.Handoff != nil {
		p.OldPosition = r.Handoff.Final
	}
	p.DataLoss = dataLoss(v, p.Kind, p.OldPrimary)
	if p.DataLoss.How == cluster.DataLossFinalPosition {
		p.OldPosition = v.Snap.Member(p.OldPrimary).Position
	}
	if p.DataLoss.How != cluster.DataLossHandoff {
		p.DataLoss.Bytes, _ = p.NewPosition.LagTo(p.OldPosition)
	}
	return p
}

// heldLeader is the leader key this agent holds now (taken earlier in
// this round, or seen in the store), with its promotion record.
func (a *Agent) heldLeader() (cluster.Leader, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	l := a.snap.Leader
	if l == nil || l.Name != a.opts.Name || l.Epoch != a.holdsLeader || a.holdsLeader == 0 {
		return cluster.Leader{}, errors.New("this member does not hold the leader key")
	}
	return *l, nil
}

// setPromotion writes p as the held key's promotion record and keeps it as
// this agent's view of the key.
func (a *Agent) setPromotion(ctx context.Context, v ha.View, l cluster.Leader, p cluster.Promotion) error {
	sctx, cancel := context.WithTimeout(ctx, time.Duration(v.Config.RetryTimeout)/2)
	defer cancel()
	if err := a.opts.Store.UpdatePromotion(sctx, l, p); err != nil {
		return fmt.Errorf("record promotion steps %s of epoch %d: %w", p.String(), l.Epoch, err)
	}
	a.mu.Lock()
	if cur := a.snap.Leader; cur != nil && cur.Epoch == l.Epoch {
		c := *cur
		c.Promotion = &p
		a.snap.Leader = &c
	}
	a.mu.Unlock()
	return nil
}

// heldLeaderFor is the held leader key for the step named what, or an
// error saying this member does not hold it.
func (a *Agent) heldLeaderFor(what string) (cluster.Leader, error) {
	l, err := a.heldLeader()
	if err != nil {
		return cluster.Leader{}, fmt.Errorf("%s: %w", what, err)
	}
	return l, nil
}

// BeginPromotion writes the promotion record of a key taken without one.
func (x executor) BeginPromotion(ctx context.Context, s ha.Step, act ha.BeginPromotion) error {
	l, err := x.a.heldLeaderFor("begin-promotion")
	if err != nil {
		return err
	}
	return x.a.setPromotion(ctx, s.View, l, x.a.measurePromotion(s.View, act.Promotion))
}

// Fence fences the old primary (Agent.fence).
func (x executor) Fence(ctx context.Context, s ha.Step, act ha.Fence) error {
	l, err := x.a.heldLeaderFor("fence")
	if err != nil {
		return err
	}
	return x.a.fence(ctx, s.View, l, act.Target)
}

// Publish publishes this member as the primary (Agent.publishPromotion);
// it fails only when this member does not hold the key.
func (x executor) Publish(ctx context.Context, _ ha.Step, _ ha.Publish) error {
	l, err := x.a.heldLeaderFor("publish")
	if err != nil {
		return err
	}
	x.a.publishPromotion(ctx, l)
	return nil
}

// ProceedUnfenced marks the fence step done without a confirmation
// (fencing best-effort after its timeout), loudly.
func (x executor) ProceedUnfenced(ctx context.Context, s ha.Step, act ha.ProceedUnfenced) error {
	a, v := x.a, s.View
	l, err := a.heldLeaderFor("proceed-unfenced")
	if err != nil {
		return err
	}
	if err := checkFenceTarget(l, act.Target); err != nil {
		return err
	}
	now := a.clk.Now()
	p := l.Promotion.With(cluster.StepFence)
	p.Fenced = "NOT FENCED: " + act.Reason
	p.Fence = &cluster.FenceOutcome{Target: act.Target, Result: cluster.FenceUnconfirmed, Detail: v.FenceError,
		Attempts: v.FenceFailures, At: now.UTC(), Duration: sinceElected(p, now), By: a.opts.Name}
	if err := a.setPromotion(ctx, v, l, p); err != nil {
		return err
	}
	a.opts.Metrics.Fence(cluster.FenceUnconfirmed)
	a.log.Error("PROMOTING WITHOUT A CONFIRMED FENCE of the old primary", "target", act.Target, "epoch", l.Epoch, "reason", act.Reason)
	a.emit("NOT FENCED " + act.Target + ": " + act.Reason)
	return nil
}

// fenceTimeout bounds one attempt of the fence step.
const fenceTimeout = 2 * time.Minute

// checkFenceTarget refuses to fence anyone but the old primary of the
// promotion the held key l is for (never this member, never another).
func checkFenceTarget(l cluster.Leader, target string) error {
	p := l.Promotion
	switch {
	case p == nil:
		return errors.New("fence: the leader key has no promotion record")
	case target == "" || target != p.OldPrimary || target == l.Name:
		return fmt.Errorf("fence %q refused: only the old primary of the promotion of epoch %d (%q) may be fenced", target, l.Epoch, p.OldPrimary)
	}
	return nil
}

// sinceElected is how long the fence step of p took by now: from the key
// being taken (0 when not known).
func sinceElected(p cluster.Promotion, now time.Time) cluster.Duration {
	if p.ElectedAt.IsZero() || now.Before(p.ElectedAt) {
		return 0
	}
	return cluster.Duration(now.Sub(p.ElectedAt))
}

// fence fences target through the configured fencer and marks the fence
// step done with its outcome; the promotion goes on only after that.
func (a *Agent) fence(ctx context.Context, v ha.View, l cluster.Leader, target string) error {
	if err := checkFenceTarget(l, target); err != nil {
		return err
	}
	if a.opts.Fencer == nil {
		a.opts.Metrics.Fence(cluster.FenceFailed)
		return fmt.Errorf("fence %s: no fencer configured (add a fencing section to this member's config file)", target)
	}
	t := stonith.Target{Name: target}
	if ll := v.Snap.LastLeader; ll != nil && ll.Name == target {
		t.Host, t.Port = ll.ConnHost, ll.ConnPort
	}
	a.mu.Lock()
	prev := a.fencedOld
	a.mu.Unlock()
	start := a.clk.Now()
	conf, err := prev.conf, error(nil)
	if prev.epoch != l.Epoch {
		fctx, cancel := context.WithTimeout(ctx, fenceTimeout)
		conf, err = a.opts.Fencer.Fence(fctx, t)
		cancel()
	}
	if err != nil {
		a.opts.Metrics.Fence(cluster.FenceFailed)
		a.log.Warn("fencing the old primary failed", "target", target, "epoch", l.Epoch, "attempt", v.FenceFailures+1,
			"took", a.clk.Now().Sub(start).Round(time.Millisecond), "err", err)
		return fmt.Errorf("fence %s (epoch %d): %w", target, l.Epoch, err)
	}
	now := a.clk.Now()
	p := l.Promotion.With(cluster.StepFence)
	p.Fenced = conf.String()
	p.Fence = &cluster.FenceOutcome{Target: target, Driver: conf.Method, Result: cluster.FenceConfirmed, Detail: conf.Detail,
		Attempts: v.FenceFailures + 1, At: now.UTC(), Duration: sinceElected(p, now), By: a.opts.Name}
	if prev.epoch != l.Epoch {
		a.opts.Metrics.Fence(cluster.FenceConfirmed)
		a.mu.Lock()
		a.fencedOld = fencedEpoch{epoch: l.Epoch, conf: conf}
		a.mu.Unlock()
	}
	if err := a.setPromotion(ctx, v, l, p); err != nil {
		return err
	}
	a.log.Info("fenced the old primary", "target", target, "epoch", l.Epoch, "confirmation", conf.String(),
		"attempts", p.Fence.Attempts, "took", now.Sub(start).Round(time.Millisecond))
	a.emit("fenced " + target + ": " + conf.String())
	return nil
}

// RecordFailover is a promotion's last step: the history entry (unless the
// record's kind is ""), then the record marked complete. It fails, and the
// next round runs it again, when either write fails: the promotion stands
// meanwhile, and the entry's key is its epoch, so a repeat overwrites it.
func (x executor) RecordFailover(ctx context.Context, s ha.Step, _ ha.RecordFailover) error {
	a, v := x.a, s.View
	l, err := a.heldLeader()
	if err != nil {
		return fmt.Errorf("record promotion: %w", err)
	}
	if l.Promotion == nil {
		return errors.New("record promotion: the leader key has no promotion record")
	}
	p := *l.Promotion
	if p.Kind != "" {
		e := a.historyEntry(v, l.Epoch, p)
		sctx, cancel := x.storeCtx(ctx, s)
		err := a.opts.Store.AppendHistory(sctx, e)
		cancel()
		if err != nil {
			a.opts.Metrics.StoreError(opAppendHistory)
			return fmt.Errorf("record %s of epoch %d in the history: %w", p.Kind, l.Epoch, err)
		}
		a.opts.Metrics.Failover(p.Kind, e.Steps)
		a.log.Info(string(p.Kind)+" complete", "epoch", l.Epoch, "old_primary", e.OldPrimary, "lost_epoch", p.Lost)
	}
	return a.setPromotion(ctx, v, l, p.With(cluster.AllPromotionSteps...))
}

// historyEntry is the history entry of promotion p at epoch.
func (a *Agent) historyEntry(v ha.View, epoch cluster.Epoch, p cluster.Promotion) cluster.HistoryEntry {
	a.mu.Lock()
	promoted := a.promotedAt
	a.mu.Unlock()
	if promoted.Before(p.ElectedAt) {
		// Promoted by an earlier run of this agent: not known exactly.
		promoted = a.clk.Now()
	}
	reason := fmt.Sprintf("leader key of epoch %d was lost", p.Lost)
	if p.Reason != "" {
		reason = p.Reason
	}
	e := cluster.HistoryEntry{
		Epoch: epoch, Kind: p.Kind, OldPrimary: p.OldPrimary, NewPrimary: a.opts.Name, Reason: reason,
		OldPosition: p.OldPosition, NewPosition: p.NewPosition, DataLoss: p.DataLoss, Evidence: p.Evidence,
		DetectedAt: p.DetectedAt, ElectedAt: p.ElectedAt, PromotedAt: promoted,
	}
	if p.DataLoss != nil {
		e.DataLossBytes = p.DataLoss.Bytes
	}
	e.Fence, e.Errant = p.Fence, p.Errant
	if !p.DetectedAt.IsZero() {
		e.Steps = []cluster.Step{{Name: "elect", Duration: cluster.Duration(p.ElectedAt.Sub(p.DetectedAt))}}
		from := p.ElectedAt
		if f := p.Fence; f != nil && !f.At.IsZero() && !f.At.Before(p.ElectedAt) {
			e.Steps = append(e.Steps, cluster.Step{Name: "fence", Duration: f.Duration})
			from = f.At
		}
		e.Steps = append(e.Steps, cluster.Step{Name: "promote", Duration: cluster.Duration(max(promoted.Sub(from), 0))})
	}
	a.mu.Lock()
	e.Steps = append(e.Steps, a.promotionPublishSteps(epoch)...)
	a.mu.Unlock()
	return e
}

// dataLoss says how a promotion's data loss is measured: none for a
// switchover (the handoff); exact when the old primary's agent published
// its stopped database's position after the loss (the end of its WAL);
// otherwise a lower bound, from the last position it published while it
// led, made exact later by its rewind (recordDiscard).
func dataLoss(v ha.View, kind cluster.HistoryKind, old string) *cluster.DataLoss {
	if kind == cluster.HistorySwitchover {
		return &cluster.DataLoss{How: cluster.DataLossHandoff, Detail: "switchover: promoted past the old primary's final position"}
	}
	if m := v.Snap.Member(old); m != nil && v.Snap.LastLeader != nil && m.MeasuredAfterLossOf == v.Snap.LastLeader.Epoch &&
		m.Role == cluster.RoleUnknown && !m.Position.IsZero() {
		return &cluster.DataLoss{How: cluster.DataLossFinalPosition,
			Detail: fmt.Sprintf("%s's stopped database ended at %s", old, m.Position)}
	}
	return &cluster.DataLoss{How: cluster.DataLossLowerBound,
		Detail: fmt.Sprintf("at least: %s's last published position was %s; exact when it rejoins by %s", old, v.LastLeaderPosition, v.Engine.Names.Resync)}
}

// fenceTargets names the members fencer can fence: its Names when it
// lists them (stonith.Members), else nil (any member).
func fenceTargets(f stonith.Fencer) []string {
	if n, ok := f.(interface{ Names() []string }); ok {
		return n.Names()
	}
	return nil
}

// fencedEpoch is a fence confirmed for the leader key of epoch.
type fencedEpoch struct {
	epoch cluster.Epoch
	conf  stonith.Confirmation
}
