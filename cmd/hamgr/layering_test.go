package main

import (
	"testing"

	"github.com/hamgr/hamgr/internal/archtest"
)

// TestNoTestCodeInTheBinary keeps the production binary free of the test
// tree: nothing under integration/ may be among cmd/hamgr's dependencies.
func TestNoTestCodeInTheBinary(t *testing.T) {
	archtest.Forbid(t, "github.com/hamgr/hamgr/cmd/hamgr", "code the product imports must live outside integration/",
		"github.com/hamgr/hamgr/integration/...", "github.com/hamgr/hamgr/internal/archtest",
		"github.com/hamgr/hamgr/internal/ipmisim", "github.com/hamgr/hamgr/stonith/redfishtest")
}
