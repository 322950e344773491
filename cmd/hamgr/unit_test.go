package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/sdnotify"
)

const unitPath = "../../examples/hamgr.service"

// TestUnitVerifies runs systemd-analyze verify on the example unit, with
// ExecStart pointed at an executable that exists here. verify exits 0 on
// unknown keys and merely prints a warning, so stderr must be empty too.
func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze is not installed (Debian package systemd; .ci/run installs it)")
	}
	unit, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(unit, []byte("ExecStart=/usr/local/bin/hamgr ")) {
		t.Fatal("the unit's ExecStart is not /usr/local/bin/hamgr ...")
	}
	unit = bytes.Replace(unit, []byte("ExecStart=/usr/local/bin/hamgr "), []byte("ExecStart="+self+" "), 1)
	path := filepath.Join(t.TempDir(), "hamgr.service")
	if err := os.WriteFile(path, unit, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), analyze, "verify", path)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Errorf("systemd-analyze verify: %v\nstderr:\n%s\nstdout:\n%s", err, stderr.String(), stdout.String())
	}
	// The check itself must fail on an unknown key.
	bad := bytes.Replace(unit, []byte("[Install]"), []byte("WatchdogSecs=1min\n[Install]"), 1)
	if err := os.WriteFile(path, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd = exec.CommandContext(t.Context(), analyze, "verify", path)
	out, _ := cmd.CombinedOutput()
	if !strings.Contains(string(out), "WatchdogSecs") {
		t.Errorf("systemd-analyze verify said nothing of an unknown key: %q", out)
	}
}

// TestUnitSettings checks what the agent relies on in the unit: it is
// Type=notify, its WatchdogSec covers the default timing (MinWatchdog),
// and systemd does not restart an agent that exited for a required
// watchdog it could not arm.
func TestUnitSettings(t *testing.T) {
	raw, err := os.ReadFile(unitPath)
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{}
	for _, l := range strings.Split(string(raw), "\n") {
		if k, v, ok := strings.Cut(l, "="); ok && !strings.HasPrefix(l, "#") {
			keys[k] = v
		}
	}
	for k, want := range map[string]string{
		"Type": "notify", "Restart": "on-failure", "KillMode": "process", "NoNewPrivileges": "yes", "ProtectSystem": "strict",
		"RestartPreventExitStatus": "78",
	} {
		if keys[k] != want {
			t.Errorf("%s=%q, want %q", k, keys[k], want)
		}
	}
	if exitWatchdogRequired != 78 {
		t.Errorf("exitWatchdogRequired = %d: keep the unit's RestartPreventExitStatus in step", exitWatchdogRequired)
	}
	ws := regexp.MustCompile(`^(\d+)min$`).FindStringSubmatch(keys["WatchdogSec"])
	if ws == nil {
		t.Fatalf("WatchdogSec=%q: want whole minutes", keys["WatchdogSec"])
	}
	d, _ := time.ParseDuration(ws[1] + "m")
	if want := sdnotify.MinWatchdog(config.Default().Dynamic()); d < want {
		t.Errorf("WatchdogSec=%s is below %s, what the default timing needs", d, want)
	}
	if _, ok := keys["PrivateDevices"]; ok {
		t.Error("PrivateDevices would hide /dev/watchdog")
	}
}
