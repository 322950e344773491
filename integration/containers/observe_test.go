package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/integration/history"
	"github.com/hamgr/hamgr/localcluster"
)

// connString is a libpq connection string as the superuser to hosts (all
// on pgPort); several hosts add target_session_attrs=read-write.
func (c *cluster) connString(hosts ...string) string {
	ports := strings.TrimSuffix(strings.Repeat(fmt.Sprintf("%d,", pgPort), len(hosts)), ",")
	s := fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=postgres sslmode=disable connect_timeout=1 application_name=hamgr-drill",
		strings.Join(hosts, ","), ports, c.password)
	if len(hosts) > 1 {
		s += " target_session_attrs=read-write"
	}
	return s
}

// connect opens one connection within a second per host.
func (c *cluster) connect(ctx context.Context, hosts ...string) (*pgx.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(len(hosts))*time.Second+500*time.Millisecond)
	defer cancel()
	return pgx.Connect(ctx, c.connString(hosts...))
}

// nodeState is what one node's PostgreSQL says about itself.
type nodeState struct {
	reachable, primary bool
	// sender is the host a replica streams from ("" when not streaming).
	sender string
}

func (c *cluster) state(ctx context.Context, n *member) nodeState {
	conn, err := c.connect(ctx, n.ip.String())
	if err != nil {
		return nodeState{}
	}
	defer closeConn(conn)
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	var inRecovery bool
	if err := conn.QueryRow(qctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery); err != nil {
		return nodeState{}
	}
	if !inRecovery {
		return nodeState{reachable: true, primary: true}
	}
	var sender string
	err = conn.QueryRow(qctx, "SELECT coalesce(sender_host, '') FROM pg_stat_wal_receiver WHERE status = 'streaming'").Scan(&sender)
	if err != nil {
		return nodeState{reachable: true}
	}
	return nodeState{reachable: true, sender: sender}
}

// converged reports whether, among the first k nodes, exactly one is
// primary and every other streams from it, and names that primary.
func (c *cluster) converged(ctx context.Context, k int) (string, bool) {
	var primary *member
	states := map[string]nodeState{}
	for _, n := range c.nodes[:k] {
		s := c.state(ctx, n)
		if !s.reachable {
			return "", false
		}
		if s.primary {
			if primary != nil {
				return "", false
			}
			primary = n
		}
		states[n.name] = s
	}
	if primary == nil {
		return "", false
	}
	for _, n := range c.nodes[:k] {
		if n != primary && states[n.name].sender != primary.ip.String() {
			return "", false
		}
	}
	return primary.name, true
}

// waitConverged waits until the first k nodes have converged and returns
// the primary's name.
func (c *cluster) waitConverged(ctx context.Context, k int) (string, error) {
	var p string
	err := localcluster.Poll(ctx, 250*time.Millisecond, func() bool {
		var ok bool
		p, ok = c.converged(ctx, k)
		return ok
	})
	return p, err
}

// sampleConvergence samples convergence of every node every 250 ms from
// heal until it has held for 3 s or limit has passed.
func (c *cluster) sampleConvergence(ctx context.Context, heal time.Time, limit time.Duration) ([]history.Sample, string) {
	var samples []history.Sample
	var since time.Time
	var primary string
	ctx, cancel := context.WithDeadline(ctx, heal.Add(limit))
	defer cancel()
	_ = localcluster.Poll(ctx, 250*time.Millisecond, func() bool {
		p, ok := c.converged(ctx, nodeCount)
		now := time.Now()
		samples = append(samples, history.Sample{At: now, Converged: ok})
		switch {
		case !ok:
			since = time.Time{}
		case since.IsZero():
			since, primary = now, p
		}
		return ok && now.Sub(since) >= 3*time.Second
	})
	return samples, primary
}

func closeConn(conn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	_ = conn.Close(ctx)
}

// insertSQL writes one row and returns the timeline the server is writing
// (the first 8 hex digits of its current WAL file name).
const insertSQL = `INSERT INTO drill_writes (id, path) VALUES ($1, $2)
RETURNING ('x' || substr(pg_walfile_name(pg_current_wal_insert_lsn()), 1, 8))::bit(32)::bigint`

// writers are the drill's clients: one over every node with
// target_session_attrs=read-write, one directly to each node.
type writers struct {
	c      *cluster
	next   atomic.Int64
	mu     sync.Mutex
	acks   []history.Ack
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startWriters creates the table and starts the clients.
func (c *cluster) startWriters(ctx context.Context) *writers {
	c.t.Helper()
	var hosts []string
	for _, n := range c.nodes {
		hosts = append(hosts, n.ip.String())
	}
	conn, err := c.connect(ctx, hosts...)
	if err != nil {
		c.t.Fatalf("connect over every node: %v", err)
	}
	_, err = conn.Exec(ctx, "CREATE TABLE drill_writes (id bigint PRIMARY KEY, path text NOT NULL, at timestamptz DEFAULT now())")
	closeConn(conn)
	if err != nil {
		c.t.Fatalf("create the drill table: %v", err)
	}
	wctx, cancel := context.WithCancel(context.Background())
	w := &writers{c: c, cancel: cancel}
	w.wg.Go(func() { w.loop(wctx, history.PathMultiHost, hosts, 20*time.Millisecond) })
	for _, n := range c.nodes {
		w.wg.Go(func() { w.loop(wctx, history.PathDirect, []string{n.ip.String()}, 50*time.Millisecond) })
	}
	c.t.Cleanup(w.stop)
	return w
}

// loop writes every interval until ctx ends, logging each
// acknowledgement with the node and timeline that gave it.
func (w *writers) loop(ctx context.Context, path history.Path, hosts []string, interval time.Duration) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			closeConn(conn)
		}
	}()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if conn == nil || conn.IsClosed() {
			var err error
			if conn, err = w.c.connect(ctx, hosts...); err != nil {
				conn = nil
				continue
			}
		}
		id := w.next.Add(1)
		sent := time.Now()
		qctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		var tl int64
		err := conn.QueryRow(qctx, insertSQL, id, path.String()).Scan(&tl)
		cancel()
		if err != nil {
			var pe *pgconn.PgError
			if !errors.As(err, &pe) || pe.Code != "25006" { // not "read-only transaction"
				closeConn(conn)
				conn = nil
			}
			continue
		}
		node := "?"
		if a, ok := conn.PgConn().Conn().RemoteAddr().(*net.TCPAddr); ok {
			node = w.c.byIP[a.IP.String()]
		}
		w.mu.Lock()
		w.acks = append(w.acks, history.Ack{ID: id, Node: node, Timeline: tl, Path: path, Sent: sent, At: time.Now()})
		w.mu.Unlock()
	}
}

// snapshot returns the acknowledgements so far.
func (w *writers) snapshot() []history.Ack {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]history.Ack(nil), w.acks...)
}

// stop ends every client and waits for them.
func (w *writers) stop() {
	w.cancel()
	w.wg.Wait()
}

// waitFor waits until the acknowledgements satisfy cond.
func (w *writers) waitFor(ctx context.Context, what string, cond func([]history.Ack) bool) error {
	if err := localcluster.Poll(ctx, 50*time.Millisecond, func() bool { return cond(w.snapshot()) }); err != nil {
		return fmt.Errorf("wait for %s: %w", what, err)
	}
	return nil
}

// presentIDs reads every id in the table from node n.
func (c *cluster) presentIDs(ctx context.Context, n *member) (map[int64]bool, error) {
	conn, err := c.connect(ctx, n.ip.String())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", n.name, err)
	}
	defer closeConn(conn)
	rows, err := conn.Query(ctx, "SELECT id FROM drill_writes")
	if err != nil {
		return nil, fmt.Errorf("read ids on %s: %w", n.name, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("read ids on %s: %w", n.name, err)
	}
	present := make(map[int64]bool, len(ids))
	for _, id := range ids {
		present[id] = true
	}
	return present, nil
}

// waitSyncStandby waits until primary n has a synchronous standby
// streaming (pg_stat_replication says sync).
func (c *cluster) waitSyncStandby(ctx context.Context, n *member) {
	c.t.Helper()
	err := localcluster.Poll(ctx, 250*time.Millisecond, func() bool {
		conn, err := c.connect(ctx, n.ip.String())
		if err != nil {
			return false
		}
		defer closeConn(conn)
		var k int
		err = conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE sync_state IN ('sync', 'quorum')").Scan(&k)
		return err == nil && k > 0
	})
	if err != nil {
		c.t.Fatalf("no synchronous standby on %s: %v", n.name, err)
	}
}

// confirmDownFailover is the operator's path when there is no proof that
// the old primary stopped: hamgrctl failover --confirm-down, to the first
// other node that accepts it (in synchronous mode only the synchronous
// standby does).
func (c *cluster) confirmDownFailover(old *member) {
	c.t.Helper()
	var errs []string
	for _, n := range c.nodes {
		if n == old {
			continue
		}
		out, err := dockerErr("exec", n.id(), "hamgrctl", "-c", "/etc/hamgr/hamgr.yml", "failover", "--to", n.name, "--confirm-down", old.name, "--force")
		if err == nil {
			c.t.Logf("hamgrctl failover --to %s --confirm-down %s: %s", n.name, old.name, out)
			return
		}
		errs = append(errs, err.Error())
	}
	c.t.Fatalf("hamgrctl failover --confirm-down %s refused everywhere: %s", old.name, strings.Join(errs, "; "))
}

// writeAckLog writes acks to dir/acks.jsonl, one JSON object a line (id,
// node, timeline, path, sent, at), and returns the file's path.
func writeAckLog(dir string, acks []history.Ack) (string, error) {
	path := filepath.Join(dir, "acks.jsonl")
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("create %s: %w", path, err)
	}
	enc := json.NewEncoder(f)
	for _, a := range acks {
		err = enc.Encode(struct {
			ID       int64     `json:"id"`
			Node     string    `json:"node"`
			Timeline int64     `json:"timeline"`
			Path     string    `json:"path"`
			Sent     time.Time `json:"sent"`
			At       time.Time `json:"at"`
		}{a.ID, a.Node, a.Timeline, a.Path.String(), a.Sent, a.At})
		if err != nil {
			break
		}
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	return path, nil
}

// iptables runs iptables as root inside node n (the node containers have
// NET_ADMIN).
func (c *cluster) iptables(n *member, args ...string) {
	c.t.Helper()
	docker(c.t, append([]string{"exec", "-u", "root", n.id(), "iptables"}, args...)...)
}
