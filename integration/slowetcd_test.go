package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// defaultSoakFsyncDelay is how long the soak's etcd waits before each of
// its fsync and fdatasync calls unless HAMGR_SOAK_ETCD_FSYNC_DELAY says
// otherwise: ten times etcd's own guidance for its WAL (a 99th percentile
// under 10 ms), on every call rather than the slowest.
const defaultSoakFsyncDelay = 100 * time.Millisecond

// soakFsyncDelay is HAMGR_SOAK_ETCD_FSYNC_DELAY (a Go duration; 0 runs
// the embedded etcd instead) or defaultSoakFsyncDelay.
func soakFsyncDelay(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("HAMGR_SOAK_ETCD_FSYNC_DELAY")
	if s == "" {
		return defaultSoakFsyncDelay
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		t.Fatalf("HAMGR_SOAK_ETCD_FSYNC_DELAY=%q: want a Go duration such as 100ms, or 0 for the embedded etcd", s)
	}
	return d
}

// slowEtcd is an etcd server in a process of its own whose every fsync
// and fdatasync waits first, as on a slow disk.
type slowEtcd struct {
	url   string
	delay time.Duration
}

// startSlowEtcd starts the system's etcd (Debian's etcd-server) on two
// free loopback ports under strace, which delays each fsync and
// fdatasync by delay (its seccomp filter stops etcd at those calls only,
// so nothing else is slowed). It is killed, with strace, when the test
// ends. Without etcd or strace the test skips and names the packages.
func startSlowEtcd(t *testing.T, delay time.Duration) *slowEtcd {
	t.Helper()
	for _, bin := range []string{"etcd", "strace"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("the soak's slowed etcd needs %s (apt-get install etcd-server strace; "+
				"HAMGR_SOAK_ETCD_FSYNC_DELAY=0 runs the soak on the embedded etcd instead): %v", bin, err)
		}
	}
	dir := t.TempDir()
	client, peer := freeLoopbackPort(t), freeLoopbackPort(t)
	cu, pu := fmt.Sprintf("http://127.0.0.1:%d", client), fmt.Sprintf("http://127.0.0.1:%d", peer)
	logf, err := os.Create(filepath.Join(dir, "etcd.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("strace", "-f", "--seccomp-bpf", "-qq", "-o", "/dev/null",
		"-e", "trace=fsync,fdatasync",
		"-e", "inject=fsync,fdatasync:delay_enter="+strconv.FormatInt(delay.Microseconds(), 10),
		"etcd", "--name", "slow", "--data-dir", filepath.Join(dir, "data"),
		"--listen-client-urls", cu, "--advertise-client-urls", cu,
		"--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
		"--initial-cluster", "slow="+pu, "--log-outputs", "stderr")
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so that strace and etcd are killed together
	// (strace, signalled alone, detaches and leaves etcd running).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start etcd under strace: %v", err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
	})
	e := &slowEtcd{url: cu, delay: delay}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		if err := e.healthy(ctx); err == nil {
			return e
		} else if ctx.Err() != nil {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("etcd under strace not healthy in 60 s: %v; its log:\n%s", err, tail(string(b), 30))
		}
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// healthy asks etcd's /health.
func (e *slowEtcd) healthy(ctx context.Context) error {
	body, err := e.get(ctx, "/health")
	if err != nil {
		return err
	}
	if !strings.Contains(body, `"health":"true"`) {
		return fmt.Errorf("/health says %s", body)
	}
	return nil
}

// walFsyncMean is the mean duration of etcd's WAL fsyncs so far and how
// many there were (etcd_disk_wal_fsync_duration_seconds).
func (e *slowEtcd) walFsyncMean(ctx context.Context) (time.Duration, int, error) {
	body, err := e.get(ctx, "/metrics")
	if err != nil {
		return 0, 0, err
	}
	var sum float64
	n := -1
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		switch f[0] {
		case "etcd_disk_wal_fsync_duration_seconds_sum":
			sum, err = strconv.ParseFloat(f[1], 64)
		case "etcd_disk_wal_fsync_duration_seconds_count":
			n, err = strconv.Atoi(f[1])
		}
		if err != nil {
			return 0, 0, fmt.Errorf("etcd metric %s: %w", f[0], err)
		}
	}
	if n <= 0 {
		return 0, 0, errors.New("etcd reports no WAL fsync (etcd_disk_wal_fsync_duration_seconds_count)")
	}
	return time.Duration(sum / float64(n) * float64(time.Second)), n, nil
}

// get reads path from etcd's client URL.
func (e *slowEtcd) get(ctx context.Context, path string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+path, nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", path, err)
	}
	return string(b), nil
}

// freeLoopbackPort is a TCP port of 127.0.0.1 that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
