package integration

import (
	"context"
	"crypto/rand"
	"encoding/csv"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/localcluster"
)

// haproxyBin is Debian's HAProxy (apt-get install haproxy: 2.6 on Debian 12).
const haproxyBin = "/usr/sbin/haproxy"

// Patroni's check timing, which startHAProxy gives
// testdata/haproxy-patroni.cfg.tmpl (checkPatroniTiming checks the two
// agree).
const (
	hapInter     = 3 * time.Second
	hapFall      = 3
	hapRise      = 2
	patroniCheck = "inter 3s fall 3 rise 2"
)

// exampleCheck is the check timing of examples/haproxy.cfg's
// default-server lines ("inter 1s fall 2 rise 1"), read from the file.
func exampleCheck(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("../examples/haproxy.cfg")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "default-server "); ok {
			check, _, _ := strings.Cut(rest, " on-marked-down")
			return check
		}
	}
	t.Fatal("examples/haproxy.cfg has no default-server line")
	return ""
}

// requireHAProxy skips the test when HAProxy is not installed.
func requireHAProxy(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(haproxyBin); err != nil {
		t.Skipf("HAProxy not installed at %s (apt-get install haproxy): %v", haproxyBin, err)
	}
}

// haproxy is one HAProxy process in front of a local cluster, running
// testdata/haproxy-patroni.cfg.tmpl.
type haproxy struct {
	// PrimaryPort is the "batman" listener (writes), ReplicaPort the
	// "replicas" one (reads), StatsPort the stats page.
	PrimaryPort, ReplicaPort, StatsPort int
	// Check is the servers' check timing ("inter 3s fall 3 rise 2").
	Check string
	// Servers are the members, as the template's server lines need them.
	Servers []haproxyServer
	log     string
	cmd     *exec.Cmd
	done    chan struct{}
}

// haproxyServer is one server line: a member's database and API ports.
type haproxyServer struct {
	Name            string
	PGPort, APIPort int
}

// serverName is the server's name in the config and the stats.
func (s haproxyServer) serverName() string { return fmt.Sprintf("postgresql_127.0.0.1_%d", s.PGPort) }

// startHAProxy writes the config for c's members, checks it with haproxy -c
// and runs HAProxy in the foreground on loopback ports below 32768. It is
// stopped by its PID when the test ends; on failure its log is printed.
func startHAProxy(t *testing.T, c *localcluster.Cluster) *haproxy {
	t.Helper()
	return startHAProxyChecking(t, c, patroniCheck)
}

// startHAProxyChecking is startHAProxy with the servers' check timing
// check.
func startHAProxyChecking(t *testing.T, c *localcluster.Cluster, check string) *haproxy {
	t.Helper()
	requireHAProxy(t)
	dir := t.TempDir()
	var last error
	for attempt := 0; attempt < 3; attempt++ {
		ports, err := loopbackPorts(3)
		if err != nil {
			t.Fatal(err)
		}
		h := &haproxy{PrimaryPort: ports[0], ReplicaPort: ports[1], StatsPort: ports[2], Check: check, log: filepath.Join(dir, "haproxy.log")}
		for _, n := range c.Nodes {
			h.Servers = append(h.Servers, haproxyServer{Name: n.Name, PGPort: n.PGPort, APIPort: n.APIPort})
		}
		if last = h.start(t, dir); last == nil {
			return h
		}
		t.Logf("haproxy attempt %d: %v", attempt+1, last)
	}
	t.Fatalf("start haproxy: %v", last)
	return nil
}

// start renders the config, validates it and starts HAProxy, waiting until
// its stats page answers. A port taken meanwhile makes it fail (the caller
// retries with others).
func (h *haproxy) start(t *testing.T, dir string) error {
	tmpl, err := template.ParseFiles("testdata/haproxy-patroni.cfg.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "haproxy.cfg")
	f, err := os.Create(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := tmpl.Execute(f, h); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if out, err := exec.Command(haproxyBin, "-c", "-f", cfg).CombinedOutput(); err != nil {
		t.Fatalf("haproxy -c -f %s: %v\n%s", cfg, err, out)
	}
	logf, err := os.Create(h.log)
	if err != nil {
		t.Fatal(err)
	}
	h.cmd = exec.Command(haproxyBin, "-db", "-f", cfg)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	if err := h.cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", haproxyBin, err)
	}
	h.done = make(chan struct{})
	go func() { _ = h.cmd.Wait(); logf.Close(); close(h.done) }()
	t.Cleanup(func() { h.stop(t) })
	err = localcluster.WaitFor(ctxFor(t, 10*time.Second), func() bool {
		select {
		case <-h.done:
			return true
		default:
		}
		_, err := h.stats(context.Background())
		return err == nil
	})
	select {
	case <-h.done:
		b, _ := os.ReadFile(h.log)
		return fmt.Errorf("haproxy exited at start: %s", b)
	default:
	}
	if err != nil {
		return fmt.Errorf("haproxy stats on port %d never answered: %w", h.StatsPort, err)
	}
	return nil
}

// stop ends HAProxy by its PID (SIGTERM, then SIGKILL after 5 s) and prints
// its log if the test failed.
func (h *haproxy) stop(t *testing.T) {
	select {
	case <-h.done:
	default:
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-h.done:
		case <-time.After(5 * time.Second):
			_ = h.cmd.Process.Kill()
			<-h.done
		}
	}
	if t.Failed() {
		b, _ := os.ReadFile(h.log)
		t.Logf("==== haproxy log\n%s", b)
	}
}

// poolStatus maps proxy name ("batman", "replicas") to server name to the
// server's status as HAProxy's stats show it ("UP", "DOWN", "UP 1/3", ...).
type poolStatus map[string]map[string]string

// stats reads HAProxy's stats as CSV.
func (h *haproxy) stats(ctx context.Context) (poolStatus, error) {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/;csv", h.StatsPort), nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	r := csv.NewReader(resp.Body)
	r.FieldsPerRecord, r.Comment = -1, '#'
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("haproxy stats: %w", err)
	}
	ps := poolStatus{}
	for _, row := range rows {
		if len(row) < 18 || row[1] == "FRONTEND" || row[1] == "BACKEND" {
			continue
		}
		if ps[row[0]] == nil {
			ps[row[0]] = map[string]string{}
		}
		ps[row[0]][row[1]] = row[17]
	}
	return ps, nil
}

// up reports whether HAProxy sends connections to server in pool: its
// status is UP, possibly with failed checks pending ("UP 1/3").
func (ps poolStatus) up(pool string, s haproxyServer) bool {
	return strings.HasPrefix(ps[pool][s.serverName()], "UP")
}

// server returns the server line of member name.
func (h *haproxy) server(name string) haproxyServer {
	for _, s := range h.Servers {
		if s.Name == name {
			return s
		}
	}
	panic("no haproxy server for member " + name)
}

// waitPools waits until HAProxy routes writes only to primary and reads
// only to the other members (servers start UP, so this is the moment the
// checks have taken effect).
func (h *haproxy) waitPools(t *testing.T, primary string, d time.Duration) {
	t.Helper()
	var last poolStatus
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		ps, err := h.stats(context.Background())
		if err != nil {
			return false
		}
		last = ps
		for _, s := range h.Servers {
			isPrimary := s.Name == primary
			if ps.up("batman", s) != isPrimary || ps.up("replicas", s) == isPrimary || strings.Contains(ps["batman"][s.serverName()]+ps["replicas"][s.serverName()], "/") {
				return false
			}
		}
		return true
	})
	if err != nil {
		t.Fatalf("haproxy pools never settled on primary %s: %v; last stats %v", primary, err, last)
	}
}

// statusSample is one reading of the pools.
type statusSample struct {
	at time.Time
	ps poolStatus
}

// watchPools reads the pools every 200 ms until stop is called, which
// takes one last reading (so a state the caller has just waited for is in
// the samples even if it came between two ticks) and returns the samples.
func (h *haproxy) watchPools() (stop func() []statusSample) {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var samples []statusSample
	sample := func(ctx context.Context) {
		if ps, err := h.stats(ctx); err == nil {
			mu.Lock()
			samples = append(samples, statusSample{time.Now(), ps})
			mu.Unlock()
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			sample(ctx)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() []statusSample {
		cancel()
		<-done
		last, cancelLast := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancelLast()
		sample(last)
		mu.Lock()
		defer mu.Unlock()
		return samples
	}
}

// loopbackPorts returns n distinct free TCP ports on 127.0.0.1 between
// 20000 and 32000, below the kernel's range of source ports.
func loopbackPorts(n int) ([]int, error) {
	var out []int
	seen := map[int]bool{}
	for tries := 0; len(out) < n && tries < 1000; tries++ {
		r, err := rand.Int(rand.Reader, big.NewInt(12000))
		if err != nil {
			return nil, err
		}
		p := 20000 + int(r.Int64())
		if seen[p] {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		ln.Close()
		seen[p] = true
		out = append(out, p)
	}
	if len(out) < n {
		return nil, errors.New("no free ports between 20000 and 32000")
	}
	return out, nil
}

// hapAck is one write acknowledged through HAProxy: which server
// (inet_server_port()) acknowledged it, and when the client saw it.
type hapAck struct {
	id   int64
	port int
	at   time.Time
}

// hapRead is one read through HAProxy's read pool.
type hapRead struct {
	port       int
	inRecovery bool
	at         time.Time
}

// hapClients writes and reads through HAProxy: writers on the primary pool,
// each with one connection it keeps until an error, and a reader that opens
// a connection per read on the read pool, so that every read is balanced
// anew.
type hapClients struct {
	dsn    func(port int) string
	nextID atomic.Int64

	mu        sync.Mutex
	acks      []hapAck
	writeErrs []error
	reads     []hapRead
	readErrs  []time.Time
	stop      context.CancelFunc
	wg        sync.WaitGroup
}

// startClients creates the table through the primary pool and starts
// writers writers and one reader.
func startClients(t *testing.T, c *localcluster.Cluster, h *haproxy, writers int) *hapClients {
	t.Helper()
	cl := &hapClients{dsn: func(port int) string {
		return fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=3", port, c.SuperPassword)
	}}
	ctx := ctxFor(t, 30*time.Second)
	conn, err := pgx.Connect(ctx, cl.dsn(h.PrimaryPort))
	if err != nil {
		t.Fatalf("connect through haproxy: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE haproxy_writes (id bigint PRIMARY KEY, writer int NOT NULL)")
	conn.Close(ctx)
	if err != nil {
		t.Fatalf("create table through haproxy: %v", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	cl.stop = cancel
	for i := 0; i < writers; i++ {
		cl.wg.Add(1)
		go func() { defer cl.wg.Done(); cl.write(runCtx, h.PrimaryPort, i) }()
	}
	cl.wg.Add(1)
	go func() { defer cl.wg.Done(); cl.read(runCtx, h.ReplicaPort) }()
	t.Cleanup(cl.Stop)
	return cl
}

// write inserts rows every 20 ms until ctx ends, reconnecting after any
// error (every 50 ms), and records each acknowledgement with the port of
// the server that gave it.
func (cl *hapClients) write(ctx context.Context, port, writer int) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	pace := time.NewTicker(20 * time.Millisecond)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var err error
		if conn == nil {
			conn, err = pgx.Connect(qctx, cl.dsn(port))
		}
		var server int
		id := cl.nextID.Add(1)
		if err == nil {
			err = conn.QueryRow(qctx, "INSERT INTO haproxy_writes (id, writer) VALUES ($1, $2) RETURNING inet_server_port()", id, writer).Scan(&server)
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		cl.mu.Lock()
		if err != nil {
			cl.writeErrs = append(cl.writeErrs, err)
		} else {
			cl.acks = append(cl.acks, hapAck{id: id, port: server, at: time.Now()})
		}
		cl.mu.Unlock()
		if err != nil && conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

// read asks a fresh connection through the read pool which server answers
// and whether it is in recovery, every 50 ms until ctx ends.
func (cl *hapClients) read(ctx context.Context, port int) {
	pace := time.NewTicker(50 * time.Millisecond)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		r := hapRead{}
		conn, err := pgx.Connect(qctx, cl.dsn(port))
		if err == nil {
			err = conn.QueryRow(qctx, "SELECT inet_server_port(), pg_is_in_recovery()").Scan(&r.port, &r.inRecovery)
			conn.Close(context.Background())
		}
		cancel()
		if ctx.Err() != nil {
			return
		}
		r.at = time.Now()
		cl.mu.Lock()
		if err != nil {
			cl.readErrs = append(cl.readErrs, r.at)
		} else {
			cl.reads = append(cl.reads, r)
		}
		cl.mu.Unlock()
	}
}

// Stop ends the clients and waits for them; it may be called twice.
func (cl *hapClients) Stop() {
	cl.stop()
	cl.wg.Wait()
}

// snapshot returns copies of what the clients recorded so far.
func (cl *hapClients) snapshot() (acks []hapAck, writeErrs []error, reads []hapRead, readErrs []time.Time) {
	cl.mu.Lock()
	defer cl.mu.Unlock()
	return append([]hapAck(nil), cl.acks...), append([]error(nil), cl.writeErrs...),
		append([]hapRead(nil), cl.reads...), append([]time.Time(nil), cl.readErrs...)
}

// waitFor waits until cond holds for what the clients recorded.
func (cl *hapClients) waitFor(t *testing.T, d time.Duration, what string, cond func(acks []hapAck, reads []hapRead) bool) {
	t.Helper()
	err := localcluster.WaitFor(ctxFor(t, d), func() bool {
		acks, _, reads, _ := cl.snapshot()
		return cond(acks, reads)
	})
	if err != nil {
		acks, errs, reads, _ := cl.snapshot()
		last := "none"
		if len(errs) > 0 {
			last = errs[len(errs)-1].Error()
		}
		t.Fatalf("waiting for %s: %v (%d acks, %d reads, %d write errors, last: %s)", what, err, len(acks), len(reads), len(errs), last)
	}
}

// isReadOnlyError reports whether err is PostgreSQL's refusal to write in
// a read-only transaction (a replica): SQLSTATE 25006.
func isReadOnlyError(err error) bool {
	var pg *pgconn.PgError
	return errors.As(err, &pg) && pg.Code == "25006"
}
