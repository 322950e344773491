// Package archtest checks hamgr's architecture from tests: which packages
// a package may depend on, read from `go list -deps`. It is for tests
// only.
package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

// Deps lists pkg and every package it depends on, transitively. It skips
// the test when the go command is not on PATH, and fails it when go list
// fails or lists nothing.
func Deps(t testing.TB, pkg string) []string {
	t.Helper()
	return deps(t, pkg, "")
}

// deps is Deps for a build with the given build tags ("" for none).
func deps(t testing.TB, pkg, tags string) []string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "-tags", tags, pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatalf("go list -deps %s printed no packages", pkg)
	}
	return deps
}

// Forbid fails t once for every dependency of pkg that forbidden names:
// an entry is an import path, or a path ending in "/..." for that path
// and every package below it. why says what the rule protects.
func Forbid(t testing.TB, pkg, why string, forbidden ...string) {
	t.Helper()
	ForbidTagged(t, "", pkg, why, forbidden...)
}

// ForbidTagged is Forbid for pkg built with build tags (comma-separated,
// as go build -tags takes them).
func ForbidTagged(t testing.TB, tags, pkg, why string, forbidden ...string) {
	t.Helper()
	for _, dep := range deps(t, pkg, tags) {
		for _, f := range forbidden {
			if dep == f || strings.HasSuffix(f, "/...") && (dep == strings.TrimSuffix(f, "/...") || strings.HasPrefix(dep, strings.TrimSuffix(f, "..."))) {
				t.Errorf("%s depends on %s (%s)", pkg, dep, why)
			}
		}
	}
}
