package integration

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/integration/history"
	"github.com/hamgr/hamgr/localcluster"
)

// registerClients is how many clients work the register at once.
const registerClients = 4

// A register (one row holding one value) through a node-crash failover in
// synchronous mode, checked for linearizability with porcupine: clients
// connected over every member with target_session_attrs=read-write write
// unique values and read the row, and the history of what they saw must
// have one order in which every read returns the latest write before it.
// A read is an UPDATE ... RETURNING of the row (it bumps a counter), so its
// answer, like a write's, comes only once the commit is on a synchronous
// standby: PostgreSQL shows a commit to other sessions before its standby
// has it, so a plain SELECT on the old primary could see a write the
// failover then loses without hamgr doing anything wrong. A write whose
// connection broke before the answer is unknown (it may or may not have
// committed); a read that broke is no operation.
func TestRegisterLinearizableThroughFailover(t *testing.T) {
	c := startCluster(t, localcluster.Options{})
	setConfig(t, c, "synchronous_mode", "on")
	waitSyncRecord(t, c, 60*time.Second)
	old, _ := leader(t, c)
	connect := registerConn(c)
	setup, err := connect(ctxFor(t, 30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := setup.Exec(ctxFor(t, 30*time.Second),
		"CREATE TABLE register (id int PRIMARY KEY, v bigint NOT NULL, reads bigint NOT NULL DEFAULT 0); INSERT INTO register VALUES (1, 0)"); err != nil {
		t.Fatal(err)
	}
	setup.Close(context.Background())

	ttl := time.Duration(localcluster.FastTiming.TTL)
	ctx, stop := context.WithTimeout(context.Background(), 3*ttl+2*time.Minute)
	defer stop()
	rec := &registerHistory{}
	var wg sync.WaitGroup
	for i := range registerClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			registerClient(ctx, i, connect, rec)
		}()
	}
	if err := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool { return rec.len() >= 200 }); err != nil {
		stop()
		wg.Wait()
		t.Fatalf("the register clients do not get answers: %d operations", rec.len())
	}
	t0 := time.Now()
	old.KillNode()
	tl, err := c.ObserveFailover(ctxFor(t, ttl+90*time.Second), old.Name, t0)
	if err != nil {
		stop()
		wg.Wait()
		t.Fatal(err)
	}
	before := rec.len()
	if err := localcluster.WaitFor(ctxFor(t, 60*time.Second), func() bool { return rec.len() >= before+200 }); err != nil {
		t.Errorf("few answers after the failover: %d", rec.len()-before)
	}
	stop()
	wg.Wait()
	ops := rec.all()
	unknown := 0
	for _, o := range ops {
		if o.Unknown {
			unknown++
		}
	}
	res := history.CheckRegister(0, ops, 2*time.Minute)
	t.Logf("failover %s -> %s (epoch %d) %v after the crash; %d operations (%d writes of unknown outcome): %v",
		old.Name, tl.New, tl.Epoch, tl.Promoted, len(ops), unknown, res)
	if res != porcupine.Ok {
		t.Errorf("the register's history is not linearizable (%v)", res)
	}
}

// registerConn returns a dialer for a connection over every member with
// target_session_attrs=read-write.
func registerConn(c *localcluster.Cluster) func(context.Context) (*pgx.Conn, error) {
	var hosts, ports []string
	for _, hp := range c.Hosts() {
		h, p, _ := net.SplitHostPort(hp)
		hosts, ports = append(hosts, h), append(ports, p)
	}
	dsn := fmt.Sprintf("host=%s port=%s user=postgres password=%s dbname=postgres sslmode=disable target_session_attrs=read-write connect_timeout=2",
		strings.Join(hosts, ","), strings.Join(ports, ","), c.SuperPassword)
	return func(ctx context.Context) (*pgx.Conn, error) {
		cctx, cancel := context.WithTimeout(ctx, 8*time.Second)
		defer cancel()
		return pgx.Connect(cctx, dsn)
	}
}

// registerHistory collects the clients' operations.
type registerHistory struct {
	mu  sync.Mutex
	ops []history.RegisterOp
}

func (h *registerHistory) add(o history.RegisterOp) {
	h.mu.Lock()
	h.ops = append(h.ops, o)
	h.mu.Unlock()
}

func (h *registerHistory) len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.ops)
}

func (h *registerHistory) all() []history.RegisterOp {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]history.RegisterOp(nil), h.ops...)
}

// registerClient reads and writes the register until ctx ends, one
// operation at a time (each bounded by 3 s), reconnecting after an error.
// Client i writes the values i+1, i+1+registerClients, ...: unique.
func registerClient(ctx context.Context, i int, connect func(context.Context) (*pgx.Conn, error), h *registerHistory) {
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	next := int64(i + 1)
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = connect(ctx); err != nil {
				conn = nil
				select {
				case <-ctx.Done():
				case <-time.After(100 * time.Millisecond): // a pace for reconnecting, not a wait for a state
				}
				continue
			}
		}
		op := history.RegisterOp{Client: i, Write: rand.IntN(2) == 0, Call: time.Now()}
		octx, cancel := context.WithTimeout(ctx, 3*time.Second)
		var err error
		if op.Write {
			op.Value = next
			next += registerClients
			_, err = conn.Exec(octx, "UPDATE register SET v = $1 WHERE id = 1", op.Value)
		} else {
			err = conn.QueryRow(octx, "UPDATE register SET reads = reads + 1 WHERE id = 1 RETURNING v").Scan(&op.Value)
		}
		cancel()
		op.Return = time.Now()
		switch {
		case err == nil:
			h.add(op)
		case op.Write && !definitelyFailed(err):
			op.Unknown = true
			h.add(op)
		}
		if err != nil {
			conn.Close(context.Background())
			conn = nil
		}
	}
}

// definitelyFailed reports whether err says the statement did not commit:
// the server answered with an error (not a lost connection, which leaves
// the outcome unknown).
func definitelyFailed(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code != "57P01" && pe.Code != "57P02" && pe.Code != "57P03"
}
