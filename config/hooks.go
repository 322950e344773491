package config

import (
	"path/filepath"

	"github.com/hamgr/hamgr/discovery/hook"
)

// Hooks are the operator's executables run at the points of a member's
// life (package discovery/hook documents their arguments and
// environment). Each is an absolute path; unset runs nothing. Each run is
// bounded by discovery.timeout, and its output goes to the agent's log.
type Hooks struct {
	// PrePromote runs before this member's database is promoted.
	PrePromote string `yaml:"pre_promote"`
	// PostPromote runs after the promotion, in the publish step.
	PostPromote string `yaml:"post_promote"`
	// OnRoleChange runs whenever this member's role, the epoch or the
	// leader changes.
	OnRoleChange string `yaml:"on_role_change"`
	// OnStart runs once when the agent starts (its first publication).
	OnStart string `yaml:"on_start"`
	// OnStop runs on a clean stop of the agent.
	OnStop string `yaml:"on_stop"`
	// PrePromoteFailure is what a failing pre_promote does: "block"
	// (default: the promotion waits, retried every loop_wait, until the
	// hook succeeds) or "continue" (logged; the promotion goes on).
	PrePromoteFailure string `yaml:"pre_promote_failure"`
}

// Programs maps each configured hook to its program.
func (h Hooks) Programs() map[hook.Event]string {
	m := map[hook.Event]string{}
	for e, p := range map[hook.Event]string{hook.PrePromote: h.PrePromote, hook.PostPromote: h.PostPromote,
		hook.OnRoleChange: h.OnRoleChange, hook.OnStart: h.OnStart, hook.OnStop: h.OnStop} {
		if p != "" {
			m[e] = p
		}
	}
	return m
}

// Failure is pre_promote_failure as a policy.
func (h Hooks) Failure() hook.Failure {
	if h.PrePromoteFailure == "continue" {
		return hook.FailureContinue
	}
	return hook.FailureBlock
}

func (c *Config) validateHooks(p *problems) {
	h := c.Hooks
	for _, f := range []struct{ key, v string }{{"pre_promote", h.PrePromote}, {"post_promote", h.PostPromote},
		{"on_role_change", h.OnRoleChange}, {"on_start", h.OnStart}, {"on_stop", h.OnStop}} {
		if f.v != "" && !filepath.IsAbs(f.v) {
			p.add("hooks."+f.key, "%q must be an absolute path to an executable", f.v)
		}
	}
	switch h.PrePromoteFailure {
	case "", "block", "continue":
	default:
		p.add("hooks.pre_promote_failure", "%q: want block or continue", h.PrePromoteFailure)
	}
}
