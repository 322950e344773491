package main

import (
	"context"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
)

// latencyBound bounds the INSERT loop of one commit latency run.
const latencyBound = 2 * time.Minute

// latencyJSON is the outcome of one commit latency run.
type latencyJSON struct {
	// Commits is the number of INSERTs timed (all acknowledged).
	Commits int `json:"commits"`
	// Median, P99 and Max are the per-commit latencies of the run.
	Median secs `json:"median"`
	P99    secs `json:"p99"`
	Max    secs `json:"max"`
	// SyncStandbyNames and SyncCommit are the primary's
	// synchronous_standby_names and synchronous_commit during the run.
	SyncStandbyNames string `json:"synchronous_standby_names"`
	SyncCommit       string `json:"synchronous_commit"`
}

// runLatency performs commit latency run i: on a healthy cluster (in
// synchronous mode with a recorded synchronous standby, for a Sync row) it
// connects to the primary directly, creates a table and times writes
// single-row autocommit INSERTs back to back, each from just before the
// request is sent until its acknowledgement arrives. An INSERT that fails
// ends the run with an error. usable is false when the cluster should not
// be reused.
func (d *drill) runLatency(ctx context.Context, s *slot, p profile, f fault, i, writes int) (r runResult, usable bool) {
	c := s.c
	r = runResult{Profile: p.Name, Fault: f.Name, Run: i, Cluster: s.index, ClusterDir: s.dir}
	fail := func(err error) (runResult, bool) {
		r.Error = err.Error()
		s.keep = true
		return r, false
	}
	snap, err := d.prepare(ctx, c, f)
	if err != nil {
		return fail(err)
	}
	prim := c.Node(snap.Leader.Name)
	r.OldPrimary, r.OldEpoch = prim.Name, int64(snap.Leader.Epoch)
	r.NewPrimary, r.NewEpoch = r.OldPrimary, r.OldEpoch
	if snap.Sync != nil && snap.Sync.Epoch == snap.Leader.Epoch {
		r.SyncMembers = snap.Sync.Members
	}

	cctx, ccancel := context.WithTimeout(ctx, flowTimeout)
	defer ccancel()
	conn, err := pgx.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=5 sslmode=disable application_name=hamgr-drill-latency",
		prim.PGPort, c.SuperPassword))
	if err != nil {
		return fail(fmt.Errorf("connect to the primary %s: %w", prim.Name, err))
	}
	defer closeQuick(conn)
	lat := &latencyJSON{}
	var inRecovery bool
	if err := conn.QueryRow(cctx, "SELECT pg_is_in_recovery(), current_setting('synchronous_standby_names'), current_setting('synchronous_commit')").
		Scan(&inRecovery, &lat.SyncStandbyNames, &lat.SyncCommit); err != nil {
		return fail(fmt.Errorf("read the primary's settings: %w", err))
	}
	r.Latency = lat
	switch {
	case inRecovery:
		return fail(fmt.Errorf("%s, the leader, is in recovery", prim.Name))
	case f.Sync && lat.SyncStandbyNames == "":
		r.anomaly("synchronous mode, but synchronous_standby_names is empty on %s", prim.Name)
	case !f.Sync && lat.SyncStandbyNames != "":
		r.anomaly("asynchronous mode, but synchronous_standby_names is %q on %s", lat.SyncStandbyNames, prim.Name)
	}
	table := pgx.Identifier{fmt.Sprintf("drill_latency_%d", i)}.Sanitize()
	if _, err := conn.Exec(cctx, "CREATE TABLE "+table+" (id bigint PRIMARY KEY, at timestamptz DEFAULT now(), node text)"); err != nil {
		return fail(fmt.Errorf("create the table: %w", err))
	}
	ccancel()

	lctx, lcancel := context.WithTimeout(ctx, latencyBound)
	defer lcancel()
	sql := "INSERT INTO " + table + " (id, node) VALUES ($1, $2)"
	r.samples = make([]time.Duration, 0, writes)
	r.FaultAt = time.Now()
	for id := 1; id <= writes; id++ {
		t := time.Now()
		_, err := conn.Exec(lctx, sql, id, prim.Name)
		dt := time.Since(t)
		if err != nil {
			if lctx.Err() != nil && ctx.Err() == nil {
				r.anomaly("only %d of %d INSERTs within %v", id-1, writes, latencyBound)
				break
			}
			return fail(fmt.Errorf("INSERT %d on %s: %w", id, prim.Name, err))
		}
		r.samples = append(r.samples, dt)
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	lat.Commits = len(r.samples)
	r.Acked = len(r.samples)
	med, p99, mx := latencyStats(r.samples)
	lat.Median, lat.P99, lat.Max = secs(med), secs(p99), secs(mx)
	r.Measured = lat.Commits > 0
	if len(r.Anomalies) > 0 {
		s.keep = true
	}
	return r, true
}

// latencyStats returns the median, 99th percentile (nearest rank) and
// maximum of ds; all 0 for none. ds is not modified.
func latencyStats(ds []time.Duration) (median, p99, maximum time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return percentile(s, 50), percentile(s, 99), s[len(s)-1]
}

// percentile returns the q-th percentile of the sorted s by the nearest-rank
// method.
func percentile(s []time.Duration, q float64) time.Duration {
	k := int(math.Ceil(q/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}
