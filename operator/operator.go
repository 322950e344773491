// Package operator carries out what an operator asks of a cluster —
// switchover, manual failover, pause and resume, dynamic config changes —
// by validating the request against a fresh snapshot and writing it to the
// store, where the agents act on it. hamgrctl and the agents' HTTP API both
// use it, so a request refused by one is refused by the other with the same
// words.
package operator

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/dcs"
	"github.com/hamgr/hamgr/election"
)

// Store is what the operator needs from the store.
type Store interface {
	dcs.Reader
	dcs.Requests
	dcs.ConfigStore
}

// Operator validates and writes operator requests.
type Operator struct {
	Store Store
	// Who names the requester in the request and the history.
	Who string
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// ErrRefused marks a request refused because of the cluster's state (as
// opposed to a store error); the message says why and what to do.
var ErrRefused = errors.New("refused")

func refuse(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrRefused, fmt.Sprintf(format, args...))
}

func (o *Operator) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o *Operator) load(ctx context.Context) (cluster.Snapshot, error) {
	s, err := o.Store.Load(ctx)
	if err != nil {
		return s, fmt.Errorf("read the cluster: %w", err)
	}
	return s, nil
}

func maxLag(s cluster.Snapshot) int64 {
	if s.Config == nil {
		return 0
	}
	return s.Config.MaximumLagOnFailover
}

// Switchover asks the leader to hand over to to (or to the best replica
// when to is empty), now or at at. It is refused when there is no leader,
// a request is pending, or the target is not a healthy, caught-up,
// streaming replica that may be elected.
func (o *Operator) Switchover(ctx context.Context, to string, at time.Time) (cluster.Request, error) {
	s, err := o.load(ctx)
	if err != nil {
		return cluster.Request{}, err
	}
	if s.Leader == nil {
		return cluster.Request{}, refuse("there is no leader to switch over from; if the primary is down use failover --to MEMBER")
	}
	if r := s.Request; r != nil {
		return cluster.Request{}, refuse("a %s is already pending (requested %s by %s); cancel it first with switchover --cancel",
			r.Kind, r.RequestedAt.UTC().Format(time.RFC3339), r.RequestedBy)
	}
	if to == s.Leader.Name {
		return cluster.Request{}, refuse("%s is already the primary", to)
	}
	now := o.now()
	if !at.IsZero() && at.Before(now.Add(-time.Minute)) {
		return cluster.Request{}, refuse("--at %s is in the past", at.UTC().Format(time.RFC3339))
	}
	var pos cluster.Position
	if m := s.Member(s.Leader.Name); m != nil {
		pos = m.Position
	}
	target, why := election.SwitchoverTarget(s, s.Leader.Name, to, maxLag(s), pos)
	if target == "" {
		return cluster.Request{}, refuse("%s", why)
	}
	r := cluster.Request{Kind: cluster.KindSwitchover, From: s.Leader.Name, To: to, At: at, RequestedAt: now.UTC(), RequestedBy: o.Who}
	if err := o.Store.CreateRequest(ctx, r); err != nil {
		if errors.Is(err, dcs.ErrRequestPending) {
			return cluster.Request{}, refuse("another request was written just now; run list to see it")
		}
		return cluster.Request{}, fmt.Errorf("write the switchover request: %w", err)
	}
	if r.To == "" {
		r.To = target // for the caller's message; the leader picks again when it acts
	}
	return r, nil
}

// Cancel drops a pending request that has not started its handoff.
func (o *Operator) Cancel(ctx context.Context) (cluster.Request, error) {
	s, err := o.load(ctx)
	if err != nil {
		return cluster.Request{}, err
	}
	r := s.Request
	switch {
	case r == nil:
		return cluster.Request{}, refuse("no switchover or failover is pending")
	case r.Handoff != nil:
		return cluster.Request{}, refuse("the switchover is already under way (%s stopped at %s, handing over to %s); it cannot be cancelled",
			r.From, r.Handoff.Final, r.Handoff.Target)
	}
	if err := o.Store.ClearRequest(ctx); err != nil {
		return cluster.Request{}, fmt.Errorf("delete the request: %w", err)
	}
	return *r, nil
}

// Failover makes to the new primary when there is no healthy primary. It
// is refused while a healthy primary holds the leader key (use
// switchover), when to is not a running replica, or is tagged nofailover.
// confirmedDown, when set, must name the old primary (last_leader): the
// operator confirms it can no longer take writes, so the promotion does
// not wait for the liveness rule's proof (see cluster.Request).
func (o *Operator) Failover(ctx context.Context, to, confirmedDown string) error {
	if to == "" {
		return refuse("failover needs --to MEMBER: the member to promote")
	}
	s, err := o.load(ctx)
	if err != nil {
		return err
	}
	if s.Leader != nil {
		if m := s.Member(s.Leader.Name); m != nil && m.Role == cluster.RolePrimary && m.State == cluster.StateRunning {
			return refuse("%s is a healthy primary (epoch %d); use switchover --to %s for a planned change", s.Leader.Name, s.Leader.Epoch, to)
		}
	}
	if s.Request != nil {
		return refuse("a %s is already pending; cancel it first with switchover --cancel", s.Request.Kind)
	}
	m := s.Member(to)
	switch {
	case m == nil:
		return refuse("no member called %s is alive (members: %s)", to, memberNames(s))
	case m.Tags.NoFailover:
		return refuse("%s is tagged nofailover", to)
	case m.Role != cluster.RoleReplica || m.State != cluster.StateRunning:
		return refuse("%s is not a running replica (role %s, state %s)", to, m.Role, m.State)
	}
	if confirmedDown != "" {
		switch {
		case s.LastLeader == nil:
			return refuse("confirm_down %s: this cluster has had no leader to confirm down", confirmedDown)
		case confirmedDown != s.LastLeader.Name:
			return refuse("confirm_down %s: the old primary is %s; confirm that one (or nothing)", confirmedDown, s.LastLeader.Name)
		case confirmedDown == to:
			return refuse("confirm_down %s: that is the member to promote", confirmedDown)
		}
	}
	r := cluster.Request{Kind: cluster.KindFailover, To: to, RequestedAt: o.now().UTC(), RequestedBy: o.Who,
		ConfirmedDown: confirmedDown}
	if err := o.Store.CreateRequest(ctx, r); err != nil {
		return fmt.Errorf("write the failover request: %w", err)
	}
	return nil
}

func memberNames(s cluster.Snapshot) string {
	var names []string
	for _, m := range s.Members {
		names = append(names, m.Name)
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// Pause suspends automatic failover; Resume re-enables it.
func (o *Operator) Pause(ctx context.Context) error { return o.setPaused(ctx, true) }

// Resume re-enables automatic failover.
func (o *Operator) Resume(ctx context.Context) error { return o.setPaused(ctx, false) }

func (o *Operator) setPaused(ctx context.Context, paused bool) error {
	_, err := o.SetConfig(ctx, "paused", strconv.FormatBool(paused))
	return err
}

// ConfigKeys lists the dynamic config keys SetConfig accepts.
var ConfigKeys = []string{"ttl", "loop_wait", "retry_timeout", "primary_start_timeout", "maximum_lag_on_failover", "paused",
	"synchronous_mode", "synchronous_node_count", "failover_backoff", "failsafe_mode", "fencing"}

// SetConfig sets one dynamic config key from its text form, validates the
// whole result with cluster.DynamicConfig.Validate and writes it; a bad
// value is refused with the key, the value, the allowed range and the fix,
// and nothing is written (see Check). Pause and Resume use it too, so a
// stored config that already breaks the rules must be fixed first: agents
// ignore an invalid config, so writing paused into one would not pause them.
func (o *Operator) SetConfig(ctx context.Context, key, value string) (cluster.DynamicConfig, error) {
	c, err := o.Store.UpdateConfig(ctx, func(cur cluster.DynamicConfig) (cluster.DynamicConfig, error) {
		next := cur
		if err := Apply(&next, key, value); err != nil {
			return cur, err
		}
		if err := Check(cur, next, key+"="+value); err != nil {
			return cur, err
		}
		return next, nil
	})
	if errors.Is(err, dcs.ErrNoConfig) {
		return c, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err != nil && !errors.Is(err, ErrRefused) {
		return c, fmt.Errorf("write config: %w", err)
	}
	return c, err
}

// Check validates next, the stored config cur with the change described
// by what ("ttl=10h loop_wait=1s") applied, with cluster.DynamicConfig's
// rules. It returns nil or an ErrRefused error listing each broken rule
// (key, value, range, fix); rules that cur already broke and the change
// left as they were are listed apart, as problems of the stored config to
// fix in the same command. hamgrctl config set and edit, and SetConfig,
// call it before they write.
func Check(cur, next cluster.DynamicConfig, what string) error {
	probs := next.Problems()
	if len(probs) == 0 {
		return nil
	}
	old := map[string]string{}
	for _, p := range cur.Problems() {
		old[p.Key] = p.Value
	}
	var mine, stored []string
	for _, p := range probs {
		if v, ok := old[p.Key]; ok && v == p.Value {
			stored = append(stored, p.Error())
		} else {
			mine = append(mine, p.Error())
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: ", what)
	if len(mine) > 0 {
		b.WriteString(strings.Join(mine, "; "))
	}
	if len(stored) > 0 {
		if len(mine) > 0 {
			b.WriteString("; besides, ")
		}
		fmt.Fprintf(&b, "the config in etcd already breaks these rules (written by an older hamgr or by hand; agents ignore it and keep their previous config until it is fixed): %s; set these keys in the same command",
			strings.Join(stored, "; "))
	}
	return refuse("%s", b.String())
}

// Apply sets key in c from its text form. It parses only (a Go duration or
// whole seconds, a byte size, a bool, a word, a number); whether the value
// is allowed is for cluster.DynamicConfig.Validate (see Check) to say.
func Apply(c *cluster.DynamicConfig, key, value string) error {
	dur := func(dst *cluster.Duration) error {
		d, err := parseDuration(value)
		if err != nil {
			return refuse("%s=%q: %v", key, value, err)
		}
		*dst = cluster.Duration(d)
		return nil
	}
	switch key {
	case "ttl":
		return dur(&c.TTL)
	case "loop_wait":
		return dur(&c.LoopWait)
	case "retry_timeout":
		return dur(&c.RetryTimeout)
	case "primary_start_timeout":
		return dur(&c.PrimaryStartTimeout)
	case "failover_backoff":
		return dur(&c.FailoverBackoff)
	case "maximum_lag_on_failover":
		n, err := ParseBytes(value)
		if err != nil {
			return refuse("%s=%q: %v", key, value, err)
		}
		c.MaximumLagOnFailover = n
	case "paused":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return refuse("%s=%q: want true or false", key, value)
		}
		c.Paused = b
	case "failsafe_mode":
		b, err := strconv.ParseBool(value)
		if err != nil {
			return refuse("%s=%q: want true or false", key, value)
		}
		c.FailsafeMode = b
	case "synchronous_mode":
		c.SynchronousMode = cluster.SyncMode(strings.ToLower(strings.TrimSpace(value)))
	case "fencing":
		c.Fencing = cluster.FencingPolicy(strings.ToLower(strings.TrimSpace(value)))
	case "synchronous_node_count":
		n, err := strconv.Atoi(strings.TrimSpace(value))
		if err != nil || n == 0 {
			// 0 is how the store writes "unset" (1): refuse it rather than
			// store a value that reads back as something else.
			return refuse("%s=%q: want a whole number from 1 to %d", key, value, cluster.MaxSynchronousNodeCount)
		}
		c.SynchronousNodeCount = n
	default:
		keys := append([]string(nil), ConfigKeys...)
		sort.Strings(keys)
		return refuse("unknown config key %q (known: %s)", key, strings.Join(keys, ", "))
	}
	return nil
}

// parseDuration reads a Go duration ("10s", "1m30s") or a whole number of
// seconds ("10").
func parseDuration(value string) (time.Duration, error) {
	s := strings.TrimSpace(value)
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, errors.New("not a duration, or out of range; use whole seconds such as 10s, 1m or 10")
	}
	if n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
		return 0, errors.New("too large a duration; use whole seconds such as 10s, 1m or 10")
	}
	return time.Duration(n) * time.Second, nil
}

// ParseBytes parses a byte count: a whole number, optionally followed by
// B, kB, MB, GB or TB (powers of 1024, case-insensitive).
func ParseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"tb", 1 << 40}, {"gb", 1 << 30}, {"mb", 1 << 20}, {"kb", 1 << 10}, {"b", 1}}
	mult := int64(1)
	lower := strings.ToLower(t)
	for _, u := range units {
		if strings.HasSuffix(lower, u.suffix) {
			mult, t = u.mult, strings.TrimSpace(t[:len(t)-len(u.suffix)])
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("want a whole number of bytes, optionally with B, kB, MB, GB or TB (like 1048576 or 16MB)")
	}
	return n * mult, nil
}
