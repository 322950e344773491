package integration

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// mariadbAppUser creates, on the primary (it replicates), the account the
// write clients use: all privileges on the write client's schema and none
// global, so read_only binds it (root's READ_ONLY ADMIN would bypass it).
func mariadbAppUser(t *testing.T, c *localcluster.Cluster, primary *localcluster.Node) (user, password string) {
	t.Helper()
	user, password = "app", "app-pw-1"
	pdb := mariadbSocket(t, c, primary)
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", user, password),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", writeclient.DefaultMySQLDatabase, user),
	} {
		if _, err := pdb.ExecContext(ctxFor(t, 10*time.Second), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	return user, password
}

// mariadbWriter starts a write client over hosts as user, its table
// created through c's primary first (hosts may name a replica alone).
func mariadbWriter(t *testing.T, c *localcluster.Cluster, hosts []string, user, password, table string) (*writeclient.Client, writeclient.Options) {
	t.Helper()
	o := writeclient.Options{Engine: writeclient.MySQL, Hosts: c.Hosts(), User: user, Password: password, Table: table,
		Logger: slog.New(slog.DiscardHandler)}
	ctx := ctxFor(t, 5*time.Minute)
	var err error
	if werr := localcluster.WaitFor(ctxFor(t, 30*time.Second), func() bool {
		err = writeclient.New(o).Setup(ctx)
		return err == nil
	}); werr != nil {
		t.Fatalf("write client setup of %s: %v", table, err)
	}
	o.Hosts = hosts
	w := writeclient.New(o)
	w.Start(ctx)
	t.Cleanup(func() { w.Stop() })
	return w, o
}

// mariadbMonitor polls every member's @@read_only every 20 ms and records
// any moment when more than one is writable.
type mariadbMonitor struct {
	mu         sync.Mutex
	violations []string
	polls      int
	stop       context.CancelFunc
	done       chan struct{}
}

func monitorMariaDB(t *testing.T, c *localcluster.Cluster) *mariadbMonitor {
	ctx, cancel := context.WithCancel(context.Background())
	m := &mariadbMonitor{stop: cancel, done: make(chan struct{})}
	pools := map[string]*sql.DB{}
	for _, n := range c.Nodes {
		pools[n.Name] = mariadbSocket(t, c, n)
	}
	go func() {
		defer close(m.done)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			var writable []string
			for _, n := range c.Nodes {
				qctx, qcancel := context.WithTimeout(ctx, 300*time.Millisecond)
				var ro bool
				if err := pools[n.Name].QueryRowContext(qctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err == nil && !ro {
					writable = append(writable, n.Name)
				}
				qcancel()
			}
			m.mu.Lock()
			m.polls++
			if len(writable) > 1 {
				m.violations = append(m.violations, fmt.Sprintf("%s: writable %v", time.Now().Format("15:04:05.000"), writable))
			}
			m.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { m.check(t) })
	return m
}

func (m *mariadbMonitor) check(t *testing.T) {
	m.stop()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.violations) > 0 {
		t.Errorf("two writable primaries at once, %d times; first: %s", len(m.violations), m.violations[0])
	}
	if m.polls < 2 {
		t.Errorf("the writable-primary monitor polled %d times", m.polls)
	}
}

// runsOf merges the acknowledgements of writers that each write to one
// member only, in the order they arrived, and returns the members in runs:
// a new run each time the acknowledging member changes. Two writable
// primaries at once would interleave their runs.
func runsOf(direct map[string]writeclient.Result) []string {
	type ack struct {
		at   time.Time
		node string
	}
	var all []ack
	for name, r := range direct {
		for _, a := range r.Acks {
			all = append(all, ack{a.At, name})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].at.Before(all[j].at) })
	var runs []string
	for _, a := range all {
		if len(runs) == 0 || runs[len(runs)-1] != a.node {
			runs = append(runs, a.node)
		}
	}
	return runs
}

// hamgrctl switchover on a MariaDB cluster, three times under a write
// load: the primary goes read-only and ends its client sessions, the
// target applies the primary's final GTID set, promotes, and the others
// repoint. A write client over every member (the first writable one) and
// one writer per member (connected to it alone) lose no acknowledged
// write; the per-member writers' acknowledgements never interleave (one
// writable primary at a time), nor does the @@read_only monitor see two.
func TestMariaDBSwitchoverUnderLoad(t *testing.T) {
	mariadbSwitchoverUnderLoad(t, cluster.SyncOff)
}

// The same with synchronous_mode on (semi-synchronous replication): each
// switchover starts with the record synchronous and a member
// acknowledging, the demoted primary's waiting commits are handed over,
// and nothing acknowledged is lost.
func TestMariaDBSemiSyncSwitchoverUnderLoad(t *testing.T) {
	mariadbSwitchoverUnderLoad(t, cluster.SyncOn)
}

func mariadbSwitchoverUnderLoad(t *testing.T, mode cluster.SyncMode) {
	buildHamgrctl(t)
	c := startMariaDBCluster(t)
	first, _ := leader(t, c)
	if mode.Enabled() {
		if _, err := newOperator(c).SetConfig(ctxFor(t, 10*time.Second), "synchronous_mode", string(mode)); err != nil {
			t.Fatal(err)
		}
	}
	user, pw := mariadbAppUser(t, c, first)
	monitorMariaDB(t, c)
	w, o := mariadbWriter(t, c, c.Hosts(), user, pw, "switchover_load")
	direct := map[string]*writeclient.Client{}
	directOpts := map[string]writeclient.Options{}
	for i, n := range c.Nodes {
		direct[n.Name], directOpts[n.Name] = mariadbWriter(t, c, []string{c.Hosts()[i]}, user, pw, "direct_"+n.Name)
	}
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	leaders := []string{first.Name}
	for i := range 3 {
		if mode.Enabled() {
			waitSemiSync(t, c, time.Duration(localcluster.FastTiming.TTL)+30*time.Second, mode)
		}
		old, lead := leader(t, c)
		to := others(c, old.Name)[i%2].Name
		pid := mysqldPID(t, old)
		t0 := time.Now()
		hamgrctl(t, c, "switchover", "--to", to, "--force").mustSucceed(t)
		n, l := leaderNot(t, c, old.Name)
		if n.Name != to || l.Epoch <= lead.Epoch {
			t.Fatalf("switchover %d went to %s at epoch %d, want %s above epoch %d", i+1, n.Name, l.Epoch, to, lead.Epoch)
		}
		leaders = append(leaders, to)
		if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+50); err != nil {
			t.Fatalf("writes did not resume after switchover %d: %v", i+1, err)
		}
		if err := c.WaitHealthy(ctxFor(t, 60*time.Second)); err != nil {
			t.Fatalf("after switchover %d to %s: %v", i+1, to, err)
		}
		if now := mysqldPID(t, old); now != pid {
			t.Errorf("%s's mysqld was pid %d before the switchover, %d after: want it demoted in place", old.Name, pid, now)
		}
		t.Logf("switchover %d %s -> %s done in %v", i+1, old.Name, to, time.Since(t0).Round(time.Millisecond))
	}
	res := w.Stop()
	for i, g := range res.Gaps {
		t.Logf("write gap %d: %v (port %d -> %d)", i+1, g.Duration.Round(time.Millisecond), g.FromPort, g.ToPort)
	}
	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged writes lost across switchovers: %v", len(missing), res.Acked, missing)
	}
	results := map[string]writeclient.Result{}
	perNode := []string{}
	for name, d := range direct {
		r := d.Stop()
		results[name] = r
		perNode = append(perNode, fmt.Sprintf("%s %d", name, r.Acked))
		vo := directOpts[name]
		vo.Hosts = c.Hosts()
		if missing := verifyNoLoss(t, vo, r.AckedIDs); len(missing) > 0 {
			t.Errorf("%d of %d writes acknowledged by %s alone lost: %v", len(missing), r.Acked, name, missing)
		}
	}
	sort.Strings(perNode)
	runs := runsOf(results)
	t.Logf("acknowledged: %d over all members; per member: %s; primaries in order: %v", res.Acked, strings.Join(perNode, ", "), runs)
	if strings.Join(runs, ",") != strings.Join(leaders, ",") {
		t.Errorf("members acknowledged writes in the order %v, want %v (the leaders in turn, never interleaved)", runs, leaders)
	}
}

// mysqldPID is n's mysqld process id, from its pid file.
func mysqldPID(t *testing.T, n *localcluster.Node) int {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(n.DataDir, "mysqld.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		t.Fatalf("%s's pid file %q: %v", n.Name, b, err)
	}
	return pid
}

// A clean stop of the MariaDB primary's agent (SIGTERM) hands over through
// the same demotion: a replica becomes the primary with everything
// acknowledged, then the old primary's mysqld is stopped and its agent
// exits.
func TestMariaDBCleanStopHandsOver(t *testing.T) {
	c := startMariaDBCluster(t)
	old, lead := leader(t, c)
	user, pw := mariadbAppUser(t, c, old)
	monitorMariaDB(t, c)
	w, o := mariadbWriter(t, c, c.Hosts(), user, pw, "clean_stop")
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), 50); err != nil {
		t.Fatalf("writes do not flow: %v", err)
	}
	t0 := time.Now()
	if err := old.KillAgent(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	n, l := leaderNot(t, c, old.Name)
	if l.Epoch <= lead.Epoch {
		t.Fatalf("new leader %s at epoch %d, want above %d", n.Name, l.Epoch, lead.Epoch)
	}
	err := localcluster.WaitFor(ctxFor(t, 2*time.Duration(localcluster.FastTiming.TTL)+30*time.Second), func() bool {
		return !old.AgentRunning() && len(old.PostgresPIDs()) == 0
	})
	if err != nil {
		t.Fatalf("the stopped agent or its mysqld is still running: agent %v, mysqld %v", old.AgentRunning(), old.PostgresPIDs())
	}
	if err := w.WaitAcked(ctxFor(t, 30*time.Second), w.Acked()+20); err != nil {
		t.Fatal(err)
	}
	res := w.Stop()
	if missing := verifyNoLoss(t, o, res.AckedIDs); len(missing) > 0 {
		t.Errorf("%d of %d acknowledged writes lost in the handover: %v", len(missing), res.Acked, missing)
	}
	// The history entry is the promotion's last step, after it took
	// writes.
	var hist []cluster.HistoryEntry
	err = localcluster.WaitFor(ctxFor(t, 10*time.Second), func() bool {
		hist, err = c.Store.History(context.Background())
		return err == nil && len(hist) > 0 && hist[len(hist)-1].Kind == cluster.HistorySwitchover
	})
	if err != nil {
		t.Fatalf("history %+v (%v): want a switchover", hist, err)
	}
	t.Logf("clean stop: %s leads at epoch %d, %v after SIGTERM; longest write gap %v",
		n.Name, l.Epoch, time.Since(t0).Round(time.Millisecond), res.LongestGap.Round(time.Millisecond))
}
