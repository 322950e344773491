package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

// prefixCheckTimeout bounds the queries of followsWithoutRewind.
const prefixCheckTimeout = 10 * time.Second

// followsWithoutRewind reports whether the stopped local database can
// stream from up as it is: pg_rewind would say "no rewind required", by
// the same rule (its WAL ends at or before the point where up's history
// left its timeline), and so would discard nothing. It is the clean
// switchover: the old primary's WAL ends with its shutdown checkpoint,
// which the target received before it promoted, so the target's new
// timeline forked exactly there.
//
// It holds only when all of these do, and otherwise returns "" (the
// caller runs pg_rewind, which decides for itself):
//   - the local database was shut down cleanly and its end of WAL is
//     known (walEnd, from pg_waldump: nothing was written after it);
//   - up runs as a primary on a newer timeline than the local one;
//   - up's timeline history (its pg_wal/<tli>.history) contains the local
//     timeline and left it at or after walEnd;
//   - every ancestor timeline in the local history file left its parent at
//     the same point in up's history (the histories agree up to the local
//     timeline).
//
// The answer says why it holds. Reading up's history file needs the
// superuser, as pg_rewind does.
func (p *Postgres) followsWithoutRewind(ctx context.Context, up db.Upstream, cd controlData, walEnd cluster.LSN) (string, error) {
	if (cd.State != "shut down" && cd.State != "shut down in recovery") || walEnd == 0 || cd.CheckpointTLI == 0 {
		return "", nil
	}
	local := cd.CheckpointTLI
	tli, history, err := p.upstreamHistory(ctx, up)
	if err != nil || tli <= local {
		return "", err
	}
	upSwitches, err := parseTimelineHistory(history)
	if err != nil {
		return "", fmt.Errorf("timeline %d's history on %s: %w", tli, up.Name, err)
	}
	fork, ok := upSwitches[local]
	if !ok || walEnd > fork {
		return "", nil
	}
	if local > 1 {
		b, err := os.ReadFile(p.path(filepath.Join("pg_wal", fmt.Sprintf("%08X.history", local))))
		if err != nil {
			return "", nil // no local history to compare: let pg_rewind decide
		}
		own, err := parseTimelineHistory(string(b))
		if err != nil {
			return "", nil
		}
		for t, at := range own {
			if upSwitches[t] != at {
				return "", nil
			}
		}
	}
	return fmt.Sprintf("this database's WAL ends at %s on timeline %d, and %s's timeline %d forked off it at %s",
		walEnd, local, up.Name, tli, fork), nil
}

// upstreamHistory returns the timeline up writes on and that timeline's
// history file; tli is 0 when up is not a primary (or runs on timeline 1,
// which has no history).
func (p *Postgres) upstreamHistory(ctx context.Context, up db.Upstream) (uint32, string, error) {
	ctx, cancel := context.WithTimeout(ctx, prefixCheckTimeout)
	defer cancel()
	cfg, err := p.connConfig(up.Host, up.Port)
	if err != nil {
		return 0, "", err
	}
	cctx, ccancel := context.WithTimeout(ctx, connectTimeout)
	c, err := pgx.ConnectConfig(cctx, cfg)
	ccancel()
	if err != nil {
		return 0, "", fmt.Errorf("connect to %s (%s:%d): %w", up.Name, up.Host, up.Port, err)
	}
	defer closeConn(c)
	var rec bool
	var walfile string
	q := "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN '' ELSE pg_walfile_name(pg_current_wal_lsn()) END"
	if err := c.QueryRow(ctx, q).Scan(&rec, &walfile); err != nil {
		return 0, "", fmt.Errorf("timeline of %s: %w", up.Name, err)
	}
	if rec || len(walfile) < 8 {
		return 0, "", nil
	}
	t, err := strconv.ParseUint(walfile[:8], 16, 32)
	if err != nil {
		return 0, "", fmt.Errorf("timeline of %s from WAL file name %q: %w", up.Name, walfile, err)
	}
	if t <= 1 {
		return 0, "", nil
	}
	var b []byte
	name := fmt.Sprintf("pg_wal/%08X.history", t)
	if err := c.QueryRow(ctx, "SELECT pg_read_binary_file($1)", name).Scan(&b); err != nil {
		return 0, "", fmt.Errorf("read %s on %s: %w", name, up.Name, err)
	}
	if len(b) == 0 {
		return 0, "", errors.New(name + " on " + up.Name + " is empty")
	}
	return uint32(t), string(b), nil
}
