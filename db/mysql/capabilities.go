package mysql

import "github.com/hamgr/hamgr/db"

// Capabilities describes MySQL and MariaDB to package ha: there is no
// in-place resync of a diverged member (no pg_rewind counterpart; MariaDB's
// mariadb-binlog --flashback is not automated), so a diverged member may
// only rejoin by a re-clone, as far as allowed says; there are no
// replication slots. A switchover demotes the primary in place
// (read-only, client sessions ended: MySQL.Demote) and the target
// applies its final GTID set before it promotes. Synchronous replication
// is semi-synchronous (db.AcksAny): the primary waits for any replica
// whose replica side is on (SetSynchronousStandbys takes no names), and
// each replica's agent turns its own replica side on or off
// (SetAcknowledging). A diverged member that may not rejoin keeps
// running read-only with its replication removed (Detach), rather than
// stopped.
func Capabilities(allowed db.RejoinMethods) db.Capabilities {
	return db.Capabilities{
		Rejoin:      allowed & db.RejoinReclone,
		Synchronous: true,
		Acks:        db.AcksAny,
		Switchover:  db.SwitchoverDemote,
		Diverged:    db.DivergedDetach,
		Names: db.Names{
			Resync:         "mariadb-binlog --flashback",
			ResyncSetting:  "mysql.use_flashback",
			RecloneSetting: "mysql.reclone_on_divergence",
		},
	}
}
