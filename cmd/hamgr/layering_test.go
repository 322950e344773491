package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTestCodeInTheBinary keeps the production binary free of the test
// tree: nothing under integration/ may be among cmd/hamgr's dependencies.
func TestNoTestCodeInTheBinary(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/hamgr/hamgr/cmd/hamgr").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 {
		t.Fatal("go list -deps printed no packages")
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/hamgr/hamgr/integration") {
			t.Errorf("cmd/hamgr depends on %s: code the product imports must live outside integration/", dep)
		}
	}
}
