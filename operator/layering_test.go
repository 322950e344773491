package operator

import (
	"testing"

	"github.com/hamgr/hamgr/internal/archtest"
)

// TestLayering keeps operator requests apart from the HA loop: the
// switchover ranking policy they share lives in package election, so the
// operator needs neither package ha nor the agent.
func TestLayering(t *testing.T) {
	archtest.Forbid(t, "github.com/hamgr/hamgr/operator", "the shared ranking policy is in package election",
		"github.com/hamgr/hamgr/ha", "github.com/hamgr/hamgr/agent")
}
