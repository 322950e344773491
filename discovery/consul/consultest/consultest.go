// Package consultest runs a real Consul agent in dev mode on loopback for
// tests (package discovery/consul's, the integration drills'). Debian has
// no Consul package: the agent is found at $HAMGR_CONSUL, on PATH, or at
// CacheBinary, where .ci/consul-build.sh builds it; without one the test
// skips and says why.
package consultest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// CacheBinary is where .ci/consul-build.sh leaves the Consul agent it
// builds, in a cache that outlives the clone.
const CacheBinary = "/var/cache/hamgr-ci/consul/consul"

// Missing says why no Consul agent is found.
const Missing = "no Consul agent: Debian has no consul package, and none is on PATH, in $HAMGR_CONSUL or at " + CacheBinary +
	" (.ci/consul-build.sh builds v1.16.6 there from the Go module proxy; it ran out of time or failed, see its output in CI)"

// Find returns a Consul agent's path, or "" when there is none (Missing
// says why).
func Find() string {
	if p := os.Getenv("HAMGR_CONSUL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("consul"); err == nil {
		return p
	}
	if _, err := os.Stat(CacheBinary); err == nil {
		return CacheBinary
	}
	return ""
}

// Binary finds a Consul agent, or skips the test saying why.
func Binary(t testing.TB) string {
	t.Helper()
	p := Find()
	if p == "" {
		t.Skip(Missing)
	}
	return p
}

// Agent is a running dev-mode Consul agent.
type Agent struct {
	// HTTPAddr and DNSAddr are "127.0.0.1:PORT".
	HTTPAddr, DNSAddr string
	// Log is the agent's log file.
	Log string
}

// Start runs `consul agent -dev` on free loopback ports below 32768 and
// waits (up to 60s) until it has elected itself; it is killed by its PID
// when the test ends, and its log printed if the test failed.
func Start(t testing.TB, bin string) *Agent {
	t.Helper()
	dir := t.TempDir()
	var last error
	for attempt := range 3 {
		a, err := start(t, bin, dir, attempt)
		if err == nil {
			return a
		}
		last = err
		t.Logf("consul attempt %d: %v", attempt+1, err)
	}
	t.Fatalf("start consul: %v", last)
	return nil
}

func start(t testing.TB, bin, dir string, attempt int) (*Agent, error) {
	p, err := loopbackPorts(5)
	if err != nil {
		return nil, err
	}
	a := &Agent{HTTPAddr: fmt.Sprintf("127.0.0.1:%d", p[0]), DNSAddr: fmt.Sprintf("127.0.0.1:%d", p[1]),
		Log: filepath.Join(dir, fmt.Sprintf("consul-%d.log", attempt))}
	cmd := exec.Command(bin, "agent", "-dev", "-bind=127.0.0.1", "-client=127.0.0.1",
		"-data-dir="+filepath.Join(dir, fmt.Sprintf("data-%d", attempt)),
		"-http-port="+strconv.Itoa(p[0]), "-dns-port="+strconv.Itoa(p[1]), "-server-port="+strconv.Itoa(p[2]),
		"-serf-lan-port="+strconv.Itoa(p[3]), "-serf-wan-port="+strconv.Itoa(p[4]), "-grpc-port=-1", "-grpc-tls-port=-1")
	logf, err := os.Create(a.Log)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if leader(a.HTTPAddr) {
			break
		}
		select {
		case <-exited:
			logf.Close()
			b, _ := os.ReadFile(a.Log)
			return nil, fmt.Errorf("consul exited: %s", tail(string(b)))
		default:
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("consul did not elect itself within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			b, _ := os.ReadFile(a.Log)
			t.Logf("consul log (tail):\n%s", tail(string(b)))
		}
	})
	return a, nil
}

// leader reports whether the agent at addr answers with a raft leader.
func leader(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/v1/status/leader")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	var l string
	return json.NewDecoder(resp.Body).Decode(&l) == nil && l != ""
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// loopbackPorts returns n distinct ports between 20000 and 32000 free on
// 127.0.0.1 for both TCP and UDP at the moment of asking (below the
// kernel's source ports; Consul binds them itself).
func loopbackPorts(n int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		p := 20000 + rand.IntN(12000)
		if seen[p] {
			continue
		}
		seen[p] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", p))
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		out = append(out, p)
	}
	if len(out) < n {
		return nil, fmt.Errorf("found only %d free loopback ports of %d", len(out), n)
	}
	return out, nil
}
