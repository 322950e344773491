package archtest

import "testing"

// recorder is a testing.TB that records failures instead of failing.
type recorder struct {
	testing.TB
	errors int
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(string, ...any) { r.errors++ }

func TestForbidFindsADependency(t *testing.T) {
	r := &recorder{TB: t}
	// This package depends on os/exec (exact) and strings, and on
	// nothing under net/.
	Forbid(r, "github.com/hamgr/hamgr/internal/archtest", "test", "os/exec", "net/...")
	if r.errors != 1 {
		t.Fatalf("Forbid reported %d dependencies, want 1 (os/exec)", r.errors)
	}
	r.errors = 0
	Forbid(r, "github.com/hamgr/hamgr/internal/archtest", "test", "os/...")
	if r.errors != 2 {
		t.Fatalf("Forbid with a pattern reported %d dependencies, want 2 (os and os/exec, as go's os/... matches)", r.errors)
	}
}
