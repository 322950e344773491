package ha

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// engineWords are the names of PostgreSQL's specifics: the engine itself
// (postgres, PostgreSQL, postgresql.* settings), its tools and views
// (pg_rewind, pg_basebackup, pg_stat_replication, ...), its notation for
// positions (LSN, timeline), its settings (synchronous_standby_names and
// its "*" syntax, wal_* parameters, reclone_on_rewind_failure) and its
// signal files.
var engineWords = regexp.MustCompile(`(?i)postgres|\bpg_|lsn|timeline|synchronous_standby_names|wal_(receiver|sender|level|keep|log)|` +
	`reclone_on_rewind_failure|standby\.signal|recovery\.signal|"\*"|'\*'`)

// engineExceptions are the files of the engine-neutral packages that may
// name an engine, and why:
//
//   - cluster/engine.go lists the engines by name and maps each to its
//     position semantics;
//   - cluster/engine_postgresql.go is PostgreSQL's half of cluster.Position
//     (timeline and LSN, their comparison, the JSON form) and decodes the
//     records earlier versions wrote with PostgreSQL's fields.
//
// A MySQL engine adds its own cluster/engine_mysql.go here.
var engineExceptions = map[string]bool{
	"../cluster/engine.go":            true,
	"../cluster/engine_postgresql.go": true,
}

// TestEngineNeutral keeps the engine out of the packages above db/: the
// source of cluster, election, ha, detector, lagmon and operator — code,
// strings and comments, tests excluded — names no PostgreSQL specific
// outside engineExceptions.
// Engine-specific words in reasons come from db.Capabilities.Names, and
// positions are compared only through cluster.Position. (ha/hasim
// simulates a PostgreSQL server and is not checked.)
func TestEngineNeutral(t *testing.T) {
	checked := 0
	for _, dir := range []string{"../cluster", "../election", ".", "../detector", "../lagmon", "../operator"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") || engineExceptions[f] {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checked++
			for i, line := range strings.Split(string(src), "\n") {
				if w := engineWords.FindString(line); w != "" {
					t.Errorf("%s:%d names %q, a PostgreSQL specific: %s", f, i+1, w, strings.TrimSpace(line))
				}
			}
		}
	}
	if checked < 12 {
		t.Fatalf("checked only %d files: the test no longer finds the packages", checked)
	}
	for f := range engineExceptions {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("exception %s: %v (remove it from the list)", f, err)
		}
	}
}
