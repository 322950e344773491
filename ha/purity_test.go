package ha

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// TestPure keeps package ha a pure function of its View: no network,
// processes, SQL, store clients or logging among its dependencies, and no
// reading of the clock in its source.
func TestPure(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/hamgr/hamgr/ha").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	forbidden := []string{"net", "net/http", "os/exec", "database/sql", "log/slog"}
	forbiddenPrefix := []string{"go.etcd.io/", "github.com/jackc/", "net/"}
	for _, dep := range strings.Fields(string(out)) {
		for _, f := range forbidden {
			if dep == f {
				t.Errorf("package ha depends on %s", dep)
			}
		}
		for _, p := range forbiddenPrefix {
			if strings.HasPrefix(dep, p) {
				t.Errorf("package ha depends on %s", dep)
			}
		}
	}

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
