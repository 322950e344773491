package bmc_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/internal/ipmisim"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/bmc"
	"github.com/hamgr/hamgr/stonith/redfishtest"
)

// syncBuffer is a log sink safe for concurrent writes.
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

func logger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

var target = stonith.Target{Name: "pg1", Host: "127.0.0.1", Port: 5432}

func ipmiDriver(t *testing.T, port int, password string, timeout time.Duration, log *slog.Logger) *bmc.Driver {
	t.Helper()
	d, err := bmc.New(bmc.Options{
		Protocol: bmc.IPMI, Host: "127.0.0.1", Port: port, Username: ipmisim.User, Password: password,
		Timeout: timeout, IpmitoolPath: ipmisim.IpmitoolPath, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestIPMIPowerOff: the bmclib ipmitool driver powers a simulated BMC's
// machine off (its host process dies), confirms by the state read back,
// and confirms again, without a second power off, when called again.
func TestIPMIPowerOff(t *testing.T) {
	sim := ipmisim.Start(t)
	var logs syncBuffer
	d := ipmiDriver(t, sim.Port, ipmisim.Password, 30*time.Second, logger(&logs))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := d.Fence(ctx, target)
	if err != nil {
		t.Fatalf("fence: %v", err)
	}
	t.Logf("confirmation: %s", c)
	if c.Method != "ipmi power off" || !strings.Contains(c.Detail, "read back: off") {
		t.Errorf("confirmation %q: want ipmi power off, read back off", c)
	}
	if got := sim.Power(t); got != "off" {
		t.Errorf("BMC power after fence: %s, want off", got)
	}
	if !sim.WaitHostDead(10 * time.Second) {
		t.Error("the host process still runs after the fence")
	}
	c, err = d.Fence(ctx, target)
	if err != nil || !strings.Contains(c.Detail, "already off") {
		t.Errorf("second fence: %q, %v; want confirmed as already off", c, err)
	}
	if strings.Contains(logs.String(), ipmisim.Password) {
		t.Errorf("the log holds the password:\n%s", logs.String())
	}
}

// TestIPMIWrongPassword: a wrong password (read from a password file, as
// the agent does) is an error that names the BMC, and neither the error
// nor the log holds the password or the file's content.
func TestIPMIWrongPassword(t *testing.T) {
	sim := ipmisim.Start(t)
	wrong := "wrong-pw-7f3a9c"
	file := filepath.Join(t.TempDir(), "bmc.password")
	if err := os.WriteFile(file, []byte(wrong+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pw, err := config.ReadPassword("fencing.members.pg1.password_file", file)
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	d := ipmiDriver(t, sim.Port, pw, 20*time.Second, logger(&logs))
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	c, err := d.Fence(ctx, target)
	if err == nil {
		t.Fatalf("fence with a wrong password confirmed: %q", c)
	}
	t.Logf("error: %v", err)
	for _, secret := range []string{wrong, ipmisim.Password} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) || strings.Contains(c.String(), secret) {
			t.Errorf("a secret appears in the error, the log or the confirmation")
		}
	}
	if !strings.Contains(err.Error(), "127.0.0.1:"+strconv.Itoa(sim.Port)) {
		t.Errorf("error %q does not name the BMC", err)
	}
	if got := sim.Power(t); got != "on" {
		t.Errorf("BMC power: %s, want on (the fence was refused)", got)
	}
}

// TestIPMIUnreachable: a BMC that does not answer is an error by the
// driver's timeout, not a confirmation and not a hang.
func TestIPMIUnreachable(t *testing.T) {
	if _, err := exec.LookPath(ipmisim.IpmitoolPath); err != nil {
		t.Skipf("%s is not installed (apt-get install ipmitool)", ipmisim.IpmitoolPath)
	}
	port := closedUDPPort(t)
	timeout := 3 * time.Second
	d := ipmiDriver(t, port, ipmisim.Password, timeout, slog.New(slog.DiscardHandler))
	start := time.Now()
	c, err := d.Fence(context.Background(), target)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("fence of an unreachable BMC confirmed: %q", c)
	}
	t.Logf("error after %v: %v", took, err)
	// ipmitool is killed at the deadline; the margin covers a loaded machine.
	if took > timeout+5*time.Second {
		t.Errorf("took %v, want about the %v timeout", took, timeout)
	}
}

// closedUDPPort returns a loopback UDP port below 32768 where nothing
// listens.
func closedUDPPort(t *testing.T) int {
	t.Helper()
	for p := 31000; p < 31100; p++ {
		c, err := netListenUDP(p)
		if err == nil {
			c.Close()
			return p
		}
	}
	t.Fatal("no free UDP port in 31000-31099")
	return 0
}

func redfishDriver(t *testing.T, srv *redfishtest.Server, password string, log *slog.Logger) *bmc.Driver {
	t.Helper()
	port, _ := strconv.Atoi(srv.Port())
	d, err := bmc.New(bmc.Options{
		Protocol: bmc.Redfish, Host: srv.Host(), Port: port, Username: "admin", Password: password,
		Timeout: 20 * time.Second, PollInterval: 100 * time.Millisecond,
		TLS: bmc.TLSVerifyCA, RootCAs: srv.CertPool(), Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRedfishPowerOff: the bmclib gofish driver sends ForceOff (the power
// off hook kills a host process), polls through "PoweringOff" until the
// state reads Off, and confirms; a second fence sends nothing.
func TestRedfishPowerOff(t *testing.T) {
	host := exec.Command("sleep", "100000")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	dead := make(chan error, 1)
	go func() { dead <- host.Wait() }()
	t.Cleanup(func() { _ = host.Process.Kill() })
	srv := redfishtest.Start(redfishtest.Options{
		Username: "admin", Password: "rf-secret-91", PowerOffDelay: 700 * time.Millisecond,
		OnPowerOff: func() { _ = host.Process.Kill() },
	})
	defer srv.Close()
	var logs syncBuffer
	d := redfishDriver(t, srv, "rf-secret-91", logger(&logs))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Fence(ctx, target)
	if err != nil {
		t.Fatalf("fence: %v\nlog:\n%s", err, logs.String())
	}
	t.Logf("confirmation: %s", c)
	if srv.PowerState() != "Off" {
		t.Errorf("power state %q after the fence, want Off", srv.PowerState())
	}
	if got := srv.Resets(); len(got) != 1 || got[0] != "ForceOff" {
		t.Errorf("resets %v, want [ForceOff]", got)
	}
	select {
	case <-dead:
	case <-time.After(10 * time.Second):
		t.Error("the host process still runs after the fence")
	}
	if _, err := d.Fence(ctx, target); err != nil {
		t.Errorf("second fence: %v", err)
	}
	if got := srv.Resets(); len(got) != 1 {
		t.Errorf("resets %v after a second fence, want only the first ForceOff", got)
	}
	if n := srv.SessionCount(); n != 0 {
		t.Errorf("%d sessions left open, want 0 (the driver logs out)", n)
	}
}

// TestRedfishWrongPassword: refused credentials are an error without the
// password, and no reset is sent.
func TestRedfishWrongPassword(t *testing.T) {
	srv := redfishtest.Start(redfishtest.Options{Username: "admin", Password: "rf-secret-91"})
	defer srv.Close()
	var logs syncBuffer
	wrong := "wrong-rf-pw-5521"
	d := redfishDriver(t, srv, wrong, logger(&logs))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := d.Fence(ctx, target)
	if err == nil {
		t.Fatalf("fence with a wrong password confirmed: %q", c)
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), wrong) || strings.Contains(logs.String(), wrong) {
		t.Error("the password appears in the error or the log")
	}
	if len(srv.Resets()) != 0 || srv.PowerState() != "On" {
		t.Errorf("resets %v, power %s: want none and On", srv.Resets(), srv.PowerState())
	}
}

// TestRedfishUntrustedCertificate: with TLSVerifyCA and a CA pool that
// does not hold the BMC's certificate, the driver refuses to talk to it.
func TestRedfishUntrustedCertificate(t *testing.T) {
	srv := redfishtest.Start(redfishtest.Options{Username: "admin", Password: "pw"})
	defer srv.Close()
	other := redfishtest.Start(redfishtest.Options{Username: "admin", Password: "pw"})
	defer other.Close()
	port, _ := strconv.Atoi(srv.Port())
	d, err := bmc.New(bmc.Options{
		Protocol: bmc.Redfish, Host: srv.Host(), Port: port, Username: "admin", Password: "pw",
		Timeout: 10 * time.Second, TLS: bmc.TLSVerifyCA, RootCAs: other.CertPool(),
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.Fence(context.Background(), target); err == nil {
		t.Fatalf("fence through an untrusted certificate confirmed: %q", c)
	} else {
		t.Logf("error: %v", err)
	}
	if len(srv.Resets()) != 0 {
		t.Errorf("resets %v, want none", srv.Resets())
	}
}

// TestRedfishSilentBMC: a BMC that accepts connections and never answers
// is an error by the driver's timeout (bmclib's Redfish requests do not
// follow the context; the driver must return anyway).
func TestRedfishSilentBMC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never answered
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	timeout := 2 * time.Second
	d, err := bmc.New(bmc.Options{
		Protocol: bmc.Redfish, Host: "127.0.0.1", Port: port, Username: "admin", Password: "pw",
		Timeout: timeout, TLS: bmc.TLSInsecure, Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c, err := d.Fence(context.Background(), target)
	took := time.Since(start)
	if err == nil {
		t.Fatalf("fence of a silent BMC confirmed: %q", c)
	}
	t.Logf("error after %v: %v", took, err)
	if took > timeout+3*time.Second {
		t.Errorf("took %v, want about the %v timeout", took, timeout)
	}
}
