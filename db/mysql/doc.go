// Package mysql implements db.Database for MariaDB (10.6 and later) and
// Oracle MySQL (8.0 and later).
//
// The flavour and version are read from the server (@@version), never
// configured; every statement either flavour is sent is built by Dialect,
// whose text the unit tests check for both. Only MariaDB runs here (Debian
// 12 packages no MySQL server): the MySQL side is tested on the SQL it
// issues and the status rows it parses.
//
// Process model. As with PostgreSQL, the server (mariadbd or mysqld, one
// process) is the agent's child, started with os/exec so that its exit is
// seen at once (Exited); it stays in the agent's process group but
// survives the agent, and a restarted agent adopts it through its pid
// file. It always starts read-only with replication stopped
// (--read-only, --skip-slave-start; MySQL --super-read-only,
// --skip-replica-start): StartPrimary makes it writable, StartReplica
// starts replication, so a restarted server never takes a write or
// applies an event before the agent decided. SET GLOBAL is not persistent
// in MariaDB, and nothing here relies on SET PERSIST.
//
// Positions. A member's position is its GTID set (cluster.MariaDBPosition:
// gtid_binlog_state merged with gtid_slave_pos and the received
// Gtid_IO_Pos; cluster.MySQLPosition: gtid_executed and
// Retrieved_Gtid_Set). The binary log holds every transaction
// (log_slave_updates), which MariaDB's per-server GTID state needs. A
// stopped MariaDB server's position is read from its last binary log file.
// Lag in seconds is the age of the heartbeat row the primary's probe
// writes (hamgr.heartbeat), which idle periods do not fool; the replica's
// Seconds_Behind_Master is the fallback.
//
// Roles. A writable server is a primary, a read-only one a replica. The
// data directory of a replica holds hamgr.replica (StartReplica, Demote;
// Promote removes it), so that a stopped replica is not started as a
// primary. Demote sets read-only (MySQL super_read_only), turns semi-sync's
// source side off and ends every client session but replication's and the
// agent's: MariaDB's read_only does not bind users with READ_ONLY ADMIN.
// Promote stops the IO thread, waits for the applier to apply what was
// received, then RESET REPLICA ALL and read_only off. Follow repoints with
// GTID auto-positioning (MariaDB MASTER_USE_GTID=slave_pos, after seeding
// gtid_slave_pos from the binary log, which a former primary needs; MySQL
// SOURCE_AUTO_POSITION=1). Each step is idempotent: after a crash mid-way
// the same call finishes it.
//
// Secrets. The replication password appears only in the statements that
// set it (CHANGE MASTER, CREATE USER), which are never logged, and is
// redacted from errors.
//
// Semi-synchronous replication (db.SyncReplication, db.Acknowledger;
// see semisync.go for what was verified on MariaDB 10.11). Both sides
// start off at every server start (SemiSyncServerOptions; MySQL's plugins
// are loaded there). SetSynchronousStandbys turns the primary's source
// side on (AFTER_SYNC, waiting while no replica is connected, a 24-hour
// timeout so that the server never falls back to asynchronous by itself:
// hamgr turns waiting off when it decides to) or off, which releases the
// waiting commits at once; a read-only server is not made to wait (its
// applier would) but Promote turns waiting on before it takes writes.
// SetAcknowledging sets a replica's side and restarts its IO thread,
// since the primary learns it only when the stream connects; Probe
// reports it (Status.Ack) from the variable and the stream's status.
// Promote turns the replica side off. A commit that waits for an
// acknowledgement holds read_only and SHOW MASTER STATUS: Demote ends
// such sessions (their clients get no OK) and the probe reads the binary
// log coordinates from the data directory.
//
// Not done yet: Clone of a MySQL server, and the stopped position of a
// MySQL server.
package mysql
