package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// Bounds of the individual waits of a run.
const (
	startTimeout   = 3 * time.Minute  // localcluster.Start
	healthyTimeout = 90 * time.Second // WaitHealthy before a run
	restoreTimeout = 3 * time.Minute  // Restore (rejoin, re-clone) after a run
	flowTimeout    = 30 * time.Second // first writes of a run
	verifyTimeout  = 30 * time.Second // VerifyNoLoss, retried
	warmupAcks     = 100              // acks before the fault
	resumeAcks     = 50               // acks after the fault that mean "writes resumed"
)

// slot is one running cluster shared by consecutive runs of a fault.
type slot struct {
	c     *localcluster.Cluster
	dir   string
	index int // 1 for the first cluster of a profile × fault, 2 for its replacement, ...
	// keep is set when a run on this cluster misbehaved: its directory
	// (agent logs) is kept for inspection.
	keep bool
}

// timelineJSON is localcluster.Timeline in seconds.
type timelineJSON struct {
	New       string `json:"new"`
	Epoch     int64  `json:"epoch"`
	Detected  secs   `json:"detected"`
	Elected   secs   `json:"elected"`
	Promoted  secs   `json:"promoted"`
	Following secs   `json:"following"`
}

// gapJSON is a writeclient.Gap relative to the fault.
type gapJSON struct {
	StartAfterFault secs `json:"start_after_fault"`
	Duration        secs `json:"duration"`
	FromPort        int  `json:"from_port"`
	ToPort          int  `json:"to_port"`
	Open            bool `json:"open,omitempty"`
}

// runResult is the raw outcome of one run, as written by -json.
type runResult struct {
	Profile    string    `json:"profile"`
	Fault      string    `json:"fault"`
	Run        int       `json:"run"`
	Cluster    int       `json:"cluster"`
	ClusterDir string    `json:"cluster_dir"`
	FaultAt    time.Time `json:"fault_at"`
	OldPrimary string    `json:"old_primary"`
	OldEpoch   int64     `json:"old_epoch"`
	NewPrimary string    `json:"new_primary"`
	NewEpoch   int64     `json:"new_epoch"`
	// Outage is the write unavailability as the fault defines it;
	// OutageAround and LongestGap are both recorded for comparison.
	Outage secs `json:"outage"`
	// OutageBy names the measure used when the fault chooses per run
	// (switchover: OutageAround or LongestGap).
	OutageBy     string    `json:"outage_by,omitempty"`
	OutageAround secs      `json:"outage_around"`
	LongestGap   secs      `json:"longest_gap"`
	ResumedPort  int       `json:"resumed_port,omitempty"`
	Gaps         []gapJSON `json:"gaps"`
	Acked        int       `json:"acked"`
	Failed       int       `json:"failed"`
	Lost         int       `json:"lost"`
	LostIDs      []int64   `json:"lost_ids,omitempty"`
	// SyncMembers is the sync record at the fault (synchronous mode).
	SyncMembers []string `json:"sync_members,omitempty"`
	// Rejoin is how long restoring the member the fault hit took (from the
	// agent's restart after a node crash; from the request after a
	// switchover), RejoinHow how it came back as read from its agent log.
	// RejoinFallback is set when it did not stream within 60 s and was
	// wiped and re-cloned; RejoinError says what the wait saw.
	Rejoin         secs   `json:"rejoin,omitempty"`
	RejoinHow      string `json:"rejoin_how,omitempty"`
	RejoinFallback bool   `json:"rejoin_fallback,omitempty"`
	RejoinError    string `json:"rejoin_error,omitempty"`
	// Evidence is what the failover's promotion relied on (the newest
	// history entry's evidence kind, and its fence step), for rows that
	// record it.
	Evidence string `json:"evidence,omitempty"`
	// Latency is the commit latency measurement of a Latency row.
	Latency *latencyJSON `json:"latency,omitempty"`
	// samples are the Latency row's per-commit latencies.
	samples []time.Duration
	// Timeline is the observer's view of the failover (faults that expect one).
	Timeline *timelineJSON `json:"timeline,omitempty"`
	// Measured is true when writes resumed and the outage and loss are
	// meaningful; such runs enter the summary.
	Measured bool `json:"measured"`
	// Anomalies lists misbehaviour seen in this run (no failover, two
	// writable primaries, writes not resuming, lost writes where none may
	// be lost, ...).
	Anomalies []string `json:"anomalies,omitempty"`
	// Error is the error that ended the run early, if any.
	Error string `json:"error,omitempty"`
}

func (r *runResult) anomaly(format string, args ...any) {
	r.Anomalies = append(r.Anomalies, fmt.Sprintf(format, args...))
}

// drill holds the settings shared by all runs.
type drill struct {
	hamgrBin, binDir, baseDir string
	log                       *slog.Logger
	wlog                      *slog.Logger // write client logger
	settings                  settings
	engine                    localcluster.Engine
}

// startSlot starts a fresh 3-member cluster for profile × fault.
func (d *drill) startSlot(ctx context.Context, p profile, f fault, index int) (*slot, error) {
	dir := filepath.Join(d.baseDir, fmt.Sprintf("%s-%s-%d", p.Name, f.Name, index))
	opts := localcluster.Options{Dir: dir, Members: 3, HamgrBin: d.hamgrBin, BinDir: d.binDir,
		Timing: p.Timing, Logger: slog.New(slog.DiscardHandler), Parameters: map[string]string{}, Engine: d.engine}
	for k, v := range d.settings.Parameters {
		opts.Parameters[k] = v
	}
	if f.Configure != nil {
		f.Configure(&opts)
	}
	d.log.Info("starting cluster", "profile", p.Name, "fault", f.Name, "cluster", index, "dir", dir)
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c, err := localcluster.Start(sctx, opts)
	if err != nil {
		// Start closed whatever it had started; the logs stay in dir.
		return &slot{dir: dir, index: index, keep: true}, fmt.Errorf("start cluster in %s: %w", dir, err)
	}
	if d.engine == localcluster.EngineMariaDB {
		if err := createAppUser(sctx, c); err != nil {
			c.Close()
			return &slot{dir: dir, index: index, keep: true}, fmt.Errorf("cluster in %s: %w", dir, err)
		}
	}
	if f.Setup != nil {
		if err := f.Setup(sctx, c); err != nil {
			c.Close()
			return &slot{dir: dir, index: index, keep: true}, fmt.Errorf("set up cluster in %s: %w", dir, err)
		}
	}
	if d.settings.Scale > 0 {
		d.log.Info("loading pgbench data", "scale", d.settings.Scale, "cluster", index)
		if err := d.settings.load(ctx, c, d.binDir); err != nil {
			c.Close()
			return &slot{dir: dir, index: index, keep: true}, fmt.Errorf("cluster in %s: %w", dir, err)
		}
	}
	return &slot{c: c, dir: dir, index: index}, nil
}

// close stops every process of the slot's cluster and removes its
// directory unless it is to be kept.
func (s *slot) close(keepAll bool, log *slog.Logger) {
	if s == nil {
		return
	}
	if s.c != nil {
		s.c.Close()
		s.c = nil
	}
	if keepAll || s.keep {
		log.Info("cluster stopped; directory kept", "dir", s.dir)
		return
	}
	os.RemoveAll(s.dir)
}

// run performs run number i of fault f on the slot's cluster. usable is
// false when the cluster should not be reused.
func (d *drill) run(ctx context.Context, s *slot, p profile, f fault, i int) (r runResult, usable bool) {
	c := s.c
	r = runResult{Profile: p.Name, Fault: f.Name, Run: i, Cluster: s.index, ClusterDir: s.dir}
	fail := func(err error) (runResult, bool) {
		r.Error = err.Error()
		s.keep = true
		return r, false
	}
	ttl := time.Duration(p.Timing.TTL)

	snap, err := d.prepare(ctx, c, f)
	if err != nil {
		return fail(err)
	}
	old := c.Node(snap.Leader.Name)
	r.OldPrimary, r.OldEpoch = old.Name, int64(snap.Leader.Epoch)
	oldPM := old.PostmasterPID()

	wopts := d.writeOptions(c, fmt.Sprintf("drill_run_%d", i))
	w := writeclient.New(wopts)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	sctx, scancel := context.WithTimeout(ctx, flowTimeout)
	err = w.Setup(sctx)
	scancel()
	if err != nil {
		return fail(err)
	}
	w.Start(wctx)
	defer w.Stop()
	actx, acancel := context.WithTimeout(ctx, flowTimeout)
	err = w.WaitAcked(actx, warmupAcks)
	acancel()
	if err != nil {
		return fail(fmt.Errorf("writes do not flow before the fault: %w", err))
	}

	mon := startMonitor(ctx, c, d.engine)
	defer mon.stop()

	var syncAtFault *cluster.SyncState
	if f.Sync {
		s, err := c.Snapshot(ctx)
		switch {
		case err != nil:
			return fail(fmt.Errorf("read the sync record: %w", err))
		case s.Leader == nil || s.Leader.Name != old.Name || s.Sync == nil || s.Sync.Epoch != s.Leader.Epoch || len(s.Sync.Members) == 0:
			return fail(fmt.Errorf("no synchronous standby recorded for %s just before the fault: leader %+v, sync %+v", old.Name, s.Leader, s.Sync))
		}
		syncAtFault = s.Sync
		r.SyncMembers = s.Sync.Members
	}

	// The fault.
	var (
		tl     localcluster.Timeline
		obsErr error
		obs    sync.WaitGroup
	)
	t0 := time.Now()
	if f.ExpectFailover {
		octx, ocancel := context.WithTimeout(ctx, ttl+45*time.Second)
		defer ocancel()
		obs.Add(1)
		go func() {
			defer obs.Done()
			tl, obsErr = c.ObserveFailover(octx, old.Name, t0)
		}()
	}
	if err := f.Inject(ctx, c, old); err != nil {
		wcancel()
		obs.Wait()
		return fail(fmt.Errorf("inject %s into %s: %w", f.Name, old.Name, err))
	}
	r.FaultAt = t0
	d.log.Info("fault injected", "profile", p.Name, "fault", f.Name, "run", i, "primary", old.Name)

	if f.ResumeAfterFailover {
		obs.Wait() // the old primary may write on until the failover
	}
	// Wait (bounded) for writes to flow again.
	resumeBound := ttl + time.Duration(p.Timing.PrimaryStartTimeout) + 30*time.Second
	rctx, rcancel := context.WithTimeout(ctx, resumeBound)
	resumeErr := w.WaitAcked(rctx, w.Acked()+resumeAcks)
	rcancel()
	res := w.Stop()
	obs.Wait()
	violations := mon.stop()

	r.Acked, r.Failed = res.Acked, res.Failed
	r.OutageAround, r.LongestGap = secs(res.OutageAround(t0)), secs(res.LongestGap)
	outage, gap, by := f.Outage(res, t0)
	r.Outage, r.OutageBy = secs(outage), by
	if gap != nil {
		r.ResumedPort = gap.ToPort
	}
	for _, g := range res.Gaps {
		r.Gaps = append(r.Gaps, gapJSON{StartAfterFault: secs(g.Start.Sub(t0)), Duration: secs(g.Duration),
			FromPort: g.FromPort, ToPort: g.ToPort, Open: g.Open})
	}
	if f.ExpectFailover {
		r.Timeline = &timelineJSON{New: tl.New, Epoch: int64(tl.Epoch), Detected: secs(tl.Detected),
			Elected: secs(tl.Elected), Promoted: secs(tl.Promoted), Following: secs(tl.Following)}
	}
	usable = true
	if len(violations) > 0 {
		r.anomaly("two writable primaries at once, %d times; first: %s", len(violations), violations[0])
		usable = false
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	if resumeErr != nil {
		r.anomaly("writes did not resume within %v: %v", resumeBound, resumeErr)
		usable = false
	}
	if f.ExpectFailover && obsErr != nil {
		r.anomaly("no failover observed: %v", obsErr)
		usable = false
	}

	// Who leads now?
	lctx, lcancel := context.WithTimeout(ctx, 30*time.Second)
	now, lerr := c.WaitLeader(lctx, "")
	lcancel()
	if lerr != nil {
		r.anomaly("no serving leader after the fault: %v", lerr)
		usable = false
	} else if snap, err := c.Snapshot(ctx); err == nil && snap.Leader != nil {
		r.NewPrimary, r.NewEpoch = now.Name, int64(snap.Leader.Epoch)
		switch {
		case f.ExpectFailover && now.Name == old.Name:
			r.anomaly("%s is still the leader after the fault", old.Name)
		case f.ExpectFailover && r.NewEpoch <= r.OldEpoch:
			r.anomaly("new epoch %d not greater than the old %d", r.NewEpoch, r.OldEpoch)
		case f.KeepLeader && now.Name != old.Name:
			r.anomaly("leader changed from %s@%d to %s@%d; expected %s to lead again", old.Name, r.OldEpoch, now.Name, r.NewEpoch, old.Name)
		case f.KeepLeader:
		case !f.ExpectFailover && (now.Name != old.Name || r.NewEpoch != r.OldEpoch):
			r.anomaly("leader changed from %s@%d to %s@%d; expected a restart in place", old.Name, r.OldEpoch, now.Name, r.NewEpoch)
		case !f.ExpectFailover:
			if pm := old.PostmasterPID(); pm == 0 || pm == oldPM {
				r.anomaly("postmaster pid %d after the crash (was %d): not restarted", pm, oldPM)
			}
		}
		if f.ExpectFailover && syncAtFault != nil && now.Name != old.Name && !syncAtFault.Has(now.Name) {
			r.anomaly("%s was promoted, but the sync record at the fault listed only %v", now.Name, syncAtFault.Members)
		}
		if gap != nil && resumeErr == nil && gap.ToPort != now.PGPort {
			r.anomaly("writes resumed on port %d, but the leader %s listens on %d", gap.ToPort, now.Name, now.PGPort)
		}
	}

	// Acknowledged writes lost.
	missing, verr := verify(ctx, wopts, res.AckedIDs)
	if verr != nil {
		r.anomaly("could not verify acknowledged writes: %v", verr)
		usable = false
	} else {
		r.Lost = len(missing)
		r.LostIDs = missing
		if f.ZeroLoss && len(missing) > 0 {
			r.anomaly("%d acknowledged writes lost (%s must lose none): %v", len(missing), f.Name, missing)
		}
	}
	r.Measured = resumeErr == nil && verr == nil

	if usable && f.Restore != nil {
		rctx, rcancel := context.WithTimeout(ctx, restoreTimeout)
		err := f.Restore(rctx, c, old, &r)
		rcancel()
		if err != nil {
			d.log.Warn("restore failed", "profile", p.Name, "fault", f.Name, "run", i, "err", err)
			r.anomaly("restore after the run failed: %v", err)
			usable = false
		}
		if r.RejoinFallback {
			d.log.Warn("member did not rejoin by itself; wiped and re-cloned", "profile", p.Name, "fault", f.Name, "run", i,
				"member", old.Name, "how", r.RejoinHow, "wait", r.RejoinError, "dir", s.dir)
			s.keep = true
		}
	}
	if len(r.Anomalies) > 0 {
		s.keep = true
	}
	return r, usable
}

// verify runs VerifyNoLoss, retrying connection errors for verifyTimeout.
func verify(ctx context.Context, o writeclient.Options, acked []int64) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, verifyTimeout)
	defer cancel()
	var last error
	for {
		qctx, qcancel := context.WithTimeout(ctx, 5*time.Second)
		missing, err := writeclient.VerifyNoLoss(qctx, o, acked)
		qcancel()
		if err == nil {
			return missing, nil
		}
		// The run's table was created (and committed) before the first
		// acknowledged write: if the primary does not have it, every
		// acknowledged write is lost.
		if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
			return append([]int64(nil), acked...), nil
		}
		if me := (*mysqldriver.MySQLError)(nil); errors.As(err, &me) && me.Number == 1146 {
			return append([]int64(nil), acked...), nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, errors.Join(last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// monitor polls every member's PostgreSQL every 50 ms and records each
// moment at which more than one of them answers as a writable primary.
type monitor struct {
	cancel     context.CancelFunc
	done       chan struct{}
	mu         sync.Mutex
	violations []string
}

// startMonitor starts a monitor of c's members until stop.
func startMonitor(ctx context.Context, c *localcluster.Cluster, engine localcluster.Engine) *monitor {
	ctx, cancel := context.WithCancel(ctx)
	m := &monitor{cancel: cancel, done: make(chan struct{})}
	conns := map[string]*pgx.Conn{}
	pools := map[string]*sql.DB{}
	go func() {
		defer close(m.done)
		defer func() {
			for _, cn := range conns {
				closeQuick(cn)
			}
			for _, p := range pools {
				p.Close()
			}
		}()
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			var prim []string
			for _, n := range c.Nodes {
				w := false
				if engine == localcluster.EngineMariaDB {
					w = mariadbWritable(ctx, pools, n, c)
				} else {
					w = writable(ctx, conns, n, c.SuperPassword)
				}
				if w {
					prim = append(prim, n.Name)
				}
			}
			if len(prim) > 1 {
				m.mu.Lock()
				m.violations = append(m.violations, fmt.Sprintf("%s: %v", time.Now().Format("15:04:05.000"), prim))
				m.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return m
}

// stop ends the monitor and returns the violations seen. It may be called
// more than once.
func (m *monitor) stop() []string {
	m.cancel()
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.violations...)
}

// writable reports whether n's PostgreSQL answers as a primary.
func writable(ctx context.Context, conns map[string]*pgx.Conn, n *localcluster.Node, pass string) bool {
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	cn := conns[n.Name]
	if cn == nil || cn.IsClosed() {
		var err error
		cn, err = pgx.Connect(qctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=1 sslmode=disable application_name=hamgr-drill-monitor", n.PGPort, pass))
		if err != nil {
			return false
		}
		conns[n.Name] = cn
	}
	var rw bool
	if err := cn.QueryRow(qctx, "SELECT NOT pg_is_in_recovery()").Scan(&rw); err != nil {
		closeQuick(cn)
		delete(conns, n.Name)
		return false
	}
	return rw
}

// closeQuick closes cn without waiting long on a dead server.
func closeQuick(cn *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_ = cn.Close(ctx)
}

// prepare waits until c is healthy, runs f's Ready hook, and reads the
// cluster: the start of every run.
func (d *drill) prepare(ctx context.Context, c *localcluster.Cluster, f fault) (cluster.Snapshot, error) {
	hctx, hcancel := context.WithTimeout(ctx, healthyTimeout)
	err := c.WaitHealthy(hctx)
	hcancel()
	if err != nil {
		return cluster.Snapshot{}, fmt.Errorf("cluster not healthy before the run: %w", err)
	}
	if f.Ready != nil {
		if err := f.Ready(ctx, c); err != nil {
			return cluster.Snapshot{}, err
		}
	}
	snap, err := c.Snapshot(ctx)
	if err != nil || snap.Leader == nil {
		return cluster.Snapshot{}, fmt.Errorf("read the leader: %v", err)
	}
	return snap, nil
}
