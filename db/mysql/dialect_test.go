package mysql

import (
	"context"
	"database/sql"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/cluster"
	"github.com/hamgr/hamgr/db"
)

func dialect(t *testing.T, version, comment string) Dialect {
	t.Helper()
	d, err := DetectDialect(version, comment)
	if err != nil {
		t.Fatalf("DetectDialect(%q, %q): %v", version, comment, err)
	}
	return d
}

func TestDetectDialect(t *testing.T) {
	for _, c := range []struct {
		version, comment string
		flavour          Flavour
		v                Version
	}{
		{"10.11.19-MariaDB-0+deb12u1", "Debian 12", FlavourMariaDB, Version{10, 11, 19}},
		{"5.5.5-10.6.16-MariaDB", "mariadb.org binary distribution", FlavourMariaDB, Version{5, 5, 5}},
		{"11.4.2-MariaDB", "", FlavourMariaDB, Version{11, 4, 2}},
		{"8.0.36", "MySQL Community Server - GPL", FlavourMySQL, Version{8, 0, 36}},
		{"8.4.0-commercial", "MySQL Enterprise Server - Commercial", FlavourMySQL, Version{8, 4, 0}},
	} {
		d, err := DetectDialect(c.version, c.comment)
		if c.version == "5.5.5-10.6.16-MariaDB" {
			// The 5.5.5- prefix some proxies send: refused as too old,
			// which is safe; a real server's @@version has no prefix.
			if err == nil {
				t.Errorf("%s: accepted as %+v", c.version, d)
			}
			continue
		}
		if err != nil || d.Flavour != c.flavour || d.Version != c.v {
			t.Errorf("%s: %+v, %v; want %s %s", c.version, d, err, c.flavour, c.v)
		}
	}
	for _, bad := range []string{"10.5.9-MariaDB", "5.7.44", "x"} {
		if _, err := DetectDialect(bad, ""); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if dialect(t, "10.11.6-MariaDB", "").Engine() != cluster.EngineMariaDB || dialect(t, "8.0.36", "").Engine() != cluster.EngineMySQL {
		t.Error("engines")
	}
}

func TestDialectStatements(t *testing.T) {
	mdb := dialect(t, "10.11.19-MariaDB-0+deb12u1", "")
	my80 := dialect(t, "8.0.20", "")
	my8036 := dialect(t, "8.0.36", "")
	my84 := dialect(t, "8.4.0", "")
	src := Source{Host: "10.0.0.2", Port: 3306, User: "repl", Password: "p'w"}
	for _, c := range []struct{ got, want string }{
		{mdb.ChangeSource(src), "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='p''w', " +
			"MASTER_USE_GTID=slave_pos, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1"},
		{my84.ChangeSource(src), "CHANGE REPLICATION SOURCE TO SOURCE_HOST='10.0.0.2', SOURCE_PORT=3306, SOURCE_USER='repl', SOURCE_PASSWORD='p''w', " +
			"SOURCE_AUTO_POSITION=1, SOURCE_CONNECT_RETRY=1, SOURCE_HEARTBEAT_PERIOD=1, GET_SOURCE_PUBLIC_KEY=1"},
		{my80.ChangeSource(src), "CHANGE MASTER TO MASTER_HOST='10.0.0.2', MASTER_PORT=3306, MASTER_USER='repl', MASTER_PASSWORD='p''w', " +
			"MASTER_AUTO_POSITION=1, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD=1, GET_MASTER_PUBLIC_KEY=1"},
		{mdb.StopReplica(), "STOP REPLICA"}, {my80.StopReplica(), "STOP SLAVE"}, {my84.StopReplica(), "STOP REPLICA"},
		{mdb.StartReplica(), "START REPLICA"}, {my80.StartReplica(), "START SLAVE"}, {my8036.StartReplica(), "START REPLICA"},
		{mdb.ResetReplicaAll(), "RESET REPLICA ALL"}, {my80.ResetReplicaAll(), "RESET SLAVE ALL"}, {my84.ResetReplicaAll(), "RESET REPLICA ALL"},
		{mdb.ShowReplicaStatus(), "SHOW REPLICA STATUS"}, {my80.ShowReplicaStatus(), "SHOW SLAVE STATUS"},
		{mdb.StateQuery(), "SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos, @@GLOBAL.read_only, NOW(6), " +
			"IF(@@GLOBAL.rpl_semi_sync_slave_enabled, 'ON', (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_SLAVE_STATUS'))"},
		{my84.StateQuery(), "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed, @@GLOBAL.read_only, NOW(6), " +
			"IF((SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_replica_enabled') = 'ON', 'ON', " +
			"(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_replica_status'))"},
		{my80.StateQuery(), "SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed, @@GLOBAL.read_only, NOW(6), " +
			"IF((SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_slave_enabled') = 'ON', 'ON', " +
			"(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_slave_status'))"},
		{mdb.WaitForPosition(), "SELECT MASTER_GTID_WAIT(?, ?)"}, {my84.WaitForPosition(), "SELECT WAIT_FOR_EXECUTED_GTID_SET(?, ?)"},
		{KillConnection(42), "KILL CONNECTION 42"},
		{mdb.SetOwnPassword("p'w"), "SET PASSWORD = PASSWORD('p''w')"}, {my84.SetOwnPassword("x"), "SET PASSWORD = 'x'"},
		{SetSlavePos("0-1-9,1-2-3"), "SET GLOBAL gtid_slave_pos = '0-1-9,1-2-3'"},
	} {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
	for _, c := range []struct {
		got, want []string
	}{
		{mdb.SetReadOnly(), []string{"SET GLOBAL read_only = ON"}},
		{my84.SetReadOnly(), []string{"SET GLOBAL super_read_only = ON"}},
		{mdb.SetWritable(), []string{"SET GLOBAL read_only = OFF"}},
		{my84.SetWritable(), []string{"SET GLOBAL super_read_only = OFF", "SET GLOBAL read_only = OFF"}},
		{mdb.SetupStatements("repl", "a'b"), []string{"CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED BY 'a''b'",
			"GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, SHOW VIEW, TRIGGER, EVENT, LOCK TABLES, RELOAD, PROCESS ON *.* TO 'repl'@'%'"}},
		{my84.SetupStatements("repl", "x")[:1], []string{"CREATE USER IF NOT EXISTS 'repl'@'%' IDENTIFIED WITH caching_sha2_password BY 'x'"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("got  %q\nwant %q", c.got, c.want)
		}
	}
}

func ptr(s string) *string { return &s }

// A MariaDB 10.11 replica's SHOW SLAVE STATUS row, as seen in the recipe
// (columns abridged to those read).
func TestParseReplicaStatusMariaDB(t *testing.T) {
	row := map[string]*string{
		"Slave_IO_State": ptr("Waiting for master to send event"), "Master_Host": ptr("127.0.0.1"),
		"Master_Port": ptr("41011"), "Master_Log_File": ptr("mysql-bin.000001"), "Read_Master_Log_Pos": ptr("2087"),
		"Relay_Master_Log_File": ptr("mysql-bin.000001"), "Exec_Master_Log_Pos": ptr("2087"),
		"Slave_IO_Running": ptr("Yes"), "Slave_SQL_Running": ptr("Yes"), "Seconds_Behind_Master": ptr("0"),
		"Last_IO_Errno": ptr("0"), "Last_IO_Error": ptr(""), "Last_SQL_Errno": ptr("0"), "Last_SQL_Error": ptr(""),
		"Master_Server_Id": ptr("1"), "Using_Gtid": ptr("Slave_Pos"), "Gtid_IO_Pos": ptr("0-1-7"),
		"Slave_heartbeat_period": ptr("1.000"),
	}
	rs := ParseReplicaStatus(row)
	want := ReplicaStatus{Configured: true, IORunning: "Yes", SQLRunning: "Yes", SourceHost: "127.0.0.1", SourcePort: 41011,
		SecondsBehind: 0, Received: "0-1-7", AutoPosition: true, SourceLogFile: "mysql-bin.000001", ReadSourceLogPos: 2087,
		ExecSourceLogFile: "mysql-bin.000001", ExecSourceLogPos: 2087, SourceServerID: 1, SourceHeartbeatSec: 1}
	if rs != want {
		t.Errorf("parsed\n%+v\nwant\n%+v", rs, want)
	}
	if !rs.Streaming() || rs.Diverged() != "" {
		t.Errorf("streaming %t, diverged %q", rs.Streaming(), rs.Diverged())
	}
	// Stopped by an errant local GTID (recipe pitfall 1).
	row["Slave_SQL_Running"], row["Seconds_Behind_Master"] = ptr("No"), nil
	row["Last_SQL_Errno"] = ptr("1950")
	row["Last_SQL_Error"] = ptr("An attempt was made to binlog GTID 0-1-10 which would create an out-of-order sequence number with existing GTID 0-2-10, and gtid strict mode is enabled")
	rs = ParseReplicaStatus(row)
	if rs.SecondsBehind != -1 || rs.Streaming() || !strings.Contains(rs.Diverged(), "1950") {
		t.Errorf("errant: %+v, diverged %q", rs, rs.Diverged())
	}
	// A diverged former primary (recipe pitfall 3).
	row["Last_SQL_Errno"], row["Last_IO_Errno"] = ptr("0"), ptr("1236")
	row["Last_IO_Error"] = ptr("Got fatal error 1236 from master when reading data from binary log: 'Error: connecting slave requested to start from GTID 0-1-14, which is not in the master's binlog. Since the master's binlog contains GTIDs with higher sequence numbers, it probably means that the slave has diverged due to executing extra erroneous transactions'")
	if d := ParseReplicaStatus(row).Diverged(); !strings.Contains(d, "1236") {
		t.Errorf("diverged former primary not recognized: %q", d)
	}
	// 1236 for a purged binary log is not a divergence.
	row["Last_IO_Error"] = ptr("Could not find GTID state requested by slave in any binlog files. Probably the slave state is too old and required binlog files have been purged.")
	if d := ParseReplicaStatus(row).Diverged(); d != "" {
		t.Errorf("purged binlog taken for divergence: %q", d)
	}
	if rs := ParseReplicaStatus(nil); rs.Configured || rs.SecondsBehind != -1 {
		t.Errorf("no row: %+v", rs)
	}
}

// A MySQL 8.4 replica's SHOW REPLICA STATUS row (from the reference
// manual's example), with a GTID set broken over lines as MySQL prints it.
func TestParseReplicaStatusMySQL(t *testing.T) {
	row := map[string]*string{
		"Replica_IO_State": ptr("Waiting for source to send event"), "Source_Host": ptr("127.0.0.1"), "Source_Port": ptr("13000"),
		"Source_Log_File": ptr("source-bin.000002"), "Read_Source_Log_Pos": ptr("1307"),
		"Relay_Source_Log_File": ptr("source-bin.000002"), "Exec_Source_Log_Pos": ptr("1307"),
		"Replica_IO_Running": ptr("Yes"), "Replica_SQL_Running": ptr("Yes"), "Seconds_Behind_Source": ptr("3"),
		"Last_IO_Errno": ptr("0"), "Last_SQL_Errno": ptr("0"), "Source_Server_Id": ptr("1"),
		"Retrieved_Gtid_Set": ptr("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"),
		"Executed_Gtid_Set":  ptr("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,\n8c3a2e6e-1f2b-11ef-a1b2-0242ac120002:1-2"),
		"Auto_Position":      ptr("1"),
	}
	rs := ParseReplicaStatus(row)
	if !rs.Configured || rs.IORunning != "Yes" || rs.SourcePort != 13000 || rs.SecondsBehind != 3 || !rs.AutoPosition ||
		rs.Executed != "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5,8c3a2e6e-1f2b-11ef-a1b2-0242ac120002:1-2" ||
		rs.Received != "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5" || rs.ExecSourceLogPos != 1307 {
		t.Errorf("parsed %+v", rs)
	}
	row["Last_IO_Errno"] = ptr("1236")
	row["Last_IO_Error"] = ptr("Got fatal error 1236 from source when reading data from binary log: 'Cannot replicate because the source purged required binary logs. Replicate the missing transactions from elsewhere, or provision a new replica from backup. Consider increasing the source's binary log expiration period. The GTID sets and the missing purged transactions are too long to print in this message.'")
	if d := ParseReplicaStatus(row).Diverged(); d != "" {
		t.Errorf("purged logs taken for divergence: %q", d)
	}
	row["Last_IO_Error"] = ptr("Got fatal error 1236 from source when reading data from binary log: 'Slave has more GTIDs than the source has, using the source's SERVER_UUID. This may indicate that the end of the binary log was truncated or that the last binary log file was lost, e.g., after a power or disk failure when sync_binlog != 1.'")
	if d := ParseReplicaStatus(row).Diverged(); d == "" {
		t.Error("more GTIDs than the source not recognized")
	}
}

func TestSeedReplicaPosition(t *testing.T) {
	mdb := dialect(t, "10.11.19-MariaDB", "")
	for _, c := range []struct {
		binlog, slave, want string
		change              bool
	}{
		// Former primary: its own GTIDs are only in its binary log.
		{"0-1-9", "", "0-1-9", true},
		{"0-1-9", "0-1-4", "0-1-9", true},
		// A replica with everything logged: nothing to do.
		{"0-2-12", "0-2-12", "0-2-12", false},
		// A fresh clone: empty binary log, the dump's position.
		{"", "0-1-9", "0-1-9", false},
		// A clone that replicated in domain 0 only since.
		{"0-1-12", "0-1-9,1-3-4", "0-1-12,1-3-4", true},
		{"10-1-1,2-1-5", "", "2-1-5,10-1-1", true},
		{"", "", "", false},
	} {
		got, change, err := mdb.SeedReplicaPosition(c.binlog, c.slave)
		if err != nil || got != c.want || change != c.change {
			t.Errorf("binlog %q slave %q: %q, %t, %v; want %q, %t", c.binlog, c.slave, got, change, err, c.want, c.change)
		}
	}
	if _, _, err := mdb.SeedReplicaPosition("0-1", ""); err == nil {
		t.Error("bad GTID accepted")
	}
	if _, change, _ := dialect(t, "8.4.0", "").SeedReplicaPosition("x", "y"); change {
		t.Error("MySQL seeds gtid_slave_pos")
	}
}

func TestIsClientSession(t *testing.T) {
	for _, c := range []struct {
		user, command string
		want          bool
	}{
		{"app", "Query", true}, {"app", "Sleep", true}, {"root", "Sleep", false}, // root is the agent
		{"repl", "Binlog Dump", false}, {"repl", "Binlog Dump GTID", false}, {"system user", "Slave_SQL", false},
		{"event_scheduler", "Daemon", false}, {"", "Daemon", false}, {"admin", "Query", true},
	} {
		if got := IsClientSession(c.user, c.command, "root"); got != c.want {
			t.Errorf("%s/%s: %t", c.user, c.command, got)
		}
	}
}

func TestParseBinlogGTIDs(t *testing.T) {
	// mariadb-binlog output, abridged.
	out := `# at 4
#261206  3:40:01 server id 2  end_log_pos 256 CRC32 0x1c2b3a4d 	Start: binlog v 4, server v 10.11.19-MariaDB-0+deb12u1 created 261206  3:40:01
# at 256
#261206  3:40:01 server id 2  end_log_pos 299 CRC32 0x5e6f7a8b 	Gtid list [0-1-9,0-2-10]
# at 299
#261206  3:40:01 server id 2  end_log_pos 338 CRC32 0x0a0b0c0d 	Binlog checkpoint mysql-bin.000002
# at 338
#261206  3:40:02 server id 2  end_log_pos 380 CRC32 0x11223344 	GTID 0-2-11 trans
/*M!100001 SET @@session.gtid_seq_no=11*//*!*/;
# at 500
#261206  3:40:03 server id 3  end_log_pos 542 CRC32 0x55667788 	GTID 1-3-4 ddl
`
	p, err := parseBinlogGTIDs(out)
	if err != nil || p.String() != "0-1-9,0-2-11,1-3-4" {
		t.Errorf("parsed %s, %v", p, err)
	}
	wrapped := "#261206  3:37:31 server id 4  end_log_pos 299 CRC32 0x5e6f7a8b 	Gtid list [0-1-9,\n# 0-2-6]\n"
	if p, err := parseBinlogGTIDs(wrapped); err != nil || p.String() != "0-1-9,0-2-6" {
		t.Errorf("wrapped Gtid list parsed as %s, %v", p, err)
	}
	if p, err := parseBinlogGTIDs("nothing"); err != nil || !p.IsZero() {
		t.Errorf("empty: %s, %v", p, err)
	}
}

func TestRedact(t *testing.T) {
	err := redact(errors.New("Error 1064: near 'MASTER_PASSWORD='s3cret''"), "s3cret", "")
	if strings.Contains(err.Error(), "s3cret") || !strings.Contains(err.Error(), "<redacted>") {
		t.Errorf("redacted: %v", err)
	}
	orig := errors.New("plain")
	if redact(orig, "x") != orig {
		t.Error("an error without secrets was rewritten")
	}
}

func TestNewValidates(t *testing.T) {
	valid := func() Options {
		return Options{Name: "n1", DataDir: "/var/lib/hamgr/n1", ServerBin: "/bin/sh", ListenHost: "127.0.0.1", Port: 3306,
			ServerID: 1, Replication: "repl", ReplicationPassword: "x"}
	}
	m, err := New(valid())
	if err != nil {
		t.Fatalf("valid options: %v", err)
	}
	if m.opts.Socket != "/var/lib/hamgr/n1.sock" || m.opts.LogFile != "/var/lib/hamgr/n1.log" || m.opts.Superuser != "root" {
		t.Errorf("defaults: %+v", m.opts)
	}
	for name, mutate := range map[string]func(*Options){
		"name with space":      func(o *Options) { o.Name = "n 1" },
		"relative data dir":    func(o *Options) { o.DataDir = "data" },
		"bad port":             func(o *Options) { o.Port = 70000 },
		"no server id":         func(o *Options) { o.ServerID = 0 },
		"no listen host":       func(o *Options) { o.ListenHost = "" },
		"no replication pw":    func(o *Options) { o.ReplicationPassword = "" },
		"backslash in pw":      func(o *Options) { o.ReplicationPassword = `a\b` },
		"newline in pw":        func(o *Options) { o.SuperuserPassword = "a\nb" },
		"reserved parameter":   func(o *Options) { o.Parameters = map[string]string{"Server_ID": "3"} },
		"reserved read-only":   func(o *Options) { o.Parameters = map[string]string{"read_only": "0"} },
		"bad parameter":        func(o *Options) { o.Parameters = map[string]string{"a=b": "1"} },
		"missing server":       func(o *Options) { o.ServerBin = "/nonexistent/mariadbd" },
		"relative socket path": func(o *Options) { o.Socket = "s.sock" },
	} {
		o := valid()
		mutate(&o)
		if _, err := New(o); err == nil {
			t.Errorf("%s: accepted", name)
		} else if strings.Contains(err.Error(), "a\nb") || strings.Contains(err.Error(), `a\b`) {
			t.Errorf("%s: error leaks the password: %v", name, err)
		}
	}
}

func TestServerArgs(t *testing.T) {
	m, err := New(Options{Name: "n1", DataDir: "/d/n1", ServerBin: "/bin/sh", ListenHost: "127.0.0.1", Port: 3307,
		ServerID: 7, Replication: "repl", ReplicationPassword: "x", Parameters: map[string]string{"innodb-buffer-pool-size": "64M"}})
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(m.serverArgs(dialect(t, "10.11.6-MariaDB", ""), "/d/n1"), " ")
	want := "--no-defaults --datadir=/d/n1 --socket=/d/n1.sock --port=3307 --bind-address=127.0.0.1 --pid-file=/d/n1/mysqld.pid " +
		"--server-id=7 --log-bin=mysql-bin --binlog-format=ROW --skip-name-resolve --log-slave-updates --gtid-strict-mode=1 " +
		"--skip-slave-start --read-only=1 --innodb-buffer-pool-size=64M --rpl-semi-sync-master-enabled=OFF --rpl-semi-sync-slave-enabled=OFF"
	if got != want {
		t.Errorf("MariaDB args\n%s\nwant\n%s", got, want)
	}
	got = strings.Join(m.serverArgs(dialect(t, "8.4.0", ""), "/d/n1"), " ")
	if !strings.Contains(got, "--gtid-mode=ON --enforce-gtid-consistency=ON --skip-replica-start --super-read-only=ON --innodb-buffer-pool-size=64M "+
		"--plugin-load-add=semisync_source.so --plugin-load-add=semisync_replica.so") {
		t.Errorf("MySQL args %s", got)
	}
}

func TestClampState(t *testing.T) {
	pos, _ := cluster.MariaDBPosition("0-2-15,1-3-4")
	got, err := ClampState("0-1-12,0-2-17,0-3-14,1-3-6,2-1-1", pos)
	if err != nil || got.String() != "0-1-12,0-2-15,0-3-14,1-3-4" {
		t.Errorf("clamped %s, %v", got, err)
	}
}

// The semi-sync statements of each flavour: MariaDB and MySQL before
// 8.0.26 say master and slave, MySQL 8.0.26+ source and replica (and its
// plugins may be missing: variables read through performance_schema, so
// a missing one is NULL rather than an error).
func TestSemiSyncStatements(t *testing.T) {
	mdb := dialect(t, "10.11.19-MariaDB-0+deb12u1", "")
	my80 := dialect(t, "8.0.25", "")
	my84 := dialect(t, "8.4.0", "")
	for _, c := range []struct{ got, want []string }{
		{mdb.SemiSyncSourceOn(), []string{"SET GLOBAL rpl_semi_sync_master_timeout = 86400000",
			"SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC", "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
			"SET GLOBAL rpl_semi_sync_master_enabled = ON"}},
		{my80.SemiSyncSourceOn(), []string{"SET GLOBAL rpl_semi_sync_master_timeout = 86400000",
			"SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC", "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
			"SET GLOBAL rpl_semi_sync_master_enabled = ON"}},
		{my84.SemiSyncSourceOn(), []string{"SET GLOBAL rpl_semi_sync_source_timeout = 86400000",
			"SET GLOBAL rpl_semi_sync_source_wait_point = AFTER_SYNC", "SET GLOBAL rpl_semi_sync_source_wait_no_replica = ON",
			"SET GLOBAL rpl_semi_sync_source_enabled = ON"}},
		{[]string{mdb.SemiSyncSourceOff(), my80.SemiSyncSourceOff(), my84.SemiSyncSourceOff()}, []string{
			"SET GLOBAL rpl_semi_sync_master_enabled = OFF", "SET GLOBAL rpl_semi_sync_master_enabled = OFF",
			"SET GLOBAL rpl_semi_sync_source_enabled = OFF"}},
		{[]string{mdb.SemiSyncReplica(true), mdb.SemiSyncReplica(false), my84.SemiSyncReplica(true), my84.SemiSyncReplica(false)}, []string{
			"SET GLOBAL rpl_semi_sync_slave_enabled = ON", "SET GLOBAL rpl_semi_sync_slave_enabled = OFF",
			"SET GLOBAL rpl_semi_sync_replica_enabled = ON", "SET GLOBAL rpl_semi_sync_replica_enabled = OFF"}},
		{mdb.RestartReplicaIO(), []string{"STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"}},
		{dialect(t, "8.0.20", "").RestartReplicaIO(), []string{"STOP SLAVE IO_THREAD", "START SLAVE IO_THREAD"}},
		{my84.RestartReplicaIO(), []string{"STOP REPLICA IO_THREAD", "START REPLICA IO_THREAD"}},
		{[]string{mdb.AckQuery(), my80.AckQuery(), my84.AckQuery()}, []string{
			"SELECT @@GLOBAL.rpl_semi_sync_slave_enabled, (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_SLAVE_STATUS')",
			"SELECT (SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_slave_enabled'), " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_slave_status')",
			"SELECT (SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_replica_enabled'), " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_status WHERE VARIABLE_NAME = 'Rpl_semi_sync_replica_status')"}},
		{[]string{mdb.SyncStatusQuery(), my84.SyncStatusQuery()}, []string{
			"SELECT @@GLOBAL.gtid_binlog_state, @@GLOBAL.gtid_slave_pos, @@GLOBAL.read_only, @@GLOBAL.rpl_semi_sync_master_enabled, " +
				"@@GLOBAL.rpl_semi_sync_master_wait_no_slave, @@GLOBAL.rpl_semi_sync_master_timeout, @@GLOBAL.rpl_semi_sync_master_wait_point",
			"SELECT @@GLOBAL.gtid_executed, @@GLOBAL.gtid_executed, @@GLOBAL.read_only, " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_source_enabled'), " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_source_wait_no_replica'), " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_source_timeout'), " +
				"(SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_source_wait_point')"}},
		{[]string{mdb.SemiSyncSourceEnabled(), my80.SemiSyncSourceEnabled(), my84.SemiSyncSourceEnabled()}, []string{
			"SELECT @@GLOBAL.rpl_semi_sync_master_enabled",
			"SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_master_enabled'",
			"SELECT VARIABLE_VALUE FROM performance_schema.global_variables WHERE VARIABLE_NAME = 'rpl_semi_sync_source_enabled'"}},
		{mdb.SemiSyncServerOptions(), []string{"--rpl-semi-sync-master-enabled=OFF", "--rpl-semi-sync-slave-enabled=OFF"}},
		{my80.SemiSyncServerOptions(), []string{"--plugin-load-add=semisync_master.so", "--plugin-load-add=semisync_slave.so",
			"--loose-rpl-semi-sync-master-enabled=OFF", "--loose-rpl-semi-sync-slave-enabled=OFF"}},
		{my84.SemiSyncServerOptions(), []string{"--plugin-load-add=semisync_source.so", "--plugin-load-add=semisync_replica.so",
			"--loose-rpl-semi-sync-source-enabled=OFF", "--loose-rpl-semi-sync-replica-enabled=OFF"}},
	} {
		if !reflect.DeepEqual(c.got, c.want) {
			t.Errorf("got  %q\nwant %q", c.got, c.want)
		}
	}
}

func TestParseSemiSyncSource(t *testing.T) {
	v := func(s string) sql.NullString { return sql.NullString{String: s, Valid: true} }
	null := sql.NullString{}
	for _, c := range []struct {
		enabled, noReplica, timeout, waitPoint sql.NullString
		want                                   SemiSyncSource
		waits                                  bool
	}{
		// MariaDB's @@GLOBAL booleans read 1 and 0.
		{v("1"), v("1"), v("86400000"), v("AFTER_SYNC"), SemiSyncSource{true, true, 86400000, "AFTER_SYNC"}, true},
		{v("ON"), v("ON"), v("90000000"), v("after_sync"), SemiSyncSource{true, true, 90000000, "AFTER_SYNC"}, true},
		// The defaults: a 10 s timeout falls back silently.
		{v("1"), v("1"), v("10000"), v("AFTER_COMMIT"), SemiSyncSource{true, true, 10000, "AFTER_COMMIT"}, false},
		{v("1"), v("0"), v("86400000"), v("AFTER_SYNC"), SemiSyncSource{true, false, 86400000, "AFTER_SYNC"}, false},
		{v("0"), v("1"), v("86400000"), v("AFTER_SYNC"), SemiSyncSource{false, true, 86400000, "AFTER_SYNC"}, false},
		// MySQL without its plugin.
		{null, null, null, null, SemiSyncSource{}, false},
	} {
		got := ParseSemiSyncSource(c.enabled, c.noReplica, c.timeout, c.waitPoint)
		if got != c.want || got.Waits() != c.waits {
			t.Errorf("%v %v %v %v: %+v waits %t; want %+v waits %t", c.enabled, c.noReplica, c.timeout, c.waitPoint,
				got, got.Waits(), c.want, c.waits)
		}
	}
}

func TestBinaryDialect(t *testing.T) {
	for _, c := range []struct {
		out     string
		flavour Flavour
		v       Version
	}{
		{"/usr/sbin/mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)\n", FlavourMariaDB, Version{10, 11, 19}},
		{"/usr/sbin/mysqld  Ver 8.0.36 for Linux on x86_64 (MySQL Community Server - GPL)\n", FlavourMySQL, Version{8, 0, 36}},
		{"/usr/sbin/mysqld  Ver 8.4.0 for Linux on x86_64 (MySQL Community Server - GPL)\n", FlavourMySQL, Version{8, 4, 0}},
	} {
		d, err := BinaryDialect(c.out)
		if err != nil || d.Flavour != c.flavour || d.Version != c.v {
			t.Errorf("%q: %+v, %v", c.out, d, err)
		}
	}
	for _, bad := range []string{"", "mysqld 8.0.36", "/usr/sbin/mysqld  Ver 5.7.44 for Linux"} {
		if _, err := BinaryDialect(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// SetSynchronousStandbys takes no names, and SetAcknowledging only on and
// off: both refused before the server is looked at.
func TestSemiSyncArguments(t *testing.T) {
	m, err := New(Options{Name: "n1", DataDir: "/nonexistent/n1", ServerBin: "/bin/sh", ListenHost: "127.0.0.1", Port: 3306,
		ServerID: 1, Replication: "repl", ReplicationPassword: "x"})
	if err != nil {
		t.Fatal(err)
	}
	err = m.SetSynchronousStandbys(context.Background(), []string{"n2"}, false)
	if !errors.Is(err, ErrNamedStandbys) || !strings.Contains(err.Error(), "cannot name standbys") {
		t.Errorf("names: %v", err)
	}
	if err := m.SetAcknowledging(context.Background(), cluster.AckUnknown); err == nil || errors.Is(err, db.ErrNotRunning) {
		t.Errorf("unknown state: %v", err)
	}
	for _, st := range []cluster.AckState{cluster.AckOn, cluster.AckOff} {
		if err := m.SetAcknowledging(context.Background(), st); !errors.Is(err, db.ErrNotRunning) {
			t.Errorf("%s on a stopped server: %v", st, err)
		}
	}
	if err := m.SetSynchronousStandbys(context.Background(), nil, true); !errors.Is(err, db.ErrNotRunning) {
		t.Errorf("stopped server: %v", err)
	}
	if _, err := m.ReplicationStatus(context.Background()); !errors.Is(err, db.ErrNotRunning) {
		t.Errorf("status of a stopped server: %v", err)
	}
	for _, name := range []string{"rpl_semi_sync_master_enabled", "loose-rpl-semi-sync-slave-enabled", "RPL_SEMI_SYNC_SOURCE_ENABLED",
		"loose_rpl_semi_sync_replica_enabled"} {
		if !IsReservedParameter(name) {
			t.Errorf("%s is not reserved", name)
		}
	}
	if IsReservedParameter("rpl_semi_sync_master_timeout") {
		t.Error("the timeout is reserved")
	}
}
