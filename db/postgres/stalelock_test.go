package postgres

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A postmaster killed a moment ago can still be a zombie that its new
// parent has not reaped; its pid in postmaster.pid then makes PostgreSQL
// refuse to start, or pg_rewind to run its crash recovery ("lock file
// postmaster.pid already exists"), as the drill's node-vanish rejoins did
// in 10 of 10 runs. reapOrphans clears such a lock, and leaves one that
// names a live postgres alone.
func TestStaleLockOfAZombieIsCleared(t *testing.T) {
	dir := t.TempDir()
	o := validOptions()
	o.DataDir = filepath.Join(dir, "data")
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	p := &Postgres{opts: o, log: slog.New(slog.DiscardHandler)}

	// A zombie: a child that exited and that nobody has waited for yet.
	z := exec.Command("/bin/sh", "-c", "exit 0")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = z.Wait() }()
	waitState(t, z.Process.Pid, 'Z')
	lock := filepath.Join(o.DataDir, "postmaster.pid")
	if err := os.WriteFile(lock, fmt.Appendf(nil, "%d\n%s\n", z.Process.Pid, o.DataDir), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.reapOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid naming zombie %d is still there (%v)", z.Process.Pid, err)
	}

	// A lock naming a live postgres process is left alone.
	pg := exec.Command("/bin/bash", "-c", "exec -a postgres-stand-in sleep 30")
	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pg.Process.Kill(); _ = pg.Wait() }()
	waitCmdline(t, pg.Process.Pid, "postgres")
	if err := os.WriteFile(lock, fmt.Appendf(nil, "%d\n", pg.Process.Pid), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.reapOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lock); err != nil {
		t.Fatalf("postmaster.pid naming a live postgres %d was removed (%v)", pg.Process.Pid, err)
	}

	// A lock naming a live process that is no postgres (its pid reused)
	// is stale too.
	other := exec.Command("sleep", "30")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	if err := os.WriteFile(lock, fmt.Appendf(nil, "%d\n", other.Process.Pid), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := p.reapOrphans(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Fatalf("postmaster.pid naming the non-postgres process %d is still there", other.Process.Pid)
	}
}

// waitCmdline waits until process pid's command line contains s.
func waitCmdline(t *testing.T, pid int, s string) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), s) {
			return
		}
	}
	t.Fatalf("process %d's command line never contained %q", pid, s)
}

// waitState waits until process pid is in state st.
func waitState(t *testing.T, pid int, st byte) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			t.Fatalf("process %d: %v", pid, err)
		}
		if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) && b[i+2] == st {
			return
		}
	}
	t.Fatalf("process %d never reached state %c", pid, st)
}
