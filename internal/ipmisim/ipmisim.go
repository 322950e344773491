// Package ipmisim runs OpenIPMI's ipmi_sim as a simulated BMC for the
// fencing drivers' tests: one BMC on a loopback UDP port whose chassis
// power is a state file, and whose power-off kills a stand-in "host"
// process the test started (see /work/shared/recipes/ipmi-bmc.md).
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Paths of the programs the simulator needs.
const (
	IpmiSimPath  = "/usr/bin/ipmi_sim"
	IpmitoolPath = "/usr/bin/ipmitool"
)

// User and Password are the BMC's administrator credentials.
const (
	User     = "admin"
	Password = "s3cret-bmc-pw"
)

// BMC is a running simulated BMC.
type BMC struct {
	// Port is the BMC's UDP port on 127.0.0.1.
	Port int
	dir  string
	host *exec.Cmd
	done chan error
}

// chassis is ipmi_sim's chassis_control program: "get power" prints the
// state file; "set power 0" kills the host process (pid in host.pid) and
// records 0.
const chassis = `#!/bin/sh
DIR=$(dirname "$0")
target=$1; op=$2; shift 2
echo "$(date +%T.%N) $target $op $*" >> "$DIR/chassis.log"
case "$op" in
get) for p in "$@"; do
       case "$p" in
         power) echo "power:$(cat "$DIR/power")" ;;
         boot)  echo "boot:default" ;;
         *)     echo "$p:0" ;;
       esac
     done ;;
set) while [ $# -ge 2 ]; do
       p=$1; v=$2; shift 2
       case "$p" in
         power) if [ "$v" = 0 ] && [ -f "$DIR/host.pid" ]; then
                  kill -KILL "$(cat "$DIR/host.pid")" 2>/dev/null; rm -f "$DIR/host.pid"
                fi
                if [ "$v" = 0 ] && [ -f "$DIR/poweroff.sh" ]; then
                  sh "$DIR/poweroff.sh" >> "$DIR/chassis.log" 2>&1
                fi
                echo "$v" > "$DIR/power" ;;
         reset) echo 1 > "$DIR/power" ;;
       esac
     done ;;
esac
exit 0
`

const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02
sel_enable 0x20 1000 0x0a
mc_enable 0x20
`

// Start starts a BMC whose power is on and whose host is a `sleep` process
// started here; it skips the test when ipmi_sim or ipmitool is absent. The
// BMC and the host are stopped (by pid) when the test ends.
func Start(t testing.TB) *BMC {
	t.Helper()
	for _, p := range []string{IpmiSimPath, IpmitoolPath} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s is not installed (apt-get install openipmi ipmitool): %v", p, err)
		}
	}
	b := &BMC{dir: t.TempDir()}
	write(t, filepath.Join(b.dir, "chassis.sh"), chassis, 0o755)
	write(t, filepath.Join(b.dir, "bmc.emu"), emu, 0o644)
	write(t, filepath.Join(b.dir, "power"), "1\n", 0o644)
	b.startHost(t)
	var err error
	for attempt := 0; attempt < 8; attempt++ {
		if err = b.startSim(t); err == nil {
			return b
		}
		t.Logf("ipmi_sim attempt %d: %v", attempt+1, err)
	}
	t.Fatalf("ipmi_sim did not start: %v", err)
	return nil
}

func write(t testing.TB, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// startHost starts the stand-in host process and records its pid for the
// chassis program.
func (b *BMC) startHost(t testing.TB) {
	t.Helper()
	b.host = exec.Command("sleep", "100000")
	b.host.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := b.host.Start(); err != nil {
		t.Fatal(err)
	}
	b.done = make(chan error, 1)
	go func() { b.done <- b.host.Wait() }()
	t.Cleanup(func() {
		_ = b.host.Process.Kill()
		<-b.done
	})
	write(t, filepath.Join(b.dir, "host.pid"), strconv.Itoa(b.host.Process.Pid)+"\n", 0o644)
}

// freePort returns a UDP port below 32768 that was free a moment ago.
func freePort() (int, error) {
	for range 50 {
		p := 20000 + rand.IntN(12000)
		c, err := net.ListenPacket("udp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			continue
		}
		c.Close()
		return p, nil
	}
	return 0, errors.New("no free UDP port found in 20000-31999")
}

// startSim starts ipmi_sim on a free port and waits until it answers.
func (b *BMC) startSim(t testing.TB) error {
	t.Helper()
	port, err := freePort()
	if err != nil {
		return err
	}
	lan := fmt.Sprintf(`name "bmc1"
set_working_mc 0x20
startlan 1
  addr 127.0.0.1 %d
  priv_limit admin
  allowed_auths_callback none md2 md5 straight
  allowed_auths_user none md2 md5 straight
  allowed_auths_operator none md2 md5 straight
  allowed_auths_admin none md2 md5 straight
  guid a123456789abcdefa123456789abcdef
endlan
chassis_control "%s 0x20"
user 2 true  "%s" "%s" admin 10 none md2 md5 straight
`, port, filepath.Join(b.dir, "chassis.sh"), User, Password)
	write(t, filepath.Join(b.dir, "lan.conf"), lan, 0o600)
	state := filepath.Join(b.dir, fmt.Sprintf("state-%d", port))
	if err := os.Mkdir(state, 0o700); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(b.dir, "ipmi_sim.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	sim := exec.Command(IpmiSimPath, "-c", filepath.Join(b.dir, "lan.conf"), "-f", filepath.Join(b.dir, "bmc.emu"), "-s", state, "-n")
	sim.Stdout, sim.Stderr = logf, logf
	if err := sim.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- sim.Wait() }()
	stop := func() {
		_ = sim.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = sim.Process.Kill()
			<-exited
		}
	}
	b.Port = port
	if err := b.waitAnswering(exited); err != nil {
		stop()
		out, _ := os.ReadFile(logf.Name())
		return fmt.Errorf("%w; ipmi_sim log: %s", err, strings.TrimSpace(string(out)))
	}
	t.Cleanup(stop)
	return nil
}

// waitAnswering polls "chassis power status" until it answers, ipmi_sim
// exits, or 15 s pass.
func (b *BMC) waitAnswering(exited <-chan error) error {
	deadline := time.Now().Add(15 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		select {
		case err := <-exited:
			return fmt.Errorf("ipmi_sim exited: %v", err)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		out, err := exec.CommandContext(ctx, IpmitoolPath, "-I", "lanplus", "-H", "127.0.0.1", "-p", strconv.Itoa(b.Port),
			"-U", User, "-P", Password, "-C", "3", "-N", "1", "-R", "1", "chassis", "power", "status").CombinedOutput()
		cancel()
		if err == nil && strings.Contains(string(out), "Chassis Power is") {
			return nil
		}
		last = strings.TrimSpace(string(out))
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("ipmi_sim on port %d did not answer within 15s: %s", b.Port, last)
}

// Power returns the chassis power state the BMC recorded: "on" or "off".
func (b *BMC) Power(t testing.TB) string {
	t.Helper()
	s, err := os.ReadFile(filepath.Join(b.dir, "power"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(s)) == "0" {
		return "off"
	}
	return "on"
}

// WaitHostDead waits (up to within) for the host process to exit, and
// reports whether it did.
func (b *BMC) WaitHostDead(within time.Duration) bool {
	select {
	case <-b.done:
		b.done <- nil // for the cleanup
		return true
	case <-time.After(within):
		return false
	}
}

// OnPowerOff makes every chassis power-off run script (sh) as well as kill
// the stand-in host: a test's way to power a real machine's processes off
// (localcluster.Node.PowerOffScript).
func (b *BMC) OnPowerOff(t testing.TB, script string) {
	t.Helper()
	write(t, filepath.Join(b.dir, "poweroff.sh"), script, 0o644)
}

// ChassisLog is the chassis program's log: one line per request, with the
// time it ran (date +%T.%N).
func (b *BMC) ChassisLog(t testing.TB) string {
	t.Helper()
	s, err := os.ReadFile(filepath.Join(b.dir, "chassis.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(s)
}

// SetPowerOff records the power as off without touching the host (for
// already-off tests).
func (b *BMC) SetPowerOff(t testing.TB) {
	t.Helper()
	write(t, filepath.Join(b.dir, "power"), "0\n", 0o644)
}

// PowerOn records the power as on again (the machine was powered back on
// after a fence); the stand-in host is not restarted, and the next
// power-off runs the OnPowerOff script again.
func (b *BMC) PowerOn(t testing.TB) {
	t.Helper()
	write(t, filepath.Join(b.dir, "power"), "1\n", 0o644)
}
