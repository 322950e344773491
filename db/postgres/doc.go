// Package postgres implements db.Database for PostgreSQL 15.
//
// A Postgres value manages one local server: it creates the cluster (initdb,
// or pg_basebackup from an upstream), starts it as a direct child process of
// the agent, stops, promotes and repoints it, and measures it once per probe
// over a single pooled connection.
//
// Process model. The postmaster is started with os/exec, not pg_ctl, so the
// agent learns of its death within milliseconds (Exited). It stays in the
// agent's process group (a test can kill agent and server together, as a
// dying host would) but is not tied to the agent's life: it keeps running if
// the agent dies, and a restarted agent adopts it through postmaster.pid and
// watches it by polling. When the agent runs as root, every PostgreSQL
// binary runs as the owner of the data directory (the "postgres" OS user by
// default), and the files the package creates are owned by that user.
//
// Node identity (port, listen_addresses, unix_socket_directories,
// cluster_name) and the replication settings hamgr relies on are passed on
// the command line only, because pg_basebackup and pg_rewind copy
// postgresql.conf and postgresql.auto.conf between members. The agent owns
// postgresql.auto.conf: StartReplica (and Rewind) rewrite it whole, with
// only primary_conninfo, primary_slot_name and recovery_target_timeline.
//
// Replication (db.Replication). synchronous_standby_names is set with
// ALTER SYSTEM (SetSynchronousStandbys), so it lives in
// postgresql.auto.conf: a restarted primary keeps it, and a member
// restarted as a replica loses it (a replica has no use for it; the agent
// sets it on the member it promotes, possibly just before promoting).
// Every replica streams through the physical slot SlotName(Name) on its
// upstream, which the agent creates there (CreateSlots); until the slot
// exists the WAL receiver fails and retries every
// wal_retrieve_retry_interval (1s here; PostgreSQL's default is 5s). The
// WAL a slot holds is bounded by Options.MaxSlotWALKeepSize. Rewind runs
// pg_rewind against the new primary to turn a diverged former primary
// (or replica) into its replica.
//
// Secrets. The replication password lives only in a 0600 passfile next to
// the data directory (<DataDir>/../.<Name>.pgpass), referenced by
// primary_conninfo and PGPASSFILE; it never appears in a conninfo string,
// postgresql.auto.conf, an argument vector, a log line or an error. The
// replication role's password is sent to the server as a SCRAM verifier
// computed here, so the server never sees it in plain text either.
package postgres
