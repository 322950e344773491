package ha

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hamgr/hamgr/internal/archtest"
)

// TestPure keeps package ha a pure function of its View: no network,
// processes, SQL, store clients or logging among its dependencies, and no
// reading of the clock in its source.
func TestPure(t *testing.T) {
	archtest.Forbid(t, "github.com/hamgr/hamgr/ha", "decisions do no I/O",
		"net", "net/...", "os/exec", "database/sql", "log/slog", "go.etcd.io/...", "github.com/jackc/...")

	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	clock := regexp.MustCompile(`\btime\.(Now|Since|Until|Sleep|After|AfterFunc|NewTimer|NewTicker|Tick)\b|\bgo\s+func\b`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(string(src), "\n") {
			if code, _, _ := strings.Cut(line, "//"); clock.MatchString(code) {
				t.Errorf("%s:%d reads the clock or starts a goroutine: %s", f, i+1, strings.TrimSpace(line))
			}
		}
	}
}
