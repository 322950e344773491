//go:build !agentonly

package main

import (
	"context"
	"database/sql"
	"fmt"
	"path/filepath"
	"time"

	driver "github.com/go-sql-driver/mysql"

	"github.com/hamgr/hamgr/localcluster"
	"github.com/hamgr/hamgr/writeclient"
)

// demoUser is the account `hamgr demo --engine mariadb` writes as: all
// privileges on the write client's schema and none global, so read_only
// binds it (root's READ_ONLY ADMIN would let it write to a replica).
const demoUser = "demo"

// demoAppUser creates demoUser on the leader (it replicates to the
// others) with a new random password, and returns both.
func demoAppUser(ctx context.Context, c *localcluster.Cluster) (user, password string, err error) {
	l, err := c.WaitLeader(ctx, "")
	if err != nil {
		return "", "", fmt.Errorf("find the primary to create the demo's user on: %w", err)
	}
	pool, err := rootPool(c, l)
	if err != nil {
		return "", "", err
	}
	defer pool.Close()
	password = randomToken()
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, q := range []string{
		fmt.Sprintf("CREATE USER IF NOT EXISTS '%s'@'%%' IDENTIFIED BY '%s'", demoUser, password),
		fmt.Sprintf("GRANT ALL ON %s.* TO '%s'@'%%'", writeclient.DefaultMySQLDatabase, demoUser),
	} {
		if _, err := pool.ExecContext(qctx, q); err != nil {
			return "", "", fmt.Errorf("create the demo's user on %s: %w", l.Name, err)
		}
	}
	return demoUser, password, nil
}

// rootPool opens a pool to n's MariaDB over its unix socket as root (the
// agents' superuser).
func rootPool(c *localcluster.Cluster, n *localcluster.Node) (*sql.DB, error) {
	cfg := driver.NewConfig()
	cfg.Net, cfg.Addr = "unix", filepath.Join(n.Dir, "my.sock")
	cfg.User, cfg.Passwd, cfg.Timeout = "root", c.SuperPassword, 2*time.Second
	conn, err := driver.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to %s's MariaDB: %w", n.Name, err)
	}
	return sql.OpenDB(conn), nil
}
