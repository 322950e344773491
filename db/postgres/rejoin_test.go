package postgres

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// pgRewindRuns counts pg_rewind's runs against p (Rewind appends each
// run's output to p's log file; a run ends with "Done!" or "no rewind required").
func pgRewindRuns(t *testing.T, p *Postgres) int {
	t.Helper()
	b, err := os.ReadFile(p.opts.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(b), "pg_rewind: Done!") + strings.Count(string(b), "pg_rewind: no rewind required")
}

// TestRejoinWithoutRewind: the old primary of a clean switchover (stopped
// with a fast shutdown, the target promoted once it had received the
// shutdown checkpoint) rejoins the new primary without pg_rewind and
// streams from it, losing nothing. A member that was also shut down
// cleanly but wrote past the point where the new primary's timeline forked
// off its own is still rewound.
func TestRejoinWithoutRewind(t *testing.T) {
	requirePG(t)
	base := testBase(t)
	n1 := member(t, testOptions(base, "n1", freePort(t)))
	n2 := member(t, testOptions(base, "n2", freePort(t)))
	timed(t, "n1 initialize", func() error { return n1.Initialize(ctxT(t, 30*time.Second)) })
	if err := n1.CreateSlots(ctxT(t, 5*time.Second), []string{"n2"}); err != nil {
		t.Fatal(err)
	}
	up1, up2 := upstream(n1), upstream(n2)
	timed(t, "n2 clone", func() error { return n2.Clone(ctxT(t, 30*time.Second), up1) })
	timed(t, "n2 start replica", func() error { return n2.StartReplica(ctxT(t, 15*time.Second), &up1) })
	execSQL(t, n1, "CREATE TABLE t (id int PRIMARY KEY)", "INSERT INTO t SELECT generate_series(1, 100)")

	// The switchover: n1 stops (fast), n2 promotes once it has received
	// past n1's shutdown checkpoint.
	if err := n1.Stop(ctxT(t, 10*time.Second), db.StopFast); err != nil {
		t.Fatal(err)
	}
	final := probe(t, n1).Checkpoint
	waitFor(t, 10*time.Second, "n2 received past n1's shutdown checkpoint", func() (bool, string) {
		st := probe(t, n2)
		return lsnOf(st.Position) > lsnOf(final), st.Position.String()
	})
	timed(t, "n2 promote", func() error { return n2.Promote(ctxT(t, 10*time.Second)) })
	if err := n2.CreateSlots(ctxT(t, 5*time.Second), []string{"n1"}); err != nil {
		t.Fatal(err)
	}
	execSQL(t, n2, "INSERT INTO t SELECT generate_series(101, 200)")

	var res db.RewindResult
	timed(t, "n1 rejoin after a clean switchover", func() (err error) { res, err = n1.Rewind(ctxT(t, 60*time.Second), up2); return err })
	if res.Required || pgRewindRuns(t, n1) != 0 {
		t.Fatalf("clean switchover: result %+v, %d pg_rewind runs; want no rewind and no pg_rewind", res, pgRewindRuns(t, n1))
	}
	if st := probe(t, n1); st.WasPrimary {
		t.Fatalf("n1 after rejoin still says it was a primary: %+v", st)
	}
	timed(t, "n1 start replica of n2", func() error { return n1.StartReplica(ctxT(t, 15*time.Second), &up2) })
	waitStreaming(t, n1, up2.Port)
	waitCaughtUp(t, n1, lsnOf(probe(t, n2).Position))
	if got := querySQL(t, n1, "SELECT count(*)::text FROM t"); got != "200" {
		t.Fatalf("n1 after rejoining has %s rows, want 200", got)
	}

	// Now n1 is promoted (timeline 3 forks off 2 at its position) while
	// n2 goes on writing on timeline 2, then n2 stops cleanly: its WAL
	// ends past the fork, so it must be rewound.
	timed(t, "n1 promote", func() error { return n1.Promote(ctxT(t, 10*time.Second)) })
	execSQL(t, n2, "INSERT INTO t SELECT generate_series(201, 300)")
	if err := n2.Stop(ctxT(t, 10*time.Second), db.StopFast); err != nil {
		t.Fatal(err)
	}
	timed(t, "n2 rejoin after diverging", func() (err error) { res, err = n2.Rewind(ctxT(t, 60*time.Second), up1); return err })
	if !res.Required || pgRewindRuns(t, n2) != 1 {
		t.Fatalf("diverged n2: result %+v, %d pg_rewind runs; want a rewind by pg_rewind", res, pgRewindRuns(t, n2))
	}
	if st := probe(t, n2); st.WasPrimary || st.Role == cluster.RolePrimary {
		t.Fatalf("n2 after rewind: %+v", st)
	}
}
