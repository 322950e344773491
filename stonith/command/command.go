// Package command fences through a custom program of the operator's: it
// runs the program, with the target in its environment, and takes exit
// status 0 as "the target is fenced" — the program must itself make sure
// (power off and read back, say) before it exits 0.
//
// The environment holds HAMGR_FENCE_TARGET (the member's name),
// HAMGR_FENCE_HOST and HAMGR_FENCE_PORT (its database's address as the
// last leader record gave them; empty when unknown), plus PATH, LANG and
// LC_ALL; nothing else of the agent's environment reaches the program.
// The program runs in its own process group, killed as a whole at the
// timeout. Its output goes to the log.
package command

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/internal/proc"
)

// DefaultTimeout bounds one run when Options.Timeout is 0.
const DefaultTimeout = 30 * time.Second

// maxLogLines bounds how many lines of the program's output are logged.
const maxLogLines = 20

// Options configure a Driver.
type Options struct {
	// Path is the program, an absolute path; Args its arguments.
	Path string
	Args []string
	// Timeout bounds the run (DefaultTimeout when 0); the caller's context
	// deadline applies too, whichever is earlier.
	Timeout time.Duration
	// Logger receives the program's output; slog.Default when nil.
	Logger *slog.Logger
}

// Driver is a stonith.Fencer running one program.
type Driver struct {
	opts Options
	log  *slog.Logger
}

// New checks opts and returns a Driver.
func New(opts Options) (*Driver, error) {
	if !filepath.IsAbs(opts.Path) {
		return nil, fmt.Errorf("fence command %q: want an absolute path", opts.Path)
	}
	if opts.Timeout == 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Timeout < 0 {
		return nil, errors.New("fence command: negative timeout")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Driver{opts: opts, log: log.With("fence_command", opts.Path)}, nil
}

// Fence runs the program for target; exit status 0 confirms the fence.
func (d *Driver) Fence(ctx context.Context, target stonith.Target) (stonith.Confirmation, error) {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Timeout)
	defer cancel()
	port := ""
	if target.Port != 0 {
		port = strconv.Itoa(target.Port)
	}
	env := append(baseEnv(),
		"HAMGR_FENCE_TARGET="+target.Name,
		"HAMGR_FENCE_HOST="+target.Host,
		"HAMGR_FENCE_PORT="+port,
	)
	start := time.Now()
	res, err := proc.Run(ctx, proc.Spec{Path: d.opts.Path, Args: d.opts.Args, Env: env})
	proc.Lines(proc.Redact(res.Output), maxLogLines, func(l string) {
		d.log.Info("fence command output", "target", target.Name, "line", l)
	})
	took := time.Since(start).Round(time.Millisecond)
	d.log.Info("fence command ran", "target", target.Name, "exit", res.ExitCode, "took", took)
	if err != nil {
		return stonith.Confirmation{}, fmt.Errorf("fence command: %w", err)
	}
	if res.ExitCode != 0 {
		return stonith.Confirmation{}, fmt.Errorf("fence command %s exited with status %d: not fenced (its output is in the log)", d.opts.Path, res.ExitCode)
	}
	return stonith.Confirmation{
		Method: "command " + filepath.Base(d.opts.Path),
		Detail: fmt.Sprintf("exited 0 after %v", took),
	}, nil
}

// baseEnv is PATH, LANG and LC_ALL of the agent's environment.
func baseEnv() []string {
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
