package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/localcluster"
)

// settings are the PostgreSQL settings and the data every cluster of the
// drill runs with (-settings, -scale).
type settings struct {
	// Name is "production" or "test".
	Name string
	// Parameters are passed to every member (postgresql.parameters).
	Parameters map[string]string
	// Scale is the pgbench scale factor of the data loaded into each new
	// cluster before its first run (0: none). Scale 1 is about 16 MB.
	Scale int
}

// newSettings returns the named settings with the pgbench scale.
func newSettings(name string, scale int) (settings, error) {
	switch name {
	case "production":
		// PostgreSQL's shipped durability settings; the write client
		// authenticates with SCRAM over TCP as every client here does.
		return settings{Name: name, Scale: scale, Parameters: map[string]string{
			"fsync": "on", "synchronous_commit": "on", "full_page_writes": "on", "shared_buffers": "128MB",
		}}, nil
	case "test":
		// The test suite's: fsync off, no data beyond the drill's tables.
		return settings{Name: name, Scale: scale}, nil
	}
	return settings{}, fmt.Errorf("unknown -settings %q (production or test)", name)
}

// String describes the settings for the report.
func (s settings) String() string {
	if s.Name == "mariadb" {
		return "mariadb: localcluster's (innodb_flush_log_at_trx_commit=2, sync_binlog=0 as shipped, 32 MB buffer pool), " +
			"clients over TCP as a user without READ_ONLY ADMIN"
	}
	out := s.Name + ": "
	if s.Name == "production" {
		out += "fsync=on, synchronous_commit=on, full_page_writes=on, shared_buffers=128MB"
	} else {
		out += "fsync=off, shared_buffers=32MB"
	}
	out += ", clients authenticate with SCRAM over TCP"
	if s.Scale > 0 {
		out += fmt.Sprintf(", pgbench data at scale %d (about %d MB) loaded before the first run", s.Scale, 16*s.Scale)
	}
	return out
}

// loadTimeout bounds loading the pgbench data and the replicas catching up.
const loadTimeout = 15 * time.Minute

// load fills a new cluster's primary with pgbench data at the settings'
// scale and waits until every replica has replayed it, so that no run
// starts with a replica far behind.
func (s settings) load(ctx context.Context, c *localcluster.Cluster, binDir string) error {
	if s.Scale <= 0 {
		return nil
	}
	lctx, cancel := context.WithTimeout(ctx, loadTimeout)
	defer cancel()
	leader, err := c.WaitLeader(lctx, "")
	if err != nil {
		return fmt.Errorf("load pgbench data: %w", err)
	}
	cmd := exec.CommandContext(lctx, filepath.Join(binDir, "pgbench"), "-i", "-q", "-s", strconv.Itoa(s.Scale),
		"-h", "127.0.0.1", "-p", strconv.Itoa(leader.PGPort), "-U", "postgres", "postgres")
	cmd.Env = append(os.Environ(), "PGPASSWORD="+c.SuperPassword, "PGCONNECT_TIMEOUT=10")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i -s %d on %s: %v\n%s", s.Scale, leader.Name, err, out)
	}
	target, err := queryLSN(lctx, leader, c.SuperPassword, "SELECT pg_current_wal_lsn()::text")
	if err != nil {
		return fmt.Errorf("after loading pgbench data: %w", err)
	}
	for _, n := range c.Nodes {
		if n.Name == leader.Name {
			continue
		}
		err := localcluster.WaitFor(lctx, func() bool {
			at, err := queryLSN(lctx, n, c.SuperPassword, "SELECT pg_last_wal_replay_lsn()::text")
			return err == nil && at >= target
		})
		if err != nil {
			return fmt.Errorf("%s did not replay the pgbench data (to %s) within %s: %w", n.Name, target, loadTimeout, err)
		}
	}
	return nil
}

// queryLSN runs query, which returns one LSN, on n's server.
func queryLSN(ctx context.Context, n *localcluster.Node, password, query string) (cluster.LSN, error) {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cn, err := pgx.Connect(qctx, fmt.Sprintf("host=127.0.0.1 port=%d user=postgres password=%s dbname=postgres connect_timeout=5 sslmode=disable application_name=hamgr-drill-load",
		n.PGPort, password))
	if err != nil {
		return 0, fmt.Errorf("connect to %s: %w", n.Name, err)
	}
	defer cn.Close(context.Background())
	var text string
	if err := cn.QueryRow(qctx, query).Scan(&text); err != nil {
		return 0, fmt.Errorf("%s on %s: %w", query, n.Name, err)
	}
	return cluster.ParseLSN(text)
}
