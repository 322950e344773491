// Package hook runs the operator's executables at the points of a
// member's life that hamgr knows (its "hooks"):
//
//	pre_promote     before this member's database is promoted (after the
//	                old primary is fenced); its failure blocks the
//	                promotion or not, as PrePromoteFailure says
//	post_promote    after the promotion, in the publish step, in order
//	                with the other publishers
//	on_role_change  whenever this member's role, the epoch or the leader
//	                changes after its agent started (a promotion too)
//	on_start        the first time the agent publishes this member's
//	                role after it started
//	on_stop         on a clean stop of the agent
//
// Each runs as "PROGRAM EVENT ROLE CLUSTER" (the event is the hook's
// name; the role primary, replica or unknown), with the environment of
// the agent plus HAMGR_EVENT, HAMGR_CLUSTER, HAMGR_MEMBER, HAMGR_ROLE,
// HAMGR_EPOCH, HAMGR_LEADER, HAMGR_OLD_PRIMARY (the promotion hooks:
// the member promoted over, "" when none), HAMGR_HOST and HAMGR_PORT (this
// member's database). Its standard output and error go to the agent's log,
// line by line; it is killed, with its process group, when the timeout
// passes. A hook exits 0 for success.
//
// The hooks together are one discovery.MemberPublisher named "hooks", so
// that they run in order with the publishers and a failing hook is the
// problem publish_failed, retried with back-off like any publisher.
package hook

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/discovery"
)

// Event names a hook.
type Event string

// The hooks.
const (
	PrePromote   Event = "pre_promote"
	PostPromote  Event = "post_promote"
	OnRoleChange Event = "on_role_change"
	OnStart      Event = "on_start"
	OnStop       Event = "on_stop"
)

// Failure is what a failing pre_promote hook does to the promotion.
type Failure int

// Failure policies.
const (
	// FailureBlock: the promotion waits (the promote step fails and is
	// retried each loop_wait) until the hook succeeds.
	FailureBlock Failure = iota
	// FailureContinue: the failure is logged and the promotion goes on.
	FailureContinue
)

// maxOutput bounds what of a hook's output is logged.
const maxOutput = 64 << 10

// Hooks are the configured hooks (a program "" is no hook).
type Hooks struct {
	Programs map[Event]string
	// PrePromoteFailure is the policy for a failing pre_promote.
	PrePromoteFailure Failure
	// Timeout bounds each run (its context's deadline applies too).
	Timeout time.Duration
	Logger  *slog.Logger

	mu      sync.Mutex
	started bool          // on_start ran successfully
	pending cluster.Epoch // the promotion whose post_promote failed (0: none)
}

var _ discovery.MemberPublisher = (*Hooks)(nil)

// Name is "hooks".
func (*Hooks) Name() string { return "hooks" }

// Env is what a hook is told.
type Env struct {
	Event      Event
	Cluster    string
	Member     string
	Role       cluster.Role
	Epoch      cluster.Epoch
	Leader     string
	OldPrimary string
	Host       string
	Port       int
}

// Run runs the hook of e.Event, if one is configured, and waits for it.
func (h *Hooks) Run(ctx context.Context, e Env) error {
	prog := h.Programs[e.Event]
	if prog == "" {
		return nil
	}
	if h.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, h.Timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, prog, string(e.Event), e.Role.String(), e.Cluster)
	cmd.Env = append(os.Environ(), "HAMGR_EVENT="+string(e.Event), "HAMGR_CLUSTER="+e.Cluster, "HAMGR_MEMBER="+e.Member,
		"HAMGR_ROLE="+e.Role.String(), "HAMGR_EPOCH="+strconv.FormatUint(uint64(e.Epoch), 10), "HAMGR_LEADER="+e.Leader,
		"HAMGR_OLD_PRIMARY="+e.OldPrimary, "HAMGR_HOST="+e.Host, "HAMGR_PORT="+strconv.Itoa(e.Port))
	var out bytes.Buffer
	cmd.Stdout = &limited{b: &out}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	start := time.Now()
	err := cmd.Run()
	log := h.logger().With("hook", string(e.Event), "program", prog)
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		log.Info("hook output", "line", sc.Text())
	}
	took := time.Since(start).Round(time.Millisecond)
	if ctx.Err() != nil && err != nil {
		err = fmt.Errorf("hook %s (%s) killed after %s: %w", e.Event, prog, took, ctx.Err())
	} else if err != nil {
		err = fmt.Errorf("hook %s (%s): %w", e.Event, prog, err)
	}
	if err != nil {
		log.Warn("hook failed", "took", took, "err", err)
		return err
	}
	log.Info("hook ran", "took", took)
	return nil
}

func (h *Hooks) logger() *slog.Logger {
	if h.Logger == nil {
		return slog.Default()
	}
	return h.Logger
}

// limited is a writer that keeps the first maxOutput bytes.
type limited struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (l *limited) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := maxOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// selfEnv is the environment of event for s.
func selfEnv(event Event, s discovery.Self) Env {
	return Env{Event: event, Cluster: s.Cluster, Member: s.Name, Role: s.Role, Epoch: s.Epoch, Leader: s.Leader,
		Host: s.Host, Port: s.Port}
}

// Publish runs post_promote, then on_role_change, for this member promoted
// to primary p (on_start first, if the agent started mid-promotion and has
// not run it yet).
func (h *Hooks) Publish(ctx context.Context, p discovery.Primary) error {
	e := Env{Event: OnStart, Cluster: p.Cluster, Member: p.Name, Role: cluster.RolePrimary, Epoch: p.Epoch,
		Leader: p.Name, OldPrimary: p.OldPrimary, Host: p.Host, Port: p.Port}
	if err := h.start(ctx, e); err != nil {
		return err
	}
	e.Event = PostPromote
	h.setPending(p.Epoch)
	if err := h.Run(ctx, e); err != nil {
		return err
	}
	h.setPending(0)
	e.Event = OnRoleChange
	return h.Run(ctx, e)
}

func (h *Hooks) setPending(e cluster.Epoch) {
	h.mu.Lock()
	h.pending = e
	h.mu.Unlock()
}

// PublishSelf runs on_start the first time (until it succeeds), then
// on_role_change; for the primary of a promotion whose post_promote
// failed, it retries that promotion's hooks (Publish).
func (h *Hooks) PublishSelf(ctx context.Context, s discovery.Self) error {
	h.mu.Lock()
	started, pending := h.started, h.pending
	h.mu.Unlock()
	if pending != 0 && s.Role == cluster.RolePrimary && s.Epoch == pending {
		return h.Publish(ctx, discovery.Primary{Cluster: s.Cluster, Name: s.Name, Epoch: s.Epoch, Host: s.Host, Port: s.Port})
	}
	if !started {
		return h.start(ctx, selfEnv(OnStart, s))
	}
	return h.Run(ctx, selfEnv(OnRoleChange, s))
}

// start runs on_start (e) unless it ran successfully before.
func (h *Hooks) start(ctx context.Context, e Env) error {
	h.mu.Lock()
	started := h.started
	h.mu.Unlock()
	if started {
		return nil
	}
	if err := h.Run(ctx, e); err != nil {
		return err
	}
	h.mu.Lock()
	h.started = true
	h.mu.Unlock()
	return nil
}

// Withdraw runs on_stop.
func (h *Hooks) Withdraw(ctx context.Context, s discovery.Self) error {
	return h.Run(ctx, selfEnv(OnStop, s))
}

// PrePromote runs pre_promote for this member about to be promoted to p;
// its failure is returned under FailureBlock and only logged under
// FailureContinue.
func (h *Hooks) PrePromote(ctx context.Context, p discovery.Primary) error {
	err := h.Run(ctx, Env{Event: PrePromote, Cluster: p.Cluster, Member: p.Name, Role: cluster.RoleReplica,
		Epoch: p.Epoch, Leader: p.Name, OldPrimary: p.OldPrimary, Host: p.Host, Port: p.Port})
	if err != nil && h.PrePromoteFailure == FailureContinue {
		h.logger().Warn("pre_promote failed; promoting anyway (hooks.pre_promote_failure: continue)", "err", err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%w (hooks.pre_promote_failure: block)", err)
	}
	return nil
}
