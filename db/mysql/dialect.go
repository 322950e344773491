package mysql

import (
	"database/sql"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/hamgr/hamgr/cluster"
)

// Flavour is which server family runs: MariaDB or Oracle MySQL. It is
// read from the server (@@version), never configured.
type Flavour int

// Flavours.
const (
	_ Flavour = iota
	// MariaDB 10.6 or later: domain-server_id-seq GTIDs, CHANGE MASTER TO
	// ... MASTER_USE_GTID=slave_pos, read_only only.
	FlavourMariaDB
	// MySQL 8.0 or later: uuid:interval GTID sets, CHANGE REPLICATION
	// SOURCE TO ... SOURCE_AUTO_POSITION=1 (8.0.23+), super_read_only.
	FlavourMySQL
)

// String names the flavour.
func (f Flavour) String() string {
	switch f {
	case FlavourMariaDB:
		return "MariaDB"
	case FlavourMySQL:
		return "MySQL"
	}
	return "unknown"
}

// Version is a server version, major.minor.patch.
type Version struct{ Major, Minor, Patch int }

// AtLeast reports whether v is major.minor.patch or later.
func (v Version) AtLeast(major, minor, patch int) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// String formats the version.
func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

var versionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)

// Dialect is the SQL of one flavour and version: every statement the
// engine issues is built here, so that both flavours are tested on the
// exact text they send.
type Dialect struct {
	Flavour Flavour
	Version Version
}

// DetectDialect reads the flavour and version from @@version (and
// @@version_comment, which names MariaDB on builds whose version string
// does not). It refuses versions older than MariaDB 10.6 and MySQL 8.0.
func DetectDialect(version, comment string) (Dialect, error) {
	m := versionRE.FindStringSubmatch(strings.TrimSpace(version))
	if m == nil {
		return Dialect{}, fmt.Errorf("server version %q: want major.minor.patch", version)
	}
	var v Version
	v.Major, _ = strconv.Atoi(m[1])
	v.Minor, _ = strconv.Atoi(m[2])
	v.Patch, _ = strconv.Atoi(m[3])
	d := Dialect{Flavour: FlavourMySQL, Version: v}
	if strings.Contains(strings.ToLower(version+" "+comment), "mariadb") {
		d.Flavour = FlavourMariaDB
	}
	switch {
	case d.Flavour == FlavourMariaDB && !v.AtLeast(10, 6, 0):
		return Dialect{}, fmt.Errorf("MariaDB %s: hamgr needs 10.6 or later", v)
	case d.Flavour == FlavourMySQL && !v.AtLeast(8, 0, 0):
		return Dialect{}, fmt.Errorf("MySQL %s: hamgr needs 8.0 or later", v)
	}
	return d, nil
}

// mysqlReplicaWords is true for MySQL 8.0.22+, which has START/STOP/RESET
// REPLICA and SHOW REPLICA STATUS with Replica_*/Source_* columns (8.4
// removed the SLAVE forms). MariaDB 10.6 accepts the REPLICA statements
// too but keeps its Slave_*/Master_* column names.
func (d Dialect) mysqlReplicaWords() bool {
	return d.Flavour == FlavourMySQL && d.Version.AtLeast(8, 0, 22)
}

// Engine is the cluster engine of this flavour's positions.
func (d Dialect) Engine() cluster.Engine {
	if d.Flavour == FlavourMariaDB {
		return cluster.EngineMariaDB
	}
	return cluster.EngineMySQL
}

// StopReplica stops both replication threads.
func (d Dialect) StopReplica() string {
	if d.Flavour == FlavourMySQL && !d.mysqlReplicaWords() {
		return "STOP SLAVE"
	}
	return "STOP REPLICA"
}

// StartReplica starts both replication threads.
func (d Dialect) StartReplica() string {
	if d.Flavour == FlavourMySQL && !d.mysqlReplicaWords() {
		return "START SLAVE"
	}
	return "START REPLICA"
}

// ResetReplicaAll forgets the replica configuration (its upstream).
func (d Dialect) ResetReplicaAll() string {
	if d.Flavour == FlavourMySQL && !d.mysqlReplicaWords() {
		return "RESET SLAVE ALL"
	}
	return "RESET REPLICA ALL"
}

// ShowReplicaStatus reports the replica threads (no row: not a replica).
func (d Dialect) ShowReplicaStatus() string {
	if d.Flavour == FlavourMySQL && !d.mysqlReplicaWords() {
		return "SHOW SLAVE STATUS"
	}
	return "SHOW REPLICA STATUS"
}

// Source is what a replica connects to.
type Source struct {
	Host     string
	Port     int
	User     string
	Password string
}

// ChangeSource points the (stopped) replica at src with GTID
// auto-positioning: MariaDB from gtid_slave_pos, MySQL from
// gtid_executed. The replica retries a lost connection every second and
// the source sends a heartbeat every second when idle. The text holds
// the password: never log it.
func (d Dialect) ChangeSource(src Source) string {
	if d.Flavour == FlavourMariaDB {
		return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%d, MASTER_USER=%s, MASTER_PASSWORD=%s, "+
			"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1",
			quote(src.Host), src.Port, quote(src.User), quote(src.Password))
	}
	if d.Version.AtLeast(8, 0, 23) {
		return fmt.Sprintf("CHANGE REPLICATION SOURCE TO SOURCE_HOST=%s, SOURCE_PORT=%d, SOURCE_USER=%s, SOURCE_PASSWORD=%s, "+
			"SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1",
			quote(src.Host), src.Port, quote(src.User), quote(src.Password))
	}
	return fmt.Sprintf("CHANGE MASTER TO MASTER_HOST=%s, MASTER_PORT=%d, MASTER_USER=%s, MASTER_PASSWORD=%s, "+
		"MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1, GET_MASTER_PUBLIC_KEY=1",
		quote(src.Host), src.Port, quote(src.User), quote(src.Password))
}

// SetReadOnly makes the server refuse writes: MySQL's super_read_only
// refuses them to SUPER users too (and implies read_only); MariaDB has
// only read_only, which users with READ_ONLY ADMIN bypass, so demoting
// also kills their connections (KillClients).
func (d Dialect) SetReadOnly() []string {
	if d.Flavour == FlavourMariaDB {
		return []string{"SET GLOBAL read_only = ON"}
	}
	return []string{"SET GLOBAL super_read_only = ON"}
}

// SetWritable lets the server take writes (read_only = OFF also turns
// MySQL's super_read_only off).
func (d Dialect) SetWritable() []string {
	if d.Flavour == FlavourMariaDB {
		return []string{"SET GLOBAL read_only = OFF"}
	}
	return []string{"SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"}
}

// StateQuery selects, in one row: the GTID set the server holds
// (MariaDB: gtid_binlog_state, its GTID state per domain and server, and
// gtid_slave_pos; MySQL: gtid_executed, twice), whether it is read-only,
// its clock with microseconds, and whether the replica side of semi-sync
// acknowledges ("ON"; ackColumn).
func (d Dialect) StateQuery() string {
	if d.Flavour == FlavourMariaDB {
		return "SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos, @@GLOBAL.read_only, NOW(6), " + d.ackColumn()
	}
	return "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed, @@GLOBAL.read_only, NOW(6), " + d.ackColumn()
}

// Position parses a GTID set of this flavour.
func (d Dialect) Position(set string) (cluster.Position, error) {
	if d.Flavour == FlavourMariaDB {
		return cluster.MariaDBPosition(set)
	}
	return cluster.MySQLPosition(set)
}

// WaitForPosition is a query of one integer that waits up to its second
// argument (seconds) for the server to have applied the GTID set of its
// unionPosition parses two GTID sets of the server (executed and slave
// positions, say) and returns the position holding both.
func (d Dialect) unionPosition(set1, set2 string) (cluster.Position, error) {
	a, err := d.Position(set1)
	if err != nil {
		return cluster.Position{}, err
	}
	b, err := d.Position(set2)
	if err != nil {
		return cluster.Position{}, err
	}
	return a.Union(b)
}

// first: 0 when it has, 1 (MySQL) or -1 (MariaDB) on timeout.
func (d Dialect) WaitForPosition() string {
	if d.Flavour == FlavourMariaDB {
		return "SELECT MASTER_GTID_WAIT(?, ?)"
	}
	return "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"
}

// SemiSyncTimeoutMS is the source side's acknowledgement timeout hamgr
// sets: 24 hours, so long that it never fires in practice. On timeout
// the server silently stops waiting (it acknowledges commits without a
// copy until a replica catches up), which would make hamgr's
// synchronous record lie; hamgr instead turns waiting off itself
// (SetSynchronousStandbys without anyStandby) when it decides to run
// asynchronously, and records that it did.
const SemiSyncTimeoutMS = 24 * 60 * 60 * 1000

// semiSyncWords are the prefixes of the semi-sync variables: MariaDB and
// MySQL before 8.0.26 say master and slave, MySQL 8.0.26+ (whose
// plugins SemiSyncServerOptions loads) source and replica.
func (d Dialect) semiSyncWords() (source, replica, noReplica string) {
	if d.Flavour == FlavourMariaDB || !d.Version.AtLeast(8, 0, 26) {
		return "rpl_semi_sync_master", "rpl_semi_sync_slave", "rpl_semi_sync_master_wait_no_slave"
	}
	return "rpl_semi_sync_source", "rpl_semi_sync_replica", "rpl_semi_sync_source_wait_no_replica"
}

// SemiSyncSourceOn returns the statements that make commits wait for an
// acknowledgement from any replica whose replica side is on: after the
// binary log is synced and before the engine commit (AFTER_SYNC, so no
// other session sees a commit no replica holds), while no such replica
// is connected too (wait_no_slave), for SemiSyncTimeoutMS. Enabling comes
// last, so waiting never starts with another server's settings.
func (d Dialect) SemiSyncSourceOn() []string {
	src, _, noReplica := d.semiSyncWords()
	return []string{
		fmt.Sprintf("SET GLOBAL %s_timeout = %d", src, SemiSyncTimeoutMS),
		"SET GLOBAL " + src + "_wait_point = AFTER_SYNC",
		"SET GLOBAL " + noReplica + " = ON",
		"SET GLOBAL " + src + "_enabled = ON",
	}
}

// SemiSyncSourceOff returns the statement that stops commits waiting for
// acknowledgements; commits waiting at that moment return at once.
func (d Dialect) SemiSyncSourceOff() string {
	src, _, _ := d.semiSyncWords()
	return "SET GLOBAL " + src + "_enabled = OFF"
}

// SemiSyncReplica returns the statement that turns the replica side
// (acknowledging) on or off. It takes effect when the IO thread next
// connects (RestartReplicaIO); a running stream keeps acknowledging as
// it did when it started.
func (d Dialect) SemiSyncReplica(on bool) string {
	_, rep, _ := d.semiSyncWords()
	if on {
		return "SET GLOBAL " + rep + "_enabled = ON"
	}
	return "SET GLOBAL " + rep + "_enabled = OFF"
}

// RestartReplicaIO returns the statements that reconnect the IO thread
// (the applier keeps running), so that the source sees the replica side
// as it is now.
func (d Dialect) RestartReplicaIO() []string {
	return []string{d.StopReplica() + " IO_THREAD", d.StartReplica() + " IO_THREAD"}
}

// globalVariable is an expression for a global variable that is NULL when
// the variable does not exist (MySQL's semi-sync plugins not loaded).
// MariaDB has the semi-sync variables built in: @@GLOBAL is cheaper.
func (d Dialect) globalVariable(name string) string {
	if d.Flavour == FlavourMariaDB {
		return "@@GLOBAL." + name
	}
	return "(SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = '" + name + "')"
}

// globalStatus is an expression for a global status variable (NULL when
// it does not exist).
func (d Dialect) globalStatus(name string) string {
	if d.Flavour == FlavourMariaDB {
		return "(SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = '" + strings.ToUpper(name) + "')"
	}
	return "(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = '" + name + "')"
}

// ackExpressions are the replica side's variable
// (rpl_semi_sync_slave_enabled: what the next stream declares) and
// operational status (Rpl_semi_sync_slave_status: whether the running
// stream acknowledges, as it declared when it connected); both NULL when
// MySQL's plugin is not loaded.
func (d Dialect) ackExpressions() (variable, status string) {
	_, rep, _ := d.semiSyncWords()
	name := "Rpl_semi_sync_slave_status"
	if rep == "rpl_semi_sync_replica" {
		name = "Rpl_semi_sync_replica_status"
	}
	return d.globalVariable(rep + "_enabled"), d.globalStatus(name)
}

// ackColumn is an expression that is ON when the replica side's variable
// or its status is (a stream started while the variable was on
// acknowledges until it is restarted): the acknowledging state. The
// status is read (a status table, the costly part) only when the
// variable is off.
func (d Dialect) ackColumn() string {
	variable, status := d.ackExpressions()
	if d.Flavour == FlavourMariaDB {
		return "IF(" + variable + ", 'ON', " + status + ")"
	}
	return "IF(" + variable + " = 'ON', 'ON', " + status + ")"
}

// AckQuery selects the replica side's variable and status.
func (d Dialect) AckQuery() string {
	variable, status := d.ackExpressions()
	return "SELECT " + variable + ", " + status
}

// SyncStatusQuery selects, in one row: the GTID set the server holds (as
// StateQuery), whether it is read-only, and the source side's settings:
// enabled, wait_no_slave, timeout and wait point (NULL when MySQL's
// plugin is not loaded). It reads no status variable: it runs every
// round on the leader.
func (d Dialect) SyncStatusQuery() string {
	src, _, noReplica := d.semiSyncWords()
	sets := "@@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos"
	if d.Flavour == FlavourMySQL {
		sets = "@@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed"
	}
	return "SELECT " + sets + ", @@GLOBAL.read_only, " + d.globalVariable(src+"_enabled") + ", " +
		d.globalVariable(noReplica) + ", " + d.globalVariable(src+"_timeout") + ", " + d.globalVariable(src+"_wait_point")
}

// SemiSyncSource is the source side's settings as SyncStatusQuery reads
// them.
type SemiSyncSource struct {
	Enabled, WaitNoReplica bool
	TimeoutMS              uint64
	WaitPoint              string
}

// ParseSemiSyncSource reads the four settings of SyncStatusQuery (NULL:
// the plugin is not loaded, so off).
func ParseSemiSyncSource(enabled, noReplica, timeout, waitPoint sql.NullString) SemiSyncSource {
	t, _ := strconv.ParseUint(timeout.String, 10, 64)
	return SemiSyncSource{Enabled: isOn(enabled), WaitNoReplica: isOn(noReplica), TimeoutMS: t,
		WaitPoint: strings.ToUpper(waitPoint.String)}
}

// Waits reports whether commits wait as SemiSyncSourceOn makes them:
// enabled, whether or not a replica is connected, after the sync, with a
// timeout no shorter than SemiSyncTimeoutMS. Weaker settings (an
// operator's) fall back to asynchronous silently, so they do not count.
func (s SemiSyncSource) Waits() bool {
	return s.Enabled && s.WaitNoReplica && s.TimeoutMS >= SemiSyncTimeoutMS && s.WaitPoint == "AFTER_SYNC"
}

// isOn reads a boolean variable or status value: "ON" or "1" (MariaDB's
// @@GLOBAL reads booleans as 0 and 1); NULL is off.
func isOn(v sql.NullString) bool {
	return v.Valid && (strings.EqualFold(v.String, "ON") || v.String == "1")
}

// SemiSyncSourceEnabled selects whether semi-synchronous replication is
// on at the source side ("ON"/"OFF", or 1/0; no row when MySQL's plugin
// is not loaded).
func (d Dialect) SemiSyncSourceEnabled() string {
	src, _, _ := d.semiSyncWords()
	if d.Flavour == FlavourMariaDB {
		return "SELECT @@GLOBAL." + src + "_enabled"
	}
	return "SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = '" + src + "_enabled'"
}

// SemiSyncServerOptions are the server options that start every server
// with both semi-sync sides off, whatever the options before them say
// (SET GLOBAL is not persistent: each start begins off, and the agent
// turns them on). MySQL's semi-sync plugins are loaded here, at every
// start: INSTALL PLUGIN is refused by super_read_only, which every
// server starts with; loose- keeps a server whose plugin cannot load
// starting (its semi-sync variables are then missing: off).
func (d Dialect) SemiSyncServerOptions() []string {
	src, rep, _ := d.semiSyncWords()
	dash := func(s string) string { return strings.ReplaceAll(s, "_", "-") }
	if d.Flavour == FlavourMariaDB {
		return []string{"--" + dash(src) + "-enabled=OFF", "--" + dash(rep) + "-enabled=OFF"}
	}
	lib := map[string]string{"rpl_semi_sync_master": "semisync_master.so", "rpl_semi_sync_slave": "semisync_slave.so",
		"rpl_semi_sync_source": "semisync_source.so", "rpl_semi_sync_replica": "semisync_replica.so"}
	return []string{"--plugin-load-add=" + lib[src], "--plugin-load-add=" + lib[rep],
		"--loose-" + dash(src) + "-enabled=OFF", "--loose-" + dash(rep) + "-enabled=OFF"}
}

// WaitingForAck is the PROCESSLIST state of a session whose commit waits
// for a semi-sync acknowledgement (MariaDB and MySQL before 8.0.26 end it
// "from slave", MySQL 8.0.26+ "from replica").
const WaitingForAck = "Waiting for semi-sync ACK from"

// ProcessList lists the other sessions: id, user, command.
const ProcessList = "SELECT ID, USER, COMMAND FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID()"

// CommitBlockers selects the other sessions whose commit waits for a
// semi-sync acknowledgement (WaitingForAck) and the agent's own heartbeat
// writes (which queue behind such a commit): what keeps setting read-only
// waiting.
const CommitBlockers = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND " +
	"(STATE LIKE '" + WaitingForAck + "%' OR INFO LIKE 'INSERT INTO hamgr.heartbeat %')"

// HeartbeatSessions selects the other sessions running the heartbeat
// write.
const HeartbeatSessions = "SELECT ID FROM information_schema.PROCESSLIST WHERE ID <> CONNECTION_ID() AND " +
	"INFO LIKE 'INSERT INTO hamgr.heartbeat %'"

// KillConnection ends session id.
func KillConnection(id int64) string { return fmt.Sprintf("KILL CONNECTION %d", id) }

// serverCommands are the PROCESSLIST commands of the server's own
// threads and of replication, which a demotion leaves alone.
var serverCommands = map[string]bool{
	"Binlog Dump": true, "Binlog Dump GTID": true, "Daemon": true,
	"Slave_IO": true, "Slave_SQL": true, "Slave_worker": true, "Connect": true,
}

// IsClientSession reports whether a PROCESSLIST row is a client session a
// demotion must end: not a server thread (user "system user",
// "event_scheduler", or a replication command), and not the agent's own
// user, whose sessions issue the demotion.
func IsClientSession(user, command, agentUser string) bool {
	switch {
	case user == "system user", user == "event_scheduler", user == "" && command == "Daemon":
		return false
	case serverCommands[command]:
		return false
	case user == agentUser:
		return false
	}
	return true
}

// quote is a SQL string literal: single quotes doubled, which every
// sql_mode reads the same. Backslashes, which NO_BACKSLASH_ESCAPES reads
// differently from the default mode, are refused by Options validation
// before any text gets here.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", "''") + "'"
}

// ReplicaStatus is a parsed SHOW REPLICA STATUS row, in either flavour's
// column names.
type ReplicaStatus struct {
	// Configured is false when there was no row: not a replica.
	Configured bool
	// IORunning is "Yes", "No" or "Connecting"; SQLRunning "Yes" or "No".
	IORunning, SQLRunning string
	SourceHost            string
	SourcePort            int
	// SecondsBehind is the replica's own lag figure; -1 when NULL (a
	// thread stopped, or not connected).
	SecondsBehind int64
	// Received is the GTIDs the IO thread received (MariaDB Gtid_IO_Pos,
	// MySQL Retrieved_Gtid_Set); Executed is MySQL's Executed_Gtid_Set
	// ("" on MariaDB).
	Received, Executed string
	// AutoPosition is true when the replica positions by GTID.
	AutoPosition       bool
	IOErrno, SQLErrno  int
	IOError, SQLError  string
	SourceLogFile      string
	ReadSourceLogPos   int64
	ExecSourceLogFile  string
	ExecSourceLogPos   int64
	SourceServerID     int64
	SourceHeartbeatSec float64
}

// ParseReplicaStatus reads one SHOW REPLICA STATUS row given as column
// name → value (nil for NULL); a nil row is "not a replica". It accepts
// both MariaDB's and MySQL 8.0.22+'s column names.
func ParseReplicaStatus(row map[string]*string) ReplicaStatus {
	if row == nil {
		return ReplicaStatus{SecondsBehind: -1}
	}
	get := func(names ...string) string {
		for _, n := range names {
			if v, ok := row[n]; ok && v != nil {
				return *v
			}
		}
		return ""
	}
	num := func(names ...string) int64 {
		n, _ := strconv.ParseInt(get(names...), 10, 64)
		return n
	}
	rs := ReplicaStatus{
		Configured:        true,
		IORunning:         get("Slave_IO_Running", "Replica_IO_Running"),
		SQLRunning:        get("Slave_SQL_Running", "Replica_SQL_Running"),
		SourceHost:        get("Master_Host", "Source_Host"),
		SourcePort:        int(num("Master_Port", "Source_Port")),
		SecondsBehind:     -1,
		Received:          oneLine(get("Gtid_IO_Pos", "Retrieved_Gtid_Set")),
		Executed:          oneLine(get("Executed_Gtid_Set")),
		IOErrno:           int(num("Last_IO_Errno")),
		SQLErrno:          int(num("Last_SQL_Errno")),
		IOError:           get("Last_IO_Error"),
		SQLError:          get("Last_SQL_Error"),
		SourceLogFile:     get("Master_Log_File", "Source_Log_File"),
		ReadSourceLogPos:  num("Read_Master_Log_Pos", "Read_Source_Log_Pos"),
		ExecSourceLogFile: get("Relay_Master_Log_File", "Relay_Source_Log_File"),
		ExecSourceLogPos:  num("Exec_Master_Log_Pos", "Exec_Source_Log_Pos"),
		SourceServerID:    num("Master_Server_Id", "Source_Server_Id"),
	}
	if s := get("Seconds_Behind_Master", "Seconds_Behind_Source"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err == nil {
			rs.SecondsBehind = n
		}
	}
	if g := get("Using_Gtid"); g != "" {
		rs.AutoPosition = !strings.EqualFold(g, "No")
	} else {
		rs.AutoPosition = get("Auto_Position") == "1"
	}
	rs.SourceHeartbeatSec, _ = strconv.ParseFloat(get("Slave_heartbeat_period", "Replica_heartbeat_period"), 64)
	return rs
}

// oneLine removes the line breaks MySQL puts into long GTID sets.
func oneLine(s string) string { return strings.Join(strings.Fields(s), "") }

// Streaming reports whether both replication threads run and the IO
// thread is connected.
func (rs ReplicaStatus) Streaming() bool {
	return rs.IORunning == "Yes" && rs.SQLRunning == "Yes"
}

// Diverged says, when not empty, that a replication error shows the
// replica's history left its source's: MariaDB 1236 ("connecting slave requested to
// start from GTID ..., which is not in the master's binlog"), 1950 (an
// out-of-order GTID under gtid_strict_mode); MySQL 1236 with a GTID
// message ("... has more GTIDs than the source has" / "purged").
func (rs ReplicaStatus) Diverged() string {
	switch {
	case rs.IOErrno == 1236 && strings.Contains(strings.ToLower(rs.IOError), "diverged"):
		return fmt.Sprintf("the upstream refuses this server's GTID position (error %d: %s)", rs.IOErrno, rs.IOError)
	case rs.IOErrno == 1236 && strings.Contains(rs.IOError, "more GTIDs than the"):
		return fmt.Sprintf("this server holds transactions its upstream lacks (error %d: %s)", rs.IOErrno, rs.IOError)
	case rs.SQLErrno == 1950:
		return fmt.Sprintf("an upstream transaction conflicts with this server's own GTIDs (error %d: %s)", rs.SQLErrno, rs.SQLError)
	}
	return ""
}

// SetupStatements create the replication account: allowed to replicate
// and to read everything a logical clone copies. The text holds the
// password: never log it.
func (d Dialect) SetupStatements(user, password string) []string {
	acct := quote(user) + "@'%'"
	create := "CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED BY " + quote(password)
	if d.Flavour == FlavourMySQL {
		create = "CREATE USER IF NOT EXISTS " + acct + " IDENTIFIED WITH caching_sha2_password BY " + quote(password)
	}
	return []string{create,
		"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS ON *.* TO " + acct,
	}
}

// SeedReplicaPosition returns the gtid_slave_pos a MariaDB replica must
// have before it connects with MASTER_USE_GTID=slave_pos, given its
// @@gtid_binlog_pos and @@gtid_slave_pos, and whether that differs from
// slavePos (then: SET GLOBAL gtid_slave_pos). Per domain it is the later
// of the two (the higher seq: gtid_strict_mode). A former primary's
// gtid_slave_pos is empty or stale (its own transactions are only in its
// binary log), and connecting with it makes the new primary send
// transactions it already has; a fresh clone's binary log is empty and
// its gtid_slave_pos is right. MySQL positions from gtid_executed: never.
func (d Dialect) SeedReplicaPosition(binlogPos, slavePos string) (string, bool, error) {
	if d.Flavour != FlavourMariaDB {
		return "", false, nil
	}
	top := map[string]uint64{} // domain → highest seq
	var order []string
	gtids := map[string]string{}
	for _, list := range []string{slavePos, binlogPos} {
		for _, g := range strings.Split(list, ",") {
			g = strings.TrimSpace(g)
			if g == "" {
				continue
			}
			parts := strings.Split(g, "-")
			if len(parts) != 3 {
				return "", false, fmt.Errorf("GTID %q: want domain-server_id-seq", g)
			}
			seq, err := strconv.ParseUint(parts[2], 10, 64)
			if err != nil {
				return "", false, fmt.Errorf("GTID %q: %w", g, err)
			}
			dom := parts[0]
			if t, ok := top[dom]; !ok || seq > t {
				if !ok {
					order = append(order, dom)
				}
				top[dom] = seq
				gtids[dom] = g
			}
		}
	}
	sort.Slice(order, func(i, j int) bool {
		a, _ := strconv.ParseUint(order[i], 10, 32)
		b, _ := strconv.ParseUint(order[j], 10, 32)
		return a < b
	})
	out := make([]string, len(order))
	for i, dom := range order {
		out[i] = gtids[dom]
	}
	want := strings.Join(out, ",")
	p1, err1 := cluster.MariaDBPosition(want)
	p2, err2 := cluster.MariaDBPosition(slavePos)
	if err1 != nil || err2 != nil {
		return "", false, fmt.Errorf("GTID positions %q, %q: %v", binlogPos, slavePos, errors.Join(err1, err2))
	}
	return want, p1 != p2, nil
}

// SetOwnPassword sets the session user's password (MariaDB 10.11
// ignores ALTER USER CURRENT_USER()). The text holds the password: never
// log it.
func (d Dialect) SetOwnPassword(password string) string {
	if d.Flavour == FlavourMariaDB {
		return "SET PASSWORD = PASSWORD(" + quote(password) + ")"
	}
	return "SET PASSWORD = " + quote(password)
}

// SetSlavePos sets a MariaDB replica's gtid_slave_pos (replication
// stopped).
func SetSlavePos(pos string) string { return "SET GLOBAL gtid_slave_pos = " + quote(pos) }
