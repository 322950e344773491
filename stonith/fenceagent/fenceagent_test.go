package fenceagent_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/internal/ipmisim"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/fenceagent"
	"github.com/hamgr/hamgr/stonith/redfishtest"
)

const (
	fenceIPMILan = "/usr/sbin/fence_ipmilan"
	fenceRedfish = "/usr/sbin/fence_redfish"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var target = stonith.Target{Name: "pg1", Host: "127.0.0.1", Port: 5432}

func needAgent(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Skipf("%s is not installed (apt-get install fence-agents): %v", path, err)
	}
}

func ipmilan(t *testing.T, port int, password string, timeout time.Duration, logs *syncBuffer) *fenceagent.Driver {
	t.Helper()
	d, err := fenceagent.New(fenceagent.Options{
		Agent: fenceIPMILan,
		Settings: map[string]string{
			"ip": "127.0.0.1", "ipport": strconv.Itoa(port), "username": ipmisim.User,
			"lanplus": "1", "cipher": "3",
		},
		Password: password, Timeout: timeout,
		Logger: slog.New(slog.NewTextHandler(logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIPMILanPowerOff: fence_ipmilan, driven over stdin, powers the
// simulated BMC's machine off (its host process dies) and the driver
// confirms by action=status reading "Status: OFF"; fencing again confirms.
func TestIPMILanPowerOff(t *testing.T) {
	needAgent(t, fenceIPMILan)
	sim := ipmisim.Start(t)
	var logs syncBuffer
	d := ipmilan(t, sim.Port, ipmisim.Password, 60*time.Second, &logs)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	c, err := d.Fence(ctx, target)
	if err != nil {
		t.Fatalf("fence: %v\nlog:\n%s", err, logs.String())
	}
	t.Logf("confirmation: %s", c)
	if !strings.Contains(c.Detail, "Status: OFF") {
		t.Errorf("confirmation %q does not say Status: OFF", c)
	}
	if got := sim.Power(t); got != "off" {
		t.Errorf("BMC power after fence: %s, want off", got)
	}
	if !sim.WaitHostDead(10 * time.Second) {
		t.Error("the host process still runs after the fence")
	}
	if _, err := d.Fence(ctx, target); err != nil {
		t.Errorf("second fence of a machine already off: %v", err)
	}
	if strings.Contains(logs.String(), ipmisim.Password) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "Success: Powered OFF") {
		t.Errorf("the agent's output is not in the log:\n%s", logs.String())
	}
}

// TestIPMILanWrongPassword: refused credentials are an error; the
// password shows neither in it nor in the logged agent output.
func TestIPMILanWrongPassword(t *testing.T) {
	needAgent(t, fenceIPMILan)
	sim := ipmisim.Start(t)
	var logs syncBuffer
	wrong := "wrong-pw-agent-4410"
	d := ipmilan(t, sim.Port, wrong, 30*time.Second, &logs)
	c, err := d.Fence(context.Background(), target)
	if err == nil {
		t.Fatalf("fence with a wrong password confirmed: %q", c)
	}
	t.Logf("error: %v\nlog:\n%s", err, logs.String())
	for _, secret := range []string{wrong, ipmisim.Password} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
			t.Errorf("a password appears in the error or the log:\n%s", logs.String())
		}
	}
	if got := sim.Power(t); got != "on" {
		t.Errorf("BMC power: %s, want on", got)
	}
}

// TestRedfishAgentPowerOff: the real fence_redfish (HTTPS only, so
// ssl_insecure against the test service's self-signed certificate) sends
// ForceOff and reads PowerState Off back.
func TestRedfishAgentPowerOff(t *testing.T) {
	needAgent(t, fenceRedfish)
	srv := redfishtest.Start(redfishtest.Options{Username: "admin", Password: "rf-agent-pw"})
	defer srv.Close()
	var logs syncBuffer
	d, err := fenceagent.New(fenceagent.Options{
		Agent: fenceRedfish,
		Settings: map[string]string{
			"ip": srv.Host(), "ipport": srv.Port(), "username": "admin", "ssl_insecure": "1",
		},
		Password: "rf-agent-pw", Timeout: 60 * time.Second,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Fence(context.Background(), target)
	if err != nil {
		t.Fatalf("fence: %v\nlog:\n%s", err, logs.String())
	}
	t.Logf("confirmation: %s", c)
	if srv.PowerState() != "Off" || len(srv.Resets()) != 1 || srv.Resets()[0] != "ForceOff" {
		t.Errorf("power %s, resets %v: want Off after one ForceOff", srv.PowerState(), srv.Resets())
	}
	if strings.Contains(logs.String(), "rf-agent-pw") {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
}

// TestTimeoutKillsProcessGroup: an agent that hangs (and has a child) is
// killed with its whole process group at the timeout, and the fence is an
// error naming the deadline.
func TestTimeoutKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	agent := filepath.Join(dir, "fence_hang")
	script := "#!/bin/sh\ncat >/dev/null\nsleep 100000 &\necho $! > " + pidFile + "\nwait\n"
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := fenceagent.New(fenceagent.Options{Agent: agent, Timeout: 2 * time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := d.Fence(context.Background(), target)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("a hanging agent confirmed: %q", c)
	}
	t.Logf("error after %v: %v", took, err)
	if took > 2*time.Second+5*time.Second {
		t.Errorf("took %v, want about the 2s timeout", took)
	}
	b, rerr := os.ReadFile(pidFile)
	if rerr != nil {
		t.Fatalf("the agent's child did not start: %v", rerr)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(10 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("the agent's child %d survived the timeout", pid)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStatusStillOn: an agent whose off succeeds but whose status still
// reads ON is an error, not a confirmation.
func TestStatusStillOn(t *testing.T) {
	agent := filepath.Join(t.TempDir(), "fence_liar")
	script := "#!/bin/sh\nif grep -q '^action=status' ; then echo 'Status: ON'; exit 0; fi\necho 'Success: Powered OFF'\n"
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	d, err := fenceagent.New(fenceagent.Options{Agent: agent, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.Fence(context.Background(), target); err == nil || !strings.Contains(err.Error(), "still reads ON") {
		t.Fatalf("fence = %q, %v; want an error saying the status still reads ON", c, err)
	}
}

// TestNewRefusesReservedSettings: action and password are the driver's.
func TestNewRefusesReservedSettings(t *testing.T) {
	for _, k := range []string{"action", "password"} {
		_, err := fenceagent.New(fenceagent.Options{Agent: fenceIPMILan, Settings: map[string]string{k: "x"}})
		if err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("setting %s: err %v, want a refusal naming it", k, err)
		}
	}
	if _, err := fenceagent.New(fenceagent.Options{Agent: "fence_ipmilan"}); err == nil {
		t.Error("a relative agent path was accepted")
	}
}

// TestIPMILanUnreachable: fence_ipmilan against a port where no BMC
// answers is an error by the driver's timeout.
func TestIPMILanUnreachable(t *testing.T) {
	needAgent(t, fenceIPMILan)
	port := 0
	for p := 31100; p < 31200 && port == 0; p++ {
		if c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			c.Close()
			port = p
		}
	}
	if port == 0 {
		t.Fatal("no free UDP port in 31100-31199")
	}
	var logs syncBuffer
	timeout := 4 * time.Second
	d := ipmilan(t, port, "whatever-pw", timeout, &logs)
	start := time.Now()
	c, err := d.Fence(context.Background(), target)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("fence of an unreachable BMC confirmed: %q", c)
	}
	t.Logf("error after %v: %v", took, err)
	if took > timeout+5*time.Second {
		t.Errorf("took %v, want about the %v timeout", took, timeout)
	}
}
