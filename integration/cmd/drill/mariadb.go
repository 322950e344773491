package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	mysqldriver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// The MariaDB side of the drill (-engine mariadb): the write client writes
// as appUser, which holds no global privilege (MariaDB's read_only does
// not bind READ_ONLY ADMIN, which root has), through every member, keeping
// the first writable one.

// mariadbDescribe describes the rows that read differently on MariaDB.
var mariadbDescribe = map[string]string{
	"node-crash":       "SIGKILL to the primary's agent and its mysqld at once (Node.KillNode); asynchronous replication",
	"postmaster-crash": "SIGKILL to the primary's mysqld, agent alive (Node.CrashPostgres)",
	"sync-node-crash": "node-crash with synchronous_mode=on: semi-synchronous replication (AFTER_SYNC, synchronous_node_count 1); " +
		"each run waits until the record is synchronous, with a member acknowledging",
	"switchover": "operator switchover to the best replica (Operator.Switchover, to=\"\"): the primary is demoted in place " +
		"(read-only, client sessions ended), the target promotes once it has applied its final GTID set; asynchronous replication",
}

// appUser and appPassword are the write client's MariaDB account.
const (
	appUser     = "drill"
	appPassword = "drill-pw"
)

// writeOptions are the write client's options for table on c.
func (d *drill) writeOptions(c *localcluster.Cluster, table string) writeclient.Options {
	if d.engine == localcluster.EngineMariaDB {
		return writeclient.Options{Engine: writeclient.MySQL, Hosts: c.Hosts(), User: appUser, Password: appPassword,
			Table: table, Interval: 10 * time.Millisecond, Logger: d.wlog}
	}
	return writeclient.Options{Hosts: c.Hosts(), User: "postgres", Password: c.SuperPassword,
		Table: table, Interval: 10 * time.Millisecond, Logger: d.wlog}
}

// rootPool opens a pool to n's MariaDB over its unix socket as root.
func rootPool(c *localcluster.Cluster, n *localcluster.Node) (*sql.DB, error) {
	cfg := mysqldriver.NewConfig()
	cfg.Net, cfg.Addr = "unix", filepath.Join(n.Dir, "my.sock")
	cfg.User, cfg.Passwd, cfg.Timeout = "root", c.SuperPassword, time.Second
	conn, err := mysqldriver.NewConnector(cfg)
	if err != nil {
		return nil, err
	}
	return sql.OpenDB(conn), nil
}

// createAppUser creates appUser on the leader (it replicates), allowed
// everything on the write client's schema and nothing global.
func createAppUser(ctx context.Context, c *localcluster.Cluster) error {
	l, err := c.WaitLeader(ctx, "")
	if err != nil {
		return err
	}
	pool, err := rootPool(c, l)
	if err != nil {
		return err
	}
	defer pool.Close()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", appUser, appPassword),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", writeclient.DefaultMySQLDatabase, appUser),
	} {
		if _, err := pool.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create the write client's user on %s: %w", l.Name, err)
		}
	}
	return nil
}

// mariadbWritable reports whether n's MariaDB answers with read_only off.
func mariadbWritable(ctx context.Context, pools map[string]*sql.DB, n *localcluster.Node, c *localcluster.Cluster) bool {
	qctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	p := pools[n.Name]
	if p == nil {
		var err error
		if p, err = rootPool(c, n); err != nil {
			return false
		}
		pools[n.Name] = p
	}
	var ro bool
	if err := p.QueryRowContext(qctx, "SELECT @@GLOBAL.read_only").Scan(&ro); err != nil {
		return false
	}
	return !ro
}
