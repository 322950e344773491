package agent

import (
	"testing"

	"github.com/hamgr/hamgr/internal/archtest"
)

// TestLayering keeps the agent below the HTTP API: package api reads the
// agent's status (cluster.AgentStatus) through api.Source, so the agent
// needs neither package api nor net/http.
func TestLayering(t *testing.T) {
	archtest.Forbid(t, "github.com/hamgr/hamgr/agent", "the API reads the agent through api.Source",
		"github.com/hamgr/hamgr/api", "net/http")
}
