package main

import (
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/hamgr/hamgr/cluster"
)

func (a *app) historyCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "history [--json]",
		Short: "Show every change of leader: failovers and switchovers",
		Long: `Show the cluster's leadership history, oldest first.

Each line is one leadership, by epoch (the fencing token: the etcd
revision at which the leader key was created): when its primary was
promoted, how (failover, switchover, ...), from and to which member, why, how long each step took, and how many bytes of WAL
the old primary had that the new one lacked (an estimate from the
positions the agents last published; 0 for switchovers). When the
election found positions that were not ordered (errant GTIDs on MariaDB or
MySQL), the reason ends with what each member held that the other lacked.

The cluster's first leader (the member that bootstrapped it) has no
entry. Use it after an incident to see what happened, and after a switchover to
confirm it. Safe at any time: it only reads. --json prints the entries as
stored.`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := a.open()
			if err != nil {
				return err
			}
			rctx, done := a.reqCtx(cmd.Context())
			defer done()
			hist, err := s.History(rctx)
			if err != nil {
				return a.storeErr(err)
			}
			if asJSON {
				if hist == nil {
					hist = []cluster.HistoryEntry{}
				}
				return writeJSON(a.stdout, hist)
			}
			return writeHistory(a, hist)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")
	return c
}

func writeHistory(a *app, hist []cluster.HistoryEntry) error {
	if len(hist) == 0 {
		fmt.Fprintln(a.stdout, "No history yet.")
		return nil
	}
	tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "EPOCH\tPROMOTED AT\tKIND\tFROM\tTO\tDATA LOSS\tEVIDENCE\tSTEPS\tREASON")
	for _, h := range hist {
		at := "-"
		if !h.PromotedAt.IsZero() {
			at = h.PromotedAt.Local().Format("2006-01-02 15:04:05")
		}
		var steps []string
		for _, s := range h.Steps {
			step := fmt.Sprintf("%s %s", s.Name, time.Duration(s.Duration).Round(time.Millisecond))
			switch {
			case s.Failed != "" && s.Late > 0:
				step += fmt.Sprintf(" FAILED, done %s after the promotion", time.Duration(s.Late).Round(time.Millisecond))
			case s.Failed != "":
				step += " FAILED"
			}
			steps = append(steps, step)
		}
		loss := humanBytes(h.DataLossBytes)
		switch {
		case h.DataLossBytes < 0:
			loss = "unknown"
		case h.DataLoss != nil && h.DataLoss.How == cluster.DataLossLowerBound:
			loss = ">= " + loss + " (until the old primary rejoins)"
		case h.DataLoss != nil:
			loss += " (" + h.DataLoss.How.String() + ")"
		}
		evidence := "-"
		if h.Evidence != nil {
			evidence = h.Evidence.Kind.String()
		}
		reason := h.Reason
		for _, e := range h.Errant {
			reason += "; ERRANT: " + e.String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.Epoch, at, dash(string(h.Kind)), dash(h.OldPrimary), dash(h.NewPrimary),
			loss, evidence, dash(strings.Join(steps, ", ")), dash(reason))
	}
	return tw.Flush()
}
