// Package bindtest runs a real BIND 9 (named) on loopback for tests: one
// primary zone that accepts RFC 2136 updates signed with a fresh TSIG key,
// in its own temporary directory, stopped (by its PID) when the test ends.
// Tests skip, saying why, where named cannot run (not installed, not
// root).
package bindtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// Paths of the programs used.
const (
	NamedPath = "/usr/sbin/named"
	KeyName   = "hamgr-key"
	// portLow and portHigh bound the ports tried (below the Linux
	// ephemeral range, so that no client socket takes them meanwhile).
	portLow, portHigh = 20000, 32000
	startTimeout      = 15 * time.Second
	stopTimeout       = 10 * time.Second
	maxPortTries      = 10
)

// Server is a running named.
type Server struct {
	// Addr is "127.0.0.1:PORT" (UDP and TCP).
	Addr string
	// Port is Addr's port.
	Port int
	// Zone is the zone, fully qualified ("db.test.").
	Zone string
	// KeyFile is the TSIG key in BIND syntax (tsig-keygen's), mode 0600.
	KeyFile string
	// Secret is the key's base64 secret.
	Secret string
	// Dir holds the configuration, zone, journal and named's log.
	Dir    string
	cmd    *exec.Cmd
	exited chan error
}

// Start starts named serving zone (such as "db.test") with an SOA, an NS
// and the records in extra (zone-file lines, such as "primary IN A
// 127.0.0.1"), accepting updates signed with KeyName. It is stopped by the
// test's cleanup.
func Start(t testing.TB, zone string, extra ...string) *Server {
	t.Helper()
	if _, err := os.Stat(NamedPath); err != nil {
		t.Skipf("BIND 9 is not installed (%s: %v): apt-get install bind9 bind9-dnsutils", NamedPath, err)
	}
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("dig is not installed: apt-get install bind9-dnsutils")
	}
	if os.Geteuid() != 0 {
		t.Skip("named runs as root here (its own config in a temp dir, no -u): run the test as root")
	}
	dir, err := os.MkdirTemp("", "hamgr-bind-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("named's directory kept: %s", dir)
		}
	})
	s := &Server{Zone: mdns.Fqdn(zone), Dir: dir, KeyFile: filepath.Join(dir, KeyName+".conf")}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		t.Fatal(err)
	}
	s.Secret = base64.StdEncoding.EncodeToString(raw)
	key := fmt.Sprintf("key %q {\n\talgorithm hmac-sha256;\n\tsecret %q;\n};\n", KeyName, s.Secret)
	if err := os.WriteFile(s.KeyFile, []byte(key), 0o600); err != nil {
		t.Fatal(err)
	}
	zoneText := fmt.Sprintf("$TTL 30\n@ IN SOA ns1.%s admin.%s ( 1 60 30 600 5 )\n  IN NS ns1.%s\nns1 IN A 127.0.0.1\n%s\n",
		s.Zone, s.Zone, s.Zone, strings.Join(extra, "\n"))
	if err := os.WriteFile(filepath.Join(dir, "zone.db"), []byte(zoneText), 0o644); err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range maxPortTries {
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		if lastErr = s.start(port); lastErr == nil {
			t.Cleanup(func() { s.Stop(t) })
			return s
		}
	}
	t.Fatalf("start named: %v", lastErr)
	return nil
}

// freePort picks a port in [portLow, portHigh) free on 127.0.0.1 for both
// UDP and TCP at the time of the check.
func freePort() (int, error) {
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(portHigh-portLow))
		if err != nil {
			return 0, err
		}
		port := portLow + int(n.Int64())
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return port, nil
	}
	return 0, errors.New("no free port found on 127.0.0.1")
}

func (s *Server) start(port int) error {
	conf := fmt.Sprintf(`include %q;
options {
	directory %q;
	pid-file %q;
	session-keyfile %q;
	listen-on port %d { 127.0.0.1; };
	listen-on-v6 { none; };
	recursion no;
	allow-query { 127.0.0.1; };
	dnssec-validation no;
};
controls { };
zone %q {
	type primary;
	file %q;
	allow-update { key %q; };
};
`, s.KeyFile, s.Dir, filepath.Join(s.Dir, "named.pid"), filepath.Join(s.Dir, "session.key"), port,
		strings.TrimSuffix(s.Zone, "."), filepath.Join(s.Dir, "zone.db"), KeyName)
	confPath := filepath.Join(s.Dir, "named.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return err
	}
	logf, err := os.Create(filepath.Join(s.Dir, "named.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(NamedPath, "-g", "-c", confPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", NamedPath, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	s.cmd, s.exited, s.Port, s.Addr = cmd, exited, port, net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	for {
		if s.ready(ctx) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("named exited (%v) on port %d; see %s", err, port, logf.Name())
		case <-ctx.Done():
			_ = cmd.Process.Kill()
			<-exited
			return fmt.Errorf("named did not answer on %s within %v; see %s", s.Addr, startTimeout, logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ready reports whether named answers the zone's SOA with NOERROR.
func (s *Server) ready(ctx context.Context) bool {
	q := new(mdns.Msg)
	q.SetQuestion(s.Zone, mdns.TypeSOA)
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	r, _, err := c.ExchangeContext(ctx, q, s.Addr)
	return err == nil && r.Rcode == mdns.RcodeSuccess && r.Authoritative
}

// Stop stops named (SIGTERM, then SIGKILL after stopTimeout) and waits for
// it to go.
func (s *Server) Stop(t testing.TB) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	p := s.cmd.Process
	s.cmd = nil
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(stopTimeout):
		t.Logf("named (pid %d) did not stop within %v: killing it", p.Pid, stopTimeout)
		_ = p.Kill()
		<-s.exited
	}
}

// Dig runs dig against the server (no recursion, short output) and returns
// its answer lines; the test fails if dig cannot run.
func (s *Server) Dig(t testing.TB, name, rrtype string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "dig", "@127.0.0.1", "-p", strconv.Itoa(s.Port),
		"+norecurse", "+tcp", "+time=2", "+tries=1", "+short", name, rrtype).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s %s: %v: %s", name, rrtype, err, out)
	}
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if strings.HasPrefix(l, ";;") {
				t.Fatalf("dig %s %s: %s", name, rrtype, out)
			}
			lines = append(lines, l)
		}
	}
	return lines
}
