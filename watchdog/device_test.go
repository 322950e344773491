package watchdog

import (
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/agent"
	"github.com/hamgr/hamgr/cluster"
)

// The real device on a regular file (no watchdog is ever opened here): the
// ioctls fail with ENOTTY and say so; keepalives and the magic close are
// written as to a device.
func TestFileDeviceOnRegularFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.SetTimeout(4 * time.Second); !errors.Is(err, syscall.ENOTTY) {
		t.Errorf("SetTimeout on a regular file: %v, want ENOTTY", err)
	}
	for range 2 {
		if err := d.Keepalive(); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.Disarm(); err != nil {
		t.Fatal(err)
	}
	if err := d.Keepalive(); err == nil {
		t.Error("Keepalive after Disarm succeeded")
	}
	if got, _ := os.ReadFile(path); string(got) != "11V" {
		t.Errorf("written %q, want keepalive, keepalive, magic V: %q", got, "11V")
	}
}

// The Watchdog with the real Opener on a FIFO: arming fails (the timeout
// cannot be set), and the device is closed with the magic 'V' at once.
func TestWatchdogOnFIFODisarmsWhenTimeoutUnsettable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watchdog")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	// The reader end first, so that the agent's open does not block.
	rd, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer rd.Close()
	var failures []error
	w := New(Options{Mode: ModeRequired, Path: path, Logger: slog.New(slog.DiscardHandler),
		OnRequiredFailure: func(err error) { failures = append(failures, err) }})
	w.AfterRound(t.Context(), report(t0, agent.Leading, cluster.RolePrimary, t0))
	if w.Armed() {
		t.Fatal("armed on a FIFO")
	}
	if len(failures) != 1 || !errors.Is(failures[0], syscall.ENOTTY) {
		t.Errorf("failures %v, want one ENOTTY", failures)
	}
	// The writer closed: read everything it wrote.
	if err := syscall.SetNonblock(int(rd.Fd()), false); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rd)
	if err != nil || string(got) != "V" {
		t.Errorf("FIFO received %q (%v), want the magic close %q", got, err, "V")
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	if err := Check(filepath.Join(dir, "none")); !errors.Is(err, ErrNoDevice) {
		t.Errorf("Check(missing) = %v, want ErrNoDevice", err)
	}
	if err := Check(dir); err == nil {
		t.Error("Check(directory) = nil")
	}
	f := filepath.Join(dir, "wd")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(f); err != nil {
		t.Errorf("Check(writable file) = %v", err)
	}
	if os.Geteuid() == 0 {
		t.Log("running as root: the unwritable case cannot be checked (root may write any file)")
		return
	}
	if err := os.Chmod(f, 0o400); err != nil {
		t.Fatal(err)
	}
	if err := Check(f); err == nil {
		t.Error("Check(read-only file) = nil")
	}
}

// A driver in nowayout mode cannot be disarmed by the magic close: Check
// refuses it (read from a sysfs tree the test writes).
func TestCheckNowayout(t *testing.T) {
	sysfs := t.TempDir()
	for name, v := range map[string]string{"watchdog0": "1\n", "watchdog1": "0\n"} {
		if err := os.MkdirAll(filepath.Join(sysfs, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sysfs, name, "nowayout"), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for path, ok := range map[string]bool{"/dev/watchdog": false, "/dev/watchdog0": false, "/dev/watchdog1": true, "/tmp/double": true} {
		err := checkNowayout(sysfs, path)
		if (err == nil) != ok {
			t.Errorf("checkNowayout(%s) = %v, want ok %v", path, err, ok)
		}
	}
}
