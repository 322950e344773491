// Package fenceagent fences through a Pacemaker fence agent (fence_ipmilan,
// fence_redfish, any fence_* program of the fence-agents project), driven
// by the agents' standard protocol: options as "key=value" lines on
// standard input, no arguments. A fence is "action=off" followed by
// "action=status", which must print "Status: OFF" (exit status 2) for the
// fence to be confirmed.
//
// The password travels on standard input only, never in arguments or the
// environment; the agent's output goes to the log with the password
// redacted, and never into errors or confirmations.
package fenceagent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/internal/proc"
)

// DefaultTimeout bounds one fence (off and status) when Options.Timeout is 0.
const DefaultTimeout = 60 * time.Second

// Fence agents' exit statuses for action=status.
const (
	statusOn  = 0
	statusOff = 2
)

// maxLogLines bounds how many lines of an agent's output are logged per run.
const maxLogLines = 20

// Options configure a Driver.
type Options struct {
	// Agent is the fence agent's path, such as /usr/sbin/fence_ipmilan.
	Agent string
	// Settings are the agent's options as it reads them on standard input
	// (the long option name without "--": ip, ipport, username, lanplus,
	// cipher, ssl_insecure, ...). "action" and "password" are set by the
	// driver and may not appear here.
	Settings map[string]string
	// Password is passed as "password=..." when not empty.
	Password string
	// Timeout bounds one fence (both runs); DefaultTimeout when 0. The
	// caller's context deadline applies too, whichever is earlier.
	Timeout time.Duration
	// Logger receives the agent's (redacted) output; slog.Default when nil.
	Logger *slog.Logger
}

// Driver is a stonith.Fencer running one fence agent for one machine.
type Driver struct {
	opts Options
	log  *slog.Logger
}

var settingRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// New checks opts and returns a Driver.
func New(opts Options) (*Driver, error) {
	if opts.Agent == "" || !filepath.IsAbs(opts.Agent) {
		return nil, fmt.Errorf("fence agent %q: want the absolute path of a fence agent such as /usr/sbin/fence_ipmilan", opts.Agent)
	}
	for k, v := range opts.Settings {
		switch {
		case k == "action" || k == "password" || k == "passwd":
			return nil, fmt.Errorf("fence agent option %q is set by hamgr: remove it", k)
		case !settingRE.MatchString(k):
			return nil, fmt.Errorf("fence agent option %q: want a long option name without dashes, such as ipport or ssl_insecure", k)
		case strings.ContainsAny(v, "\n\r"):
			return nil, fmt.Errorf("fence agent option %q: the value may not contain a line break", k)
		}
	}
	if strings.ContainsAny(opts.Password, "\n\r") {
		return nil, errors.New("fence agent password may not contain a line break")
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{opts: opts, log: log.With("fence_agent", filepath.Base(opts.Agent))}, nil
}

// Fence runs the agent with action=off, then action=status, and confirms
// only on "Status: OFF" read back.
func (d *Driver) Fence(ctx context.Context, target stonith.Target) (stonith.Confirmation, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	name := filepath.Base(d.opts.Agent)
	off, err := d.run(ctx, target, "off")
	if err != nil {
		return stonith.Confirmation{}, err
	}
	if off.ExitCode != 0 {
		return stonith.Confirmation{}, fmt.Errorf("%s action=off failed (exit status %d%s; check the address, credentials and the agent's options; its output is in the log)", name, off.ExitCode, d.failure(off.Output))
	}
	st, err := d.run(ctx, target, "status")
	if err != nil {
		return stonith.Confirmation{}, err
	}
	state := parseStatus(st.Output)
	switch {
	case st.ExitCode == statusOff && state == "OFF":
		return stonith.Confirmation{Method: name + " action=off", Detail: "action=status read back: Status: OFF"}, nil
	case st.ExitCode == statusOn || state == "ON":
		return stonith.Confirmation{}, fmt.Errorf("%s action=off succeeded but action=status still reads ON", name)
	default:
		return stonith.Confirmation{}, fmt.Errorf("%s action=status could not tell the power state (exit status %d, status %q%s; its output is in the log)", name, st.ExitCode, state, d.failure(st.Output))
	}
}

// run runs the agent once with action and logs its redacted output.
func (d *Driver) run(ctx context.Context, target stonith.Target, action string) (proc.Result, error) {
	start := time.Now()
	res, err := proc.Run(ctx, proc.Spec{
		Path:  d.opts.Agent,
		Env:   agentEnv(),
		Stdin: d.stdin(action),
	})
	out := proc.Redact(res.Output, d.opts.Password)
	proc.Lines(out, maxLogLines, func(l string) {
		d.log.Info("fence agent output", "target", target.Name, "action", action, "line", l)
	})
	d.log.Info("fence agent ran", "target", target.Name, "action", action, "exit", res.ExitCode, "took", time.Since(start).Round(time.Millisecond))
	if err != nil {
		return res, fmt.Errorf("fence agent action=%s: %w", action, err)
	}
	return res, nil
}

// stdin renders the agent's standard input: the settings sorted by name,
// the password, then the action.
func (d *Driver) stdin(action string) string {
	keys := make([]string, 0, len(d.opts.Settings))
	for k := range d.opts.Settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%s\n", k, d.opts.Settings[k])
	}
	if d.opts.Password != "" {
		fmt.Fprintf(&b, "password=%s\n", d.opts.Password)
	}
	fmt.Fprintf(&b, "action=%s\n", action)
	return b.String()
}

// agentEnv is the agents' environment: hamgr's own PATH and locale only, so
// that nothing else of the agent's environment (and no secret in it)
// reaches them.
func agentEnv() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env := []string{"PATH=" + path}
	for _, k := range []string{"LANG", "LC_ALL"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// maxFailure bounds the agent's failure message quoted in an error.
const maxFailure = 200

// failure returns ", said: MESSAGE" for the agent's last "ERROR:" or
// "Failed:" line in out, redacted and shortened; "" when there is none.
func (d *Driver) failure(out string) string {
	msg := ""
	for _, l := range strings.Split(proc.Redact(out, d.opts.Password), "\n") {
		for _, m := range []string{"ERROR:", "Failed:"} {
			if i := strings.Index(l, m); i >= 0 {
				msg = strings.TrimSpace(l[i:])
				break
			}
		}
	}
	if msg == "" {
		return ""
	}
	if len(msg) > maxFailure {
		msg = msg[:maxFailure] + "..."
	}
	return ", said: " + msg
}

// parseStatus returns the state of the agent's "Status: X" line,
// upper-cased; "" when there is none.
func parseStatus(out string) string {
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "Status:"); ok {
			return strings.ToUpper(strings.TrimSpace(s))
		}
	}
	return ""
}
