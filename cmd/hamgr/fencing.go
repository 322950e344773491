package main

import (
	"log/slog"

	"github.com/hamgr/hamgr/config"
	"github.com/hamgr/hamgr/stonith"
	"github.com/hamgr/hamgr/stonith/fromconfig"
)

// buildFencer builds the agent's fencer from the fencing section
// (fromconfig.Build): nil when the section is empty.
func buildFencer(f config.Fencing, log *slog.Logger) (stonith.Fencer, error) {
	return fromconfig.Build(f, log)
}
