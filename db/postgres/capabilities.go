package postgres

import "github.com/hamgr/hamgr/db"

// Capabilities describes PostgreSQL to package ha: a diverged member may
// rejoin by pg_rewind (db.RejoinResync) and by a re-clone
// (db.RejoinReclone), as far as allowed says (the operator's
// postgresql.use_pg_rewind and postgresql.reclone_on_rewind_failure); the
// leader keeps a physical replication slot per member.
func Capabilities(allowed db.RejoinMethods) db.Capabilities {
	return db.Capabilities{
		Rejoin:      allowed & (db.RejoinResync | db.RejoinReclone),
		Slots:       true,
		Synchronous: true,
		Names: db.Names{
			Resync:         "pg_rewind",
			ResyncSetting:  "postgresql.use_pg_rewind",
			RecloneSetting: "postgresql.reclone_on_rewind_failure",
		},
	}
}
