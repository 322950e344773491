package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/hamgr/hamgr/integration/writeclient"
)

// summary aggregates the runs of one profile × fault.
type summary struct {
	profile, fault      string
	attempted, measured int
	median, min, max    time.Duration
	lostTotal, lostMax  int
	detect, promote     time.Duration
	timelines           int
	anomalies           int
}

// summarize aggregates results by profile and fault, in first-seen order.
func summarize(results []runResult) []summary {
	var out []summary
	idx := map[string]int{}
	outages := map[string][]time.Duration{}
	detects := map[string][]time.Duration{}
	promotes := map[string][]time.Duration{}
	for _, r := range results {
		k := r.Profile + "/" + r.Fault
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, summary{profile: r.Profile, fault: r.Fault})
		}
		s := &out[i]
		s.attempted++
		if len(r.Anomalies) > 0 || r.Error != "" {
			s.anomalies++
		}
		if !r.Measured {
			continue
		}
		s.measured++
		outages[k] = append(outages[k], time.Duration(r.Outage))
		s.lostTotal += r.Lost
		s.lostMax = max(s.lostMax, r.Lost)
		if tl := r.Timeline; tl != nil && tl.Promoted > 0 {
			detects[k] = append(detects[k], time.Duration(tl.Detected))
			promotes[k] = append(promotes[k], time.Duration(tl.Promoted))
		}
	}
	for k, i := range idx {
		s := &out[i]
		s.median, s.min, s.max = writeclient.Stats(outages[k])
		s.detect, _, _ = writeclient.Stats(detects[k])
		s.promote, _, _ = writeclient.Stats(promotes[k])
		s.timelines = len(promotes[k])
	}
	return out
}

// writeReport prints the environment, the summary table, the per-run
// details and every anomaly.
func writeReport(w io.Writer, env environment, o options, results []runResult) {
	fmt.Fprintln(w, "hamgr failover drill")
	fmt.Fprintf(w, "command:   %s\n", env.Command)
	fmt.Fprintf(w, "machine:   nproc %s, kernel %s, %s, %s\n", env.CPUs, env.Kernel, env.Postgres, env.Go)
	switch {
	case env.HamgrVersion != "":
		fmt.Fprintf(w, "hamgr:     %s (%s)\n", env.HamgrBin, env.HamgrVersion)
	case env.HamgrRev != "":
		fmt.Fprintf(w, "hamgr:     built from the working tree at %s\n", env.HamgrRev)
	}
	fmt.Fprintf(w, "started:   %s, took %s; load average %s at the start, %s at the end\n", env.Started.Format(time.RFC3339),
		time.Duration(env.Duration).Round(time.Second), env.LoadStart, env.LoadEnd)
	for _, p := range o.profiles {
		t := p.Timing
		fmt.Fprintf(w, "profile:   %-8s ttl %s, loop_wait %s, retry_timeout %s, primary_start_timeout %s\n", p.Name,
			time.Duration(t.TTL), time.Duration(t.LoopWait), time.Duration(t.RetryTimeout), time.Duration(t.PrimaryStartTimeout))
	}
	fmt.Fprintln(w, "load:      one client, multi-host target_session_attrs=read-write over the 3 members, one INSERT every 10 ms")
	for _, f := range o.faults {
		fmt.Fprintf(w, "fault:     %s: %s;\n           unavailability = %s\n", f.Name, f.Describe, f.OutageMethod)
	}
	if env.Interrupt {
		fmt.Fprintln(w, "INTERRUPTED: the results below are partial")
	}
	fmt.Fprintln(w)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tFAULT\tRUNS\tUNAVAIL MEDIAN\tMIN\tMAX\tLOST TOTAL\tLOST MAX/RUN\tDETECT MEDIAN\tPROMOTE MEDIAN\tANOMALIES")
	for _, s := range summarize(results) {
		det, prom := "-", "-"
		if s.timelines > 0 {
			det, prom = secs(s.detect).String(), secs(s.promote).String()
		}
		unavail := []string{"-", "-", "-"}
		if s.measured > 0 {
			unavail = []string{secs(s.median).String(), secs(s.min).String(), secs(s.max).String()}
		}
		fmt.Fprintf(tw, "%s\t%s\t%d/%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\n", s.profile, s.fault, s.measured, s.attempted,
			unavail[0], unavail[1], unavail[2], s.lostTotal, s.lostMax, det, prom, s.anomalies)
	}
	tw.Flush()
	fmt.Fprintln(w, "RUNS = measured/attempted; detect = leader key seen gone, promote = new leader's /primary 200, both from the fault.")

	fmt.Fprintln(w, "\nPer run (times from the fault; timeline columns for failovers only):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROFILE\tFAULT\tRUN\tCLUSTER\tPRIMARY\tEPOCH\tUNAVAIL\tACKED\tLOST\tDETECT\tELECTED\tPROMOTED\tFOLLOWING\tNOTE")
	for _, r := range results {
		prim, epoch := r.OldPrimary, fmt.Sprint(r.OldEpoch)
		if r.NewPrimary != "" && (r.NewPrimary != r.OldPrimary || r.NewEpoch != r.OldEpoch) {
			prim += "->" + r.NewPrimary
			epoch += "->" + fmt.Sprint(r.NewEpoch)
		}
		tlc := []string{"-", "-", "-", "-"}
		if tl := r.Timeline; tl != nil {
			tlc = []string{tl.Detected.String(), tl.Elected.String(), tl.Promoted.String(), tl.Following.String()}
		}
		unavail := "-"
		if r.Measured {
			unavail = r.Outage.String()
		}
		note := ""
		switch {
		case r.Error != "":
			note = "error: " + r.Error
		case len(r.Anomalies) > 0:
			note = "ANOMALY: " + strings.Join(r.Anomalies, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\n", r.Profile, r.Fault, r.Run, r.Cluster,
			prim, epoch, unavail, r.Acked, r.Lost, tlc[0], tlc[1], tlc[2], tlc[3], note)
	}
	tw.Flush()

	var bad []runResult
	for _, r := range results {
		if len(r.Anomalies) > 0 || r.Error != "" {
			bad = append(bad, r)
		}
	}
	if len(bad) > 0 {
		fmt.Fprintln(w, "\nMisbehaving runs (agent logs in <dir>/n*/agent.log):")
		for _, r := range bad {
			fmt.Fprintf(w, "  %s %s run %d (cluster %s):\n", r.Profile, r.Fault, r.Run, r.ClusterDir)
			if r.Error != "" {
				fmt.Fprintf(w, "    error: %s\n", r.Error)
			}
			for _, a := range r.Anomalies {
				fmt.Fprintf(w, "    %s\n", a)
			}
		}
	}
}
