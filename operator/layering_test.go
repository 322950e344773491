package operator

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps operator requests apart from the HA loop: the
// switchover ranking policy they share lives in package election, so the
// operator needs neither package ha nor the agent.
func TestLayering(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/hamgr/hamgr/operator").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "github.com/hamgr/hamgr/ha", "github.com/hamgr/hamgr/agent":
			t.Errorf("package operator depends on %s", dep)
		}
	}
}
