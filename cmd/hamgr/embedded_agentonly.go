//go:build agentonly

package main

import (
	"context"
	"errors"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/config"
)

// errAgentOnly says what a build with -tags agentonly leaves out, and what
// to do instead.
var errAgentOnly = errors.New("this hamgr was built with -tags agentonly, which leaves out the embedded etcd server " +
	"(it costs an agent about 4 MiB of memory): point etcd.endpoints at an etcd cluster, or build hamgr without the tag " +
	"for `hamgr demo` and etcd.embedded")

// startEmbeddedEtcd refuses: the production build has no etcd server.
func startEmbeddedEtcd(context.Context, *config.EmbeddedEtcd) ([]string, func(), error) {
	return nil, nil, errAgentOnly
}

// demoCmd stands in for the demo, which runs an embedded etcd.
func demoCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "demo",
		Short: "Not in this build (-tags agentonly): build hamgr without the tag to run the demo",
		Args:  cobra.NoArgs,
		RunE:  func(*cobra.Command, []string) error { return errAgentOnly },
	}
}
