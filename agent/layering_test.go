package agent

import (
	"os/exec"
	"strings"
	"testing"
)

// TestLayering keeps the agent below the HTTP API: package api reads the
// agent's status (cluster.AgentStatus) through api.Source, so the agent
// needs neither package api nor net/http.
func TestLayering(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("go command not found: %v", err)
	}
	out, err := exec.Command(goBin, "list", "-deps", "github.com/hamgr/hamgr/agent").CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		switch dep {
		case "github.com/hamgr/hamgr/api", "net/http":
			t.Errorf("package agent depends on %s", dep)
		}
	}
}
