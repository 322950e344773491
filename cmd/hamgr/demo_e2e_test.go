//go:build !agentonly

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests run `hamgr demo` for real: an embedded etcd, three agents
// and three PostgreSQL 15 servers. Each takes about half a minute; run
// them one at a time (go test -run TestDemoEndToEnd -count=1 ./cmd/hamgr).

// pgServerBinary is what the demo needs installed.
const pgServerBinary = "/usr/lib/postgresql/15/bin/postgres"

// demoTestTimeout bounds each end-to-end test, far above what a busy
// two-core machine needs (about 30 s), so only a hang trips it.
const demoTestTimeout = 10 * time.Minute

// needDemo skips the test unless PostgreSQL 15 is installed and the run
// is not -short.
func needDemo(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end demo (it starts etcd, 3 agents and 3 PostgreSQL servers)")
	}
	if _, err := os.Stat(pgServerBinary); err != nil {
		t.Skipf("PostgreSQL 15 is not installed (%v); the end-to-end demo needs it (Debian/Ubuntu: apt-get install postgresql-15)", err)
	}
}

// buildTools builds hamgr and hamgrctl side by side in a new directory
// (the demo then finds hamgrctl next to itself) and returns their paths.
func buildTools(t *testing.T, ctx context.Context) (hamgr, hamgrctl string) {
	t.Helper()
	dir := t.TempDir()
	for _, pkg := range []string{"hamgr", "hamgrctl"} {
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, pkg), "github.com/hamgr/hamgr/cmd/"+pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	return filepath.Join(dir, "hamgr"), filepath.Join(dir, "hamgrctl")
}

// demoCommand is `hamgr demo args...` bound to ctx: when ctx ends it gets
// SIGINT, so that it stops its agents and PostgreSQL servers (which run in
// process groups of their own) before it exits.
func demoCommand(ctx context.Context, hamgr string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, hamgr, append([]string{"demo"}, args...)...)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	return cmd
}

// printedTimeline is what the demo printed about the failover.
type printedTimeline struct {
	Dir, Killed                         string
	Detected, Elected, Promoted, Follow time.Duration
	NewLeader                           string
	Epoch                               int64
	FirstWrite, Unavailable, LastAck    time.Duration
	FirstWriteOn                        string
	Acked, Lost                         int
	HistoryEpoch                        int64 // 0 when no history line was printed
	HistoryOld, HistoryNew              string
}

var (
	reDir       = regexp.MustCompile(`starting embedded etcd and 3 members in (\S+) `)
	reKilled    = regexp.MustCompile(`killing (\S+): SIGKILL`)
	reDetected  = regexp.MustCompile(`\n  leader loss detected +\+(\S+) `)
	reElected   = regexp.MustCompile(`\n  new leader elected +\+(\S+) +\((\S+) took the leader key, epoch (\d+)\)`)
	rePromoted  = regexp.MustCompile(`\n  promoted +\+(\S+) `)
	reFollowing = regexp.MustCompile(`\n  replica following +\+(\S+) `)
	reFirst     = regexp.MustCompile(`\n  first write accepted +\+(\S+) +\(on (\S+); write unavailability (\S+), from the last acknowledgement at ([+-]\S+)\)`)
	reCount     = regexp.MustCompile(`\n(\d+) writes acknowledged, (\d+) of them lost`)
	reHistory   = regexp.MustCompile(`\nhistory: epoch (\d+) failover (\S+) -> (\S+):`)
)

// parseTimeline reads the demo's output; every line but the history's
// must be there.
func parseTimeline(out string) (printedTimeline, error) {
	var p printedTimeline
	var errs []error
	find := func(re *regexp.Regexp) []string {
		m := re.FindStringSubmatch(out)
		if m == nil {
			errs = append(errs, errors.New("no match for "+re.String()))
			return make([]string, re.NumSubexp()+1)
		}
		return m
	}
	dur := func(s string) time.Duration {
		d, err := time.ParseDuration(s)
		if err != nil {
			errs = append(errs, err)
		}
		return d
	}
	num := func(s string) int64 {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			errs = append(errs, err)
		}
		return n
	}
	p.Dir, p.Killed = find(reDir)[1], find(reKilled)[1]
	p.Detected, p.Promoted, p.Follow = dur(find(reDetected)[1]), dur(find(rePromoted)[1]), dur(find(reFollowing)[1])
	m := find(reElected)
	p.Elected, p.NewLeader, p.Epoch = dur(m[1]), m[2], num(m[3])
	m = find(reFirst)
	p.FirstWrite, p.FirstWriteOn, p.Unavailable, p.LastAck = dur(m[1]), m[2], dur(m[3]), dur(m[4])
	m = find(reCount)
	p.Acked, p.Lost = int(num(m[1])), int(num(m[2]))
	if m := reHistory.FindStringSubmatch(out); m != nil {
		p.HistoryEpoch, p.HistoryOld, p.HistoryNew = num(m[1]), m[2], m[3]
	}
	return p, errors.Join(errs...)
}

// checkTimeline asserts that a printed timeline is consistent. It makes no
// assertion about how long anything took.
func checkTimeline(t *testing.T, p printedTimeline) {
	t.Helper()
	steps := []struct {
		name string
		d    time.Duration
	}{{"leader loss detected", p.Detected}, {"new leader elected", p.Elected}, {"promoted", p.Promoted},
		{"replica following", p.Follow}, {"first write accepted", p.FirstWrite}}
	for i, s := range steps {
		if s.d <= 0 {
			t.Errorf("%s at +%v: not after the kill", s.name, s.d)
		}
		// The observer records the steps in this order, each no sooner
		// than the one before.
		if i > 0 && i < 4 && s.d < steps[i-1].d {
			t.Errorf("%s at +%v, before %s at +%v", s.name, s.d, steps[i-1].name, steps[i-1].d)
		}
	}
	if p.NewLeader == p.Killed || p.NewLeader == "" {
		t.Errorf("new leader %q after killing %q", p.NewLeader, p.Killed)
	}
	// Not compared with "promoted": that is when the observer saw the
	// agent's /primary say 200, which can trail the database's first
	// commit (the README's run: first write +10.43s, promoted +10.49s).
	// The new leader was a read-only replica before its promotion, so a
	// first write it acknowledged came after it was promoted.
	if p.FirstWriteOn != p.NewLeader {
		t.Errorf("first write after the outage accepted on %s, not on the new leader %s", p.FirstWriteOn, p.NewLeader)
	}
	// The three numbers come from one gap: unavailability = first - last,
	// up to the 10 ms rounding of each.
	if diff := p.FirstWrite - p.LastAck - p.Unavailable; diff < -10*time.Millisecond || diff > 10*time.Millisecond {
		t.Errorf("first write +%v, last acknowledgement %v and unavailability %v disagree by %v", p.FirstWrite, p.LastAck, p.Unavailable, diff)
	}
	if p.LastAck > killWindow {
		t.Errorf("last acknowledgement before the outage at %v, later than %v after the kill", p.LastAck, killWindow)
	}
	// 100 acknowledged before the kill and 50 after the failover.
	if p.Acked < 150 || p.Lost < 0 || p.Lost > p.Acked {
		t.Errorf("%d writes acknowledged, %d lost: want at least 150 acknowledged and at most all of them lost", p.Acked, p.Lost)
	}
	if p.HistoryEpoch != 0 && (p.HistoryEpoch != p.Epoch || p.HistoryNew != p.NewLeader || p.HistoryOld != p.Killed) {
		t.Errorf("history says epoch %d %s -> %s, the timeline epoch %d %s -> %s",
			p.HistoryEpoch, p.HistoryOld, p.HistoryNew, p.Epoch, p.Killed, p.NewLeader)
	}
}

func TestDemoEndToEnd(t *testing.T) {
	needDemo(t)
	ctx, cancel := context.WithTimeout(context.Background(), demoTestTimeout)
	defer cancel()
	hamgr, _ := buildTools(t, ctx)
	var stdout, stderr bytes.Buffer
	cmd := demoCommand(ctx, hamgr, "--fast")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hamgr demo --fast: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("hamgr demo --fast:\n%s", stdout.String())
	p, err := parseTimeline(stdout.String())
	if err != nil {
		t.Fatalf("parse the demo's output: %v", err)
	}
	checkTimeline(t, p)
	if _, err := os.Stat(p.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's temporary directory %s is still there after it ended (stat: %v)", p.Dir, err)
	}
}

// hamgr demo --engine mariadb: the same timeline, on three local MariaDB
// servers.
func TestDemoMariaDBEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: skipping the end-to-end demo (it starts etcd, 3 agents and 3 MariaDB servers)")
	}
	if _, err := os.Stat(mariadbServer); err != nil {
		t.Skipf("MariaDB is not installed (%v); the demo needs it (Debian/Ubuntu: apt-get install mariadb-server)", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), demoTestTimeout)
	defer cancel()
	hamgr, _ := buildTools(t, ctx)
	var stdout, stderr bytes.Buffer
	cmd := demoCommand(ctx, hamgr, "--fast", "--engine", "mariadb")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("hamgr demo --fast --engine mariadb: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	t.Logf("hamgr demo --fast --engine mariadb:\n%s", stdout.String())
	p, err := parseTimeline(stdout.String())
	if err != nil {
		t.Fatalf("parse the demo's output: %v", err)
	}
	checkTimeline(t, p)
	if p.HistoryEpoch == 0 {
		t.Error("no history line for the failover")
	}
	for _, want := range []string{"every mysqld process", "with read_only off", "0-"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("the output does not say %q", want)
		}
	}
	if stderr.Len() > 0 {
		t.Errorf("the demo wrote to stderr: %s", stderr.String())
	}
	if _, err := os.Stat(p.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the demo's temporary directory %s is still there after it ended (stat: %v)", p.Dir, err)
	}
}

// lineReader collects a process's output (an io.Writer for exec.Cmd's
// Stdout and Stderr) and lets a test wait for a line.
type lineReader struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
	added   chan struct{} // closed and replaced on every line and at the end
	eof     bool
}

func newLineReader() *lineReader { return &lineReader{added: make(chan struct{})} }

// Write takes more output.
func (lr *lineReader) Write(p []byte) (int, error) {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	lr.partial = append(lr.partial, p...)
	for {
		i := bytes.IndexByte(lr.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		lr.lines = append(lr.lines, string(lr.partial[:i]))
		lr.partial = lr.partial[i+1:]
		close(lr.added)
		lr.added = make(chan struct{})
	}
}

// close marks the end of the output (call it when Wait returned).
func (lr *lineReader) close() {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	if len(lr.partial) > 0 {
		lr.lines, lr.partial = append(lr.lines, string(lr.partial)), nil
	}
	lr.eof = true
	close(lr.added)
}

// waitFor returns the index of the first line from index from on that is
// equal to want, waiting for it until ctx ends or the output ends.
func (lr *lineReader) waitFor(ctx context.Context, from int, want string) (int, error) {
	for {
		lr.mu.Lock()
		for i := from; i < len(lr.lines); i++ {
			if lr.lines[i] == want {
				lr.mu.Unlock()
				return i, nil
			}
		}
		eof, ch := lr.eof, lr.added
		lr.mu.Unlock()
		if eof {
			return 0, errors.New("output ended without the line " + strconv.Quote(want))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-ch:
		}
	}
}

// text is everything read so far.
func (lr *lineReader) text() string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	return strings.Join(lr.lines, "\n") + "\n"
}

// block returns lines from..to-1 without their indentation.
func (lr *lineReader) block(from, to int) []string {
	lr.mu.Lock()
	defer lr.mu.Unlock()
	var out []string
	for _, l := range lr.lines[from:to] {
		out = append(out, strings.TrimPrefix(l, "  "))
	}
	return out
}

func TestDemoKeepHamgrctl(t *testing.T) {
	needDemo(t)
	ctx, cancel := context.WithTimeout(context.Background(), demoTestTimeout)
	defer cancel()
	hamgr, hamgrctl := buildTools(t, ctx)
	dir, err := os.MkdirTemp("", "hamgr-demo-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })

	cmd := demoCommand(ctx, hamgr, "--fast", "--keep", "--dir", dir)
	lr := newLineReader()
	cmd.Stdout, cmd.Stderr = lr, lr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start hamgr demo --keep: %v", err)
	}
	exited := make(chan error, 1)
	go func() {
		err := cmd.Wait() // returns once all output was written to lr
		lr.close()
		exited <- err
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped { // a failed test still stops the demo's cluster
			_ = cmd.Process.Signal(os.Interrupt)
			<-exited
		}
	})

	from, err := lr.waitFor(ctx, 0, "Try, in another terminal:")
	if err != nil {
		t.Fatalf("waiting for the --keep instructions: %v\noutput:\n%s", err, lr.text())
	}
	to, err := lr.waitFor(ctx, from+1, "")
	if err != nil {
		t.Fatalf("waiting for the end of the --keep instructions: %v\noutput:\n%s", err, lr.text())
	}
	t.Logf("hamgr demo --fast --keep:\n%s", lr.text())
	p, err := parseTimeline(lr.text())
	if err != nil {
		t.Fatalf("parse the demo's output: %v", err)
	}
	checkTimeline(t, p)
	runKeepCommands(t, ctx, lr.block(from+1, to), hamgrctl, p)

	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatalf("SIGINT to the demo (pid %d): %v", cmd.Process.Pid, err)
	}
	stopped = true
	if err := <-exited; err != nil {
		t.Fatalf("the demo did not exit cleanly on SIGINT: %v\noutput:\n%s", err, lr.text())
	}
	if !strings.Contains(lr.text(), "stopping the cluster") {
		t.Errorf("the demo exited without saying it stops the cluster:\n%s", lr.text())
	}
	checkPostgresStopped(t, dir)
}

// runKeepCommands runs, exactly as printed, the --keep instructions'
// hamgrctl lines that only read, and the psql line with a query.
func runKeepCommands(t *testing.T, ctx context.Context, lines []string, hamgrctl string, p printedTimeline) {
	t.Helper()
	leader := []string{"Leader:", p.NewLeader, "(epoch", strconv.FormatInt(p.Epoch, 10) + ")"}
	ran := map[string]bool{}
	for _, l := range lines {
		var kind string
		var want []string // consecutive fields of one line of the output
		switch {
		case strings.HasPrefix(l, hamgrctl+" -c ") && strings.HasSuffix(l, " list"):
			kind, want = "-c list", leader
		case strings.HasPrefix(l, hamgrctl+" --cluster ") && strings.HasSuffix(l, " list"):
			kind, want = "--etcd list", leader
		case strings.HasPrefix(l, hamgrctl+" -c ") && strings.HasSuffix(l, " history"):
			kind, want = "history", []string{"failover", p.Killed, p.NewLeader}
		case strings.HasPrefix(l, "PGPASSWORD="):
			kind, want = "psql", []string{"f"} // pg_is_in_recovery() on the primary
			l += " -tAc 'SELECT pg_is_in_recovery()'"
		default:
			continue
		}
		ran[kind] = true
		out, err := exec.CommandContext(ctx, "sh", "-c", l).CombinedOutput()
		if err != nil || !hasFields(string(out), want) {
			t.Errorf("printed command\n  %s\nfailed or has no line with %q: %v\n%s", l, want, err, out)
		}
	}
	for _, k := range []string{"-c list", "--etcd list", "history", "psql"} {
		if !ran[k] {
			t.Errorf("the --keep instructions have no %s line (hamgrctl lines must start with %s):\n%s", k, hamgrctl, strings.Join(lines, "\n"))
		}
	}
}

// hasFields reports whether a line of out has want among its
// whitespace-separated fields, consecutively.
func hasFields(out string, want []string) bool {
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		for i := 0; i+len(want) <= len(f); i++ {
			if slices.Equal(f[i:i+len(want)], want) {
				return true
			}
		}
	}
	return false
}

// checkPostgresStopped asserts that no member's postmaster outlived the
// demo.
func checkPostgresStopped(t *testing.T, dir string) {
	t.Helper()
	pidFiles, err := filepath.Glob(filepath.Join(dir, "n*", "data", "postmaster.pid"))
	if err != nil || len(pidFiles) == 0 {
		t.Fatalf("no postmaster.pid under %s (%v): cannot tell whether PostgreSQL stopped", dir, err)
	}
	for _, f := range pidFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		line, _, _ := strings.Cut(string(b), "\n")
		pid, err := strconv.Atoi(strings.TrimSpace(line))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if syscall.Kill(pid, 0) == nil {
			if st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat")); err == nil && !strings.Contains(string(st), ") Z ") {
				t.Errorf("postmaster %d of %s still runs after the demo exited", pid, f)
			}
		}
	}
}
