// Package proc runs the external programs of the fencing drivers (fence
// agents, custom commands): in their own process group, killed as a group
// when the context ends, with their output captured and redacted.
package proc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// waitDelay bounds how long Run waits for the output pipes to close after
// the process group was killed (a grandchild that escaped the group may
// hold them).
const waitDelay = 2 * time.Second

// Spec is one program run.
type Spec struct {
	// Path is the program; Args its arguments (not including Path).
	Path string
	Args []string
	// Env is the complete environment.
	Env []string
	// Stdin is written to the program's standard input, then closed.
	Stdin string
}

// Result is what a run produced.
type Result struct {
	// ExitCode is the exit status; -1 when the process did not exit
	// normally (killed, or never started).
	ExitCode int
	// Output is stdout and stderr, interleaved as written.
	Output string
}

// Run runs spec until it exits or ctx ends; then it kills the whole
// process group (SIGKILL) and returns ctx's error, wrapped. A non-zero
// exit is not an error: the caller reads Result.ExitCode.
func Run(ctx context.Context, spec Spec) (Result, error) {
	cmd := exec.CommandContext(ctx, spec.Path, spec.Args...)
	cmd.Env = spec.Env
	cmd.Stdin = strings.NewReader(spec.Stdin)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group's id is the leader's pid (Setpgid).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = waitDelay
	err := cmd.Run()
	res := Result{ExitCode: -1, Output: out.String()}
	if cmd.ProcessState != nil {
		res.ExitCode = cmd.ProcessState.ExitCode()
	}
	if ctx.Err() != nil {
		return res, fmt.Errorf("%s did not finish in time, killed its process group: %w", spec.Path, ctx.Err())
	}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		return res, fmt.Errorf("run %s: %w", spec.Path, err)
	}
	return res, nil
}

// Redact replaces every occurrence of each non-empty secret in s with
// "[redacted]", and blanks the value of every line that looks like a
// "passw...=value" or "passw...: value" option.
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lower := strings.ToLower(l)
		at := strings.Index(lower, "passw")
		if at < 0 {
			continue
		}
		if j := strings.IndexAny(l[at:], "=:"); j >= 0 {
			lines[i] = l[:at+j+1] + "[redacted]"
		}
	}
	return strings.Join(lines, "\n")
}

// Lines calls emit with each non-empty line of s, at most max of them,
// then once with the number of lines left out, if any.
func Lines(s string, max int, emit func(line string)) {
	var lines []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimRight(l, "\r"); strings.TrimSpace(l) != "" {
			lines = append(lines, l)
		}
	}
	for i, l := range lines {
		if i == max {
			emit(fmt.Sprintf("... %d more lines", len(lines)-max))
			return
		}
		emit(l)
	}
}
