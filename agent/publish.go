package agent

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
	"github.com/hamgr/hamgr/ha"
)

// Publishing (package discovery) is level-triggered. The agent remembers,
// per publisher and in memory, what that publisher last published
// successfully (discovery.Self.Key: role, epoch, leader). Republish
// compares it with what this member is now (wantedSelf) and publishes
// again where they differ: after a bootstrap, after a restart of the agent
// (it remembers nothing, so it publishes once), after a role change, and
// after a failure, with exponential back-off (publishBackOff). Run drives
// Republish on a goroutine of its own, woken after every round, so that a
// slow or hanging publisher never delays the HA loop.
//
// A promotion's publish step (Agent.publishPromotion) runs every
// publisher once, in order, each bounded by Options.PublishTimeout, and
// does not fail when a publisher does: the promotion is recorded with that
// publisher's step marked failed in the history entry, the member reports
// cluster.ProblemPublishFailed, and Republish keeps trying. A failover is
// therefore never held up by, nor undone for, a discovery system; whether
// every publisher read its change back is in the history entry's steps.

// DefaultPublishTimeout bounds one attempt of one publisher when
// Options.PublishTimeout is zero.
const DefaultPublishTimeout = 10 * time.Second

// Republish back-off: the first retry after publishRetryMin, doubling up to
// publishRetryMax; publishIdle is how long Republish sleeps when nothing
// is to be done (a round wakes it sooner).
const (
	publishRetryMin = time.Second
	publishRetryMax = time.Minute
	publishIdle     = 5 * time.Second
	// publishNone is how long Republish sleeps when the agent has no
	// publishers (they are fixed at start): nothing to do, ever.
	publishNone = time.Hour
)

// pubState is what the agent remembers of one publisher.
type pubState struct {
	done     string    // Self.Key of the last successful publication ("": none)
	failures int       // failed attempts in a row
	retryAt  time.Time // no new attempt before this
	err      string    // the last failure, named ("": the last attempt succeeded)
}

// pubSteps are the publish step's results of the promotion of one epoch,
// one per publisher, for its history entry.
type pubSteps struct {
	epoch cluster.Epoch
	steps []cluster.Step
}

// publishBackOff is the wait after failures failed attempts in a row.
func publishBackOff(failures int) time.Duration {
	d := publishRetryMin
	for i := 1; i < failures && d < publishRetryMax; i++ {
		d *= 2
	}
	return min(d, publishRetryMax)
}

// wantedSelf is what this member is, to be published (a.mu held): the
// primary when it holds the leader key, runs a primary and its promotion
// is complete; a replica when its database runs as one; otherwise
// RoleUnknown. While it holds the key with a promotion under way (or its
// database down) it reports false: the promotion's publish step publishes,
// and until then what was published stands; so does a replica's while
// there is no leader.
func (a *Agent) wantedSelf() (discovery.Self, bool) {
	s := discovery.Self{Cluster: a.opts.Cluster, Name: a.opts.Name, Host: a.opts.ConnHost, Port: a.opts.ConnPort,
		LagBytes: a.self.LagBytes}
	l := a.snap.Leader
	if l != nil {
		s.Epoch, s.Leader = l.Epoch, l.Name
	}
	leads := a.holdsLeader != 0 && l != nil && l.Epoch == a.holdsLeader
	switch {
	case leads && a.self.Role == cluster.RolePrimary && a.accepting && (l.Promotion == nil || l.Promotion.Complete()):
		s.Role = cluster.RolePrimary
	case leads:
		return s, false
	case a.self.Role == cluster.RoleReplica && a.accepting && l == nil:
		return s, false // a leader loss: the next leader is published, not the gap
	case a.self.Role == cluster.RoleReplica && a.accepting:
		s.Role = cluster.RoleReplica
	default:
		s.Role = cluster.RoleUnknown
	}
	return s, true
}

// wantKey is the publication p should have for s ("": none is wanted): a
// MemberPublisher publishes every role, a Publisher only the primary.
func wantKey(p discovery.Publisher, s discovery.Self) string {
	if _, ok := p.(discovery.MemberPublisher); ok || s.Role == cluster.RolePrimary {
		return s.Key()
	}
	return ""
}

// Republish publishes, through every publisher in order, what this member
// is wherever that differs from what the publisher last published, and
// returns how long to wait before the next call (the earliest retry, or
// publishIdle). A failing publisher does not stop the others.
func (a *Agent) Republish(ctx context.Context) time.Duration {
	if len(a.opts.Publishers) == 0 {
		return publishNone
	}
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	a.mu.Lock()
	want, ok := a.wantedSelf()
	a.mu.Unlock()
	next := publishIdle
	if !ok || a.withdrawn {
		return next
	}
	for i, p := range a.opts.Publishers {
		key := wantKey(p, want)
		a.mu.Lock()
		st := a.pubs[i]
		a.mu.Unlock()
		if key == "" || st.done == key {
			continue
		}
		if wait := st.retryAt.Sub(a.clk.Now()); wait > 0 {
			next = min(next, wait)
			continue
		}
		if _, err := a.publishOne(ctx, i, want, nil); err != nil {
			next = min(next, publishBackOff(st.failures+1))
		} else if want.Role == cluster.RolePrimary {
			a.completeLate(ctx, want.Epoch, i)
		}
	}
	if want.Role == cluster.RolePrimary {
		next = min(next, a.republishReplicas(ctx, want))
	} else {
		// Not the primary (any more): the next primary publishes the
		// replicas; nothing of ours is pending or failing.
		a.mu.Lock()
		clear(a.replPubs)
		a.mu.Unlock()
	}
	return next
}

// healthyReplicas lists the database addresses of the members that run as
// replicas streaming from this member, sorted (a.mu held).
func (a *Agent) healthyReplicas() []string {
	var hosts []string
	for _, m := range a.snap.Members {
		if m.Name != a.opts.Name && m.Role == cluster.RoleReplica && m.State == cluster.StateRunning &&
			m.Streaming && m.Upstream == a.opts.Name && m.ConnHost != "" {
			hosts = append(hosts, m.ConnHost)
		}
	}
	sort.Strings(hosts)
	return slices.Compact(hosts)
}

// republishReplicas has every ReplicaPublisher that publishes replicas,
// and has published this member as the primary of its epoch, publish the
// current set of healthy replicas where it differs from what it last
// published (a.pubMu held). It returns how long to wait before the next
// attempt (publishIdle when nothing is pending).
func (a *Agent) republishReplicas(ctx context.Context, self discovery.Self) time.Duration {
	a.mu.Lock()
	hosts := a.healthyReplicas()
	a.mu.Unlock()
	key := fmt.Sprintf("%d/%s", self.Epoch, strings.Join(hosts, ","))
	next := publishIdle
	for i, p := range a.opts.Publishers {
		rp, ok := p.(discovery.ReplicaPublisher)
		a.mu.Lock()
		st, primaryDone := a.replPubs[i], a.pubs[i].done == self.Key()
		a.mu.Unlock()
		if !ok || !rp.PublishesReplicas() || !primaryDone || st.done == key {
			continue
		}
		if wait := st.retryAt.Sub(a.clk.Now()); wait > 0 {
			next = min(next, wait)
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, a.publishTimeout())
		err := rp.PublishReplicas(pctx, self.Epoch, hosts)
		cancel()
		a.mu.Lock()
		rs := &a.replPubs[i]
		if err != nil {
			rs.failures++
			rs.retryAt = a.clk.Now().Add(publishBackOff(rs.failures))
			rs.err = fmt.Sprintf("publisher %s: publish the replicas %v at epoch %d: %v", p.Name(), hosts, self.Epoch, err)
			failures := rs.failures
			a.mu.Unlock()
			a.log.Warn("publishing the replicas failed; retrying with back-off", "publisher", p.Name(), "replicas", hosts,
				"epoch", self.Epoch, "failures", failures, "err", err)
			next = min(next, publishBackOff(failures))
			continue
		}
		*rs = pubState{done: key}
		a.mu.Unlock()
		a.log.Info("published the replicas", "publisher", p.Name(), "replicas", hosts, "epoch", self.Epoch)
	}
	return next
}

// publishTimeout is Options.PublishTimeout or its default.
func (a *Agent) publishTimeout() time.Duration {
	if a.opts.PublishTimeout <= 0 {
		return DefaultPublishTimeout
	}
	return a.opts.PublishTimeout
}

// publishOne runs publisher i once for s, bounded by the publish timeout,
// and remembers the outcome (a.pubMu held). It returns how long the
// attempt took. A promotion (promo non-nil) is published by Publish,
// anything else by a MemberPublisher's PublishSelf or, for the primary,
// by Publish.
func (a *Agent) publishOne(ctx context.Context, i int, s discovery.Self, promo *discovery.Primary) (time.Duration, error) {
	p := a.opts.Publishers[i]
	pctx, cancel := context.WithTimeout(ctx, a.publishTimeout())
	start := a.clk.Now()
	var err error
	mp, member := p.(discovery.MemberPublisher)
	switch {
	case promo != nil:
		err = p.Publish(pctx, *promo)
	case member:
		err = mp.PublishSelf(pctx, s)
	default:
		err = p.Publish(pctx, discovery.Primary{Cluster: s.Cluster, Name: s.Name, Epoch: s.Epoch, Host: s.Host, Port: s.Port})
	}
	cancel()
	took := a.clk.Now().Sub(start)
	a.opts.Metrics.Publish(p.Name(), err, took)
	a.mu.Lock()
	st := &a.pubs[i]
	if err != nil {
		err = fmt.Errorf("publisher %s: publish %s at epoch %d: %w", p.Name(), s.Role, s.Epoch, err)
		st.failures++
		st.retryAt = a.clk.Now().Add(publishBackOff(st.failures))
		st.err = err.Error()
		a.mu.Unlock()
		a.log.Warn("publish failed; retrying with back-off", "publisher", p.Name(), "role", s.Role.String(),
			"epoch", s.Epoch, "failures", st.failures, "err", err)
		return took, err
	}
	changed := st.done != s.Key()
	*st = pubState{done: s.Key()}
	a.mu.Unlock()
	if changed {
		a.log.Info("published", "publisher", p.Name(), "role", s.Role.String(), "epoch", s.Epoch, "took", took)
	}
	return took, nil
}

// publishFailed is the reason of the first failing publisher ("": none
// fails), for ha.View.PublishFailed (a.mu held).
func (a *Agent) publishFailed() string {
	for _, sts := range [][]pubState{a.pubs, a.replPubs} {
		for _, st := range sts {
			if st.err != "" {
				return st.err
			}
		}
	}
	return ""
}

// publishPromotion is a promotion's publish step: every publisher, in
// order, publishes this member as the primary of epoch l.Epoch, once,
// unless it did already. Failures are remembered (Republish retries them,
// and the member reports the problem) and recorded in the history entry's
// steps; they do not fail the step.
func (a *Agent) publishPromotion(ctx context.Context, l cluster.Leader) {
	if len(a.opts.Publishers) == 0 {
		return
	}
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	s := discovery.Self{Cluster: a.opts.Cluster, Name: a.opts.Name, Role: cluster.RolePrimary, Epoch: l.Epoch,
		Leader: a.opts.Name, Host: a.opts.ConnHost, Port: a.opts.ConnPort, LagBytes: 0}
	promo := discovery.Primary{Cluster: s.Cluster, Name: s.Name, Epoch: s.Epoch, Host: s.Host, Port: s.Port}
	if l.Promotion != nil && l.Promotion.OldPrimary != a.opts.Name {
		promo.OldPrimary = l.Promotion.OldPrimary
	}
	a.mu.Lock()
	if a.pubSteps.epoch != l.Epoch {
		a.pubSteps = pubSteps{epoch: l.Epoch, steps: make([]cluster.Step, len(a.opts.Publishers))}
	}
	a.mu.Unlock()
	for i, p := range a.opts.Publishers {
		a.mu.Lock()
		done := a.pubs[i].done == s.Key()
		a.mu.Unlock()
		if done {
			continue // published by an earlier run of this step: its result stands
		}
		took, err := a.publishOne(ctx, i, s, &promo)
		step := cluster.Step{Name: "publish:" + p.Name(), Duration: cluster.Duration(took)}
		if err != nil {
			step.Failed = err.Error()
		}
		a.mu.Lock()
		a.pubSteps.steps[i] = step
		a.mu.Unlock()
	}
}

// promotionPublishSteps are the publish step's results for the history
// entry of epoch (a.mu held).
func (a *Agent) promotionPublishSteps(epoch cluster.Epoch) []cluster.Step {
	if a.pubSteps.epoch != epoch {
		return nil
	}
	var out []cluster.Step
	for _, s := range a.pubSteps.steps {
		if s.Name != "" {
			out = append(out, s)
		}
	}
	return out
}

// withdraw removes what the member publishers published of this member,
// on a clean stop (after which Republish publishes nothing); failures are
// logged.
func (a *Agent) withdraw(ctx context.Context) {
	a.pubMu.Lock()
	defer a.pubMu.Unlock()
	a.withdrawn = true // nothing is published after this
	a.mu.Lock()
	s, _ := a.wantedSelf()
	a.mu.Unlock()
	s.Role = cluster.RoleUnknown
	for _, p := range a.opts.Publishers {
		mp, ok := p.(discovery.MemberPublisher)
		if !ok {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, a.publishTimeout())
		err := mp.Withdraw(wctx, s)
		cancel()
		if err != nil {
			a.log.Warn("withdraw failed", "publisher", p.Name(), "err", err)
			continue
		}
		a.log.Info("withdrawn", "publisher", p.Name())
	}
}

// pokePublish wakes Republish in Run (see publishWake).
func (a *Agent) pokePublish() {
	signal(a.publishWake)
}

// waitPublish sleeps d or until publishWake, and reports false when ctx
// ended.
func (a *Agent) waitPublish(ctx context.Context, d time.Duration) bool {
	return sleepOrWake(ctx, d, a.publishWake)
}

// prePromote runs Options.PrePromote before the promote step promotes the
// database (the view's leader key is this member's).
func (a *Agent) prePromote(ctx context.Context, v ha.View) error {
	if a.opts.PrePromote == nil {
		return nil
	}
	p := discovery.Primary{Cluster: a.opts.Cluster, Name: a.opts.Name, Host: a.opts.ConnHost, Port: a.opts.ConnPort}
	if l := v.Snap.Leader; l != nil {
		p.Epoch = l.Epoch
		if l.Promotion != nil && l.Promotion.OldPrimary != a.opts.Name {
			p.OldPrimary = l.Promotion.OldPrimary
		}
	}
	pctx, cancel := context.WithTimeout(ctx, a.publishTimeout())
	defer cancel()
	if err := a.opts.PrePromote.PrePromote(pctx, p); err != nil {
		return fmt.Errorf("pre_promote: %w", err)
	}
	return nil
}

// completeLate records that publisher i, whose publish step failed in the
// promotion of epoch, has now read its change back: in the step kept for
// the history entry (if the promotion is not recorded yet) and in the
// stored history entry (if it is), as the step's Late time, so that the
// entry shows the promotion done once every publisher has (a.pubMu held).
// A failure to update the stored entry is logged; the publication stands.
func (a *Agent) completeLate(ctx context.Context, epoch cluster.Epoch, i int) {
	a.mu.Lock()
	if a.pubSteps.epoch != epoch || i >= len(a.pubSteps.steps) || a.pubSteps.steps[i].Done() {
		a.mu.Unlock()
		return
	}
	late := cluster.Duration(max(a.clk.Now().Sub(a.promotedAt), time.Millisecond))
	a.pubSteps.steps[i].Late = late
	step := a.pubSteps.steps[i]
	a.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, a.publishTimeout())
	defer cancel()
	hist, err := a.opts.Store.History(sctx)
	if err != nil {
		a.log.Warn("cannot read the history to record a late publication", "epoch", epoch, "err", err)
		return
	}
	for _, e := range hist {
		if e.Epoch != epoch {
			continue
		}
		for j := range e.Steps {
			if e.Steps[j].Name == step.Name && !e.Steps[j].Done() {
				e.Steps[j].Late = late
				if err := a.opts.Store.AppendHistory(sctx, e); err != nil {
					a.log.Warn("cannot record a late publication in the history", "epoch", epoch, "err", err)
					return
				}
				a.log.Info("late publication recorded", "step", step.Name, "epoch", epoch, "after_promotion", time.Duration(late))
			}
		}
	}
}
