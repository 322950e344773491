// Command hamgr is the high-availability agent for PostgreSQL: `hamgr agent`
// runs beside each database server, `hamgr demo` shows a failover on a
// local three-node cluster, `hamgr version` prints the version.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

func main() {
	root := &cobra.Command{
		Use:           "hamgr",
		Short:         "High-availability failover manager for PostgreSQL",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(agentCmd(), demoCmd(), versionCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "hamgr:", err)
		os.Exit(exitStatus(err))
	}
}

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "hamgr", version)
		},
	}
}
