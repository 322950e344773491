package cluster

import "fmt"

// Engine names a database engine whose replication positions hamgr
// compares. This file and engine_*.go are the only places in this package
// that know an engine by name: each engine's position semantics live in
// its own file, behind positionKind (see ha's TestEngineNeutral).
type Engine int

// Engines.
const (
	// EnginePostgreSQL: positions are (timeline, LSN) pairs.
	EnginePostgreSQL Engine = 1 + iota
	// EngineMariaDB: positions are MariaDB GTID states (domain-server_id-seq
	// per domain and server).
	EngineMariaDB
	// EngineMySQL: positions are MySQL GTID sets (uuid:intervals).
	EngineMySQL
)

// DefaultEngine is the engine of positions recorded before positions
// carried an engine tag.
const DefaultEngine = EnginePostgreSQL

var engineNames = map[Engine]string{EnginePostgreSQL: "postgresql", EngineMariaDB: "mariadb", EngineMySQL: "mysql"}

// String returns the engine's name as written in JSON.
func (e Engine) String() string {
	if s, ok := engineNames[e]; ok {
		return s
	}
	return fmt.Sprintf("engine(%d)", int(e))
}

// LagUnit names the unit of LagTo's lag for this engine's positions.
func (e Engine) LagUnit() string {
	switch e {
	case EnginePostgreSQL:
		return "bytes"
	case EngineMariaDB, EngineMySQL:
		return "transactions"
	}
	return "units"
}

func engineNamed(name string) (Engine, bool) {
	for e, s := range engineNames {
		if s == name {
			return e, true
		}
	}
	return 0, false
}

// kind returns the engine's position semantics (nil for an unknown one).
func (e Engine) kind() positionKind {
	switch e {
	case EnginePostgreSQL:
		return pgKind{}
	case EngineMariaDB:
		return mariaDBKind{}
	case EngineMySQL:
		return mysqlKind{}
	}
	return nil
}
